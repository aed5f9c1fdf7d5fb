r"""Topology-changing global moves for 2D U(1): add or remove one smooth instanton.

At large β, local moves (HMC, MALA, MAALA with a learned drift) almost never change the
geometric charge `Q = (1/2π) Σ_x wrap(θ_P(x))`: it takes a plaquette through `θ_P = ±π`,
which costs `2β`. This move multiplies the links by the field of one instanton of charge
`s = ±1` at a random position. That field has the same plaquette angle `F = 2π/L²` everywhere,
so it adds `s` to `Q` (while no plaquette crosses ±π) and costs only
`ΔS ≈ β V F²/2 ⟨cos θ_P⟩ + β F Σ_x sin θ_P ≈ (2π)²β/(2V)` on average: small on large lattices.

The instanton of charge 1 on the periodic `L×L` lattice, in sqdiff's layout
`θ[μ, x0, x1]` (`μ = 0` steps along `x0`):

    θ_0(x0, x1) = −F x1,        θ_1(x0, x1) = F L x0 δ_{x1, L−1},        F = 2π / L²,

whose plaquette is `F` at every site (the jump of `θ_0` across `x1 = L−1` is carried by
`θ_1` there). The proposal `θ' = wrap(θ + s T_a I)` with `s = ±1` and a translation `a`, both
uniform, is its own inverse in distribution (`θ = wrap(θ' − s T_a I)`), so the move is accepted
with `min(1, e^{−ΔS})`: exact for `e^{−S}`. It changes no local structure and is not
ergodic on its own: compose it with a local sampler (`Composed(MAALA(...), InstantonU1(...))`).

Moves of this kind ("instanton hits") are an old device for the Schwinger model at weak
coupling. `docs/gauge.md` records what they give at β = 7.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float

from .._checks import integer
from ..groups import wrap_angle
from ..theories import AbstractAction
from ..theories.u1 import U1Wilson2D
from .base import AbstractInfo, AbstractSampler, State
from .proposal import metropolis_accept

__all__ = ["InstantonInfo", "InstantonU1", "u1_instanton"]


def u1_instanton(L: int, charge: int = 1) -> Float[Array, "2 L L"]:
    """The links `(2, L, L)` of the smooth 2D U(1) configuration of geometric charge `charge`
    with the same plaquette angle `2π·charge/L²` on every plaquette (see the module)."""
    L = integer(L, "L", minimum=2)
    F = 2 * jnp.pi * charge / L**2
    x = jnp.arange(L, dtype=float)
    theta0 = jnp.broadcast_to(-F * x[None, :], (L, L))  # θ_0(x0, x1) = −F x1
    theta1 = jnp.zeros((L, L)).at[:, L - 1].set(F * L * x)  # θ_1(x0, L−1) = F L x0
    return wrap_angle(jnp.stack([theta0, theta1]))


class InstantonInfo(AbstractInfo):
    """The mean acceptance of the step's moves and whether the last was taken."""

    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]


class InstantonU1(AbstractSampler):
    """`n_moves` instanton-insertion moves per step for `U1Wilson2D` (see the module).

    Args:
        action: the 2D U(1) Wilson action.
        n_moves: Metropolis moves per step, each adding or removing one instanton.
    """

    action: AbstractAction  # a U1Wilson2D (checked)
    n_moves: int
    instanton: Array

    def __init__(self, action: U1Wilson2D, n_moves: int = 1):
        if not isinstance(action, U1Wilson2D):
            raise ValueError(
                "instanton moves need the 2D U(1) Wilson action (theory 'u1'), got "
                f"{type(action).__name__}."
            )
        self.action = action
        self.n_moves = integer(n_moves, "n_moves")
        self.instanton = u1_instanton(action.L)

    def init(self, position):
        return State(jnp.asarray(position))

    def _move(self, key, theta):
        k_sign, k_shift, k_acc = jr.split(key, 3)
        sign = jnp.where(jr.bernoulli(k_sign), 1.0, -1.0).astype(theta.dtype)
        a0, a1 = jr.randint(k_shift, (2,), 0, self.action.L)
        jump = jnp.roll(self.instanton, (a0, a1), axis=(-2, -1)).astype(theta.dtype)
        proposed = wrap_angle(theta + sign * jump)
        log_ratio = self.action(theta) - self.action(proposed)
        return metropolis_accept(k_acc, log_ratio, proposed, theta)

    def step(self, key, state):
        def body(theta, k):
            theta, p, accepted = self._move(k, theta)
            return theta, (p, accepted)

        theta, (p, accepted) = jax.lax.scan(body, state.position, jr.split(key, self.n_moves))
        return State(theta), InstantonInfo(jnp.mean(p), accepted[-1])

    @property
    def settings(self):
        return {"sampler": "instanton", "n_moves": self.n_moves}
