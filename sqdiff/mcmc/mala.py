r"""Metropolis-adjusted Langevin, with the force of the action (MALA) or a learned drift
(MAALA): one sampler.

Proposal `φ' = exp(iX^a T^a) φ`, `X = ε b(φ) + √(2ε) η` (`φ + X` on flat fields), accepted
with `min{1, e^{−S(φ')} q(φ|φ') / (e^{−S(φ)} q(φ'|φ))}` (`group.langevin_log_ratio`): on flat
fields `q(y|x)` is the Gaussian with mean `ε b(x)` and variance `2ε` (wrapped on U(1)); on
SU(N)/U(N) moves are restricted to a ball where `exp` is injective, inside which the Jacobian of
`exp` cancels between the move `X` and its reverse `−X` (derivation in the docs, "MAALA on
SU(N) and U(N)"). The chain leaves `e^{−S}` exactly invariant **whatever the drift `b`**; the
drift only decides acceptance and mixing.

- MALA (Roberts & Tweedie, Bernoulli 2 (1996) 341): `b = −∇S` (`ForceDrift`).
- MAALA, the exact stage of diffusion sampling (design document, "Exact diffusion sampling";
  the published U(1) study): `b = (β/β0) s_θ(t_mh, φ)` (`ScoreDrift`), the score of a trained
  model at a small time, rescaled when the target coupling β differs from the training β0.

The state caches the action and the drift at the current point, so a step evaluates the drift
(the network, for MAALA) once and the action once, at the proposal.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float

from ..groups import AbstractGroup
from ..theories import AbstractAction, as_action
from .base import AbstractState, AbstractStepSizeSampler, Info
from .proposal import metropolis_accept

__all__ = ["AbstractDrift", "ForceDrift", "MAALA", "MALA", "MALAState", "ScoreDrift"]


class AbstractDrift(eqx.Module):
    """The drift `b(φ)` of the Langevin proposal, in algebra coordinates."""

    @abc.abstractmethod
    def __call__(self, phi: Array) -> Array: ...

    @property
    @abc.abstractmethod
    def settings(self) -> dict: ...


class ForceDrift(AbstractDrift):
    """`b = −∇S` (MALA)."""

    action: AbstractAction

    def __call__(self, phi):
        return -self.action.force(phi)

    @property
    def settings(self):
        return {"sampler": "mala"}


class ScoreDrift(AbstractDrift):
    """`b = (β/β0) s_θ(t_mh, φ)` (MAALA)."""

    score: Callable
    t_mh: float
    beta_ratio: float

    def __init__(self, score: Callable, t_mh: float, beta_ratio: float = 1.0):
        if not float(t_mh) > 0:
            raise ValueError(f"`t_mh` must be > 0, got {t_mh!r}.")
        self.score, self.t_mh, self.beta_ratio = score, float(t_mh), float(beta_ratio)

    def __call__(self, phi):
        return self.beta_ratio * self.score(self.t_mh, phi)

    @property
    def settings(self):
        return {"sampler": "maala", "t_mh": self.t_mh, "beta_ratio": self.beta_ratio}


class MALAState(AbstractState):
    """Position with its cached action `S` and drift `b`."""

    position: Array
    action: Float[Array, ""]
    drift: Array


class MALA(AbstractStepSizeSampler):
    """Metropolis-adjusted Langevin with drift `−∇S` (default) or any `AbstractDrift`.

    Args:
        action: the target action `S(φ)`: an `AbstractAction` or a callable.
        step_size: `ε > 0`.
        drift: `None` for `−∇S`, or e.g. `ScoreDrift(score, t_mh, beta_ratio)`.
        group: the field's group (default: the action's).
    """

    action: AbstractAction
    step_size: float
    drift: AbstractDrift

    def __init__(
        self,
        action: AbstractAction | Callable,
        step_size: float,
        drift: AbstractDrift | None = None,
        group: AbstractGroup | None = None,
    ):
        if not float(step_size) > 0:
            raise ValueError(f"`step_size` must be > 0, got {step_size!r}.")
        self.action = as_action(action, group=group)
        if not self.action.group.has_langevin_density:
            raise ValueError(
                f"Metropolis-adjusted Langevin has no exact proposal density on "
                f"{self.action.group}."
            )
        self.step_size = float(step_size)
        self.drift = ForceDrift(self.action) if drift is None else drift

    @property
    def group(self) -> AbstractGroup:
        return self.action.group

    def init(self, position):
        position = jnp.asarray(position)
        return MALAState(position, self.action(position), self.drift(position))

    def step(self, key, state):
        eps = self.step_size
        k_noise, k_acc = jr.split(key)
        x = state.position
        group = self.group
        noise = group.sample_algebra(k_noise, group.lattice_shape(x), jnp.real(x).dtype)
        X = eps * state.drift + jnp.sqrt(2 * eps) * noise
        new = group.retract(x, X)
        proposed = MALAState(new, self.action(new), self.drift(new))
        log_ratio = state.action - proposed.action
        log_ratio = log_ratio + group.langevin_log_ratio(X, state.drift, proposed.drift, eps)
        state, p, accepted = metropolis_accept(k_acc, log_ratio, proposed, state)
        return state, Info(p, accepted)

    @property
    def settings(self):
        return {**self.drift.settings, "step_size": self.step_size}


def MAALA(
    action: AbstractAction | Callable,
    score: Callable,
    t_mh: float,
    step_size: float,
    beta_ratio: float = 1.0,
    group: AbstractGroup | None = None,
) -> MALA:
    r"""Metropolis-adjusted Langevin with the learned drift `(β/β0) s_θ(t_mh, φ)`: the exact
    stage of diffusion sampling.

    Args:
        action: the target action `S_β`.
        score: the trained score `s_θ(t, φ)`.
        t_mh: the (small) diffusion time whose score drives the proposals.
        step_size: `ε`, typically `c Σ(t_mh)²`.
        beta_ratio: `β/β0` (target over training coupling, for actions ∝ β).
        group: the field's group (default: the action's).
    """
    return MALA(action, step_size, ScoreDrift(score, t_mh, beta_ratio), group)
