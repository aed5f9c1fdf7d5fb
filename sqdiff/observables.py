"""Measure an ensemble: primaries per configuration, physics observables with Γ-method errors."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .stats import GammaResult, gamma_method, reweighted
from .theories.base import AbstractAction
from .theories.function import as_action

__all__ = ["measure_primaries", "analyze", "analyze_primaries"]


def measure_primaries(action: AbstractAction, samples, batch: int = 256) -> dict[str, np.ndarray]:
    """`action.measure` on every configuration of `samples` (shape `(chains, n, *config)`),
    in batches; returns arrays of shape `(chains, n)`."""
    samples = jnp.asarray(samples)
    if samples.ndim < 2 or tuple(samples.shape[2:]) != action.config_shape:
        raise ValueError(
            f"samples must have shape (chains, n, *{action.config_shape}), got {samples.shape}."
        )
    c, n = samples.shape[:2]
    flat = samples.reshape((c * n,) + action.config_shape)
    fn = jax.jit(jax.vmap(action.measure))
    parts = [fn(flat[i : i + batch]) for i in range(0, c * n, batch)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]).reshape(c, n) for k in parts[0]}


def analyze(
    action: AbstractAction | Callable, samples, S: float = 1.5, log_weights=None
) -> dict[str, GammaResult]:
    """Every observable of `action.observables()` with value, error and τ_int (Γ-method over
    the chains as replicas). With `log_weights` `(chains, n)` (independent importance-weighted
    samples) the values are self-normalised reweighted estimates (`stats.reweighted`). A plain
    callable `S(φ)` is analysed through `as_action` (its observable is the action)."""
    samples = np.asarray(samples)
    action = as_action(action, example=samples[0, 0] if samples.ndim >= 2 else None)
    return analyze_primaries(action, measure_primaries(action, samples), S, log_weights)


def analyze_primaries(
    action: AbstractAction, prim: dict[str, np.ndarray], S: float = 1.5, log_weights=None
) -> dict[str, GammaResult]:
    """`analyze` from primaries already measured (`measure_primaries`, arrays `(chains, n)`),
    for a caller that needs them too (`sqdiff measure --plot`)."""
    out = {}
    for name, (keys, f) in action.observables().items():
        data = np.stack([prim[k] for k in keys], axis=-1)  # (chains, n, A)
        if log_weights is None:
            out[name] = gamma_method(data, f, S=S)
        else:
            lw = np.asarray(log_weights).reshape(-1)
            out[name] = reweighted(data.reshape(lw.shape[0], -1), lw, f)
    return out
