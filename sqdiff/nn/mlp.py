r"""A per-site MLP score network for 0-dimensional theories and toys.

`s_θ(t, φ)(x) = MLP([φ(x), γ(t)]) / Σ(t)` applied independently at every site (the
"one-to-one network with time embedding" of Wang, Aarts, Zhou 2023, Sec. 3). Dividing by the
marginal width `Σ(t)` makes the target `−η` of unit size at every t (Song et al. 2021, App. H).
With `data_std = σ_d` the network learns the correction to the score of `N(0, σ_d²)` data,
`s = −φ/(m(t)²σ_d² + Σ(t)²) + F/Σ(t)` (the skip connection of EDM, Karras et al. 2022).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..schedules import AbstractSchedule
from .base import AbstractScoreNetwork
from .embeddings import GaussianFourierEmbedding, gaussian_skip, noise_level, output_scale


class ScoreMLP(AbstractScoreNetwork):
    """Per-site MLP `(t, φ) → s(t, φ)` of φ's shape."""

    name = "mlp"

    embed: GaussianFourierEmbedding
    mlp: eqx.nn.MLP
    schedule: AbstractSchedule | None
    antisymmetric: bool = eqx.field(static=True)
    data_std: float | None = eqx.field(static=True)

    def __init__(
        self,
        schedule: AbstractSchedule | None,
        width: int = 64,
        depth: int = 3,
        embed_dim: int = 32,
        antisymmetric: bool = False,
        data_std: float | None = None,
        *,
        key: PRNGKeyArray,
    ):
        k1, k2 = jr.split(key)
        self.embed = GaussianFourierEmbedding(embed_dim, scale=4.0, key=k1)
        self.mlp = eqx.nn.MLP(1 + embed_dim, 1, width, depth, activation=jax.nn.silu, key=k2)
        self.schedule = schedule
        self.antisymmetric = antisymmetric
        self.data_std = None if data_std is None else float(data_std)

    def _raw(self, t, phi):
        e = self.embed(noise_level(self.schedule, t))
        flat = jnp.reshape(phi, (-1, 1))
        feats = jnp.concatenate([flat, jnp.broadcast_to(e, (flat.shape[0], e.shape[0]))], 1)
        return jax.vmap(self.mlp)(feats).reshape(jnp.shape(phi))

    def output_layer(self) -> tuple[Array, Array]:
        return self.mlp.layers[-1].weight, self.mlp.layers[-1].bias

    def __call__(self, t: Float[Array, ""], phi: Float[Array, "..."]) -> Float[Array, "..."]:
        out = self._raw(t, phi)
        if self.antisymmetric:
            out = 0.5 * (out - self._raw(t, -phi))
        return gaussian_skip(self.schedule, self.data_std, t, phi) + out / output_scale(
            self.schedule, t
        )
