"""Classical samplers as `init`/`step` pairs (BlackJAX style) and the chain runner."""

from .base import AbstractSampler, Composed, run_chains
from .hmc import HMC, leapfrog, omelyan
from .imh import Proposals, flow_proposals, imh_chain, importance_weights, independence_mh
from .maala import MAALA
from .mala import MALA
from .wolff import WolffPhi4

__all__ = [
    "AbstractSampler",
    "Composed",
    "HMC",
    "MAALA",
    "MALA",
    "Proposals",
    "flow_proposals",
    "imh_chain",
    "importance_weights",
    "independence_mh",
    "WolffPhi4",
    "leapfrog",
    "omelyan",
    "run_chains",
]
