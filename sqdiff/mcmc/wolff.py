r"""Wolff single-cluster flips of the embedded Ising spins of φ⁴ (Wolff, PRL 62 (1989) 361;
Brower & Tamayo, PRL 62 (1989) 1087).

With `φ(x) = s(x)|φ(x)|` the hopping term is an Ising model with couplings
`J_xy = 2κ|φ(x)||φ(y)|`; a bond between aligned spins is activated with probability
`1 − exp(−2J_xy) = 1 − exp(−4κ|φ(x)||φ(y)|)` (κ > 0), the cluster of a random seed is grown
over active bonds (a flood fill in `lax.while_loop`) and flipped. Rejection-free; it changes
only signs, so combine it with HMC for ergodicity (`Composed(HMC(...), WolffPhi4(...))`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float

from .._checks import integer
from ..theories import AbstractAction
from ..theories.phi4 import Phi4
from .base import AbstractInfo, AbstractSampler, State


class WolffInfo(AbstractInfo):
    """Rejection-free flips: acceptance 1, and the mean cluster size."""

    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]
    cluster_size: Float[Array, ""]


class WolffPhi4(AbstractSampler):
    """`n_flips` Wolff cluster flips per step for `Phi4` with κ > 0."""

    action: AbstractAction  # a Phi4 (checked)
    n_flips: int

    def __init__(self, action: Phi4, n_flips: int = 1):
        if not isinstance(action, Phi4):
            raise ValueError("WolffPhi4 needs a Phi4 action.")
        if action.kappa <= 0:
            raise ValueError(f"Wolff cluster flips need kappa > 0, got {action.kappa}.")
        n_flips = integer(n_flips, "n_flips")
        self.action = action
        self.n_flips = n_flips

    def flip(self, key, phi):
        """One cluster flip; returns the new field and the cluster size."""
        d, kappa = self.action.d, self.action.kappa
        k_bond, k_seed = jr.split(key)
        axes = tuple(range(phi.ndim - d, phi.ndim))
        # active[μ](x): bond (x, x+μ̂) active
        u = jr.uniform(k_bond, (d,) + phi.shape)
        active = []
        for i, a in enumerate(axes):
            nb = jnp.roll(phi, -1, axis=a)
            p = -jnp.expm1(-4 * kappa * jnp.maximum(phi * nb, 0.0))
            active.append(u[i] < p)
        seed = jr.randint(k_seed, (), 0, phi.size)
        cluster = jnp.zeros(phi.size, bool).at[seed].set(True).reshape(phi.shape)

        def grow(state):
            cluster, _ = state
            new = cluster
            for i, a in enumerate(axes):
                new = new | (jnp.roll(cluster, 1, axis=a) & jnp.roll(active[i], 1, axis=a))
                new = new | (jnp.roll(cluster, -1, axis=a) & active[i])
            return new, jnp.any(new != cluster)

        cluster, _ = jax.lax.while_loop(lambda s: s[1], grow, grow((cluster, True)))
        return jnp.where(cluster, -phi, phi), jnp.sum(cluster)

    def init(self, position):
        return State(jnp.asarray(position))

    def step(self, key, state):
        def body(phi, k):
            return self.flip(k, phi)

        position, sizes = jax.lax.scan(body, state.position, jr.split(key, self.n_flips))
        return State(position), WolffInfo(jnp.ones(()), jnp.ones((), bool), jnp.mean(sizes))

    @property
    def settings(self):
        return {"sampler": "wolff", "n_flips": self.n_flips}
