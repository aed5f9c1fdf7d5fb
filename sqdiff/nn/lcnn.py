r"""A gauge-covariant score network for 2D U(1) links (a first L-CNN-style version; Favoni,
Ipp, Müller, Schuh, PRL 128 (2022) 032003).

Inputs are gauge invariant: `cos θ_P`, `sin θ_P` of the plaquettes. A periodic CNN (with the
time embedding) maps them to one gauge-invariant scalar `c(x)` per plaquette; the link score
is assembled like the Wilson force, `s_0(x) = c(x) − c(x−1̂)`, `s_1(x) = c(x−0̂) − c(x)`. For
U(1) the adjoint action is trivial, so a gauge-invariant algebra field is gauge covariant.
With `c = −β sin θ_P` this is exactly the score of the Wilson action. Output divided by Σ(t).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..schedules import AbstractSchedule
from ..theories.u1 import plaquette_angles
from .base import AbstractScoreNetwork
from .conv import PeriodicConv
from .embeddings import GaussianFourierEmbedding, noise_level
from .unet import ResBlock, _conv


class U1LinkNet(AbstractScoreNetwork):
    """`(t, θ) → s(t, θ)` for U(1) links of shape `(2, L, L)`."""

    name = "u1"
    groups = ("u1",)

    embed: GaussianFourierEmbedding
    conv_in: PeriodicConv
    blocks: tuple
    conv_out: PeriodicConv
    schedule: AbstractSchedule | None  # required (checked): scores are divided by Σ(t)

    def __init__(
        self,
        schedule: AbstractSchedule,
        channels: int = 32,
        depth: int = 3,
        emb_dim: int = 32,
        *,
        key: PRNGKeyArray,
    ):
        keys = jr.split(key, depth + 3)
        self.embed = GaussianFourierEmbedding(emb_dim, scale=4.0, key=keys[0])
        self.conv_in = _conv(2, 2, channels, keys[1])
        self.blocks = tuple(ResBlock(2, channels, channels, emb_dim, key=k) for k in keys[2:-1])
        self.conv_out = _conv(2, channels, 1, keys[-1])
        if schedule is None:
            raise ValueError("U1LinkNet needs a noise schedule (its output is divided by Σ(t)).")
        self.schedule = schedule

    def output_layer(self):
        return self.conv_out.weight, self.conv_out.bias

    def __call__(self, t: Float[Array, ""], theta: Float[Array, "2 L L"]) -> Float[Array, "2 L L"]:
        if theta.ndim != 3 or theta.shape[0] != 2:
            raise ValueError(f"U1LinkNet needs links of shape (2, L, L), got {theta.shape}.")
        tp = plaquette_angles(theta)
        emb = self.embed(noise_level(self.schedule, t))
        h = self.conv_in.channels_last(jnp.stack([jnp.cos(tp), jnp.sin(tp)], -1))
        for block in self.blocks:
            h = block(h, emb)
        c = self.conv_out.channels_last(jax.nn.silu(h))[..., 0]
        s0 = c - jnp.roll(c, 1, axis=1)
        s1 = jnp.roll(c, 1, axis=0) - c
        return jnp.stack([s0, s1]) / self.schedule.marginal_std(t)
