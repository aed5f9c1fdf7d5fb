"""Sampler interface and the chain runner (`vmap` over chains, `lax.scan` over steps)."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from .._batching import Progress
from .._checks import check_finite


class AbstractSampler(eqx.Module):
    """A Markov kernel leaving `e^{−S}` invariant.

    `init(position)` validates a start configuration and returns the state (the position);
    `step(key, position) -> (position, info)` with `info["accept"]` the acceptance probability
    (1 for rejection-free moves). Single chain: `run_chains` vmaps over chains.
    """

    action: eqx.AbstractVar[Callable]

    def init(self, position: Array) -> Array:
        if hasattr(self.action, "check_config"):
            self.action.check_config(position, "position")
        check_finite(position, "position")
        return jnp.asarray(position)

    @abc.abstractmethod
    def step(self, key: PRNGKeyArray, position: Array) -> tuple[Array, dict]: ...

    @property
    def settings(self) -> dict:
        """Sampler settings for ensemble metadata."""
        return {"sampler": type(self).__name__}


class Composed(AbstractSampler):
    """Apply several samplers in turn (e.g. HMC followed by Wolff cluster flips)."""

    samplers: tuple[AbstractSampler, ...]

    def __init__(self, *samplers: AbstractSampler):
        if not samplers:
            raise ValueError("Composed needs at least one sampler.")
        self.samplers = tuple(samplers)

    @property
    def action(self):
        return self.samplers[0].action

    def step(self, key, position):
        info = {}
        for k, s in zip(jr.split(key, len(self.samplers)), self.samplers, strict=True):
            position, i = s.step(k, position)
            info.update({f"{type(s).__name__}.{n}": v for n, v in i.items()})
        info["accept"] = info[f"{type(self.samplers[0]).__name__}.accept"]
        return position, info

    @property
    def settings(self):
        return {
            "sampler": "+".join(s.settings["sampler"] for s in self.samplers),
            "parts": [s.settings for s in self.samplers],
        }


def run_chains(
    sampler: AbstractSampler,
    key: PRNGKeyArray,
    init_positions: Array,
    n_samples: int,
    *,
    n_therm: int = 0,
    thin: int = 1,
    chunk: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Run `len(init_positions)` independent chains; keep every `thin`-th of `n_samples·thin`
    steps after `n_therm` thermalisation steps.

    Returns `(samples, accept)`: samples of shape `(n_chains, n_samples, *config)` and the mean
    acceptance probability of each chain (`(n_chains,)`). Steps run in `jit`-compiled
    `lax.scan` chunks of `chunk` samples; a progress bar goes to stderr when `progress`.
    """
    for name, v in (("n_samples", n_samples), ("thin", thin), ("chunk", chunk)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
    if not isinstance(n_therm, int) or n_therm < 0:
        raise ValueError(f"`n_therm` must be an integer ≥ 0, got {n_therm!r}.")
    init_positions = jnp.asarray(init_positions)
    if init_positions.ndim == 0 or init_positions.shape[0] < 1:
        raise ValueError("`init_positions` needs a leading chain axis with at least one chain.")
    sampler.init(init_positions[0])  # shape (shared by all chains)
    check_finite(init_positions, "init_positions")  # every chain, one host transfer
    n_chains = init_positions.shape[0]

    def one_step(pos, k):
        pos, info = sampler.step(k, pos)
        return pos, info["accept"]

    @eqx.filter_jit
    def advance(positions, key, n_keep, n_thin):
        def per_chain(pos, k):
            def keep(pos, k):
                pos, acc = jax.lax.scan(one_step, pos, jr.split(k, n_thin))
                return pos, (pos, jnp.mean(acc))

            pos, (kept, acc) = jax.lax.scan(keep, pos, jr.split(k, n_keep))
            return pos, kept, acc

        return jax.vmap(per_chain)(positions, jr.split(key, n_chains))

    bar = Progress(n_therm + n_samples * thin, "sampling", enabled=progress)
    key_therm, key = jr.split(key)
    positions = init_positions
    done = 0
    while done < n_therm:  # thermalisation in chunks (one compiled shape)
        m = min(chunk, n_therm - done)
        key_therm, k = jr.split(key_therm)
        positions, _, _ = advance(positions, k, m, 1)
        done += m
        bar.update(m)
    samples, accepts = [], []
    kept = 0
    while kept < n_samples:
        m = min(chunk, n_samples - kept)
        key, k = jr.split(key)
        positions, s, acc = advance(positions, k, m, thin)
        samples.append(np.asarray(s))
        accepts.append(np.asarray(acc))
        kept += m
        bar.update(m * thin)
    bar.close()
    return np.concatenate(samples, axis=1), np.concatenate(accepts, axis=1).mean(1)
