"""Score / drift networks (equinox): per-site MLP, per-site features mixed by one convolution
(exact divergence in one pass), periodic U-Net, local CNN (any L), multiscale
local CNN (block levels, any even L), U(1) link network, gauge-equivariant L-CNN for SU(N)/U(N)."""

from .base import NETWORKS, AbstractExactDivergenceNetwork, AbstractScoreNetwork, zero_output
from .conv import PeriodicConv, periodic_conv
from .embeddings import GaussianFourierEmbedding
from .feature_conv import FeatureConv
from .gauge_lcnn import LCNN
from .lcnn import U1LinkNet
from .local import LocalCNN
from .mlp import ScoreMLP
from .multiscale import MultiscaleCNN
from .unet import UNet

__all__ = [
    "AbstractExactDivergenceNetwork",
    "AbstractScoreNetwork",
    "NETWORKS",
    "FeatureConv",
    "GaussianFourierEmbedding",
    "LCNN",
    "LocalCNN",
    "MultiscaleCNN",
    "PeriodicConv",
    "periodic_conv",
    "ScoreMLP",
    "U1LinkNet",
    "UNet",
    "zero_output",
]
