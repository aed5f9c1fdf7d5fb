"""sqdiff: diffusion models and stochastic quantization on the lattice."""

from . import (
    checkpoint,
    io,
    mcmc,
    nn,
    objectives,
    observables,
    osq,
    sampling,
    specs,
    stats,
    theories,
    train,
)
from ._version import __version__
from .checkpoint import ModelDir
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
from .effective_action import effective_action
from .groups import SU, SUN, U1, UN, AbstractGroup, Euclidean, U
from .io import Ensemble, load_ensemble, save_ensemble
from .mcmc import HMC, MAALA, MALA, Composed, WolffPhi4, run_chains
from .observables import analyze
from .osq import OptimalSQ
from .preconditioners import FourierKernel, IdentityKernel
from .predictor_corrector import annealed_langevin, predictor_corrector
from .sampling import SampleResult, sample_model
from .schedules import (
    AbstractSchedule,
    CustomSchedule,
    SubVariancePreserving,
    VarianceExploding,
    VariancePreserving,
)
from .solvers import GeometricEulerMaruyama, GeometricHeun, log_likelihood, solve
from .specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from .theories import (
    AbstractAction,
    Cosine0D,
    DoubleWell0D,
    FunctionAction,
    GaussianMixture,
    Phi4,
    Quartic0D,
    SUNWilson,
    U1Wilson2D,
    UNWilson,
    as_action,
    u1_exact_samples,
)
from .train import TrainConfig, load_model

__all__ = [
    "checkpoint",
    "sampling",
    "specs",
    "ModelDir",
    "ModelSpec",
    "NetworkSpec",
    "ObjectiveSpec",
    "ScheduleSpec",
    "TheorySpec",
    "SampleResult",
    "sample_model",
    "FunctionAction",
    "as_action",
    "IdentityKernel",
    "TrainConfig",
    "load_model",
    "effective_action",
    "nn",
    "objectives",
    "train",
    "AbstractAction",
    "Composed",
    "Cosine0D",
    "DoubleWell0D",
    "Ensemble",
    "HMC",
    "MAALA",
    "MALA",
    "Phi4",
    "Quartic0D",
    "SUNWilson",
    "UNWilson",
    "U1Wilson2D",
    "u1_exact_samples",
    "WolffPhi4",
    "analyze",
    "OptimalSQ",
    "osq",
    "annealed_langevin",
    "predictor_corrector",
    "io",
    "load_ensemble",
    "mcmc",
    "observables",
    "run_chains",
    "save_ensemble",
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
    "UN",
    "U",
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
