"""The package's shape: equinox's abstract-or-final rule (a module class is either abstract,
named `Abstract…` or private `_…`, or final: never subclassed)."""

import importlib
import inspect
import pkgutil

import equinox as eqx

import sqdiff


def test_every_module_class_is_abstract_or_final():
    modules = [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(sqdiff.__path__, "sqdiff.")
        if not m.name.endswith("__main__")
    ]
    classes = {
        c
        for m in modules
        for _, c in inspect.getmembers(m, inspect.isclass)
        if c.__module__.startswith("sqdiff") and issubclass(c, eqx.Module)
    }
    assert len(classes) > 50
    bad = [
        f"{c.__qualname__} subclasses the concrete {b.__qualname__}"
        for c in classes
        for b in c.__mro__[1:]
        if b in classes and not b.__name__.startswith(("Abstract", "_"))
    ]
    assert not bad, bad
