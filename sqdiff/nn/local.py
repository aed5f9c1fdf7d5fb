r"""A local score network for scalar lattice fields: a finite receptive field and no global
statistics, so that the same weights are the same operator on every lattice size.

`(f_θ φ)(x) = F_θ({φ(x + δ) | δ ∈ Ω})` with `Ω` the cube of half-width `depth + 1` — the
"local operator" of the near-critical sampling study (Tang, Wang et al., seed talk
"Diffusion models as stochastic quantization on the lattice", 2026, section "Near critical
sampling": train on small volumes, generate large ones). Layers:

    h_0 = conv_in(c_in(t) φ),   h_{k+1} = h_k + conv_k(SiLU(a_k(t) ⊙ h_k + b_k(t))),
    s(t, φ) = skip(t, φ) + conv_out(SiLU(h_depth)) / Σ(t),

with periodic `3^d` convolutions (`conv_out` is `1^d`), the time embedding entering every layer
as a per-channel scale and shift (FiLM), and `c_in(t) = 1/√(m(t)²σ_d² + Σ(t)²)` bringing the
noised field to unit size at every t (EDM's input scaling, Karras et al. 2022; σ_d = 1 unless
`data_std` is given, in which case the Gaussian skip `−φ/(m²σ_d² + Σ²)` is added too).

Unlike the U-Net there is no GroupNorm (a lattice-wide mean and variance) and no down-sampling
(whose depth depends on L), so a network trained on `L = 4, 8, 16` applies unchanged to
`L = 64`, and it is translation covariant for every shift. Optionally antisymmetrised,
`s(−φ) = −s(φ)` (the Z2 of φ⁴).
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..schedules import AbstractSchedule
from .base import AbstractScoreNetwork
from .conv import PeriodicConv
from .embeddings import GaussianFourierEmbedding, gaussian_skip, noise_level, output_scale


def check_local_args(name: str, d: int, channels: int, depth: int) -> None:
    if d not in (1, 2, 3):
        raise ValueError(f"{name} supports d = 1, 2, 3, got d={d}.")
    if channels < 1 or depth < 0:
        raise ValueError(f"need `channels` ≥ 1 and `depth` ≥ 0, got {channels}, {depth}.")


def input_scale(schedule: AbstractSchedule | None, data_std: float | None, t):
    """`c_in(t) = 1/√(m(t)²σ_d² + Σ(t)²)` (σ_d = 1 unless given); 1 without a schedule."""
    if schedule is None:
        return 1.0
    s_d = 1.0 if data_std is None else data_std
    m, sig = schedule.mean_coeff(t), schedule.marginal_std(t)
    return jax.lax.rsqrt((m * s_d) ** 2 + sig**2)


class LocalStack(eqx.Module):
    """The body of a local network, on channels-last activations:
    `h_0 = conv_in(x)`, `h_{k+1} = h_k + conv_k(SiLU(a_k ⊙ h_k + b_k))` with the FiLM
    `(a_k, b_k)` of the time embedding, output `conv_out(SiLU(h_depth))` (`1^d`); periodic `3^d`
    convolutions, receptive field of half-width `depth + 1`."""

    conv_in: PeriodicConv
    films: tuple[eqx.nn.Linear, ...]
    convs: tuple[PeriodicConv, ...]
    conv_out: PeriodicConv

    def __init__(self, d: int, channels: int, depth: int, emb_dim: int, *, key: PRNGKeyArray):
        keys = iter(jr.split(key, 2 + 2 * depth))
        self.conv_in = PeriodicConv(d, 1, channels, 3, key=next(keys))
        self.films = tuple(
            eqx.nn.Linear(emb_dim, 2 * channels, key=next(keys)) for _ in range(depth)
        )
        self.convs = tuple(
            PeriodicConv(d, channels, channels, 3, key=next(keys)) for _ in range(depth)
        )
        self.conv_out = PeriodicConv(d, channels, 1, 1, key=next(keys))

    @property
    def radius(self) -> int:
        return len(self.convs) + 1

    def output_layer(self) -> tuple[Array, Array]:
        return self.conv_out.weight, self.conv_out.bias

    def __call__(self, emb: Float[Array, " e"], x: Float[Array, "*L"]) -> Float[Array, "*L"]:
        h = self.conv_in.channels_last(x[..., None])
        for film, conv in zip(self.films, self.convs, strict=True):
            scale, shift = jnp.split(film(emb), 2)
            h = h + conv.channels_last(jax.nn.silu((1 + scale) * h + shift))
        return self.conv_out.channels_last(jax.nn.silu(h))[..., 0]


class AbstractLocalNetwork(AbstractScoreNetwork):
    """A score network for scalar fields of shape `(L,)*d` built from local stacks: the input
    scaled by `c_in(t)`, the raw output `_raw(emb, x)` divided by `Σ(t)`, the Gaussian skip
    added, optionally antisymmetrised. Subclasses give the fields and `_raw`."""

    d: eqx.AbstractVar[int]
    antisymmetric: eqx.AbstractVar[bool]
    data_std: eqx.AbstractVar[float | None]
    embed: eqx.AbstractVar[GaussianFourierEmbedding]
    emb_mlp: eqx.AbstractVar[eqx.nn.MLP]

    @abc.abstractmethod
    def _raw(self, emb: Float[Array, " e"], x: Float[Array, "*L"]) -> Float[Array, "*L"]: ...

    def check_input(self, phi) -> None:
        shape = jnp.shape(phi)
        if len(shape) != self.d or len(set(shape)) != 1:
            raise ValueError(
                f"{type(self).__name__}(d={self.d}) needs a field of shape (L,)*{self.d}, "
                f"got {shape}."
            )

    def __call__(self, t: Float[Array, ""], phi: Float[Array, "*L"]) -> Float[Array, "*L"]:
        self.check_input(phi)
        emb = self.emb_mlp(self.embed(noise_level(self.schedule, t)))
        x = phi * input_scale(self.schedule, self.data_std, t)
        out = self._raw(emb, x)
        if self.antisymmetric:
            out = 0.5 * (out - self._raw(emb, -x))
        return gaussian_skip(self.schedule, self.data_std, t, phi) + out / output_scale(
            self.schedule, t
        )


class LocalCNN(AbstractLocalNetwork):
    """`(t, φ) → s(t, φ)` for φ of shape `(L,)*d`, d ∈ {1, 2, 3}, any L; the output at `x`
    depends only on φ within `radius` lattice steps of `x` (per axis)."""

    name = "local"

    d: int = eqx.field(static=True)
    antisymmetric: bool = eqx.field(static=True)
    data_std: float | None = eqx.field(static=True)
    embed: GaussianFourierEmbedding
    emb_mlp: eqx.nn.MLP
    stack: LocalStack
    schedule: AbstractSchedule | None

    def __init__(
        self,
        schedule: AbstractSchedule | None,
        d: int = 2,
        channels: int = 16,
        depth: int = 3,
        emb_dim: int = 32,
        antisymmetric: bool = False,
        data_std: float | None = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `schedule`: the noise schedule (`Σ(t)` scales input and output); `None` for a plain
          time-dependent field.
        - `d`: lattice dimension, 1–3.
        - `channels`: hidden channels per site.
        - `depth`: hidden `3^d` convolutions; the receptive field is `2·depth + 3` sites wide.
        - `emb_dim`: size of the Gaussian-Fourier time embedding.
        - `antisymmetric`: impose `s(−φ) = −s(φ)`.
        - `data_std`: σ_d of the data, for the input scaling and the Gaussian skip.
        """
        check_local_args("LocalCNN", d, channels, depth)
        keys = jr.split(key, 3)
        self.d, self.antisymmetric, self.schedule = d, antisymmetric, schedule
        self.data_std = None if data_std is None else float(data_std)
        self.embed = GaussianFourierEmbedding(emb_dim, scale=4.0, key=keys[0])
        self.emb_mlp = eqx.nn.MLP(emb_dim, emb_dim, emb_dim, 1, activation=jax.nn.silu, key=keys[1])
        self.stack = LocalStack(d, channels, depth, emb_dim, key=keys[2])

    @property
    def radius(self) -> int:
        """Half-width of the receptive field `Ω` (lattice steps along each axis)."""
        return self.stack.radius

    def _raw(self, emb, x):
        return self.stack(emb, x)

    def output_layer(self) -> tuple[Array, Array]:
        return self.stack.output_layer()
