r"""Gauge-field observables built from the field strength, for links `(d, L, …, L, N, N)`.

- the **clover** field strength (Lüscher, JHEP 08 (2010) 071, Eq. 2.19–2.20)
  `G_μν(x) = (1/8) [Q_μν(x) − Q_νμ(x)]`, `Q_μν(x)` the sum of the four plaquettes of the
  μν plane that start and end at `x` (counter-clockwise), made traceless on SU(N);
- the **energy density** per site in two discretisations (Lüscher 2010, Eq. 3.1 and 3.3):
  plaquette `E = 2 Σ_{μ<ν} Re tr(1 − U_μν(x))` and clover `E = −½ Σ_{μ,ν} tr G_μν(x)²`; both
  tend to `¼ G^a_μν G^a_μν` in the continuum (`E = ½ Σ_{μ<ν} F_μν²` for an abelian field);
- the **clover topological charge** in 4D,
  `Q = −1/(32π²) Σ_x ε_μνρσ tr G_μν G_ρσ = −1/(4π²) Σ_x tr(G_01 G_23 − G_02 G_13 + G_03 G_12)`,
  close to an integer on smooth (e.g. gradient-flowed) fields;

These are values per configuration (averaged or summed over the lattice as stated); the
ensemble averages with errors are taken by `sqdiff.observables` / `sqdiff measure`.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, Complex, Float

from ..groups import _dagger, _matmul
from .sun import _shift, plaquette_matrices

__all__ = [
    "clover_field_strength",
    "energy_density_clover",
    "energy_density_plaquette",
    "topological_charge_clover",
]


def _at(A, d, mu, k):
    """`A(x + k μ̂)` for a field `(..., L, …, L, N, N)` with `d` lattice axes."""
    return _shift(A, d, mu, -k)


def _clover_leaves(U, mu, nu):
    """`Q_μν(x)`: the four plaquettes of the μν plane based at `x` (counter-clockwise)."""
    d = U.shape[0]
    Umu, Unu = U[mu], U[nu]
    P = _matmul(  # U_μν(y) at every y
        _matmul(Umu, _at(Unu, d, mu, 1)), _matmul(_dagger(_at(Umu, d, nu, 1)), _dagger(Unu))
    )
    # the plaquettes at x − μ̂, x − ν̂ and x − μ̂ − ν̂ transported back to x
    Umu_m = _at(Umu, d, mu, -1)  # U_μ(x − μ̂)
    Unu_m = _at(Unu, d, nu, -1)  # U_ν(x − ν̂)
    leaf2 = _matmul(_matmul(_dagger(Umu_m), _at(P, d, mu, -1)), Umu_m)
    leaf4 = _matmul(_matmul(_dagger(Unu_m), _at(P, d, nu, -1)), Unu_m)
    M = _matmul(_at(Umu_m, d, nu, -1), Unu_m)  # U_μ(x − μ̂ − ν̂) U_ν(x − ν̂): x−μ̂−ν̂ → x
    leaf3 = _matmul(_matmul(_dagger(M), _at(_at(P, d, mu, -1), d, nu, -1)), M)
    return P + leaf2 + leaf3 + leaf4


def clover_field_strength(
    U: Complex[Array, "d *lattice N N"], special: bool = True
) -> Complex[Array, "d d *lattice N N"]:
    r"""`G_μν(x) = (1/8)[Q_μν(x) − Q_νμ(x)]` (anti-Hermitian, `G_νμ = −G_μν`, zero on the
    diagonal), minus `tr G / N` when `special` (SU(N); keep the trace for U(N)).

    Args:
        U: links `(d, L, …, L, N, N)`.
        special: remove the trace (the U(1) part), as for SU(N).
    """
    d, N = U.shape[0], U.shape[-1]
    zero = jnp.zeros_like(U[0])
    rows = []
    for mu in range(d):
        row = []
        for nu in range(d):
            if mu == nu:
                row.append(zero)
                continue
            if nu < mu:
                row.append(-rows[nu][mu])
                continue
            Q = _clover_leaves(U, mu, nu)
            G = (Q - _dagger(Q)) / 8
            if special:
                tr = jnp.trace(G, axis1=-2, axis2=-1)[..., None, None]
                G = G - tr * jnp.eye(N, dtype=G.dtype) / N
            row.append(G)
        rows.append(row)
    return jnp.stack([jnp.stack(r) for r in rows])


def _tr_prod(A, B):
    """`Re tr(A B)` at every site."""
    return jnp.real(jnp.einsum("...ij,...ji->...", A, B))


def energy_density_clover(
    U: Complex[Array, "d *lattice N N"], special: bool = True
) -> Float[Array, ""]:
    r"""Lattice average of `E(x) = −½ Σ_{μ,ν} tr G_μν(x)²` with the clover `G` (Lüscher
    2010, Eq. 3.3).

    Args:
        U: links `(d, L, …, L, N, N)`.
        special: SU(N) (traceless `G`) or U(N).
    """
    G = clover_field_strength(U, special)
    d = U.shape[0]
    e = sum(_tr_prod(G[mu, nu], G[mu, nu]) for mu in range(d) for nu in range(mu + 1, d))
    return -jnp.mean(e)  # −½ Σ_{μ,ν} = −Σ_{μ<ν}


def energy_density_plaquette(U: Complex[Array, "d *lattice N N"]) -> Float[Array, ""]:
    r"""Lattice average of `E(x) = 2 Σ_{μ<ν} Re tr(1 − U_μν(x))` (Lüscher 2010, Eq. 3.1).

    Args:
        U: links `(d, L, …, L, N, N)`.
    """
    N = U.shape[-1]
    P = plaquette_matrices(U)
    per_plane = N - jnp.real(jnp.trace(P, axis1=-2, axis2=-1))  # (planes, L, …)
    return 2 * jnp.mean(jnp.sum(per_plane, axis=0))


def topological_charge_clover(
    U: Complex[Array, "4 L L L L N N"], special: bool = True
) -> Float[Array, ""]:
    r"""`Q = −1/(4π²) Σ_x tr(G_01 G_23 − G_02 G_13 + G_03 G_12)` with the clover `G` (4D);
    an integer up to O(a²) on smooth fields (e.g. after gradient flow).

    Args:
        U: links `(4, L, L, L, L, N, N)`.
        special: SU(N) (traceless `G`) or U(N).
    """
    if U.shape[0] != 4:
        raise ValueError(f"the clover topological charge needs d = 4 links, got d = {U.shape[0]}.")
    G = clover_field_strength(U, special)
    q = _tr_prod(G[0, 1], G[2, 3]) - _tr_prod(G[0, 2], G[1, 3]) + _tr_prod(G[0, 3], G[1, 2])
    return -jnp.sum(q) / (4 * jnp.pi**2)
