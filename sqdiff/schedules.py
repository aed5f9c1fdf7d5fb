r"""Noise schedules of the forward (noising) process and their Gaussian marginals.

Every schedule is an affine Itô SDE `dφ = a(t) φ dt + g(t) dW`, `0 ≤ t ≤ T`, whose transition
kernel is Gaussian: `φ_t | φ_0 ~ N(m(t) φ_0, Σ(t)²)` with

    m(t) = f(t, 0) = exp(∫_0^t a(s) ds),     Σ(t)² = m(t)² ∫_0^t g(s)² / m(s)² ds.

Song et al., "Score-Based Generative Modeling through SDEs" (ICLR 2021), Eqs. (25)–(29), and
Wang, Aarts, Zhou, "Generative diffusion models for lattice field theory" (NeurIPS ML4PS 2023),
Sec. 2 (the variance-exploding choice `f = 0, g = σ^t`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import check_time, integer, positive_float
from .registry import Registry

__all__ = [
    "AbstractSchedule",
    "VarianceExploding",
    "VariancePreserving",
    "SubVariancePreserving",
    "CustomSchedule",
]


class AbstractSchedule(eqx.Module):
    #: registry name (`SCHEDULES`); `params` rebuild it (`SCHEDULES[name](**params)`)
    name: ClassVar[str]
    #: whether the drift `a(t)φ` vanishes identically (VE): only such a schedule noises
    #: group-valued fields, where `a(t)φ` has no meaning
    drift_free: ClassVar[bool] = False

    """An affine forward SDE `dφ = a(t) φ dt + g(t) dW` with known Gaussian marginals."""

    T: eqx.AbstractVar[float]

    @abc.abstractmethod
    def drift_coeff(self, t: ArrayLike) -> Float[Array, ""]:
        """`a(t)` in the drift `f(φ, t) = a(t) φ`."""

    @abc.abstractmethod
    def diffusion(self, t: ArrayLike) -> Float[Array, ""]:
        """The scalar diffusion coefficient `g(t)`."""

    @abc.abstractmethod
    def mean_coeff(self, t: ArrayLike) -> Float[Array, ""]:
        """`m(t) = f(t, 0) = exp(∫_0^t a)`: `E[φ_t | φ_0] = m(t) φ_0`."""

    @abc.abstractmethod
    def marginal_std(self, t: ArrayLike) -> Float[Array, ""]:
        """`Σ(t)`: the standard deviation of `φ_t | φ_0`."""

    @property
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian prior `N(0, prior_std²)` at `t = T`."""
        return 1.0

    # ---------------------------------------------------------------------------------------
    def drift(self, t: ArrayLike, x: Array) -> Array:
        """`f(φ, t) = a(t) φ`."""
        return self.drift_coeff(t) * x

    def marginal(self, t: ArrayLike, x0: Array) -> tuple[Array, Float[Array, ""]]:
        """Mean `m(t) φ_0` and standard deviation `Σ(t)` of `φ_t | φ_0`."""
        check_time(t, self.T)
        return self.mean_coeff(t) * x0, self.marginal_std(t)

    def sample_marginal(self, key: PRNGKeyArray, t: ArrayLike, x0: Array) -> tuple[Array, Array]:
        """Draw `φ_t = m(t) φ_0 + Σ(t) η`; returns `(φ_t, η)`."""
        mean, std = self.marginal(t, x0)
        eta = jr.normal(key, jnp.shape(x0), jnp.result_type(x0, float))
        return mean + std * eta, eta

    def prior_sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None) -> Array:
        """A sample of the prior `N(0, prior_std²)` at `t = T`."""
        return self.prior_std * jr.normal(key, shape, dtype or jnp.zeros(()).dtype)

    def prior_logp(self, x: Array) -> Float[Array, ""]:
        """Log-density of the whole configuration `x` under the prior (summed over sites)."""
        s = self.prior_std
        n = jnp.size(x)
        return -0.5 * jnp.sum(x**2) / s**2 - n * (math.log(s) + 0.5 * math.log(2 * math.pi))

    def noise_level_grid(self, t0: float, t1: float, n_steps: int) -> Float[Array, " n_steps+1"]:
        r"""The `n_steps + 1` times from `t0` to `t1` (both in `(0, T]`) at which the log of the
        noise-to-signal ratio `ς(t) = Σ(t)/m(t)` is equally spaced:
        `ς(t_i) = ς(t0) (ς(t1)/ς(t0))^{i/n}`.

        On VE (`m = 1`) these are the geometric noise levels of the discretised VE reverse SDE
        (Song et al. 2021, Eq. (47): `σ_i = σ_min (σ_max/σ_min)^{(i−1)/(N−1)}`); `φ/m(t)` follows
        a VE process with noise level `ς(t)` under any schedule (Karras et al. 2022,
        "Elucidating the design space of diffusion-based generative models", Sec. 4), and this
        is their grid at `ρ → ∞`. Each step removes the same fraction of the noise, so the
        steps near `t → 0` are as fine, relative to the noise, as those near `T`: a uniform grid
        in `t` that stops at `Σ ≈ 0.03` removes 90 % of the variance in its last step, which
        matters when the data have structure on scales below `Σ` of the uniform grid's last
        steps. `t_i` solves `ς(t_i) = ς_i` by bisection (`ς` increases with `t`). Pass it as
        `solve(..., grid=...)`.

        Args:
            t0, t1: the first and last times, either order, `0 < t ≤ T`.
            n_steps: the number of steps (≥ 1).
        """
        n_steps = integer(n_steps, "n_steps")
        for name, t in (("t0", t0), ("t1", t1)):
            check_time(t, self.T, name)
            if not float(t) > 0:
                raise ValueError(f"`{name}` must be > 0 (Σ(0) = 0 has no logarithm), got {t}.")
        if float(t0) == float(t1):
            raise ValueError(f"`t0` and `t1` must differ, both are {float(t0)}.")
        lo, hi = sorted((float(t0), float(t1)))

        def log_ratio(t):
            return jnp.log(self.marginal_std(t)) - jnp.log(self.mean_coeff(t))

        log_s0, log_s1 = log_ratio(t0), log_ratio(t1)
        target = log_s0 + (log_s1 - log_s0) * jnp.arange(n_steps + 1) / n_steps

        def halve(_, bounds):
            a, b = bounds
            mid = 0.5 * (a + b)
            below = log_ratio(mid) < target
            return jnp.where(below, mid, a), jnp.where(below, b, mid)

        a, b = jax.lax.fori_loop(
            0, 60, halve, (jnp.full_like(target, lo), jnp.full_like(target, hi))
        )
        return (0.5 * (a + b)).at[0].set(t0).at[-1].set(t1)


