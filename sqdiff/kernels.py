r"""Kernels `K` of kernelled Langevin dynamics `dφ = −K ∇S dt + √(2K) dW`.

Any positive-definite symmetric `K` leaves `e^{−S}` invariant (Parisi–Wu stochastic
quantization with a kernel; Batrouni et al., Phys. Rev. D 32 (1985) 2736, "Langevin
simulations of lattice field theories", Fourier acceleration).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["FourierKernel"]


class FourierKernel(eqx.Module):
    r"""A translation-invariant kernel, diagonal in momentum space: `K = F⁻¹ k(p) F`.

    `k` holds `k(p)` on the half-spectrum of `numpy.fft.rfftn` (last axis `L//2 + 1`) and must be
    positive and even, `k(p) = k(−p)`, so that `K` is real symmetric. `√K` is applied the same
    way with `√k(p)`, so `√(2K) dW` has covariance `2K dt` exactly.
    """

    k: Float[Array, "..."]
    lattice_shape: tuple[int, ...] = eqx.field(static=True)

    def __init__(self, k_full: Float[Array, "..."]):
        """`k_full`: `k(p)` on the full momentum grid, shape = lattice shape."""
        k_full = np.asarray(k_full, dtype=float)
        if k_full.ndim == 0:
            raise ValueError("`k_full` must have the lattice shape, got a scalar.")
        if not np.all(np.isfinite(k_full)) or np.any(k_full <= 0):
            raise ValueError("`k_full` must be finite and strictly positive at every momentum.")
        flipped = np.roll(np.flip(k_full), 1, axis=tuple(range(k_full.ndim)))
        if not np.allclose(flipped, k_full, rtol=1e-6):
            raise ValueError("`k_full` must be even in momentum, k(p) = k(−p).")
        self.lattice_shape = k_full.shape
        self.k = jnp.asarray(k_full[..., : k_full.shape[-1] // 2 + 1])

    @classmethod
    def free_field(cls, lattice_shape: tuple[int, ...], mass2: float) -> FourierKernel:
        r"""Fourier acceleration for a field of mass² `m²`:
        `k(p) = (p̂²_max + m²)/(p̂² + m²)`, `p̂² = Σ_μ 4 sin²(p_μ/2)`, `p̂²_max = 4d`
        (Batrouni et al. 1985; Duane & Kogut, PRL 55 (1985) 2774).

        Serves as the Langevin kernel `K` and as the inverse HMC mass `M⁻¹` of FA-HMC
        (momenta `P ~ N(0, M)`, velocity `K P`). Slow (infrared) modes get steps
        `≈ (4d+m²)/m²` times larger; the UV step is unchanged. `m²` ≈ the inverse squared
        correlation length in lattice units.
        """
        if mass2 <= 0:
            raise ValueError(f"`mass2` must be > 0 for Fourier acceleration, got {mass2}.")
        grids = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(L) for L in lattice_shape], indexing="ij")
        p2 = sum(4 * np.sin(p / 2) ** 2 for p in grids)
        return cls((4 * len(lattice_shape) + mass2) / (p2 + mass2))

    def _apply(self, kernel: Array, x: Array) -> Array:
        axes = tuple(range(x.ndim - len(self.lattice_shape), x.ndim))
        xf = jnp.fft.rfftn(x, axes=axes)
        return jnp.fft.irfftn(kernel * xf, s=self.lattice_shape, axes=axes).astype(x.dtype)

    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`K x` (over the trailing lattice axes)."""
        return self._apply(self.k, x)

    def sqrt(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`√K x`."""
        return self._apply(jnp.sqrt(self.k), x)

    def inverse_sqrt(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`K^{−1/2} x`."""
        return self._apply(1 / jnp.sqrt(self.k), x)
