"""Score / drift networks (equinox): per-site MLP, periodic U-Net, U(1) link network,
gauge-equivariant L-CNN for SU(N)/U(N)."""

from .base import NETWORKS, AbstractScoreNetwork, zero_output
from .conv import PeriodicConv, with_conv_layout
from .embeddings import GaussianFourierEmbedding
from .gauge_lcnn import LCNN
from .lcnn import U1LinkNet
from .mlp import ScoreMLP
from .unet import UNet

__all__ = [
    "AbstractScoreNetwork",
    "NETWORKS",
    "GaussianFourierEmbedding",
    "LCNN",
    "PeriodicConv",
    "with_conv_layout",
    "ScoreMLP",
    "U1LinkNet",
    "UNet",
    "zero_output",
]