class VarianceExploding(AbstractSchedule):
    r"""`f = 0`, `g(t) = σ^t`, `Σ²(t) = (σ^{2t} − 1)/(2 ln σ)` (σ > 1).

    The choice of Wang, Aarts & Zhou (2023), Eq. (1); prior `N(0, Σ(T)²)`.
    """

    name = "ve"
    drift_free: ClassVar[bool] = True

    @property
    def params(self) -> dict:
        return {"sigma": self.sigma, "T": self.T}

    sigma: float
    T: float = 1.0

    def __init__(self, sigma: float = 25.0, T: float = 1.0):
        self.sigma = positive_float(sigma, "sigma")
        self.T = positive_float(T, "T")
        if self.sigma <= 1.0:
            raise ValueError(f"`sigma` must be > 1 for a variance-exploding schedule, got {sigma}.")

    def drift_coeff(self, t):
        return jnp.zeros_like(jnp.asarray(t, float))

    def diffusion(self, t):
        return self.sigma ** jnp.asarray(t, float)

    def mean_coeff(self, t):
        return jnp.ones_like(jnp.asarray(t, float))

    def marginal_std(self, t):
        t = jnp.asarray(t, float)
        return jnp.sqrt(jnp.expm1(2 * t * math.log(self.sigma)) / (2 * math.log(self.sigma)))

    @property
    def prior_std(self):
        return math.sqrt((self.sigma ** (2 * self.T) - 1) / (2 * math.log(self.sigma)))


