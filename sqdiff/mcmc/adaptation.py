r"""Step-size adaptation: dual averaging towards a target acceptance, during the burn-in.

Nesterov's dual averaging as Hoffman & Gelman use it for NUTS (JMLR 15 (2014) 1593, Sec. 3.2.1,
Algorithm 5; BlackJAX `adaptation/step_size.py`). After step `m` with acceptance probability
`α_m` (here the mean over all chains, which share one step size),

    H̄_m = (1 − 1/(m + t0)) H̄_{m−1} + (δ − α_m)/(m + t0),
    log ε_m = μ − √m/γ · H̄_m,
    log ε̄_m = m^{−κ} log ε_m + (1 − m^{−κ}) log ε̄_{m−1},

with `μ = log(10 ε_0)`, `γ = 0.05`, `t0 = 10`, `κ = 0.75`. The chains move with `ε_m` while the
step adapts; the tuned step is the average `ε̄`. Adapting breaks detailed balance, so these
steps are burn-in: `tune_step_size` returns the tuned sampler and the chains' last positions,
and the chains that are kept run with the fixed tuned step (`run_chains`).

The averaged step lands short of the root of `α(ε) = δ` when the acceptance per step is noisy
(few chains, few steps): the iterates `ε_m` keep fluctuating around `ε̄`, dual averaging makes
their *mean* acceptance `δ`, and near a high target `α` falls faster above `ε̄` than it rises
below, so `α(ε̄) > δ`. The kept chains then accept more often than asked (never less exact;
only less efficient). Measured on 2D SU(2) HMC (β = 2, 6², target 0.85, from `ε_0 = 3`, 6
seeds): 4 chains × 100 steps give acceptance 0.91–0.96, 4 × 300 give 0.88–0.89, 4 × 1000 give
0.85–0.87, 16 × 300 give 0.84–0.86. More chains average the noise away fastest.

Targets: 0.574 for MALA (Roberts & Rosenthal, J. R. Stat. Soc. B 60 (1998) 255), about 0.65 for
HMC (Beskos et al., Bernoulli 19 (2013) 1501); lattice practice often prefers 0.7–0.9 for HMC.
"""

from __future__ import annotations

import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._batching import Progress
from .._checks import integer
from .._xla import hot_jit
from .base import AbstractStepSizeSampler, start_chains

__all__ = ["DualAveraging", "MALA_TARGET_ACCEPTANCE", "tune_step_size"]

#: the acceptance at which MALA's efficiency is largest in high dimension (Roberts & Rosenthal
#: 1998): the default target of `tune_step_size`
MALA_TARGET_ACCEPTANCE = 0.574


class DualAveraging(eqx.Module):
    """The dual-averaging state (Hoffman & Gelman 2014, Algorithm 5): the step count `m`, the
    running acceptance deficit `H̄`, the current `log ε` and its average `log ε̄`."""

    m: Float[Array, ""]
    h_bar: Float[Array, ""]
    log_step: Float[Array, ""]
    log_step_avg: Float[Array, ""]
    mu: Float[Array, ""]
    gamma: float = eqx.field(static=True, default=0.05)
    t0: float = eqx.field(static=True, default=10.0)
    kappa: float = eqx.field(static=True, default=0.75)

    @classmethod
    def start(cls, step_size: float) -> DualAveraging:
        """The state before the first step, at `ε_0 = step_size` (`μ = log(10 ε_0)`)."""
        dtype = jnp.result_type(float)  # float64 under jax_enable_x64
        log0 = jnp.log(jnp.asarray(step_size, dtype))
        zero = jnp.zeros((), dtype)
        return cls(zero, zero, log0, log0, log0 + math.log(10.0))

    def update(self, accept_prob: Float[Array, ""], target: float) -> DualAveraging:
        """The state after a step that was accepted with probability `accept_prob`."""
        m = self.m + 1
        w = 1.0 / (m + self.t0)
        alpha = jnp.nan_to_num(jnp.asarray(accept_prob, self.h_bar.dtype), nan=0.0)
        h_bar = (1 - w) * self.h_bar + w * (target - alpha)
        log_step = self.mu - jnp.sqrt(m) / self.gamma * h_bar
        eta = m ** (-self.kappa)
        log_avg = eta * log_step + (1 - eta) * self.log_step_avg
        return DualAveraging(m, h_bar, log_step, log_avg, self.mu, self.gamma, self.t0, self.kappa)

    @property
    def step_size(self) -> Float[Array, ""]:
        """The step the chains use next, `ε_m`."""
        return jnp.exp(self.log_step)

    @property
    def tuned_step_size(self) -> Float[Array, ""]:
        """The averaged step `ε̄_m`: the result of the adaptation."""
        return jnp.exp(self.log_step_avg)


