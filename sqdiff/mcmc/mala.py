r"""Metropolis-adjusted Langevin algorithm (Roberts & Tweedie, Bernoulli 2 (1996) 341).

Proposal `φ' = φ − ε ∇S(φ) + √(2ε) η`, accepted with
`min{1, e^{−S(φ')} q(φ|φ') / (e^{−S(φ)} q(φ'|φ))}`, `q(y|x) ∝ exp(−|y − x + ε∇S(x)|²/(4ε))`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import jax.random as jr

from ..groups import Euclidean
from .base import AbstractSampler


class MALA(AbstractSampler):
    """MALA for scalar (Euclidean) fields."""

    action: Callable
    step_size: float
    force: Callable

    def __init__(self, action: Callable, step_size: float):
        if not (float(step_size) > 0):
            raise ValueError(f"`step_size` must be > 0, got {step_size!r}.")
        if not isinstance(getattr(action, "group", Euclidean()), Euclidean):
            raise ValueError("MALA here is for Euclidean (scalar) fields.")
        self.action = action
        self.step_size = float(step_size)
        self.force = getattr(action, "force", None) or jax.grad(action)

    def step(self, key, position):
        eps = self.step_size
        k_noise, k_acc = jr.split(key)
        F0 = self.force(position)
        new = position - eps * F0 + jnp.sqrt(2 * eps) * jr.normal(k_noise, position.shape)
        F1 = self.force(new)
        log_q_fwd = -jnp.sum((new - position + eps * F0) ** 2) / (4 * eps)
        log_q_bwd = -jnp.sum((position - new + eps * F1) ** 2) / (4 * eps)
        log_a = self.action(position) - self.action(new) + log_q_bwd - log_q_fwd
        accept_prob = jnp.where(jnp.isfinite(log_a), jnp.minimum(1.0, jnp.exp(log_a)), 0.0)
        accepted = jr.uniform(k_acc) < accept_prob
        return jnp.where(accepted, new, position), {"accept": accept_prob}

    @property
    def settings(self):
        return {"sampler": "mala", "step_size": self.step_size}
