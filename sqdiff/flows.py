r"""The probability-flow map with an exact density at any volume: an even/odd split-step
discretisation whose Jacobian is triangular.

The probability-flow ODE `dφ/dt = v(t, φ) = a(t)φ − ½ g(t)² s(t, φ)` (Song et al. 2021, Eq. 13)
is integrated from the prior at `t_0 = T` down a time grid `t_0 > t_1 > … > t_N = t_min`. Each
step `h_k = t_{k+1} − t_k < 0` moves the even sites, then the odd ones (a Lie–Trotter split of
an exponential Euler step, `v` at the step's midpoint `τ_k`):

    φ_A ← φ_A + η_k v_A(τ_k, φ),    then    φ_B ← φ_B + η_k v_B(τ_k, φ),
    η_k = h_k φ₁(h_k λ_k),   φ₁(z) = (e^z − 1)/z,

where `λ_k = a − ½ g² a_s` is the part of `∂v_x/∂φ_x` that does not depend on the field (the
network's linear feature and Gaussian skip: `diagonal_bound`'s `a_s`). Writing
`v = λφ + N(φ)`, the step is `φ ← e^{hλ}φ + h φ₁(hλ) N(φ)` (exponential Euler; Hochbruck and
Ostermann, Acta Numerica 19 (2010) 209): the linear part is integrated exactly, so the
Gaussian skip alone (zero kernel weights) maps `N(0, Σ(T)²)` to the Gaussian of the ODE up
to the midpoint rule in `∫λ dt` — plain Euler shrinks it by `Π(1 + hλ) < e^{Σhλ}`.

When the score at a site depends on its own sublattice only through the site itself
(`AbstractExactDivergenceNetwork.sublattice_triangular`: `FeatureConv(checkerboard=True)`),
each half step's Jacobian is triangular with diagonal `1 + η_k ∂v_x/∂φ_x` on the moved sites
and 1 elsewhere, so

    log q(φ_N) = log p_T(φ_0) − Σ_k Σ_{x moved} log(1 + η_k ∂v_x/∂φ_x)

*exactly*, for the discrete map applied (not the ODE it approximates), at the price of one
extra, convolution-free evaluation per half step: `∂v_x/∂φ_x = a − ½ g² ∂s_x/∂φ_x` is the
network's `jacobian_diagonal`. This is a
coupling-layer normalising flow (Dinh et al., RealNVP, ICLR 2017, with checkerboard masks)
whose layers are the diffusion model's own probability-flow steps; Gerdes et al. (SciPost
Phys. 15, 238 (2023)) integrate the same kind of network with RK4 and the ODE's divergence,
whose density is that of the ODE only up to the integration error.

**The prior.** The map starts from a Gaussian whose power spectrum is
`s_T² e^{2k(p)}`, `s_T² = m(T)²σ_d² + Σ(T)²` and `k(p)` the network's learned, D4-symmetric
`prior_log_spectrum` (zero unless trained by reverse KL). Its density is exact by FFT:
`log p(z) = log N(ε; 0, 1) − V log s_T − Σ_p k(p)` with `ε = F⁻¹[e^{−k} F z]/s_T`. This is the
free-field part of the map, which the checkerboard steps alone represent poorly: their velocity
couples a site to the other sublattice only, so its linear part `W(p)` obeys
`W(p) + W(p + (π, …, π)) = 2W_0` and cannot give the zero mode and the staggered mode their own
widths (near criticality they differ by orders of magnitude).

**A bijection by construction.** A half step is a bijection of `R^V` when every moved site's
map `φ_x ↦ φ_x + h v_x` is strictly increasing for all values of the other sites, i.e.
`1 + η ∂v_x/∂φ_x > 0` for every field. The network's `diagonal_bound` gives
`∂s_x/∂φ_x ∈ [a_s − b_s, a_s + b_s]` for every field, so the map checks, once per time grid and
set of weights, that `m_k = e^{h_k λ_k} − |η_k| ½ g² b_s > 0` at every step; otherwise
it refuses (more steps make `|h_k|` smaller). The density is then exact everywhere, not just
along the path taken (a path-wise positive Jacobian does not exclude a second pre-image).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import integer
from .nn.base import AbstractExactDivergenceNetwork
from .schedules import AbstractSchedule

__all__ = ["SplitStepFlow", "checkerboard_mask"]

#: Newton steps per site when inverting a half step (quadratic convergence from `y`)
NEWTON_STEPS = 30


def checkerboard_mask(shape: tuple[int, ...]) -> np.ndarray:
    """1.0 on the even sites (`Σ_i x_i` even), 0.0 on the odd ones."""
    return (np.indices(shape).sum(axis=0) % 2 == 0).astype(np.float64)


class SplitStepFlow(eqx.Module):
    """The even/odd split-step probability-flow map from the prior at `T` to `t_min`, with
    the exact log-density of what it produces (module docstring).

    Args:
        score: a network with `sublattice_triangular` (e.g. `FeatureConv(checkerboard=True)`),
            with its schedule (VE, VP or sub-VP).
        steps: the number of steps `N`.
        t_min: the last time (> 0).
        grid: `"sigma"` (default: equal steps in `log Σ/m`, `schedule.noise_level_grid`) or
            `"uniform"` in `t`.
    """

    score: AbstractExactDivergenceNetwork
    times: Float[Array, " steps+1"]

    def __init__(
        self,
        score: AbstractExactDivergenceNetwork,
        steps: int = 50,
        t_min: float = 1e-3,
        grid: str = "sigma",
    ):
        if not isinstance(score, AbstractExactDivergenceNetwork) or not score.sublattice_triangular:
            raise ValueError(
                "the split-step flow needs a score network whose Jacobian is triangular per "
                "sublattice: FeatureConv(checkerboard=True) (sqdiff train --model fconv); got "
                f"{type(score).__name__}."
            )
        if score.schedule is None:
            raise ValueError("the split-step flow needs a score network with a noise schedule.")
        steps = integer(steps, "steps")
        sch = score.schedule
        if not 0 < float(t_min) < sch.T:
            raise ValueError(f"`t_min` must be in (0, T = {sch.T}), got {t_min}.")
        if grid == "sigma":
            times = sch.noise_level_grid(sch.T, t_min, steps)
        elif grid == "uniform":
            times = jnp.linspace(sch.T, t_min, steps + 1)
        else:
            raise ValueError(f"`grid` must be 'sigma' or 'uniform', got {grid!r}.")
        self.score = score
        self.times = jnp.asarray(times)

    @property
    def schedule(self) -> AbstractSchedule:
        sch = self.score.schedule
        assert sch is not None  # checked in __init__
        return sch

    @property
    def steps(self) -> int:
        return int(self.times.shape[0]) - 1

    def _coefficients(self, t):
        """`(a(t), ½ g(t)²)` of `v = a φ − ½ g² s`."""
        sch = self.schedule
        a = 0.0 if sch.drift_free else sch.drift_coeff(t)
        return a, 0.5 * sch.diffusion(t) ** 2

    def _step(self, t0, t1, L: int):
        """`(τ, η, e^{hλ}, ½g² b_s)` of the step from `t0` to `t1` (module docstring)."""
        h, tau = t1 - t0, 0.5 * (t0 + t1)
        a, half_g2 = self._coefficients(tau)
        a_s, b_s = self.score.diagonal_bound(tau, L)
        z = h * (a - half_g2 * a_s)
        small = jnp.abs(z) < 1e-6
        phi1 = jnp.where(small, 1 + 0.5 * z, jnp.expm1(z) / jnp.where(small, 1.0, z))
        return tau, h * phi1, jnp.exp(z), half_g2 * b_s

    def invertibility_margins(self, L: int) -> Float[Array, " steps"]:
        """`m_k`, the smallest `1 + η_k ∂v_x/∂φ_x` over all fields at step `k`: the map is a
        bijection (and its density exact) when all are positive."""

        def margin(t0, t1):
            _, eta, growth, spread = self._step(t0, t1, L)
            return growth - jnp.abs(eta) * spread

        return jax.vmap(margin)(self.times[:-1], self.times[1:])

    def check_invertible(self, L: int) -> None:
        """A `ValueError` unless every step is a bijection for every field (outside `jit`)."""
        margins = np.asarray(self.invertibility_margins(L))
        bad = np.flatnonzero(~(margins > 0))
        if bad.size:
            k = int(bad[0])
            raise ValueError(
                f"the split-step map is not guaranteed invertible at step {k} of {self.steps} "
                f"(t = {float(self.times[k]):.4g}, margin {margins[k]:.3g} ≤ 0): its density "
                "would not be exact; use more steps."
            )

    def push(self, z: Float[Array, "*L"]) -> tuple[Float[Array, "*L"], Float[Array, ""]]:
        """`(φ_N, Σ log det)`: the map applied to one prior draw `z`, and the log-determinant
        of its Jacobian (exact; one network pass and one diagonal per half step, each of which
        costs about one pass more: the features' slopes at every site)."""
        even = jnp.asarray(checkerboard_mask(z.shape), z.dtype)

        def half(phi, mask, tau, h):
            a, half_g2 = self._coefficients(tau)
            v = a * phi - half_g2 * self.score(tau, phi)
            dv = a - half_g2 * self.score.jacobian_diagonal(tau, phi)
            phi = phi + h * mask * v
            return phi, jnp.sum(mask * jnp.log(1 + h * dv))

        def step(carry, ts):
            phi, logdet = carry
            tau, eta, _, _ = self._step(*ts, z.shape[0])
            phi, l_even = half(phi, even, tau, eta)
            phi, l_odd = half(phi, 1 - even, tau, eta)
            return (phi, logdet + l_even + l_odd), None

        ts = (self.times[:-1].astype(z.dtype), self.times[1:].astype(z.dtype))
        step = jax.checkpoint(step)  # memory ∝ steps, not steps × network activations
        (phi, logdet), _ = jax.lax.scan(step, (z, jnp.zeros((), z.dtype)), ts)
        return phi, logdet

    def pull(self, x: Float[Array, "*L"]) -> tuple[Float[Array, "*L"], Float[Array, ""]]:
        """The inverse map: `(z, Σ log det)` with `push(z) = (x, Σ log det)`. Each half step is
        undone site by site: with the other sublattice fixed, the moved site solves the scalar
        equation `φ + η(aφ − ½g²[c + s_self(φ)]) = y`, strictly increasing in `φ` (its slope
        is at least the invertibility margin), by Newton's method from `y`; a residual above
        `1e-4 (1 + |y|)` (relative; float32) after `NEWTON_STEPS` steps is an error."""
        even = jnp.asarray(checkerboard_mask(x.shape), x.dtype)
        score = self.score

        def half_inverse(y, mask, tau, eta):
            a, half_g2 = self._coefficients(tau)
            # the score's part from the other sublattice: independent of the moved sites
            coupling = score(tau, y) - score.self_term(tau, y)

            def residual(phi):
                v = a * phi - half_g2 * (coupling + score.self_term(tau, phi))
                slope = 1 + eta * (a - half_g2 * score.jacobian_diagonal(tau, phi))
                return phi + eta * v - y, slope

            def newton(_, phi):
                r, slope = residual(phi)
                return phi - mask * r / slope

            phi = jax.lax.fori_loop(0, NEWTON_STEPS, newton, y)
            r, slope = residual(phi)
            bad = jnp.max(mask * jnp.abs(r) / (1 + jnp.abs(y)))
            phi = eqx.error_if(phi, ~(bad < 1e-4), "split-step inverse: Newton did not converge")
            return phi, jnp.sum(mask * jnp.log(slope))

        def step(carry, ts):
            phi, logdet = carry
            tau, eta, _, _ = self._step(*ts, x.shape[0])
            phi, l_odd = half_inverse(phi, 1 - even, tau, eta)
            phi, l_even = half_inverse(phi, even, tau, eta)
            return (phi, logdet + l_even + l_odd), None

        ts = (self.times[:-1][::-1].astype(x.dtype), self.times[1:][::-1].astype(x.dtype))
        (z, logdet), _ = jax.lax.scan(step, (x, jnp.zeros((), x.dtype)), ts)
        return z, logdet

    def log_prob(self, x: Float[Array, "*L"]) -> Float[Array, ""]:
        """The exact `log q(x)` of any configuration (through the inverse map, `pull`)."""
        z, logdet = self.pull(x)
        return self.prior_logp(z) - logdet

    @property
    def prior_std(self) -> Float[Array, ""]:
        """`√(m(T)²σ_d² + Σ(T)²)`: the noised data's width at `T` when the network assumes a
        data scale σ_d (its Gaussian skip), else the schedule's `Σ(T)`. The Gaussian skip's ODE
        keeps `N(0, m²σ_d² + Σ²)` exactly, so starting there makes the untrained map the
        Gaussian with the data's scale, not one off by `Σ(T)/√(σ_d² + Σ(T)²)` per site."""
        sch, s_d = self.schedule, self.score.data_std
        if s_d is None:
            return jnp.asarray(sch.prior_std)
        return jnp.sqrt((sch.mean_coeff(sch.T) * s_d) ** 2 + sch.marginal_std(sch.T) ** 2)

    def _filter(self, x: Array, sign: float) -> Array:
        """`x` with every momentum mode multiplied by `e^{±k(p)}` (`sign = ±1`)."""
        k = self.score.prior_log_spectrum(x.shape)
        return jnp.real(jnp.fft.ifftn(jnp.fft.fftn(x) * jnp.exp(sign * k))).astype(x.dtype)

    def prior_sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
        """`z = s_T F⁻¹[e^{k(p)} F ε]`, `ε` white noise: a Gaussian with spectrum
        `s_T² e^{2k(p)}` (`prior_std` per site when the network's `k` is zero)."""
        return self._filter(self.prior_std * jr.normal(key, shape), 1.0)

    def prior_logp(self, z: Array) -> Float[Array, ""]:
        """The exact log-density of `prior_sample`: `log N(ε; 0, 1) − V log s_T − Σ_p k(p)`."""
        s = self.prior_std
        eps = self._filter(z, -1.0) / s
        k = self.score.prior_log_spectrum(z.shape)
        return jnp.sum(-0.5 * eps**2 - 0.5 * jnp.log(2 * jnp.pi)) - z.size * jnp.log(s) - jnp.sum(k)

    def sample_and_log_prob(
        self, key: PRNGKeyArray, shape: tuple[int, ...]
    ) -> tuple[Float[Array, "*L"], Float[Array, ""]]:
        """One draw `φ ~ q` and its exact `log q(φ) = log p_T(z) − log det`."""
        z = self.prior_sample(key, shape)
        x, logdet = self.push(z)
        return x, self.prior_logp(z) - logdet
