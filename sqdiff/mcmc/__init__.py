"""Classical and exact samplers as `init`/`step` pairs over cached states (BlackJAX style),
the one Metropolis accept, the MD integrators and the chain runner."""

from .adaptation import MALA_TARGET_ACCEPTANCE, DualAveraging, tune_step_size
from .base import (
    AbstractInfo,
    AbstractSampler,
    AbstractState,
    AbstractStepSizeSampler,
    Composed,
    ComposedInfo,
    Info,
    State,
    run_chains,
)
from .drift import DRIFT_FALSE_ALARM, Relaxation, drift_message, relaxation
from .flow_imh import FlowIMH, FlowIMHState
from .health import MIN_ACCEPTANCE, ChainHealth, chain_health
from .hmc import HMC, HMCInfo, HMCState
from .imh import Proposals, flow_proposals, imh_chain, importance_weights, independence_mh
from .instanton import InstantonInfo, InstantonU1, u1_instanton
from .integrators import OMELYAN_LAMBDA, leapfrog, omelyan
from .mala import MAALA, MALA, AbstractDrift, ForceDrift, MALAState, ScoreDrift
from .proposal import acceptance_probability, langevin_step, metropolis_accept
from .wolff import WolffInfo, WolffPhi4

__all__ = [
    "AbstractDrift",
    "AbstractInfo",
    "AbstractSampler",
    "AbstractState",
    "AbstractStepSizeSampler",
    "DualAveraging",
    "DRIFT_FALSE_ALARM",
    "MALA_TARGET_ACCEPTANCE",
    "ChainHealth",
    "MIN_ACCEPTANCE",
    "chain_health",
    "Composed",
    "ComposedInfo",
    "FlowIMH",
    "FlowIMHState",
    "ForceDrift",
    "HMC",
    "HMCInfo",
    "HMCState",
    "Info",
    "InstantonInfo",
    "InstantonU1",
    "MAALA",
    "MALA",
    "MALAState",
    "OMELYAN_LAMBDA",
    "Proposals",
    "Relaxation",
    "ScoreDrift",
    "State",
    "WolffInfo",
    "WolffPhi4",
    "acceptance_probability",
    "flow_proposals",
    "imh_chain",
    "importance_weights",
    "independence_mh",
    "u1_instanton",
    "langevin_step",
    "relaxation",
    "drift_message",
    "leapfrog",
    "metropolis_accept",
    "omelyan",
    "run_chains",
    "tune_step_size",
]
