r"""A one-dimensional Gaussian mixture with its exact time-dependent score.

`P_0(x) = Σ_k w_k N(x; μ_k, s_k²)`. Under any affine noising schedule the marginal stays a
mixture, `p_t(x) = Σ_k w_k N(x; m(t) μ_k, m(t)² s_k² + Σ(t)²)`, so the score `∇ log p_t` is exact
(Wang, Aarts, Zhou, NeurIPS ML4PS 2023; the two-Gaussian cumulant study of the source talks).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..schedules import AbstractSchedule


class GaussianMixture(eqx.Module):
    """A mixture of 1-d Gaussians, applied elementwise to fields of any shape."""

    weights: Float[Array, " k"]
    means: Float[Array, " k"]
    stds: Float[Array, " k"]

    def __init__(self, means: Sequence[float], stds: Sequence[float], weights=None):
        self.means = jnp.asarray(means, float)
        self.stds = jnp.broadcast_to(jnp.asarray(stds, float), self.means.shape)
        k = self.means.shape[0]
        w = jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights, float)
        if w.shape != (k,) or bool(jnp.any(w < 0)):
            raise ValueError(f"`weights` must be {k} non-negative numbers.")
        if bool(jnp.any(self.stds <= 0)):
            raise ValueError("`stds` must be > 0.")
        self.weights = w / jnp.sum(w)

    @classmethod
    def symmetric(cls, mu0: float = 1.0, s0: float = 0.25) -> GaussianMixture:
        """`½[N(μ0, s0²) + N(−μ0, s0²)]` (κ2 = μ0² + s0², κ4 = −2μ0⁴, …)."""
        return cls([mu0, -mu0], [s0, s0])

    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
        kc, kn = jr.split(key)
        comp = jr.choice(kc, self.means.shape[0], shape, p=self.weights)
        return self.means[comp] + self.stds[comp] * jr.normal(kn, shape)

    def _log_components(self, x, t, schedule):
        if schedule is None:
            m, var = 1.0, self.stds**2
        else:
            m = schedule.mean_coeff(t)
            var = m**2 * self.stds**2 + schedule.marginal_std(t) ** 2
        x = jnp.asarray(x)[..., None]
        return (
            (
                jnp.log(self.weights)
                - 0.5 * (x - m * self.means) ** 2 / var
                - 0.5 * jnp.log(2 * jnp.pi * var)
            ),
            m,
            var,
        )

    def log_prob(
        self, t: ArrayLike, x: ArrayLike, schedule: AbstractSchedule | None = None
    ) -> Array:
        """Elementwise `log p_t(x)` under `schedule` (the data law `log P_0` when `schedule` is
        None, whatever `t`)."""
        logc, _, _ = self._log_components(x, t, schedule)
        return jax.nn.logsumexp(logc, axis=-1)

    def score(self, t: ArrayLike, x: ArrayLike, schedule: AbstractSchedule | None = None) -> Array:
        """Elementwise exact score `∂_x log p_t(x)`."""
        logc, m, var = self._log_components(x, t, schedule)
        resp = jax.nn.softmax(logc, axis=-1)
        return jnp.sum(resp * (m * self.means - jnp.asarray(x)[..., None]) / var, axis=-1)
