"""Sampler interface (BlackJAX-shaped) and the chain runner (`vmap` over chains, `lax.scan`
over steps).

A sampler is an `init`/`step` pair of pure functions over a state pytree:
`init(position) -> State` evaluates whatever the kernel caches (the action, the force or the
learned drift) once; `step(key, state) -> (State, Info)` moves one step and returns the new
state with its caches filled, so no quantity is evaluated twice at the same point
(BlackJAX `mcmc/mala.py`, `mcmc/hmc.py`). `check(position)` validates a concrete start
configuration with a clear error (outside `jit`).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from .._batching import Progress
from .._checks import check_finite, integer
from .._xla import hot_jit
from ..sharding import shard_batch
from ..theories import AbstractAction

__all__ = [
    "AbstractInfo",
    "AbstractSampler",
    "AbstractState",
    "AbstractStepSizeSampler",
    "Composed",
    "ComposedInfo",
    "Info",
    "State",
    "run_chains",
]


class AbstractState(eqx.Module):
    """A chain's state: the position and whatever the kernel caches there."""

    position: eqx.AbstractVar[Array]


class State(AbstractState):
    """The position alone (samplers that cache nothing, e.g. cluster updates)."""

    position: Array


class AbstractInfo(eqx.Module):
    """What one step did: the acceptance probability (1 for rejection-free moves) and
    whether the move was taken."""

    accept_prob: eqx.AbstractVar[Float[Array, ""]]
    accepted: eqx.AbstractVar[Bool[Array, ""]]


class Info(AbstractInfo):
    """The acceptance and nothing else."""

    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]


class AbstractSampler(eqx.Module):
    """A Markov kernel leaving `e^{−S}` invariant, for one chain (`run_chains` vmaps)."""

    action: eqx.AbstractVar[AbstractAction]

    def check(self, position: Array, name: str = "position") -> None:
        """Raise a clear `ValueError` unless `position` is a finite configuration of the
        action (shape, group, dtype)."""
        self.action.check_config(position, name)
        check_finite(position, name)

    @abc.abstractmethod
    def init(self, position: Array) -> AbstractState:
        """The state at `position`, caches filled (traceable)."""

    @abc.abstractmethod
    def step(self, key: PRNGKeyArray, state: AbstractState) -> tuple[AbstractState, AbstractInfo]:
        """One step of the kernel."""

    @property
    def settings(self) -> dict:
        """Sampler settings for ensemble metadata."""
        return {"sampler": type(self).__name__}


class AbstractStepSizeSampler(AbstractSampler):
    """A sampler with one step size `ε` (HMC's molecular-dynamics step, MALA's Langevin step),
    which `tune_step_size` can adapt to a target acceptance."""

    step_size: eqx.AbstractVar[float]

    def with_step_size(self, step_size) -> AbstractStepSizeSampler:
        """The same sampler with step size `step_size` (a float, or a traced scalar inside
        the adaptation loop)."""
        return eqx.tree_at(lambda s: s.step_size, self, step_size)


class ComposedInfo(AbstractInfo):
    """The first sampler's acceptance and each part's own info."""

    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]
    parts: tuple[AbstractInfo, ...]


class Composed(AbstractSampler):
    """Apply several samplers in turn (e.g. HMC followed by Wolff cluster flips).

    The state is the first sampler's; the later samplers start from the position it reached
    (their caches rebuilt by their `init`), and the first sampler's caches are rebuilt once
    after the last move.
    """

    samplers: tuple[AbstractSampler, ...]
    action: AbstractAction

    def __init__(self, *samplers: AbstractSampler):
        if not samplers:
            raise ValueError("Composed needs at least one sampler.")
        self.samplers = tuple(samplers)
        self.action = samplers[0].action

    def init(self, position):
        return self.samplers[0].init(position)

    def step(self, key, state):
        keys = jr.split(key, len(self.samplers))
        first, *rest = self.samplers
        state, info0 = first.step(keys[0], state)
        infos = [info0]
        position = state.position
        for k, s in zip(keys[1:], rest, strict=True):
            sub, info = s.step(k, s.init(position))
            position = sub.position
            infos.append(info)
        if rest:
            state = first.init(position)
        return state, ComposedInfo(info0.accept_prob, info0.accepted, tuple(infos))

    @property
    def settings(self):
        return {
            "sampler": "+".join(s.settings["sampler"] for s in self.samplers),
            "parts": [s.settings for s in self.samplers],
        }


@eqx.filter_jit
def _init_chains(sampler: AbstractSampler, positions: Array) -> AbstractState:
    return jax.vmap(sampler.init)(positions)


def start_chains(sampler: AbstractSampler, init_positions: Array) -> AbstractState:
    """The chains' states at `init_positions (chains, *config)`, checked (shape, group,
    finiteness: clear errors) and split over the devices in use."""
    init_positions = jnp.asarray(init_positions)
    if init_positions.ndim == 0 or init_positions.shape[0] < 1:
        raise ValueError("`init_positions` needs a leading chain axis with at least one chain.")
    sampler.check(init_positions[0], "init_positions[0]")  # shape (shared by all chains)
    check_finite(init_positions, "init_positions")  # every chain, one host transfer
    return _init_chains(sampler, shard_batch(init_positions))


@hot_jit
def _advance(sampler: AbstractSampler, states, key, n_keep: int, n_thin: int):
    """`n_keep · n_thin` steps of every chain (`vmap` over chains, `lax.scan` over steps),
    keeping every `n_thin`-th position and the mean acceptance of each kept stretch. One
    compiled program per sampler, chunk shape and thinning, reused across calls."""

    def one_step(state, k):
        state, info = sampler.step(k, state)
        return state, info.accept_prob

    def per_chain(state, k):
        def keep(state, k):
            state, acc = jax.lax.scan(one_step, state, jr.split(k, n_thin))
            return state, (state.position, jnp.mean(acc))

        state, (kept, acc) = jax.lax.scan(keep, state, jr.split(k, n_keep))
        return state, kept, acc

    n_chains = jax.tree.leaves(states)[0].shape[0]
    return jax.vmap(per_chain)(states, jr.split(key, n_chains))


# long: argument checks, then the chunked compiled loop with its progress bar (one concept)
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
    The chains are split over the devices in use (`sqdiff.sharding`); the result does not
    depend on their number.
    """
    n_samples, thin, chunk = (integer(n_samples, "n_samples"), integer(thin, "thin"),
                              integer(chunk, "chunk"))  # fmt: skip
    n_therm = integer(n_therm, "n_therm", 0)

    bar = Progress(n_therm + n_samples * thin, "sampling", enabled=progress)
    key_therm, key = jr.split(key)
    states = start_chains(sampler, init_positions)
    done = 0
    while done < n_therm:  # thermalisation in chunks (one compiled shape)
        m = min(chunk, n_therm - done)
        key_therm, k = jr.split(key_therm)
        states, _, _ = _advance(sampler, states, k, m, 1)
        done += m
        bar.update(m)
    samples, accepts = [], []
    kept = 0
    while kept < n_samples:
        m = min(chunk, n_samples - kept)
        key, k = jr.split(key)
        states, s, acc = _advance(sampler, states, k, m, thin)
        samples.append(np.asarray(s))
        accepts.append(np.asarray(acc))
        kept += m
        bar.update(m * thin)
    bar.close()
    return np.concatenate(samples, axis=1), np.concatenate(accepts, axis=1).mean(1)
