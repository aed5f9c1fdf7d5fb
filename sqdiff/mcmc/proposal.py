r"""The one Metropolis–Hastings accept step and the one Langevin proposal of sqdiff.

`metropolis_accept` takes the log acceptance ratio `log a = log π(x')q(x|x') − log π(x)q(x'|x)`,
accepts with probability `min(1, e^{log a})` (0 where `log a` is not finite: a diverged
proposal is rejected, never propagated) and selects between two state pytrees. Every sampler
of sqdiff (HMC, MALA/MAALA, IMH) accepts through it (BlackJAX `mcmc/proposal.py`).

`langevin_step` is the Langevin move `x' = exp(i(ε b + √(2ε) η)^a T^a) x` in algebra
coordinates (`x + ε b + √(2ε) η` on flat fields) of the predictor–corrector's corrector. MALA
builds the same move from its increment `X` directly, because its acceptance needs `X`
(`group.langevin_log_ratio`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float, PRNGKeyArray, PyTree

from ..groups import AbstractGroup

__all__ = ["acceptance_probability", "langevin_step", "metropolis_accept"]


def acceptance_probability(log_ratio: Float[Array, ""]) -> Float[Array, ""]:
    """`min(1, e^{log_ratio})`, and 0 where `log_ratio` is nan or ±inf from a diverged move
    (`+inf` from `S(x) = inf` at the current state is never produced by a valid chain)."""
    return jnp.where(jnp.isfinite(log_ratio), jnp.exp(jnp.minimum(log_ratio, 0.0)), 0.0)


def metropolis_accept(
    key: PRNGKeyArray, log_ratio: Float[Array, ""], proposed: PyTree, current: PyTree
) -> tuple[PyTree, Float[Array, ""], Bool[Array, ""]]:
    """`(proposed if accepted else current, acceptance probability, accepted)`."""
    p = acceptance_probability(log_ratio)
    accepted = jr.uniform(key, (), jnp.result_type(float)) < p
    state = jax.tree.map(lambda a, b: jnp.where(accepted, a, b), proposed, current)
    return state, p, accepted


def langevin_step(
    group: AbstractGroup, x: Array, drift: Array, step_size: Float[Array, ""], noise: Array
) -> Array:
    """`exp(i(ε drift + √(2ε) noise)^a T^a) x` with `drift`, `noise` in algebra coordinates."""
    return group.retract(x, step_size * drift + jnp.sqrt(2 * step_size) * noise)
