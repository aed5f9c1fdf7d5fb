"""Training objectives as objects with `loss(model, key, batch)`, one file each:
denoising score matching (flat and on groups), target score matching (fields and links with
an analytic force), the optimal-SQ path objective, and the reverse KL through the exact
split-step flow density."""

from .base import OBJECTIVES, AbstractObjective
from .dsm import DenoisingScoreMatching, GroupDSM, dsm_loss, group_dsm_loss, sample_times
from .osq import OptimalSQObjective
from .reverse_kl import ReverseKL
from .tsm import TargetScoreMatching, crossover_scale, group_tsm_loss, tsm_loss

__all__ = [
    "AbstractObjective",
    "DenoisingScoreMatching",
    "GroupDSM",
    "OBJECTIVES",
    "OptimalSQObjective",
    "ReverseKL",
    "TargetScoreMatching",
    "crossover_scale",
    "dsm_loss",
    "group_dsm_loss",
    "group_tsm_loss",
    "sample_times",
    "tsm_loss",
]
