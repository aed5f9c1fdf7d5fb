r"""Lie-group-aware field states: `Euclidean`, `U1` and `SU(N)`.

A field holds one group element per site (scalar fields) or per link (gauge fields). The
*state* array has the lattice shape followed by `element_shape` (empty for `Euclidean` and
`U1`, `(N, N)` for `SU(N)`).

Two representations of the Lie algebra are used:

- **coordinates** `X^a` (shape `lattice + coord_shape`, real), the natural representation for
  noise, scores and forces: `coord_shape` is `()` for `Euclidean`/`U1` and `(N²−1,)` for SU(N);
- **increments** in the state representation (same shape and dtype as the state): for SU(N)
  the anti-Hermitian matrix `A = i X^a T^a`; for `Euclidean`/`U1` the coordinates themselves.

Diffrax terms produce increments (so they have the state's structure, as diffrax requires)
and the geometric solvers of `sqdiff.solvers` apply them with `apply(U, A) = exp(A) U`; for
SU(N) this is the retraction `retract(U, X) = exp(i X^a T^a) U` of the design document.
Generators are normalised as `tr(T^a T^b) = δ^{ab}/2` (Pauli and Gell-Mann matrices over 2).
"""

from __future__ import annotations

import abc
import functools
import itertools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray

from .registry import Registry

__all__ = ["AbstractGroup", "Euclidean", "GROUPS", "U1", "SUN", "SU", "UN", "U", "wrap_angle"]


