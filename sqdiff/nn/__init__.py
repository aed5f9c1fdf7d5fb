"""Score / drift networks (equinox): per-site MLP, periodic U-Net, U(1) link network."""

from .embeddings import GaussianFourierEmbedding
from .lcnn import U1LinkNet
from .mlp import ScoreMLP
from .unet import UNet

__all__ = ["GaussianFourierEmbedding", "ScoreMLP", "U1LinkNet", "UNet"]
