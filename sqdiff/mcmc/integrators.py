r"""Molecular-dynamics integrators for HMC on flat and group-valued fields.

Both integrate `dφ = exp(i ε (K P)^a T^a) φ`, `dP = −ε ∇S(φ)` and **carry the force**: they take
the force at the start point (cached in the sampler state) and return the force at the end
point, so a trajectory of `n` steps costs `n` force evaluations (leapfrog) or `2n` (Omelyan)
and the next trajectory reuses the last one.

- `leapfrog`: kick ½, drift, kick ½, with the kicks of neighbouring steps merged.
- `omelyan`: Omelyan's second-order minimum-norm scheme, λ = 0.1931833 (Omelyan, Mryglod,
  Folk, Comput. Phys. Commun. 151 (2003) 272, Eq. 31): kick λ, drift ½, kick 1 − 2λ, drift ½,
  kick λ; the last kick's force is the next step's first.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jaxtyping import Array

from ..groups import AbstractGroup
from ..preconditioners import AbstractKernel

__all__ = ["OMELYAN_LAMBDA", "leapfrog", "omelyan"]

OMELYAN_LAMBDA = 0.1931833275037836


def leapfrog(
    force: Callable[[Array], Array],
    group: AbstractGroup,
    kernel: AbstractKernel,
    pos: Array,
    P: Array,
    F: Array,
    eps: float,
    n_steps: int,
) -> tuple[Array, Array, Array]:
    """`n_steps` leapfrog steps from `(pos, P)` with `F = ∇S(pos)`; returns `(pos', P', ∇S(pos'))`
    after `n_steps` force evaluations."""

    def body(i, carry):
        pos, P, F = carry
        P = P - 0.5 * eps * F
        pos = group.retract(pos, eps * kernel(P))
        F = force(pos)
        return pos, P - 0.5 * eps * F, F

    return jax.lax.fori_loop(0, n_steps, body, (pos, P, F))


def omelyan(
    force: Callable[[Array], Array],
    group: AbstractGroup,
    kernel: AbstractKernel,
    pos: Array,
    P: Array,
    F: Array,
    eps: float,
    n_steps: int,
    lam: float = OMELYAN_LAMBDA,
) -> tuple[Array, Array, Array]:
    """`n_steps` Omelyan 2MN steps with `F = ∇S(pos)`: `2 n_steps` force evaluations."""

    def body(i, carry):
        pos, P, F = carry
        P = P - lam * eps * F
        pos = group.retract(pos, 0.5 * eps * kernel(P))
        P = P - (1 - 2 * lam) * eps * force(pos)
        pos = group.retract(pos, 0.5 * eps * kernel(P))
        F = force(pos)
        return pos, P - lam * eps * F, F

    return jax.lax.fori_loop(0, n_steps, body, (pos, P, F))
