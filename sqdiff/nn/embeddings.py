r"""Gaussian Fourier features of time (Tancik et al., NeurIPS 2020; Song et al., ICLR 2021,
App. H): `γ(t) = [sin(2π W t), cos(2π W t)]`, `W ~ N(0, scale²)` fixed (not trained)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray


class GaussianFourierEmbedding(eqx.Module):
    """`t ↦ [sin 2πWt, cos 2πWt]` of size `dim` (even); `W` is frozen."""

    W: Float[Array, " half"]

    def __init__(self, dim: int, scale: float = 16.0, *, key: PRNGKeyArray):
        if dim < 2 or dim % 2:
            raise ValueError(f"`dim` must be an even integer ≥ 2, got {dim}.")
        self.W = scale * jr.normal(key, (dim // 2,))

    def __call__(self, t: Float[Array, ""]) -> Float[Array, " dim"]:
        proj = 2 * jnp.pi * jax.lax.stop_gradient(self.W) * t
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)])


def gaussian_skip(schedule, data_std, t, phi):
    """Score of `N(0, σ_d²)` data under the schedule, `−φ/(m(t)²σ_d² + Σ(t)²)`; 0 if no σ_d."""
    if data_std is None or schedule is None:
        return 0.0
    var = (schedule.mean_coeff(t) * data_std) ** 2 + schedule.marginal_std(t) ** 2
    return -phi / var


def noise_level(schedule, t):
    """Network time input `¼ ln Σ(t)` (EDM's `c_noise`, Karras et al. 2022): resolves the small
    noise levels where the score changes fastest, for every schedule alike. Without a schedule
    (a plain time-dependent field such as the optimal-SQ residual) the input is `t` itself."""
    if schedule is None:
        return jnp.asarray(t, float)
    return 0.25 * jnp.log(schedule.marginal_std(t))


def output_scale(schedule, t):
    """`Σ(t)`, the width the raw network output is divided by; 1 without a schedule."""
    return 1.0 if schedule is None else schedule.marginal_std(t)
