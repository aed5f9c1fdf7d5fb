r"""Predictor–corrector sampling of a diffusion model (Song et al., ICLR 2021, Sec. 4.2 and
Algs. 4–5).

On a grid `T = t_N > … > t_0 = t_min` each level does

- **predictor**: one Euler–Maruyama step of the reverse SDE from `t_{i+1}` to `t_i` (the
  `Reverse` dynamics solved by diffrax), then
- **corrector**: `M` Langevin steps at fixed noise level `t_i` with the learned score,
  `φ ← φ + ε s_θ(t_i, φ) + √(2ε) z`, with the step set by the signal-to-noise ratio `r`,
  `ε = 2 (r ‖z‖ / ‖s_θ(t_i, φ)‖)²` (Alg. 5), per configuration, capped at `2 r² Σ(t_i)²`
  (the step for a score of the pure-noise size `‖z‖/Σ`): without the cap a configuration with
  few degrees of freedom whose score happens to be near zero (a scalar between two modes)
  takes an unbounded step. On lattices `‖s‖ ≈ ‖z‖/Σ` and the cap rarely binds.

The corrector moves each level's marginal towards `p_{t_i}` as far as the score is right; it
does not make the sampler exact (use MAALA or IMH for that). Works on flat fields and on U(1)
angles (moves wrapped by the group).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ._checks import integer
from .dynamics import Reverse
from .groups import AbstractGroup, Euclidean
from .mcmc.proposal import langevin_step
from .schedules import AbstractSchedule
from .solvers import solve

__all__ = ["annealed_langevin", "predictor_corrector"]


def predictor_corrector(
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    score: Callable,
    shape: tuple[int, ...],
    *,
    n_steps: int = 500,
    corrector_steps: int = 1,
    snr: float = 0.16,
    t_min: float | None = None,
    group: AbstractGroup | None = None,
) -> Float[Array, "..."]:
    """One configuration of `shape` from the prior at `T` down to `t_min` by `n_steps`
    predictor steps, each followed by `corrector_steps` Langevin corrector steps at signal-to-
    noise ratio `snr`. `vmap` over keys for many samples. The last level is `t_min` (default
    `10⁻³ T`, as in Song et al.): the corrector needs a finite score there."""
    group = group or Euclidean()
    n_steps = integer(n_steps, "n_steps")
    corrector_steps = integer(corrector_steps, "corrector_steps", 0)
    if not snr > 0:
        raise ValueError(f"`snr` must be > 0, got {snr}.")
    t_min = 1e-3 * schedule.T if t_min is None else t_min
    if not 0 < t_min < schedule.T:
        raise ValueError(f"`t_min` must lie in (0, T) = (0, {schedule.T}), got {t_min}.")
    rev = Reverse(schedule, score, group=group)
    ts = jnp.linspace(schedule.T, t_min, n_steps + 1)
    k_prior, k_run = jr.split(key)
    x = rev.prior_sample(k_prior, shape)
    lattice = group.lattice_shape(x)

    def corrector(x, args):
        k, t = args
        s = score(t, x)
        z = group.sample_algebra(k, lattice, jnp.real(x).dtype)
        s_norm = jnp.maximum(jnp.linalg.norm(s), jnp.linalg.norm(z) / schedule.marginal_std(t))
        eps = 2 * (snr * jnp.linalg.norm(z) / s_norm) ** 2
        return langevin_step(group, x, s, eps, z), None

    def level(x, args):
        k, t_hi, t_lo = args
        k_pred, k_corr = jr.split(k)
        x = solve(rev, x, t_hi, t_lo, key=k_pred, n_steps=1).ys[-1]
        if corrector_steps:
            kc = jr.split(k_corr, corrector_steps)
            x, _ = jax.lax.scan(corrector, x, (kc, jnp.full(corrector_steps, t_lo)))
        return x, None

    x, _ = jax.lax.scan(level, x, (jr.split(k_run, n_steps), ts[:-1], ts[1:]))
    return x


def annealed_langevin(
    key: PRNGKeyArray,
    schedule: AbstractSchedule,
    score: Callable,
    x: Float[Array, "..."],
    t_levels: Float[Array, " levels"],
    *,
    steps_per_level: int = 5,
    step_size: float,
    group: AbstractGroup | None = None,
) -> Float[Array, "..."]:
    r"""Annealed Langevin dynamics (Song & Ermon, NeurIPS 2019, Alg. 1; the pre-Metropolis stage
    of the published U(1) MAALA study): at each level `t_i` (decreasing), `steps_per_level`
    Langevin steps `φ ← φ + ε_i s(t_i, φ) + √(2ε_i) z` with `ε_i = step_size · Σ(t_i)²/Σ(t_L)²`
    (`t_L` the last level), each level solved as `Langevin` dynamics by diffrax
    (Euler–Maruyama with `dt = ε_i`). `x` is the start (e.g. a prior draw; U(1) angles are
    wrapped to (−π, π] first)."""
    from .dynamics import Langevin

    group = group or Euclidean()
    steps_per_level = integer(steps_per_level, "steps_per_level")
    if not step_size > 0:
        raise ValueError(f"`step_size` must be > 0, got {step_size}.")
    t_levels = jnp.asarray(t_levels, float)
    x = group.canonical(jnp.asarray(x))
    sig_last = schedule.marginal_std(t_levels[-1])

    def level(x, args):
        k, t = args
        eps = step_size * (schedule.marginal_std(t) / sig_last) ** 2
        dyn = Langevin(force=lambda y: -score(t, y), group=group)
        return solve(dyn, x, 0.0, eps * steps_per_level, key=k, n_steps=steps_per_level).ys[
            -1
        ], None

    x, _ = jax.lax.scan(level, x, (jr.split(key, t_levels.shape[0]), t_levels))
    return x
