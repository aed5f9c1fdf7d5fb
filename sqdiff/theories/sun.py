r"""SU(N) and U(N) lattice gauge theory with the Wilson action in `d` dimensions:

    S = β Σ_x Σ_{μ<ν} (1 − (1/N) Re tr U_μν(x)),
    U_μν(x) = U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)†.

Links have shape `(d, L, …, L, N, N)`. The force is the algebra projection of the link times its
staple sum `A_μ(x)`: `∇^a S = (β/N) Im tr(T^a U_μ(x) A_μ(x))` (Gattringer & Lang, Eq. 8.38),
with the `N² − 1` generators of SU(N) or the `N²` of U(N).

Measurements: the plaquette, rectangular Wilson loops `W(R×T) = ⟨(1/N) Re tr W_{R×T}⟩`
averaged over positions and planes (both orientations), the Polyakov loop along the last axis
(`|P|` of the spatial average per configuration, and `Re P`; `polyakov_loop`),
and on 2D U(N) the topological charge
`Q = (1/2π) Σ_x arg det U_01(x)` (an integer on a periodic lattice: `det U_01(x)` is the U(1)
plaquette of the link determinants) with `χ_t = ⟨Q²⟩/V`.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from .._checks import positive_float
from ..groups import SUN, UN, _dagger, _det, _matmul
from ._lattice import check_lattice
from .base import AbstractAction

__all__ = [
    "SUNWilson",
    "UNWilson",
    "WILSON_LOOPS",
    "plaquette_matrices",
    "polyakov_loop",
    "wilson_loop",
]

#: the rectangular Wilson loops `sqdiff measure` reports (those with R, T ≤ L/2)
WILSON_LOOPS = ((1, 2), (2, 2), (2, 3), (3, 3))


def _shift(U, d, mu, s=-1):
    """`U(x + s μ̂)` (s = −1: forward neighbour) for a field `(..., L, …, L, N, N)` with `d`
    lattice axes before the matrix axes."""
    return jnp.roll(U, s, axis=U.ndim - 2 - d + mu)


def _line(Umu, d, mu, n):
    """`U_μ(x) U_μ(x+μ̂) ⋯ U_μ(x+(n−1)μ̂)` at every `x`."""
    P = Umu
    for k in range(1, n):
        P = _matmul(P, _shift(Umu, d, mu, -k))
    return P


def plaquette_matrices(U):
    """`U_μν(x) = U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)†` for all μ < ν, stacked on a leading
    axis, for links `(d, L, …, L, N, N)`."""
    d = U.shape[0]
    out = []
    for mu in range(d):
        for nu in range(mu + 1, d):
            Umu, Unu = U[mu], U[nu]
            out.append(
                _matmul(
                    _matmul(Umu, _shift(Unu, d, mu)),
                    _matmul(_dagger(_shift(Umu, d, nu)), _dagger(Unu)),
                )
            )
    return jnp.stack(out)


def wilson_loop(U, R: int, T: int):
    """`(1/N) Re tr` of the `R×T` Wilson loop averaged over positions, over the planes μ < ν
    and over both orientations (R along μ or along ν), for links `(d, L, …, L, N, N)`."""
    d, N = U.shape[0], U.shape[-1]
    vals = []
    for mu in range(d):
        for nu in range(d):
            if mu == nu or (R == T and nu < mu):
                continue
            a = _line(U[mu], d, mu, R)  # x → x + Rμ
            b = _shift(_line(U[nu], d, nu, T), d, mu, -R)  # x + Rμ → x + Rμ + Tν
            c = _shift(a, d, nu, -T)  # x + Tν → x + Tν + Rμ
            e = _line(U[nu], d, nu, T)  # x → x + Tν
            W = _matmul(_matmul(a, b), _matmul(_dagger(c), _dagger(e)))
            vals.append(jnp.mean(jnp.real(jnp.trace(W, axis1=-2, axis2=-1))) / N)
    return jnp.mean(jnp.stack(vals))


def polyakov_loop(U: Array) -> Array:
    r"""`P = (1/V_s) Σ_x⃗ (1/N) tr Π_{t=0}^{L−1} U_{d−1}(x⃗, t)`: the spatial average of the
    traced Polyakov line along the last axis (complex; `|P|` and `arg P` are what one reports).

    Args:
        U: links `(d, L, …, L, N, N)`.
    """
    d, N = U.shape[0], U.shape[-1]
    Ut = U[d - 1]
    line = Ut[..., 0, :, :]  # the time axis is the last lattice axis
    for t in range(1, Ut.shape[-3]):
        line = _matmul(line, Ut[..., t, :, :])
    return jnp.mean(jnp.trace(line, axis1=-2, axis2=-1)) / N


class _WilsonGauge(AbstractAction):
    """Wilson action on a periodic `L^d` lattice for a compact matrix group."""

    N: eqx.AbstractVar[int]
    L: eqx.AbstractVar[int]
    d: eqx.AbstractVar[int]
    beta: eqx.AbstractVar[float]

    _min_N: ClassVar[int] = 1

    def _init(self, N, L, beta, d):
        if not isinstance(N, int) or isinstance(N, bool) or N < self._min_N:
            raise ValueError(f"`N` must be an integer ≥ {self._min_N}, got {N!r}.")
        L, d = check_lattice(L, d, (2, 3, 4))
        return N, L, d, positive_float(beta, "beta")

    @property
    def lattice_shape(self):
        return (self.d,) + (self.L,) * self.d

    @property
    def params(self):
        return {"N": self.N, "L": self.L, "d": self.d, "beta": self.beta}

    def default_network(self):
        return "lcnn"

    def _shift(self, U, mu, s=-1):
        return _shift(U, self.d, mu, s)

    def plaquette_matrices(self, U):
        """`U_μν(x)` for all μ < ν, stacked on a leading axis."""
        return plaquette_matrices(U)

    def plaquettes(self, U):
        """`(1/N) Re tr U_μν(x)` for all μ < ν, stacked on a leading axis."""
        return jnp.real(jnp.trace(self.plaquette_matrices(U), axis1=-2, axis2=-1)) / self.N

    def __call__(self, U):
        return self.beta * jnp.sum(1 - self.plaquettes(U))

    def staples(self, U):
        """`A_μ(x) = Σ_{ν≠μ} [U_ν(x+μ) U_μ(x+ν)† U_ν(x)† + U_ν(x+μ−ν)† U_μ(x−ν)† U_ν(x−ν)]`."""
        out = []
        for mu in range(self.d):
            A = jnp.zeros_like(U[mu])
            for nu in range(self.d):
                if nu == mu:
                    continue
                Umu, Unu = U[mu], U[nu]
                up = _matmul(
                    _matmul(self._shift(Unu, mu), _dagger(self._shift(Umu, nu))), _dagger(Unu)
                )
                Unu_m = self._shift(Unu, nu, 1)  # U_ν(x−ν)
                down = _matmul(
                    _matmul(_dagger(self._shift(Unu_m, mu)), _dagger(self._shift(Umu, nu, 1))),
                    Unu_m,
                )
                A = A + up + down
            out.append(A)
        return jnp.stack(out)

    def force(self, U):
        W = _matmul(U, self.staples(U))
        T = self.group.basis(jnp.real(U).dtype)
        return self.beta / self.N * jnp.imag(jnp.einsum("aji,...ij->...a", T, W))

    def loops(self) -> tuple[tuple[int, int], ...]:
        """The Wilson loops `W(R×T)` measured on this lattice (R, T ≤ L/2)."""
        return tuple((r, t) for r, t in WILSON_LOOPS if t <= self.L // 2)

    def measure(self, U):
        out = {"plaquette": jnp.mean(self.plaquettes(U))}
        for r, t in self.loops():
            out[f"W{r}x{t}"] = wilson_loop(U, r, t)
        P = polyakov_loop(U)
        out.update(absP=jnp.abs(P), ReP=jnp.real(P))
        return out

    def definitions(self):
        return {
            "plaquette": "⟨(1/N) Re tr U_μν(x)⟩ over x and μ < ν",
            "W(1x2)": "W(R×T) = ⟨(1/N) Re tr W_{R×T}⟩ over positions, planes, orientations",
            "|P|": "|(1/V₃) Σ_x (1/N) tr Π_t U_d(x, t)|, the Polyakov loop along the last axis",
            "Re P": "Re of the same spatial average",
        }

    def observables(self):
        obs = {"plaquette": (("plaquette",), lambda a: a[0])}
        for r, t in self.loops():
            obs[f"W({r}x{t})"] = ((f"W{r}x{t}",), lambda a: a[0])
        obs["|P|"] = (("absP",), lambda a: a[0])
        obs["Re P"] = (("ReP",), lambda a: a[0])
        return obs


class SUNWilson(_WilsonGauge):
    """Wilson action for SU(N) on a periodic `L^d` lattice.

    Args:
        N: the gauge group SU(N), N ≥ 2.
        L: the lattice extent.
        beta: the coupling β > 0.
        d: the number of dimensions (2, 3 or 4).
    """

    N: int = eqx.field(static=True)
    L: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    name = "sun"
    _min_N = 2

    def __init__(self, N: int, L: int, beta: float, d: int = 4):
        self.N, self.L, self.d, self.beta = self._init(N, L, beta, d)

    @property
    def group(self):
        return SUN(self.N)


class UNWilson(_WilsonGauge):
    """Wilson action for U(N) on a periodic `L^d` lattice; in 2D also the topological charge
    `Q = (1/2π) Σ_x arg det U_01(x)` and `χ_t = ⟨Q²⟩/V`.

    Args:
        N: the gauge group U(N), N ≥ 1.
        L: the lattice extent.
        beta: the coupling β > 0.
        d: the number of dimensions (2, 3 or 4).
    """

    N: int = eqx.field(static=True)
    L: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    name = "un"

    def __init__(self, N: int, L: int, beta: float, d: int = 2):
        self.N, self.L, self.d, self.beta = self._init(N, L, beta, d)

    @property
    def group(self):
        return UN(self.N)

    def topological_charge(self, U):
        """`Q = (1/2π) Σ_x arg det U_01(x)` (2D)."""
        if self.d != 2:
            raise ValueError("the U(N) topological charge is defined here for d = 2.")
        return jnp.sum(jnp.angle(_det(self.plaquette_matrices(U)[0]))) / (2 * jnp.pi)

    def measure(self, U):
        out = super().measure(U)
        if self.d == 2:
            Q = self.topological_charge(U)
            out.update(Q=Q, Q2=Q**2)
        return out

    def definitions(self):
        out = super().definitions()
        if self.d == 2:
            out["<Q>"] = "Q = (1/2π) Σ_x arg det U_01(x) (an integer)"
            out["chi_t"] = "χ_t = ⟨Q²⟩/V"
        return out

    def observables(self):
        obs = super().observables()
        if self.d == 2:
            V = self.L**2
            obs["<Q>"] = (("Q",), lambda a: a[0])
            obs["chi_t"] = (("Q2",), lambda a: a[0] / V)
        return obs
