"""Training objectives as objects with `loss(model, key, batch)`, one file each:
denoising score matching (flat and on groups) and the optimal-SQ path objective."""

from .base import OBJECTIVES, AbstractObjective
from .dsm import DenoisingScoreMatching, GroupDSM, dsm_loss, group_dsm_loss, sample_times
from .osq import OptimalSQObjective

__all__ = [
    "AbstractObjective",
    "DenoisingScoreMatching",
    "GroupDSM",
    "OBJECTIVES",
    "OptimalSQObjective",
    "dsm_loss",
    "group_dsm_loss",
    "sample_times",
]
