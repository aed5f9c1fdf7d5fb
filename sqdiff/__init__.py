"""sqdiff: diffusion models and stochastic quantization on the lattice."""

from . import stats, theories
from .dynamics import (
    SDE,
    AbstractDynamics,
    Forward,
    Langevin,
    ProbabilityFlow,
    Reverse,
    divergence_exact,
    divergence_hutchinson,
)
from .groups import SU, SUN, U1, AbstractGroup, Euclidean
from .kernels import FourierKernel
from .sde import (
    AbstractSchedule,
    CustomSchedule,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
)
from .solvers import GeometricEulerMaruyama, GeometricHeun, log_likelihood, solve
from .theories import GaussianMixture

__version__ = "0.1.0"

__all__ = [
    "AbstractDynamics",
    "AbstractGroup",
    "AbstractSchedule",
    "CustomSchedule",
    "Euclidean",
    "Forward",
    "FourierKernel",
    "GaussianMixture",
    "GeometricEulerMaruyama",
    "GeometricHeun",
    "Langevin",
    "ProbabilityFlow",
    "Reverse",
    "SDE",
    "SU",
    "SUN",
    "SubVariancePreserving",
    "U1",
    "VarianceExploding",
    "VariancePreserving",
    "divergence_exact",
    "divergence_hutchinson",
    "log_likelihood",
    "solve",
    "stats",
    "theories",
    "__version__",
]