@hot_jit
def _adapt(sampler: AbstractStepSizeSampler, states, da: DualAveraging, key, n: int, target):
    """`n` steps of every chain with the step size adapting after each (`lax.scan`)."""
    n_chains = jax.tree.leaves(states)[0].shape[0]

    def one(carry, k):
        states, da = carry
        moving = sampler.with_step_size(da.step_size)
        states, info = jax.vmap(moving.step)(jr.split(k, n_chains), states)
        acc = jnp.mean(info.accept_prob)
        return (states, da.update(acc, target)), acc

    (states, da), acc = jax.lax.scan(one, (states, da), jr.split(key, n))
    return states, da, acc


# long: argument checks, then the chunked compiled loop with its progress bar (as run_chains)
def tune_step_size(
    sampler: AbstractStepSizeSampler,
    key: PRNGKeyArray,
    init_positions: Array,
    n_steps: int,
    target: float = MALA_TARGET_ACCEPTANCE,
    *,
    chunk: int = 64,
    progress: bool = False,
) -> tuple[AbstractStepSizeSampler, Array, dict]:
    """Adapt the step size of `sampler` over `n_steps` burn-in steps of `len(init_positions)`
    chains, by dual averaging towards the mean acceptance `target`.

    Args:
        sampler: HMC or MALA/MAALA, at its initial step size `ε_0`.
        key: the PRNG key of the burn-in.
        init_positions: `(chains, *config)` start configurations.
        n_steps: burn-in steps, all adapting; at least 20 (the average settles after ~10).
        target: the mean acceptance probability to reach, in (0, 1).
        chunk: steps per compiled `lax.scan` call.
        progress: a progress bar on stderr.

    Returns:
        `(tuned, positions, settings)`: the sampler at the averaged step `ε̄`, the chains'
        positions after the burn-in (to start `run_chains` from), and for the metadata the
        target, the initial and the tuned step and the mean acceptance over the last half of
        the adaptation.
    """
    n_steps, chunk = integer(n_steps, "n_steps", minimum=20), integer(chunk, "chunk")
    if not (isinstance(target, numbers.Real) and not isinstance(target, bool) and 0 < target < 1):
        raise ValueError(f"`target` must be an acceptance probability in (0, 1), got {target!r}.")

    bar = Progress(n_steps, "tuning step size", enabled=progress)
    states = start_chains(sampler, init_positions)
    da = DualAveraging.start(sampler.step_size)
    accepts, done = [], 0
    while done < n_steps:
        m = min(chunk, n_steps - done)
        key, k = jr.split(key)
        states, da, acc = _adapt(sampler, states, da, k, m, float(target))
        accepts.append(np.asarray(acc))
        done += m
        bar.update(m)
    bar.close()
    tuned = float(da.tuned_step_size)
    if not (math.isfinite(tuned) and tuned > 0):
        raise FloatingPointError(
            f"step-size adaptation diverged (ε̄ = {tuned}); start from a smaller step size."
        )
    acc = np.concatenate(accepts)
    settings = {
        "target_acceptance": float(target),
        "tuning_steps": n_steps,
        "initial_step_size": float(sampler.step_size),
        "tuned_step_size": tuned,
        "tuning_acceptance": float(np.mean(acc[n_steps // 2 :])),
    }
    return sampler.with_step_size(tuned), states.position, settings
