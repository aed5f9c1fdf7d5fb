r"""Optimal stochastic quantization: the controlled process and its objective pieces
(`process`), the reference processes as classes (`references`) and the one-site grid tools
(`grid`). See `process` for the equations."""

from .grid import fisher_from_marginals, fisher_information, fokker_planck_1d, sq_reference_marginal
from .process import PRIORS, OptimalSQ, OSQPaths, log_z_estimate
from .references import (
    REFERENCES,
    AbstractReference,
    BrownianReference,
    OUReference,
    SQReference,
)

__all__ = [
    "AbstractReference",
    "BrownianReference",
    "OSQPaths",
    "OUReference",
    "OptimalSQ",
    "PRIORS",
    "REFERENCES",
    "SQReference",
    "fisher_from_marginals",
    "fisher_information",
    "fokker_planck_1d",
    "log_z_estimate",
    "sq_reference_marginal",
]
