"""Classical samplers as `init`/`step` pairs (BlackJAX style) and the chain runner."""

from .base import AbstractSampler, Composed, run_chains
from .hmc import HMC, leapfrog, omelyan
from .mala import MALA
from .wolff import WolffPhi4

__all__ = [
    "AbstractSampler",
    "Composed",
    "HMC",
    "MALA",
    "WolffPhi4",
    "leapfrog",
    "omelyan",
    "run_chains",
]
