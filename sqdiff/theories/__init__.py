"""Theories: lattice actions (`AbstractAction`) and exactly solvable distributions."""

from .base import THEORIES, AbstractAction
from .function import FunctionAction, as_action
from .mixture import GaussianMixture
from .phi4 import Phi4
from .sun import SUNWilson, UNWilson
from .u1 import U1Wilson2D, plaquette_angles, topological_charge, wilson_loop
from .u1_exact import links_from_plaquettes, u1_exact_samples, von_mises
from .zero_dim import Cosine0D, DoubleWell0D, Quartic0D

__all__ = [
    "AbstractAction",
    "THEORIES",
    "Cosine0D",
    "FunctionAction",
    "as_action",
    "DoubleWell0D",
    "GaussianMixture",
    "Phi4",
    "Quartic0D",
    "SUNWilson",
    "UNWilson",
    "U1Wilson2D",
    "links_from_plaquettes",
    "plaquette_angles",
    "topological_charge",
    "u1_exact_samples",
    "von_mises",
    "wilson_loop",
]