class _LinearBeta(AbstractSchedule):
    beta_min: float
    beta_max: float
    T: float

    @property
    def params(self) -> dict:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T}

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0):
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)
        self.T = positive_float(T, "T")
        if not (0.0 <= self.beta_min <= self.beta_max) or self.beta_max <= 0:
            raise ValueError(
                "`beta_min`, `beta_max` must satisfy 0 ≤ beta_min ≤ beta_max, beta_max > 0; "
                f"got beta_min={beta_min}, beta_max={beta_max}."
            )

    def beta(self, t):
        """`β(t) = β_min + (t/T)(β_max − β_min)`."""
        return self.beta_min + jnp.asarray(t, float) / self.T * (self.beta_max - self.beta_min)

    def integrated_beta(self, t):
        """`B(t) = ∫_0^t β(s) ds`."""
        t = jnp.asarray(t, float)
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2 / self.T

    def drift_coeff(self, t):
        return -0.5 * self.beta(t)

    def mean_coeff(self, t):
        return jnp.exp(-0.5 * self.integrated_beta(t))


class VariancePreserving(_LinearBeta):
    r"""DDPM's continuous limit: `f = −½β(t)φ`, `g = √β(t)`, linear `β(t)`.

    `m(t) = exp(−½∫_0^t β)`, `Σ(t)² = 1 − m(t)²`; prior `N(0, 1)` (Song et al. 2021, Eq. 29).
    """

    name = "vp"

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))

    def marginal_std(self, t):
        return jnp.sqrt(-jnp.expm1(-self.integrated_beta(t)))


class SubVariancePreserving(_LinearBeta):
    r"""sub-VP: `f = −½β(t)φ`, `g = √(β(t)(1 − e^{−2∫_0^t β}))`.

    `m(t) = exp(−½∫_0^t β)`, `Σ(t) = 1 − m(t)²`; prior `N(0, 1)` (Song et al. 2021, Eq. 30).
    """

    name = "subvp"

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t) * -jnp.expm1(-2 * self.integrated_beta(t)))

    def marginal_std(self, t):
        return -jnp.expm1(-self.integrated_beta(t))


class CustomSchedule(AbstractSchedule):
    r"""A user-defined affine schedule from callables `a(t)` and `g(t)`.

    Marginals follow from the moment ODEs `d ln m/dt = a(t)`, `dV/dt = 2a(t) V + g(t)²`
    (`V = Σ²`, `V(0) = 0`), integrated with diffrax (Tsit5, adaptive) on demand. The prior is
    `N(0, prior_std²)` with `prior_std = Σ(T)` unless given.

    Example, an Ornstein–Uhlenbeck noising:
    `CustomSchedule(lambda t: -1.0, lambda t: jnp.sqrt(2.0))`.
    """

    drift_fn: Callable
    diffusion_fn: Callable
    T: float
    _prior_std: float | None

    def __init__(
        self,
        drift_coeff: Callable[[ArrayLike], ArrayLike],
        diffusion: Callable[[ArrayLike], ArrayLike],
        T: float = 1.0,
        prior_std: float | None = None,
    ):
        if not callable(drift_coeff) or not callable(diffusion):
            raise TypeError("`drift_coeff` and `diffusion` must be callables of t.")
        self.drift_fn = drift_coeff
        self.diffusion_fn = diffusion
        self.T = positive_float(T, "T")
        self._prior_std = None if prior_std is None else positive_float(prior_std, "prior_std")

    def drift_coeff(self, t):
        return jnp.asarray(self.drift_fn(t), float)

    def diffusion(self, t):
        return jnp.asarray(self.diffusion_fn(t), float)

    def _moments(self, t):
        def vf(s, y, args):
            logm, var = y
            a = self.drift_coeff(s)
            return a, 2 * a * var + self.diffusion(s) ** 2

        t = jnp.asarray(t, float)
        zero = jnp.zeros((), float)
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(vf),
            diffrax.Tsit5(),
            t0=0.0,
            t1=t,
            dt0=None,
            y0=(zero, zero),
            stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-9),
            max_steps=4096,
        )
        return sol.ys[0][-1], sol.ys[1][-1]

    def mean_coeff(self, t):
        return jnp.vectorize(lambda s: jnp.exp(self._moments(s)[0]))(t)

    def marginal_std(self, t):
        return jnp.vectorize(lambda s: jnp.sqrt(jnp.maximum(self._moments(s)[1], 0.0)))(t)

    @property
    def prior_std(self):
        if self._prior_std is not None:
            return self._prior_std
        return float(jax.jit(self.marginal_std)(self.T))


#: every schedule class with a `name` (`CustomSchedule` takes callables and has none)
SCHEDULES: Registry = Registry("schedule", AbstractSchedule)
