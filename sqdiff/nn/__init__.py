"""Score / drift networks (equinox): per-site MLP, periodic U-Net, U(1) link network."""

from .conv import PeriodicConv, conv_layout
from .embeddings import GaussianFourierEmbedding
from .lcnn import U1LinkNet
from .mlp import ScoreMLP
from .unet import UNet

__all__ = [
    "GaussianFourierEmbedding",
    "PeriodicConv",
    "conv_layout",
    "ScoreMLP",
    "U1LinkNet",
    "UNet",
    "zero_output",
]


def zero_output(model):
    """The network with its last layer's weights and bias set to zero, so it starts as the zero
    field (the optimal-SQ residual then starts from plain stochastic quantization)."""
    import equinox as eqx
    import jax.numpy as jnp

    if isinstance(model, ScoreMLP):
        where = lambda m: (m.mlp.layers[-1].weight, m.mlp.layers[-1].bias)  # noqa: E731
    elif isinstance(model, (UNet, U1LinkNet)):
        where = lambda m: (m.conv_out.weight, m.conv_out.bias)  # noqa: E731
    else:
        raise TypeError(f"zero_output does not know {type(model).__name__}.")
    return eqx.tree_at(where, model, replace_fn=jnp.zeros_like)
