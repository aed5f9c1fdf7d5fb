r"""Independence Metropolis–Hastings as a Markov kernel: each step proposes a fresh draw of an
exact-density flow (`sqdiff.flows.SplitStepFlow`) and accepts it with
`min{1, w(x')/w(x)}`, `w = e^{−S}/q` (Tierney, Ann. Statist. 22 (1994) 1701).

As a kernel it composes with local moves, `Composed(HMC(action, …), FlowIMH(action, flow))`:
the flow's global proposals change what local moves cannot (the magnetisation's sign, the
zero mode), HMC or MAALA relax what the flow gets wrong locally, and each kernel leaves
`e^{−S}` invariant on its own, so the composition does too. The current state's weight needs
`q(x)` at a configuration the flow did not produce (the local move's), which the split-step
map gives exactly through its inverse (`SplitStepFlow.log_prob`); the state caches it.
"""

from __future__ import annotations

import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float

from ..flows import SplitStepFlow
from ..theories import AbstractAction
from .base import AbstractInfo, AbstractSampler, AbstractState
from .proposal import metropolis_accept

__all__ = ["FlowIMH", "FlowIMHState"]


class FlowIMHState(AbstractState):
    """The position and its importance log-weight `log w = −S(x) − log q(x)`."""

    position: Array
    log_weight: Float[Array, ""]


class FlowIMHInfo(AbstractInfo):
    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]


class FlowIMH(AbstractSampler):
    """One independence proposal per step from `flow`, exact for `e^{−S}` whatever the flow.

    Args:
        action: the target (scalar field).
        flow: a `SplitStepFlow` on the action's lattice (checked to be a bijection).
    """

    action: AbstractAction
    flow: SplitStepFlow

    def __init__(self, action: AbstractAction, flow: SplitStepFlow):
        if not action.group.is_vector_space:
            raise ValueError(f"FlowIMH proposes scalar fields, not {action.group} states.")
        flow.check_invertible(action.config_shape[0])
        self.action, self.flow = action, flow

    def _log_weight(self, x, log_q):
        return -self.action(x) - log_q

    def init(self, position: Array) -> FlowIMHState:
        x = jnp.asarray(position)
        return FlowIMHState(x, self._log_weight(x, self.flow.log_prob(x)))

    def step(self, key, state):
        k_prop, k_acc = jr.split(key)
        x, log_q = self.flow.sample_and_log_prob(k_prop, tuple(self.action.config_shape))
        x = x.astype(state.position.dtype)
        proposed = FlowIMHState(x, self._log_weight(x, log_q).astype(state.log_weight.dtype))
        new, p, accepted = metropolis_accept(
            k_acc, proposed.log_weight - state.log_weight, proposed, state
        )
        return new, FlowIMHInfo(p, accepted)

    @property
    def settings(self) -> dict:
        return {"sampler": "FlowIMH", "steps": self.flow.steps}
