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

**Force skip** (`force_skip=(κ, λ)`, a physics-conditioned score for φ⁴, as `LCNN`'s for
links). The noised score tends to the target's as `t → 0`, `s(t, φ) → −∇S(φ)`, where
denoising score matching estimates it worst; with the skip the network is

    s(t, φ) = −∇S(φ) exp(−e^a Σ(t)²) + Σ(t)²/(1 + Σ(t)³) · [the stacks' output],

`S` the φ⁴ action at the training (κ, λ) on the input's lattice (the force is local, so the
network still runs on every L), `a` one learned scalar. The correction is `O(Σ²)` by the
heat-kernel expansion `s_t = −∇S + Σ²(H∇S − ½∇ΔS) + O(Σ⁴)`, and the weight is the Gaussian
one, `1/(1 + kΣ²)` for curvature `k = e^a`, to that order. Unlike the Wilson force of `LCNN`'s
skip, the φ⁴ force is unbounded: on a field noised to `|φ| ~ Σ` it grows as `4λΣ³` while the
score is `−φ/Σ²`, so a weight falling as a power of Σ would let it swamp the reverse SDE
(`1/(1 + e^a Σ²)` diverged at Σ(T) = 61). The exponential switches it off above Σ ~ 1, and
`Σ²/(1 + Σ³)` gives the stacks the plain network's `1/Σ` there. The network *is* the Langevin
drift of stochastic quantisation at `t → 0` whatever its weights, so MAALA at a small `t_mh`
proposes as MALA does (docs/studies/phi4_3d.md). VE only.

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

from ..schedules import AbstractSchedule, VarianceExploding
from ..theories.phi4 import Phi4
from .base import AbstractScoreNetwork
from .conv import PeriodicConv
from .embeddings import GaussianFourierEmbedding, gaussian_skip, noise_level, output_scale


def check_local_args(name: str, d: int, channels: int, depth: int) -> None:
    if d not in (1, 2, 3):
        raise ValueError(f"{name} supports d = 1, 2, 3, got d={d}.")
    if channels < 1 or depth < 0:
        raise ValueError(f"need `channels` ≥ 1 and `depth` ≥ 0, got {channels}, {depth}.")


def check_force_skip(force_skip, schedule, data_std, d: int) -> tuple[float, float] | None:
    """`force_skip` as `(κ, λ)` floats (or None), checked: a valid φ⁴ coupling pair, a VE
    schedule, no Gaussian skip beside it."""
    if force_skip is None:
        return None
    if (
        not isinstance(force_skip, (tuple, list))
        or len(force_skip) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in force_skip)
    ):
        raise ValueError(
            f"`force_skip` must be the φ⁴ couplings (kappa, lam) of the training ensemble "
            f"(or None), got {force_skip!r}."
        )
    kappa, lam = float(force_skip[0]), float(force_skip[1])
    try:
        Phi4(4, kappa, lam, d=d)  # the couplings' own checks
    except ValueError as err:
        raise ValueError(f"`force_skip` (kappa, lam) = {force_skip!r}: {err}") from None
    if not isinstance(schedule, VarianceExploding):
        raise ValueError(f"`force_skip` needs a variance-exploding schedule, got {schedule!r}.")
    if data_std is not None:
        raise ValueError("give `force_skip` or `data_std` (the Gaussian skip), not both.")
    return kappa, lam


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
    force_skip: eqx.AbstractVar[tuple[float, float] | None]
    skip_log_curvature: eqx.AbstractVar[Float[Array, ""] | None]
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
        if self.force_skip is None:
            return gaussian_skip(self.schedule, self.data_std, t, phi) + out / output_scale(
                self.schedule, t
            )
        # the correction to the Langevin drift is O(Σ²) as t → 0 (heat-kernel expansion), and
        # the plain network's out/Σ at large Σ
        sigma = self.schedule.marginal_std(t)
        return -self.skip_action(phi.shape[0]).force(phi) * self.skip_weight(t) + out * (
            sigma**2 / (1.0 + sigma**3)
        )

    def skip_action(self, L: int) -> Phi4:
        """The φ⁴ action at the training couplings on an `L^d` lattice (its force is the skip)."""
        if self.force_skip is None:
            raise ValueError(f"this {type(self).__name__} has no force skip (`force_skip=None`).")
        return Phi4(L, *self.force_skip, d=self.d)

    def skip_weight(self, t: Float[Array, ""]) -> Float[Array, ""]:
        """`exp(−e^a Σ(t)²)`, the weight of the Langevin drift (1 at `t = 0`)."""
        if self.skip_log_curvature is None:
            raise ValueError(f"this {type(self).__name__} has no force skip (`force_skip=None`).")
        sigma2 = self.schedule.marginal_std(t) ** 2
        return jnp.exp(-jnp.exp(self.skip_log_curvature) * sigma2)


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
    force_skip: tuple[float, float] | None = eqx.field(static=True)
    skip_log_curvature: Float[Array, ""] | None

    def __init__(
        self,
        schedule: AbstractSchedule | None,
        d: int = 2,
        channels: int = 16,
        depth: int = 3,
        emb_dim: int = 32,
        antisymmetric: bool = False,
        data_std: float | None = None,
        force_skip: tuple[float, float] | None = None,
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
        - `force_skip`: the φ⁴ couplings `(κ, λ)` of the training ensemble: add the drift
          `−∇S` with the learned weight `exp(−e^a Σ(t)²)` and scale the stacks' output by
          `Σ²/(1 + Σ³)` (module docstring); `None` for the plain network (`/Σ(t)`).
        """
        check_local_args("LocalCNN", d, channels, depth)
        keys = jr.split(key, 3)
        self.d, self.antisymmetric, self.schedule = d, antisymmetric, schedule
        self.data_std = None if data_std is None else float(data_std)
        self.force_skip = check_force_skip(force_skip, schedule, data_std, d)
        self.skip_log_curvature = None if force_skip is None else jnp.zeros(())
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
