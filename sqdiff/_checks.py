"""Argument validation with clear messages (run on concrete values; silent under tracing)."""

from __future__ import annotations

import math
import numbers

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True unless `x` is (or contains) a JAX tracer."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def integer(value, name: str, minimum: int = 1) -> int:
    """`int(value)` for Python and NumPy integers (not bools or floats), raising a
    `ValueError` naming `name` unless it is ≥ `minimum`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"`{name}` must be an integer ≥ {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer ≥ {minimum}, got {value!r}.")
    return int(value)


def positive_float(value, name: str) -> float:
    """`float(value)`, raising `ValueError` unless it is finite and > 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    return v


def check_time(t, T: float, name: str = "t") -> None:
    """Raise `ValueError` if a concrete `t` lies outside `[0, T]`."""
    if not is_concrete(t):
        return
    arr = np.asarray(t, dtype=float)
    if arr.size and (np.any(~np.isfinite(arr)) or arr.min() < 0 or arr.max() > T * (1 + 1e-6)):
        raise ValueError(f"`{name}` must lie in [0, T] = [0, {T}], got {t!r}.")


def check_finite(x, name: str) -> None:
    """Raise `ValueError` if a concrete pytree `x` has a non-finite entry."""
    if not is_concrete(x):
        return
    for leaf in jax.tree_util.tree_leaves(x):
        if not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"`{name}` contains non-finite values (nan or inf).")
