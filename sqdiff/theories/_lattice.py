"""Shared validation of lattice parameters."""

from __future__ import annotations

import math
import numbers

#: the most sites one configuration may have: 2^28 (a 16384² or 128⁴ lattice; one float32
#: field of that size is 1 GiB, and the samplers keep several per chain)
MAX_SITES = 2**28


def check_lattice(L, d, allowed_d=(1, 2, 3, 4)) -> tuple[int, int]:
    if not isinstance(L, numbers.Integral) or isinstance(L, bool) or L < 2:
        raise ValueError(f"`L` must be an integer ≥ 2, got {L!r}.")
    if d not in allowed_d:
        raise ValueError(f"`d` must be one of {allowed_d}, got {d!r}.")
    L, d = int(L), int(d)
    if L > MAX_SITES or L**d > MAX_SITES:
        raise ValueError(
            f"L = {L if L < 10**12 else f'~1e{len(str(L)) - 1}'} in d = {d} is more than the "
            f"{MAX_SITES} sites sqdiff handles in one configuration."
        )
    return L, d


def finite(value, name) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {value!r}.")
    return v