class AbstractGroup(eqx.Module):
    """A Lie group acting on every site/link of a lattice field."""

    #: registry name (`GROUPS`); `params` rebuild it: `GROUPS[name](**params)`
    name: ClassVar[str]

    @property
    def params(self) -> dict:
        return {}

    @property
    @abc.abstractmethod
    def element_shape(self) -> tuple[int, ...]:
        """Shape of one group element in the state array."""

    @property
    @abc.abstractmethod
    def coord_shape(self) -> tuple[int, ...]:
        """Shape of the algebra coordinates of one element."""

    @property
    @abc.abstractmethod
    def algebra_dim(self) -> int:
        """Dimension of the Lie algebra."""

    def state_dtype(self, dtype=None):
        """The dtype of a state whose real precision is `dtype`."""
        return jnp.dtype(dtype or jnp.zeros(()).dtype)

    # --- shapes and validation -------------------------------------------------------------
    def lattice_shape(self, state: ArrayLike, name: str = "state") -> tuple[int, ...]:
        """Lattice shape of `state`, raising a clear error when it does not fit the group."""
        return self.lattice_of(tuple(np.shape(state)), name)

    def lattice_of(self, shape: tuple[int, ...], name: str = "shape") -> tuple[int, ...]:
        """Lattice part of a configuration shape, raising a clear error when it does not end
        in the group's element shape."""
        shape = tuple(shape)
        k = len(self.element_shape)
        if k and shape[len(shape) - k :] != self.element_shape:
            raise ValueError(
                f"`{name}` has shape {shape}, but a {self} state must end in "
                f"{self.element_shape} (lattice shape + element shape)."
            )
        return shape[: len(shape) - k]

    def noise_shape(self, lattice_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of algebra coordinates (and of Brownian noise) on a lattice."""
        return tuple(lattice_shape) + self.coord_shape

    def check_state(self, state: ArrayLike, name: str = "state") -> None:
        """Raise `ValueError` unless `state` has a valid shape, dtype and finite entries.

        The finiteness check only runs on concrete (non-traced) arrays.
        """
        self.lattice_shape(state, name)
        if isinstance(state, jax.core.Tracer):
            return
        arr = np.asarray(state)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` contains non-finite values (nan or inf).")
        if not self.is_complex and np.iscomplexobj(arr):
            raise ValueError(f"`{name}` must be real for a {self} state, got dtype {arr.dtype}.")

    @property
    def is_complex(self) -> bool:
        return False

    # --- capabilities (answered by each group instead of type tests elsewhere) --------------
    #: increments add (abelian, one number per site): any diffrax solver integrates such a
    #: state, `solve` maps the result to its canonical representative afterwards
    is_flat: ClassVar[bool] = False
    #: the state space is the vector space of the coordinates itself (no wrapping, no Haar
    #: measure): Gaussian priors, VP/sub-VP schedules and the Hutchinson flow live there
    is_vector_space: ClassVar[bool] = False

    def canonical(self, U: Array) -> Array:
        """The canonical representative of a state (angles in (−π, π] for U(1); the state
        itself otherwise). `solve` applies it after every solver."""
        return U

    def difference(self, U: Array, V: Array) -> Array:
        """`U − V` as a small increment in the state representation (for error estimates):
        wrapped to (−π, π] on U(1)."""
        return U - V

    def in_log_domain(self, X: Float[Array, "..."]) -> Bool[Array, ""]:
        """Whether the algebra coordinates `X` (one per site/link) all lie in a domain,
        symmetric under `X → −X`, on which `exp` is injective (always true on flat groups)."""
        return jnp.asarray(True)

    def langevin_log_ratio(
        self,
        X: Float[Array, "..."],
        drift: Float[Array, "..."],
        drift_new: Float[Array, "..."],
        step_size: Float[Array, ""],
    ) -> Float[Array, ""]:
        r"""`log q(x | x') − log q(x' | x)` for the Langevin move `x' = exp(iX^aT^a) x`,
        `X = ε b(x) + √(2ε) η`, `η ~ N(0, 1)`, `b(x') = drift_new` (Metropolis-adjusted Langevin).

        The proposal is restricted to `in_log_domain(X)` (−inf outside: the move is
        rejected). There `exp` is a bijection and the reverse move is `X → −X`; the Haar
        density of `x'` is the Gaussian of `X` over the Jacobian `J(X)` of `exp`, and
        `J(−X) = J(X)` (it depends on `X` through `|λ_i − λ_j|` of the eigenvalues of
        `X^aT^a`), so it cancels and

            log q(x|x') − log q(x'|x) = (‖X − ε b(x)‖² − ‖X + ε b(x')‖²) / 4ε.
        """
        lr = (jnp.sum((X - step_size * drift) ** 2) - jnp.sum((X + step_size * drift_new) ** 2)) / (
            4 * step_size
        )
        return jnp.where(self.in_log_domain(X), lr, -jnp.inf)

    def diffusion_prior(
        self, key: PRNGKeyArray, lattice_shape: tuple[int, ...], std: float, dtype=None
    ) -> Array:
        """A draw of the forward process's law at noise level `std` ≫ 1 from any start:
        `N(0, std²)` on flat fields (wrapped on U(1)), Haar on compact matrix groups."""
        x = std * jr.normal(key, tuple(lattice_shape), dtype or jnp.zeros(()).dtype)
        return self.apply(jnp.zeros_like(x), x)

    #: whether `langevin_log_ratio` is exact on this group (Metropolis-adjusted Langevin)
    has_langevin_density: ClassVar[bool] = False

    # --- the algebra -----------------------------------------------------------------------
    @abc.abstractmethod
    def algebra(self, X: Float[Array, "..."]) -> Array:
        """Coordinates `X^a` → increment in the state representation (`i X^a T^a` for SU(N))."""

    @abc.abstractmethod
    def coordinates(self, A: Array) -> Float[Array, "..."]:
        """Increment in the state representation → coordinates `X^a` (inverse of `algebra`)."""

    def tangent_coordinates(self, U: Array, dU: Array) -> Float[Array, "..."]:
        """Algebra coordinates `X` of a tangent vector `dU` at `U`, right-trivialised:
        `dU = (i X^a T^a) U` (`dU` itself on flat groups). The Jacobian of a map of the group
        in these coordinates has the determinant of its density against Haar measure."""
        return self.coordinates(dU)

    def inner(self, X: Float[Array, "..."], Y: Float[Array, "..."]) -> Float[Array, ""]:
        """Algebra inner product `Σ X^a Y^a` summed over the lattice (`= 2 Σ tr(A_X† A_Y)`)."""
        return jnp.sum(X * Y)

    # --- group operations ------------------------------------------------------------------
    @abc.abstractmethod
    def apply(self, U: Array, A: Array) -> Array:
        """Apply an increment in the state representation: `exp(A) U` (`U + A` when flat)."""

    def retract(self, U: Array, X: Float[Array, "..."]) -> Array:
        """`retract(U, X) = exp(i X^a T^a) U` with algebra coordinates `X`."""
        return self.apply(U, self.algebra(X))

    @abc.abstractmethod
    def exp(self, X: Float[Array, "..."]) -> Array:
        """`exp(i X^a T^a)`: coordinates → group elements."""

    @abc.abstractmethod
    def log(self, U: Array) -> Float[Array, "..."]:
        """Principal logarithm: group elements → coordinates, inverse of `exp`."""

    @abc.abstractmethod
    def identity(self, lattice_shape: tuple[int, ...], dtype=None) -> Array:
        """The identity element at every site."""

    @abc.abstractmethod
    def project(self, U: Array) -> Array:
        """The nearest group element (the identity map for `Euclidean`)."""

    def sample_algebra(
        self, key: PRNGKeyArray, lattice_shape: tuple[int, ...], dtype=None
    ) -> Float[Array, "..."]:
        """Standard normal algebra coordinates `η^a ~ N(0, 1)`."""
        return jr.normal(key, self.noise_shape(lattice_shape), dtype or jnp.zeros(()).dtype)

    @abc.abstractmethod
    def sample_haar(self, key: PRNGKeyArray, lattice_shape: tuple[int, ...], dtype=None) -> Array:
        """Haar-random elements (for `Euclidean`, which has no Haar probability, an error)."""

    # --- calculus --------------------------------------------------------------------------
    @abc.abstractmethod
    def first_order_retract(self, U: Array, X: Float[Array, "..."]) -> Array:
        """`(1 + i X^a T^a) U`: agrees with `retract` to first order in `X`."""

    def grad(self, f, U: Array) -> Float[Array, "..."]:
        r"""Lie derivative `∇^a f(U) = d/dε f(exp(iεT^a) U)|_{ε=0}` of a real function.

        Computed by reverse-mode autodiff of `f((1 + i X^a T^a) U)` at `X = 0` (exact: only the
        first order matters), so it needs no derivative of the matrix exponential.
        """
        X0 = jnp.zeros(self.noise_shape(self.lattice_shape(U)), jnp.real(U).dtype)
        return jax.grad(lambda X: f(self.first_order_retract(U, X)))(X0)


class _OneNumber(AbstractGroup):
    """A group with one real number per site (Euclidean, U(1))."""

    @property
    def element_shape(self):
        return ()

    @property
    def coord_shape(self):
        return ()

    @property
    def algebra_dim(self):
        return 1


class Euclidean(_OneNumber):
    """Real scalar fields: the translation group `R`, `retract(φ, X) = φ + X`."""

    name = "euclidean"

    is_flat = True
    is_vector_space = True
    has_langevin_density = True

    def algebra(self, X):
        return X

    def coordinates(self, A):
        return A

    def apply(self, U, A):
        return U + A

    def exp(self, X):
        return X

    def log(self, U):
        return U

    def identity(self, lattice_shape, dtype=None):
        return jnp.zeros(lattice_shape, dtype or jnp.zeros(()).dtype)

    def project(self, U):
        return U

    def sample_haar(self, key, lattice_shape, dtype=None):
        raise ValueError("Euclidean (R) has no normalisable Haar measure; sample a prior instead.")

    def first_order_retract(self, U, X):
        return U + X

    def grad(self, f, U):
        return jax.grad(f)(U)

    def __repr__(self):
        return "Euclidean()"


def wrap_angle(theta):
    """Map angles to (−π, π]."""
    return jnp.pi - jnp.mod(jnp.pi - theta, 2 * jnp.pi)


class U1(_OneNumber):
    """U(1) fields stored as real angles `θ ∈ (−π, π]` (the element is `e^{iθ}`)."""

    name = "u1"

    is_flat = True
    has_langevin_density = True

    def algebra(self, X):
        return X

    def coordinates(self, A):
        return A

    def apply(self, U, A):
        return wrap_angle(U + A)

    def canonical(self, U):
        return wrap_angle(U)

    def difference(self, U, V):
        return wrap_angle(U - V)

    def langevin_log_ratio(self, X, drift, drift_new, step_size):
        """Unrestricted moves: the density of `θ'` is the wrapped Gaussian, the images
        `θ + 2πk`, |k| ≤ 2, summed (exact to far below rounding for `ε` ≤ 1)."""
        images = 2 * jnp.pi * jnp.arange(-2, 3)

        def log_q(d):
            d = wrap_angle(d)[..., None] + images
            return jnp.sum(jax.nn.logsumexp(-(d**2) / (4 * step_size), axis=-1))

        return log_q(-X - step_size * drift_new) - log_q(X - step_size * drift)

    def exp(self, X):
        return wrap_angle(X)

    def log(self, U):
        return wrap_angle(U)

    def identity(self, lattice_shape, dtype=None):
        return jnp.zeros(lattice_shape, dtype or jnp.zeros(()).dtype)

    def project(self, U):
        return wrap_angle(U)

    def sample_haar(self, key, lattice_shape, dtype=None):
        dtype = dtype or jnp.zeros(()).dtype
        return jr.uniform(key, lattice_shape, dtype, minval=-jnp.pi, maxval=jnp.pi)

    def first_order_retract(self, U, X):
        return U + X

    def grad(self, f, U):
        return jax.grad(f)(U)

    def __repr__(self):
        return "U1()"


@functools.cache
def _sun_generators(n: int) -> np.ndarray:
    """Generalised Gell-Mann matrices over 2: Hermitian, traceless, `tr(T^a T^b) = δ^{ab}/2`."""
    gens = []
    for j, k in itertools.combinations(range(n), 2):
        m = np.zeros((n, n), complex)
        m[j, k] = m[k, j] = 1
        gens.append(m)
        m = np.zeros((n, n), complex)
        m[j, k], m[k, j] = -1j, 1j
        gens.append(m)
    for d in range(1, n):
        m = np.zeros((n, n), complex)
        m[np.arange(d), np.arange(d)] = 1
        m[d, d] = -d
        gens.append(m * np.sqrt(2 / (d * (d + 1))))
    return np.stack(gens) / 2


def _dagger(U):
    return jnp.conj(jnp.swapaxes(U, -1, -2))


def _matmul(A, B):
    """Batched product of small matrices as a fused multiply-add (XLA's batched `dot` is slow
    for 2×2 and 3×3 blocks on CPU)."""
    return jnp.sum(A[..., :, :, None] * B[..., None, :, :], axis=-2)


def _expm_taylor(A):
    """`exp(A)` by a Taylor polynomial after scaling `A` to Frobenius norm ≤ 1/2, then squaring
    back; the batch shares one scaling. Degree 8 in single precision (truncation < 5e-9),
    12 in double (< 2e-14)."""
    order = 8 if A.dtype == jnp.complex64 else 12
    norm = jnp.max(jnp.sqrt(jnp.sum(jnp.abs(A) ** 2, axis=(-2, -1))))
    s = jnp.maximum(0, jnp.ceil(jnp.log2(norm / 0.5))).astype(jnp.int32)
    A = A / (2.0**s).astype(A.dtype)
    eye = jnp.eye(A.shape[-1], dtype=A.dtype)
    E = eye
    for k in range(order, 0, -1):
        E = eye + _matmul(A, E) / k
    return jax.lax.fori_loop(0, s, lambda i, E: _matmul(E, E), E)


def _det(U):
    """Determinant, in closed form for 2×2 and 3×3 (batched LU is slow for tiny matrices)."""
    n = U.shape[-1]
    if n == 2:
        return U[..., 0, 0] * U[..., 1, 1] - U[..., 0, 1] * U[..., 1, 0]
    if n == 3:
        c0 = U[..., 1, 1] * U[..., 2, 2] - U[..., 1, 2] * U[..., 2, 1]
        c1 = U[..., 1, 0] * U[..., 2, 2] - U[..., 1, 2] * U[..., 2, 0]
        c2 = U[..., 1, 0] * U[..., 2, 1] - U[..., 1, 1] * U[..., 2, 0]
        return U[..., 0, 0] * c0 - U[..., 0, 1] * c1 + U[..., 0, 2] * c2
    return jnp.linalg.det(U)


class _MatrixGroup(AbstractGroup):
    """A compact group of complex `N×N` matrices (SU(N), U(N)).

    `exp` is the matrix exponential of the anti-Hermitian increment (closed form for SU(2),
    scaling-and-squaring Taylor otherwise), followed by a cheap re-unitarisation (one
    Newton–Schulz polar step, and for SU(N) a determinant-phase fix) so that long chains of
    retractions stay in the group to rounding error.
    """

    N: eqx.AbstractVar[int]

    has_langevin_density = True

    @property
    def params(self):
        return {"N": self.N}

    def __check_init__(self):
        if not isinstance(self.N, int) or self.N < self._min_N:
            raise ValueError(
                f"{self.name.upper()}(N) needs an integer N ≥ {self._min_N}, got N={self.N!r}."
            )

    _min_N: ClassVar[int] = 1
    #: whether elements have unit determinant (SU(N)) or any phase (U(N))
    _special: ClassVar[bool] = False

    @property
    def is_special(self) -> bool:
        """Whether elements have unit determinant (SU(N): traceless algebra) or not (U(N))."""
        return self._special

    @property
    def element_shape(self):
        return (self.N, self.N)

    @property
    def coord_shape(self):
        return (self.algebra_dim,)

    @property
    def is_complex(self):
        return True

    def state_dtype(self, dtype=None):
        real = jnp.dtype(dtype or jnp.zeros(()).dtype)
        return jnp.result_type(real, jnp.complex64)

    #: how many rounding units `N ε` (ε of the state's real dtype) a state may be off the group.
    #: sqdiff re-unitarises after every update, so its own fields stay within ~3 ε: 50 float32
    #: HMC trajectories of 4D SU(3), 2D SU(2), U(2), U(3) end at 2.3–2.7 ε in ‖U†U − 1‖ and
    #: |det U − 1|. 16 N ε leaves room for that and refuses a drift no computation of this
    #: precision produces (float32 SU(3): 5.7e-6, so a scale of 1.0004 or a det phase of 4e-4 is
    #: refused; float64: 1.1e-14).
    MEMBERSHIP_ULPS: ClassVar[int] = 16

    def membership_tol(self, dtype) -> float:
        """The largest `‖U†U − 1‖_max` (and `|det U − 1|`, SU(N)) accepted for states of `dtype`:
        `MEMBERSHIP_ULPS · N · ε(dtype)`."""
        real = np.finfo(np.real(np.zeros((), dtype)).dtype)
        return float(self.MEMBERSHIP_ULPS * self.N * real.eps)

    def check_state(self, state: ArrayLike, name: str = "state") -> None:
        """Shape, finiteness, a complex dtype and membership: `U†U = 1` (and `det U = 1` for
        SU(N)) to `membership_tol` of the state's dtype (concrete arrays only; a real or
        non-unitary array is not a state of the group and would give wrong physics silently)."""
        super().check_state(state, name)
        if isinstance(state, jax.core.Tracer):
            return
        U = np.asarray(state)
        if not np.iscomplexobj(U):
            raise ValueError(
                f"`{name}` must be complex {self} matrices, got dtype {U.dtype} (e.g. "
                f"`{self}.identity(lattice_shape)` or `sample_haar`)."
            )
        if U.size == 0:
            return
        tol = self.membership_tol(U.dtype)
        M = U.reshape((-1, self.N, self.N)).astype(np.complex128)
        unitarity = np.max(np.abs(np.conj(np.swapaxes(M, -1, -2)) @ M - np.eye(self.N)))
        det = np.max(np.abs(np.linalg.det(M) - 1)) if self._special else 0.0
        if not (unitarity <= tol and det <= tol):
            what = "max ‖U†U − 1‖ = " + f"{unitarity:.3g}"
            if self._special:
                what += f", max |det U − 1| = {det:.3g}"
            raise ValueError(
                f"`{name}` is not in {self}: {what} (tolerance {tol:.2g} for {U.dtype}, "
                f"{self.MEMBERSHIP_ULPS}·N·ε); project it with `{self}.project`."
            )

    def basis(self, dtype=None) -> Array:
        """The generators `T^a`, shape `(algebra_dim, N, N)`, `tr(T^a T^b) = δ^{ab}/2`."""
        return jnp.asarray(self._generators(), self.state_dtype(dtype))

    @abc.abstractmethod
    def _generators(self) -> np.ndarray: ...

    def algebra(self, X):
        T = self.basis(jnp.real(X).dtype)
        return 1j * jnp.einsum("...a,aij->...ij", X.astype(T.dtype), T)

    def coordinates(self, A):
        # X^a = 2 tr(T^a H) with H = -i A.
        T = self.basis(jnp.real(A).dtype)
        return 2 * jnp.real(jnp.einsum("aji,...ij->...a", T, -1j * A))

    def tangent_coordinates(self, U, dU):
        return self.coordinates(_matmul(dU, _dagger(U)))

    def _expm(self, A):
        return _expm_taylor(A)

    def _fix_det(self, U):
        if not self._special:
            return U
        phase = jnp.angle(_det(U))
        return U * jnp.exp(-1j * phase / self.N)[..., None, None].astype(U.dtype)

    def reunitarize(self, U: Array) -> Array:
        """Pull a nearly (special) unitary matrix back onto the group: one Newton–Schulz polar
        step `U(3 − U†U)/2`, then (SU(N)) remove the phase of `det U`."""
        eye = jnp.eye(self.N, dtype=U.dtype)
        U = 0.5 * _matmul(U, 3 * eye - _matmul(_dagger(U), U))
        return self._fix_det(U)

    def apply(self, U, A):
        return self.reunitarize(_matmul(self._expm(A), U))

    def first_order_retract(self, U, X):
        return U + _matmul(self.algebra(X), U)

    def exp(self, X):
        return self.reunitarize(self._expm(self.algebra(X)))

    def _eigenphases(self, U):
        """Eigenvectors `V` and eigenphases `θ ∈ (−π, π]` of unitary matrices.

        The eigenvectors of a unitary `U` are those of the Hermitian `(U+U†)/2 + c(U−U†)/2i`
        (eigenvalues `cos θ + c sin θ`) for any real `c`; two distinct phases can give nearly
        equal eigenvalues for one `c` (mixing their eigenvectors), so two values of `c` are
        tried and each matrix keeps the one whose `V†UV` is the most diagonal.
        """
        Ud = _dagger(U)
        mask = 1 - jnp.eye(self.N, dtype=jnp.real(U).dtype)

        def candidate(c):
            _, V = jnp.linalg.eigh(0.5 * (U + Ud) + c * (U - Ud) / 2j)
            D = jnp.einsum("...ji,...jk,...kl->...il", jnp.conj(V), U, V)
            theta = jnp.angle(jnp.diagonal(D, axis1=-2, axis2=-1))
            return V, theta, jnp.sum(mask * jnp.abs(D) ** 2, axis=(-2, -1))

        V1, theta1, off1 = candidate(0.6180339887498949)
        V2, theta2, off2 = candidate(-1.6180339887498949)
        keep = off1 <= off2
        return jnp.where(keep[..., None, None], V1, V2), jnp.where(keep[..., None], theta1, theta2)

    def _log_phases(self, theta):
        return theta

    def principal_eigen(self, U: Array) -> tuple[Array, Float[Array, "... N"]]:
        """Eigenvectors `V` (columns) and eigenvalues `λ` of the principal logarithm:
        `U = V diag(e^{iλ}) V†`, `λ ∈ (−π, π]` (for SU(N) shifted by 2π where needed so that
        `Σ λ = 0`)."""
        V, theta = self._eigenphases(U)
        return V, self._log_phases(theta)

    def log(self, U):
        V, theta = self.principal_eigen(U)
        H = jnp.einsum("...ij,...j,...kj->...ik", V, theta.astype(V.dtype), jnp.conj(V))
        return self.coordinates(1j * H)

    def identity(self, lattice_shape, dtype=None):
        eye = jnp.eye(self.N, dtype=self.state_dtype(dtype))
        return jnp.broadcast_to(eye, tuple(lattice_shape) + (self.N, self.N))

    def project(self, U):
        """Nearest group element in Frobenius norm: polar factor `W V†` of the SVD (det
        fixed for SU(N))."""
        W, _, Vh = jnp.linalg.svd(U)
        return self._fix_det(W @ Vh)

    def sample_haar(self, key, lattice_shape, dtype=None):
        """Haar-random elements: QR of a complex Ginibre matrix with Mezzadri's phase fix
        (Notices AMS 54 (2007) 592), det fixed for SU(N)."""
        dtype = self.state_dtype(dtype)
        real = jnp.real(jnp.zeros((), dtype)).dtype
        shape = tuple(lattice_shape) + (self.N, self.N)
        kr, ki = jr.split(key)
        Z = (jr.normal(kr, shape, real) + 1j * jr.normal(ki, shape, real)).astype(dtype)
        Q, R = jnp.linalg.qr(Z)
        d = jnp.diagonal(R, axis1=-2, axis2=-1)
        Q = Q * (d / jnp.abs(d))[..., None, :]
        return self._fix_det(Q)

    def diffusion_prior(self, key, lattice_shape, std, dtype=None):
        """Haar: the law of `exp(iσηT)U_0` tends to it as σ → ∞ for every `U_0`."""
        return self.sample_haar(key, lattice_shape, dtype)

    def in_log_domain(self, X):
        """`‖X^a T^a‖_F² = Σ_a (X^a)²/2 < π²` per element: a ball inside the domain where
        `exp` is injective (all eigenvalues of `X^aT^a` in (−π, π)), symmetric under `X → −X`.
        Metropolis-adjusted Langevin rejects proposals outside it (docs: "MAALA on SU(N)")."""
        return jnp.all(jnp.sum(X**2, axis=-1) < 2 * jnp.pi**2)


class SUN(_MatrixGroup):
    """SU(N) fields stored as complex `N×N` matrices (`N² − 1` generators, generalised
    Gell-Mann matrices over 2)."""

    N: int = eqx.field(static=True)
    name = "su"
    _min_N = 2
    _special = True

    @property
    def algebra_dim(self):
        return self.N**2 - 1

    def _generators(self):
        return _sun_generators(self.N)

    def _expm(self, A):
        if self.N == 2:
            # A = i a·σ/2 → exp(A) = cos(|a|/2) + i sin(|a|/2) â·σ  =  cos r + sin(r)/r · A.
            # Series below r = 1e-4 (and no sqrt there): derivatives stay finite at A = 0.
            r2 = -0.5 * jnp.real(jnp.einsum("...ij,...ji->...", A, A))  # |a|²/4 = r²
            big = r2 > 1e-8
            r = jnp.sqrt(jnp.where(big, r2, 1.0))
            cos = jnp.where(big, jnp.cos(r), 1.0 - r2 / 2.0 + r2**2 / 24.0)
            sinc = jnp.where(big, jnp.sin(r) / r, 1.0 - r2 / 6.0 + r2**2 / 120.0)
            eye = jnp.eye(2, dtype=A.dtype)
            return cos[..., None, None] * eye + sinc[..., None, None] * A
        return _expm_taylor(A)

    def reunitarize(self, U: Array) -> Array:
        """Pull a nearly special-unitary matrix back onto SU(N).

        SU(2): normalise the quaternion `U = a0 + i a·σ` (exact projection of that part).
        N ≥ 3: one Newton–Schulz polar step `U(3 − U†U)/2`, then remove the phase of `det U`.
        """
        if self.N != 2:
            return super().reunitarize(U)
        a = U[..., 0, 0]
        b = U[..., 0, 1]
        # SU(2) elements are [[α, β], [−β*, α*]]: average the two copies, then normalise.
        alpha = 0.5 * (a + jnp.conj(U[..., 1, 1]))
        beta = 0.5 * (b - jnp.conj(U[..., 1, 0]))
        norm = jnp.sqrt(jnp.abs(alpha) ** 2 + jnp.abs(beta) ** 2)
        alpha, beta = alpha / norm, beta / norm
        return jnp.stack(
            [jnp.stack([alpha, beta], -1), jnp.stack([-jnp.conj(beta), jnp.conj(alpha)], -1)],
            -2,
        )

    def _log_phases(self, theta):
        # Eigenphases of SU(N) sum to 2πm; move m of them by 2π to make the log traceless.
        m = jnp.round(jnp.sum(theta, -1) / (2 * jnp.pi))
        rank = jnp.argsort(jnp.argsort(theta, -1), -1)
        n = self.N
        theta = theta - 2 * jnp.pi * jnp.where(m[..., None] > 0, rank >= n - m[..., None], 0)
        return theta + 2 * jnp.pi * jnp.where(m[..., None] < 0, rank < -m[..., None], 0)

    def __repr__(self):
        return f"SU({self.N})"


@functools.cache
def _un_generators(n: int) -> np.ndarray:
    """SU(N)'s generators and `T^0 = 1/√(2N)`: `tr(T^a T^b) = δ^{ab}/2` for all N² of them."""
    t0 = np.eye(n, dtype=complex)[None] / np.sqrt(2 * n)
    return t0 if n == 1 else np.concatenate([t0, _sun_generators(n)])


class UN(_MatrixGroup):
    """U(N) fields stored as complex `N×N` matrices: `N²` generators, `T^0 = 1/√(2N)` (the
    U(1) part) first, then SU(N)'s."""

    N: int = eqx.field(static=True)
    name = "un"

    @property
    def algebra_dim(self):
        return self.N**2

    def _generators(self):
        return _un_generators(self.N)

    def __repr__(self):
        return f"U({self.N})"


def SU(N: int) -> SUN:
    """`SU(N)` group object, e.g. `SU(2)`, `SU(3)`."""
    return SUN(N)


def U(N: int) -> UN:
    """`U(N)` group object, e.g. `U(2)`."""
    return UN(N)


#: every group class with a `name`
GROUPS: Registry = Registry("group", AbstractGroup)
