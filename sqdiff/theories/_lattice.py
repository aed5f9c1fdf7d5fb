"""Shared validation of lattice parameters."""

from __future__ import annotations

import math


def check_lattice(L, d, allowed_d=(1, 2, 3, 4)) -> tuple[int, int]:
    if not isinstance(L, int) or isinstance(L, bool) or L < 2:
        raise ValueError(f"`L` must be an integer ≥ 2, got {L!r}.")
    if d not in allowed_d:
        raise ValueError(f"`d` must be one of {allowed_d}, got {d!r}.")
    return L, d


def finite(value, name) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {value!r}.")
    return v
