r"""Kernels (preconditioners) `K`, shared by kernelled Langevin dynamics
`dφ = −K ∇S dt + √(2K) dW` and HMC with inverse mass `M⁻¹ = K` (velocity `K P`, momenta
`P ~ N(0, K⁻¹)`).

Any positive-definite symmetric `K` leaves `e^{−S}` invariant (Parisi–Wu stochastic
quantization with a kernel; Batrouni et al., Phys. Rev. D 32 (1985) 2736, "Langevin
simulations of lattice field theories", Fourier acceleration).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["AbstractKernel", "DiagonalKernel", "FourierKernel", "IdentityKernel", "as_kernel"]


class AbstractKernel(eqx.Module):
    """A symmetric positive-definite linear map on algebra coordinates."""

    #: whether it acts on flat (Euclidean) fields only (it mixes sites in Fourier space)
    needs_flat: ClassVar[bool] = False

    @abc.abstractmethod
    def __call__(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`K x`."""

    @abc.abstractmethod
    def sqrt(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`√K x`."""

    @abc.abstractmethod
    def inverse_sqrt(self, x: Float[Array, "..."]) -> Float[Array, "..."]:
        """`K^{−1/2} x`."""

    def langevin_noise(self) -> Array | Callable[[Array], Array]:
        """The noise amplitude `√(2K)` as a diffrax noise scale: an array/scalar for diagonal
        kernels (elementwise), a linear map otherwise."""
        return lambda dw: jnp.sqrt(2.0).astype(dw.dtype) * self.sqrt(dw)


class IdentityKernel(AbstractKernel):
    """`K = 1` (plain Langevin, plain HMC)."""

    def __call__(self, x):
        return x

    def sqrt(self, x):
        return x

    def inverse_sqrt(self, x):
        return x

    def langevin_noise(self):
        return jnp.sqrt(2.0)


class DiagonalKernel(AbstractKernel):
    """An elementwise kernel `K = diag(k)` (`k` a positive scalar or array broadcasting against
    the algebra coordinates)."""

    k: Array

    def __init__(self, k: ArrayLike):
        k = jnp.asarray(k, float)
        if not bool(jnp.all(k > 0)) or not bool(jnp.all(jnp.isfinite(k))):
            raise ValueError("`kernel` must be finite and strictly positive.")
        self.k = k

    def __call__(self, x):
        return self.k * x

    def sqrt(self, x):
        return jnp.sqrt(self.k) * x

    def inverse_sqrt(self, x):
        return x / jnp.sqrt(self.k)

    def langevin_noise(self):
        return jnp.sqrt(2.0 * self.k)


def as_kernel(kernel: AbstractKernel | ArrayLike | None) -> AbstractKernel:
    """`None` → `IdentityKernel()`, a scalar/array → `DiagonalKernel`, a kernel → itself."""
    if kernel is None:
        return IdentityKernel()
    if isinstance(kernel, AbstractKernel):
        return kernel
    return DiagonalKernel(kernel)


class FourierKernel(AbstractKernel):
    r"""A translation-invariant kernel, diagonal in momentum space: `K = F⁻¹ k(p) F`.

    `k` holds `k(p)` on the half-spectrum of `numpy.fft.rfftn` (last axis `L//2 + 1`) and must be
    positive and even, `k(p) = k(−p)`, so that `K` is real symmetric. `√K` is applied the same
    way with `√k(p)`, so `√(2K) dW` has covariance `2K dt` exactly.
    """

    k: Float[Array, "..."]
    lattice_shape: tuple[int, ...] = eqx.field(static=True)
    needs_flat: ClassVar[bool] = True

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
