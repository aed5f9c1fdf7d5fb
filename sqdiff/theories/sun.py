r"""SU(N) lattice gauge theory with the Wilson action in `d` dimensions:

    S = β Σ_x Σ_{μ<ν} (1 − (1/N) Re tr U_μν(x)),
    U_μν(x) = U_μ(x) U_ν(x+μ̂) U_μ(x+ν̂)† U_ν(x)†.

Links have shape `(d, L, …, L, N, N)`. The force is the algebra projection of the link times its
staple sum `A_μ(x)`: `∇^a S = (β/N) Im tr(T^a U_μ(x) A_μ(x))` (Gattringer & Lang, Eq. 8.38).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._checks import positive_float
from ..groups import SUN, _dagger, _matmul
from ._lattice import check_lattice
from .base import AbstractAction


class SUNWilson(AbstractAction):
    """Wilson action for SU(N) on a periodic `L^d` lattice."""

    N: int = eqx.field(static=True)
    L: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    name = "sun"

    def __init__(self, N: int, L: int, beta: float, d: int = 4):
        if not isinstance(N, int) or N < 2:
            raise ValueError(f"`N` must be an integer ≥ 2, got {N!r}.")
        self.N = N
        self.L, self.d = check_lattice(L, d, (2, 3, 4))
        self.beta = positive_float(beta, "beta")

    @property
    def group(self):
        return SUN(self.N)

    @property
    def lattice_shape(self):
        return (self.d,) + (self.L,) * self.d

    @property
    def params(self):
        return {"N": self.N, "L": self.L, "d": self.d, "beta": self.beta}

    def _shift(self, U, mu, s=-1):
        """`U(x + s μ̂)` (s = −1: forward neighbour) for a field with lattice axes last-but-two."""
        return jnp.roll(U, s, axis=U.ndim - 2 - self.d + mu)

    def plaquettes(self, U):
        """`(1/N) Re tr U_μν(x)` for all μ < ν, stacked on a leading axis."""
        out = []
        for mu in range(self.d):
            for nu in range(mu + 1, self.d):
                Umu, Unu = U[mu], U[nu]
                P = _matmul(
                    _matmul(Umu, self._shift(Unu, mu)),
                    _matmul(_dagger(self._shift(Umu, nu)), _dagger(Unu)),
                )
                out.append(jnp.real(jnp.trace(P, axis1=-2, axis2=-1)) / self.N)
        return jnp.stack(out)

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

    def measure(self, U):
        return {"plaquette": jnp.mean(self.plaquettes(U))}
