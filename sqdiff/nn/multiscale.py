r"""A multiscale local score network for scalar lattice fields: one local stack per block level,
so that the range of the learned operator grows with the lattice while every stack stays local.

Why: in the Gaussian approximation the score of the noised field is
`s(p) = −φ̃(p)/(G(p) + Σ²)`; near κ_c, `G(p) ≈ 1/(2κ p̂²)` and this is a kernel of range
`Σ√(2κ)` lattice spacings — far beyond any fixed stencil once Σ ≫ 1 (docs/studies/phi4_3d.md).
A pyramid of block fields reaches that range with local operations only. Level `k` sees the
orthonormal block field

    ψ_0 = c_in(t) φ,   ψ_{k+1} = R ψ_k,   (R ψ)(X) = 2^{−d/2} Σ_{x ∈ block X} ψ(x)

over `2^d` blocks (the noise stays white with the same variance at every level), applies its own
`LocalStack` `F_k` (periodic `3^d` convolutions, FiLM time embedding) and the contributions are
summed with the adjoint `P = Rᵀ` (copy to the block, times `2^{−d/2}`):

    s(t, φ) = skip(t, φ) + [F_0(ψ_0) + P(F_1(ψ_1) + P(F_2(ψ_2) + …))] / Σ(t).

Summing with `P = Rᵀ` is the chain rule: a term `f(Rφ)` of the log-density contributes `Rᵀ∇f` to the
score, so each level learns the part of the score that lives on its block field.

On an `L` lattice the levels `k < levels` with `2^k | L` and `L/2^k ≥ 2` are used: `L = 4` trains
levels 0–1, `L = 8` levels 0–2, `L = 32` levels 0–4. The output layers of levels ≥ 1 start at zero,
so a level no training volume reached adds nothing (train on {4, 8} and the network is
`LocalCNN`-like at L = 32; add 16 and 32 and the coarse levels learn the long modes) — the
"train small, generate large" study of the seed talk (Tang, Wang et al., "Diffusion models as
stochastic quantization on the lattice", 2026, section "Near critical sampling").

No lattice-wide statistics (no normalisation layers); translation covariant for shifts by
multiples of `2^(levels used − 1)`; optionally antisymmetrised, `s(−φ) = −s(φ)`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..schedules import AbstractSchedule
from .embeddings import GaussianFourierEmbedding
from .local import AbstractLocalNetwork, LocalStack, check_force_skip, check_local_args


def restrict(x: Float[Array, "*L"]) -> Float[Array, "*L2"]:
    """`(Rx)(X) = 2^{−d/2} Σ_{x ∈ X} x` over the `2^d` blocks of an even lattice (orthonormal:
    white noise stays white with the same variance)."""
    d = x.ndim
    split = sum(((n // 2, 2) for n in x.shape), ())
    return x.reshape(split).sum(tuple(range(1, 2 * d, 2))) * 2.0 ** (-d / 2)


def prolong(y: Float[Array, "*L2"]) -> Float[Array, "*L"]:
    """`P = Rᵀ`: each block value copied to its `2^d` sites, times `2^{−d/2}`."""
    for ax in range(y.ndim):
        y = jnp.repeat(y, 2, axis=ax)
    return y * 2.0 ** (-y.ndim / 2)


class MultiscaleCNN(AbstractLocalNetwork):
    """`(t, φ) → s(t, φ)` for φ of shape `(L,)*d`, d ∈ {1, 2, 3}, even L (any L with one level);
    level `k`'s output depends on φ within `2^k (depth + 2) − 1` sites of each point's block."""

    name = "multiscale"

    d: int = eqx.field(static=True)
    antisymmetric: bool = eqx.field(static=True)
    data_std: float | None = eqx.field(static=True)
    embed: GaussianFourierEmbedding
    emb_mlp: eqx.nn.MLP
    stacks: tuple[LocalStack, ...]
    schedule: AbstractSchedule | None
    force_skip: tuple[float, float] | None = eqx.field(static=True)
    skip_log_curvature: Float[Array, ""] | None

    def __init__(
        self,
        schedule: AbstractSchedule | None,
        d: int = 2,
        channels: int = 16,
        depth: int = 2,
        levels: int = 4,
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
        - `channels`: hidden channels per site, at every level.
        - `depth`: hidden `3^d` convolutions per level.
        - `levels`: block levels (1 is a `LocalCNN`); level `k` acts on `2^k`-blocks.
        - `emb_dim`: size of the Gaussian-Fourier time embedding (shared by the levels).
        - `antisymmetric`: impose `s(−φ) = −s(φ)`.
        - `data_std`: σ_d of the data, for the input scaling and the Gaussian skip.
        - `force_skip`: the φ⁴ couplings `(κ, λ)`: the physics-conditioned score of
          `LocalCNN` (see `sqdiff.nn.local`), with the sum of the levels as the correction.
        """
        check_local_args("MultiscaleCNN", d, channels, depth)
        if levels < 1:
            raise ValueError(f"`levels` must be ≥ 1, got {levels}.")
        keys = jr.split(key, 2 + levels)
        self.d, self.antisymmetric, self.schedule = d, antisymmetric, schedule
        self.data_std = None if data_std is None else float(data_std)
        self.force_skip = check_force_skip(force_skip, schedule, data_std, d)
        self.skip_log_curvature = None if force_skip is None else jnp.zeros(())
        self.embed = GaussianFourierEmbedding(emb_dim, scale=4.0, key=keys[0])
        self.emb_mlp = eqx.nn.MLP(emb_dim, emb_dim, emb_dim, 1, activation=jax.nn.silu, key=keys[1])
        stacks = [LocalStack(d, channels, depth, emb_dim, key=k) for k in keys[2:]]
        # coarse levels start as the zero field: a level no training volume reaches adds nothing
        self.stacks = (stacks[0],) + tuple(
            eqx.tree_at(lambda s: s.output_layer(), s, replace_fn=jnp.zeros_like)
            for s in stacks[1:]
        )

    def usable_levels(self, L: int) -> int:
        """Levels used on an `L` lattice: `k < levels` with `2^k | L` and `L / 2^k ≥ 2`."""
        k = 1
        while k < len(self.stacks) and L % 2**k == 0 and L // 2**k >= 2:
            k += 1
        return k

    def _raw(self, emb, x):
        n = self.usable_levels(x.shape[0])
        fields = [x]
        for _ in range(n - 1):
            fields.append(restrict(fields[-1]))
        out = self.stacks[n - 1](emb, fields[n - 1])
        for k in reversed(range(n - 1)):
            out = self.stacks[k](emb, fields[k]) + prolong(out)
        return out

    def output_layer(self) -> tuple[Array, ...]:
        return tuple(a for stack in self.stacks for a in stack.output_layer())
