r"""A lattice gauge-equivariant CNN (L-CNN) score network for SU(N) and U(N) links in any
dimension (Favoni, Ipp, Müller, Schuh, PRL 128 (2022) 032003).

Every hidden feature is a set of `C` complex `N×N` matrices `W_i(x)` per site that transform
as `W_i(x) → Ω_x W_i(x) Ω_x†` under a gauge transformation `U_μ(x) → Ω_x U_μ(x) Ω_{x+μ}†`:

- **input**: the plaquettes `U_μν(x)` (μ < ν) and their inverses, `d(d−1)` channels;
- **L-Conv**: `W'_i(x) = Σ_j ω_ij^0 W_j(x) + Σ_{μ,±} ω_ij^{μ±} U_{x→x±μ} W_j(x±μ) U_{x→x±μ}†`,
  parallel transport by one link (`U_μ(x) W(x+μ) U_μ(x)†`, `U_μ(x−μ)† W(x−μ) U_μ(x−μ)`);
- **L-Bilin** (factorised): `W''_i = (Σ_j a_ij W_j + a_i 1)(Σ_k b_ik W'_k + b_i 1)`;
- **L-Act**: `W_i → σ(α_i Re tr W_i/N + γ_i(t)) W_i`, a gauge-invariant gate, with the time
  embedding `γ(t)` (Gaussian Fourier features of `¼ ln Σ(t)`, as in the U-Net);
- residual blocks `W ← W + L-Act(L-Bilin(W, L-Conv(W)))`;
- **output** in the algebra at every link, covariant at `x`:
  `s^a_μ(x) = Σ_i [c_μi Im tr(T^a W_i(x)) + e_μi Im tr(T^a U_μ(x) W_i(x+μ) U_μ(x)†)] / Σ(t)`,
  so `s(U^Ω)_{x,μ} = Ω_x s(U)_{x,μ} Ω_x†` (as the algebra matrix `s^a T^a`).

All weights are shared over the lattice (translation equivariant), so one network runs at any
`L`. The Wilson force `(β/N) Im tr(T^a U_μ(x) A_μ(x))` is one L-Conv of the input features
followed by the output layer: the network can represent the score of the target exactly.

**Force skip** (`force_skip=β0`, physics-conditioned score). The score of the noised ensemble
tends to the target's as `t → 0`: `s(t, U) → −∇S_β0(U)` (stochastic quantisation's drift),
while denoising score matching estimates it worst there (its target `−η/Σ(t)` has variance
`∝ 1/Σ(t)²`). With `force_skip` the network is

    s(t, U) = −∇S_β0(U) / (1 + e^a Σ(t)²) + Σ(t)²/(1 + Σ(t)²) · [the L-CNN's output layer],

with one learned scalar `a`. The weight is the exact one for a Gaussian link of curvature
`k = e^a` (`s_t = −k X / (1 + k Σ²)`), and it is 1 at `t = 0`. The learned correction carries
`Σ²/(1 + Σ²)` instead of `1/Σ`: for a smooth target `s_t = −∇S + O(Σ²)` (the heat-kernel
expansion of `p_t`), so the network *is* the Wilson drift as `t → 0` whatever its weights, and
MAALA at small `t_mh` keeps MALA's acceptance while training learns the correction at larger t.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Complex, Float, PRNGKeyArray

from ..groups import GROUPS, AbstractGroup, _dagger, _matmul
from ..schedules import AbstractSchedule
from ..theories.sun import SUNWilson, UNWilson, _shift, plaquette_matrices
from .base import AbstractScoreNetwork
from .embeddings import GaussianFourierEmbedding, noise_level

__all__ = ["LCNN", "LConv", "LBilin", "plaquette_features", "transport"]


def transport(U: Array, W: Array, mu: int, forward: bool) -> Array:
    """`W` parallel-transported to `x` from `x + μ̂` (`U_μ(x) W(x+μ) U_μ(x)†`) or from `x − μ̂`
    (`U_μ(x−μ)† W(x−μ) U_μ(x−μ)`). `W` may carry leading channel axes."""
    d = U.shape[0]
    if forward:
        return _matmul(_matmul(U[mu], _shift(W, d, mu, -1)), _dagger(U[mu]))
    Um = _shift(U[mu], d, mu, 1)
    return _matmul(_matmul(_dagger(Um), _shift(W, d, mu, 1)), Um)


def plaquette_features(U: Array) -> Array:
    """`U_μν(x)` for μ < ν and their inverses, interleaved: `(d(d−1), L, …, L, N, N)`."""
    P = plaquette_matrices(U)
    return jnp.stack([P, _dagger(P)], axis=1).reshape((-1,) + P.shape[1:])


def _mix(w: Array, W: Array) -> Array:
    """`Σ_j w_ij W_j` over the leading channel axis, real weights on complex features."""
    return jnp.tensordot(w.astype(W.dtype), W, axes=1)


def _init(key, shape, fan_in):
    return jr.normal(key, shape) / math.sqrt(fan_in)


class LConv(eqx.Module):
    """Gauge-equivariant convolution with kernel size 3 along every axis (one-link transport)."""

    weight: Float[Array, "out in_times_2d_plus_1"]
    d: int = eqx.field(static=True)

    def __init__(self, d: int, c_in: int, c_out: int, *, key: PRNGKeyArray):
        self.d = d
        self.weight = _init(key, (c_out, c_in * (2 * d + 1)), c_in * (2 * d + 1))

    def __call__(self, U: Array, W: Array) -> Array:
        parts = [W]
        for mu in range(self.d):
            parts += [transport(U, W, mu, True), transport(U, W, mu, False)]
        return _mix(self.weight, jnp.concatenate(parts))


class LBilin(eqx.Module):
    """Factorised gauge-equivariant bilinear layer `(aW + a₀1)(bW' + b₀1)`."""

    a: Float[Array, "out in1"]
    a0: Float[Array, " out"]
    b: Float[Array, "out in2"]
    b0: Float[Array, " out"]

    def __init__(self, c1: int, c2: int, c_out: int, *, key: PRNGKeyArray):
        ka, kb = jr.split(key)
        self.a, self.b = _init(ka, (c_out, c1), c1), _init(kb, (c_out, c2), c2)
        self.a0, self.b0 = jnp.ones((c_out,)), jnp.ones((c_out,))

    def __call__(self, W1: Array, W2: Array) -> Array:
        eye = jnp.eye(W1.shape[-1], dtype=W1.dtype)
        shape = (-1,) + (1,) * (W1.ndim - 1)
        A = _mix(self.a, W1) + self.a0.reshape(shape).astype(W1.dtype) * eye
        B = _mix(self.b, W2) + self.b0.reshape(shape).astype(W1.dtype) * eye
        return _matmul(A, B)


class _Block(eqx.Module):
    conv: LConv
    bilin: LBilin
    gate_scale: Float[Array, " c"]
    time: eqx.nn.Linear

    def __init__(self, d: int, c: int, emb_dim: int, *, key: PRNGKeyArray):
        k1, k2, k3 = jr.split(key, 3)
        self.conv = LConv(d, c, c, key=k1)
        self.bilin = LBilin(c, c, c, key=k2)
        self.gate_scale = jnp.ones((c,))
        self.time = eqx.nn.Linear(emb_dim, c, key=k3)

    def __call__(self, U, W, emb):
        H = self.bilin(W, self.conv(U, W))
        n = W.shape[-1]
        tr = jnp.real(jnp.trace(H, axis1=-2, axis2=-1)) / n  # gauge invariant
        shape = (-1,) + (1,) * (tr.ndim - 1)
        gate = jax.nn.sigmoid(self.gate_scale.reshape(shape) * tr + self.time(emb).reshape(shape))
        # a damped residual step keeps the stream near the unit-norm input features
        return W + 0.25 * gate[..., None, None].astype(W.dtype) * H


class LCNN(AbstractScoreNetwork):
    """`(t, U) → s(t, U)` for SU(N) or U(N) links `(d, L, …, L, N, N)`: algebra coordinates
    `(d, L, …, L, dim)`, gauge covariant and translation equivariant.

    Args:
        schedule: the noise schedule (the output is divided by `Σ(t)`).
        group: `"su"` or `"un"`.
        N: the matrix size.
        d: the number of dimensions (2, 3 or 4).
        channels: hidden channels `C`.
        depth: residual L-Conv/L-Bilin/L-Act blocks.
        emb_dim: size of the time embedding.
        force_skip: `β0` of the training ensemble: add the Wilson drift `−∇S_β0(U)` with the
            learned weight `1/(1 + e^a Σ(t)²)` and scale the learned part by `Σ²/(1 + Σ²)`
            (see the module docstring); `None` for the plain L-CNN (`/Σ(t)`).
        key: the initialisation key.
    """

    name = "lcnn"
    groups = ("su", "un")

    embed: GaussianFourierEmbedding
    conv_in: LConv
    blocks: tuple[_Block, ...]
    head: Float[Array, "d c"]
    head_link: Float[Array, "d c"]
    group: AbstractGroup
    d: int = eqx.field(static=True)
    schedule: AbstractSchedule | None
    force_skip: float | None = eqx.field(static=True)
    skip_log_curvature: Float[Array, ""] | None

    def __init__(
        self,
        schedule: AbstractSchedule,
        group: str = "su",
        N: int = 2,
        d: int = 2,
        channels: int = 8,
        depth: int = 2,
        emb_dim: int = 32,
        force_skip: float | None = None,
        *,
        key: PRNGKeyArray,
    ):
        if schedule is None:
            raise ValueError("LCNN needs a noise schedule (its output is divided by Σ(t)).")
        if group not in ("su", "un"):
            raise ValueError(f"`group` must be 'su' or 'un', got {group!r}.")
        if d not in (2, 3, 4):
            raise ValueError(f"`d` must be 2, 3 or 4, got {d!r}.")
        for name, v in (("channels", channels), ("depth", depth)):
            if not isinstance(v, int) or v < (1 if name == "channels" else 0):
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        if force_skip is not None and (
            isinstance(force_skip, bool)
            or not isinstance(force_skip, (int, float))
            or not (math.isfinite(force_skip) and force_skip > 0)
        ):
            raise ValueError(
                f"`force_skip` must be the training coupling β0 > 0 (or None), got {force_skip!r}."
            )
        self.force_skip = None if force_skip is None else float(force_skip)
        # None without the skip: plain L-CNN checkpoints keep their structure
        self.skip_log_curvature = None if force_skip is None else jnp.zeros(())
        self.group = GROUPS[group](N=N)
        self.d = d
        keys = jr.split(key, depth + 4)
        self.embed = GaussianFourierEmbedding(emb_dim, scale=4.0, key=keys[0])
        self.conv_in = LConv(d, d * (d - 1), channels, key=keys[1])
        self.blocks = tuple(_Block(d, channels, emb_dim, key=k) for k in keys[2 : 2 + depth])
        self.head = _init(keys[-2], (d, channels), channels)
        self.head_link = _init(keys[-1], (d, channels), channels)
        self.schedule = schedule

    def output_layer(self):
        return self.head, self.head_link

    def _check(self, U):
        shape = U.shape
        if (
            len(shape) != 3 + self.d  # (d, L × d, N, N)
            or shape[0] != self.d
            or shape[-2:] != self.group.element_shape
            or len(set(shape[1 : 1 + self.d])) != 1
        ):
            L = "L, " * self.d
            raise ValueError(
                f"LCNN for {self.group} in d = {self.d} needs links of shape "
                f"({self.d}, {L}{self.group.N}, {self.group.N}), got {shape}."
            )

    def features(self, t: Float[Array, ""], U: Complex[Array, "..."]) -> Complex[Array, "..."]:
        """The last hidden features `W_i(x)`, `(C, L, …, L, N, N)` (covariant at `x`)."""
        self._check(U)
        emb = self.embed(noise_level(self.schedule, t))
        W = self.conv_in(U, plaquette_features(U))
        for block in self.blocks:
            W = block(U, W, emb)
        return W

    def __call__(self, t: Float[Array, ""], U: Complex[Array, "..."]) -> Float[Array, "..."]:
        W = self.features(t, U)
        T = self.group.basis(jnp.real(U).dtype)
        out = []
        for mu in range(self.d):
            M = _mix(self.head[mu], W) + _mix(self.head_link[mu], transport(U, W, mu, True))
            out.append(jnp.imag(jnp.einsum("aji,...ij->...a", T, M)))
        sigma = self.schedule.marginal_std(t)
        if self.force_skip is None:
            return jnp.stack(out) / sigma
        # the correction to the Wilson drift is O(Σ²) as t → 0 (heat-kernel expansion)
        residual = jnp.stack(out) * (sigma**2 / (1.0 + sigma**2))
        return residual - self.skip_weight(t) * self.wilson(U.shape[1]).force(U)

    def wilson(self, L: int) -> SUNWilson | UNWilson:
        """The Wilson action at `β0 = force_skip` on an `L^d` lattice (its force is the skip)."""
        if self.force_skip is None:
            raise ValueError("this L-CNN has no force skip (`force_skip=None`).")
        cls = SUNWilson if self.group.is_special else UNWilson
        return cls(self.group.N, L, self.force_skip, d=self.d)

    def skip_weight(self, t: Float[Array, ""]) -> Float[Array, ""]:
        """`1/(1 + e^a Σ(t)²)`, the weight of the Wilson drift (1 at `t = 0`)."""
        if self.skip_log_curvature is None:
            raise ValueError("this L-CNN has no force skip (`force_skip=None`).")
        sigma = self.schedule.marginal_std(t)
        return 1.0 / (1.0 + jnp.exp(self.skip_log_curvature) * sigma**2)
