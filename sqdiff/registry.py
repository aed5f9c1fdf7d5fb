"""One registry per kind of building block, filled by the `name` class attribute.

A class joins its kind's registry by being a subclass of the kind's base with a `name`
defined in its own body: defining the class (in any file, a test file included) is the whole
registration. Look-ups walk the subclasses at call time, so there is no list to edit and no
import-order dependence; two classes claiming one name is an error.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T", bound=type)


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


class Registry(Generic[T]):
    """The named subclasses of `base` (those with `name` in their own class body)."""

    def __init__(self, kind: str, base: T):
        self.kind = kind
        self.base = base

    def entries(self) -> dict[str, T]:
        out: dict[str, T] = {}
        for sub in _all_subclasses(self.base):
            name = sub.__dict__.get("name")
            if not isinstance(name, str):
                continue
            if name in out and out[name] is not sub:
                raise ValueError(
                    f"two {self.kind} classes are named {name!r}: {out[name].__qualname__} and "
                    f"{sub.__qualname__}."
                )
            out[name] = sub
        return out

    def names(self) -> list[str]:
        return sorted(self.entries())

    def __contains__(self, name: object) -> bool:
        return name in self.entries()

    def __getitem__(self, name: str) -> T:
        entries = self.entries()
        if name not in entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {sorted(entries)}.")
        return entries[name]
