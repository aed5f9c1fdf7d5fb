r"""Exact references for SU(N) and U(N) gauge fields.

- `link_mean(group, N, beta)` (from `sqdiff.theories.gauge_exact`, Weyl integration; checked
  here against the Bessel closed forms): the 2D infinite-volume plaquette `u`, `W(R×T) = u^{RT}`.
- `u2_torus(beta, L)`: 2D U(2) on the torus, plaquette and `χ_t`, by the character expansion
  with a θ-term.
"""

from __future__ import annotations

import numpy as np

from sqdiff.theories.gauge_exact import class_average, link_mean  # noqa: F401  (re-exported)


def u2_torus(beta: float, L: int, M: int = 12, n_u: int = 96, n_v: int = 192) -> dict:
    r"""Exact 2D U(2) Wilson theory on an `L×L` torus: plaquette and `χ_t = ⟨Q²⟩/V`,
    `Q = (1/2π) Σ_x arg det U_01(x)`.

    Character expansion on a genus-1 surface (Migdal; Witten, Commun. Math. Phys. 141 (1991)
    153): with the plaquette weight `f_θ(U) = e^{(β/2) Re tr U + iθ arg det U / 2π}` (a class
    function), `Z(θ) = Σ_r ã_r(θ)^V`, `ã_r = (1/d_r) ∫dU f_θ(U) χ_r(U)^*` over the U(2) irreps
    `r = (m1 ≥ m2)` (|m| ≤ M), `χ_r` the Schur function and `d_r = m1 − m2 + 1`. Then
    `⟨Q²⟩ = −∂²_θ log Z(0)` and the plaquette is `∂_β log Z / V`.

    The eigenangle integral runs in `u = θ1 + θ2 ∈ (−π, π)` (where `arg det U = u`, smooth inside;
    Gauss–Legendre) and `v = θ1 − θ2` (period 4π; trapezoid): both spectrally accurate.
    """
    V = L * L
    x, wx = np.polynomial.legendre.leggauss(n_u)
    u = np.pi * x
    wu = np.pi * wx
    v = -2 * np.pi + 4 * np.pi * np.arange(n_v) / n_v
    U_, V_ = np.meshgrid(u, v, indexing="ij")
    t1, t2 = (U_ + V_) / 2, (U_ - V_) / 2
    z1, z2 = np.exp(1j * t1), np.exp(1j * t2)
    vdm = np.abs(z1 - z2) ** 2
    re_tr = (np.cos(t1) + np.cos(t2)) / 2
    w = (wu[:, None] * np.ones_like(V_)) * vdm * np.exp(beta * (re_tr - 1))
    q = U_ / (2 * np.pi)
    a, da, d1, d2a = [], [], [], []
    safe = np.where(np.abs(z1 - z2) > 1e-12, z1 - z2, 1.0)
    for m1 in range(-M, M + 1):
        for m2 in range(-M, m1 + 1):
            chi = (z1 ** (m1 + 1) * z2**m2 - z2 ** (m1 + 1) * z1**m2) / safe
            base = w * np.conj(chi) / (m1 - m2 + 1)
            a.append(np.sum(base))
            da.append(np.sum(base * re_tr))  # ∂_β ã_r
            d1.append(np.sum(base * 1j * q))  # ∂_θ ã_r
            d2a.append(-np.sum(base * q**2))  # ∂²_θ ã_r
    a, da, d1, d2a = (np.array(z) for z in (a, da, d1, d2a))
    # Z = Σ ã^V, Z' = Σ V ã^{V−1} ã', Z'' = Σ V(V−1) ã^{V−2} ã'² + V ã^{V−1} ã''
    scale = np.max(np.abs(a))
    a, da, d1, d2a = a / scale, da / scale, d1 / scale, d2a / scale
    Z = np.sum(a**V)
    Z1 = np.sum(V * a ** (V - 1) * d1)
    Z2 = np.sum(V * (V - 1) * a ** (V - 2) * d1**2 + V * a ** (V - 1) * d2a)
    q2 = -(Z2 / Z) + (Z1 / Z) ** 2
    plaq = np.sum(a ** (V - 1) * da) / Z
    return {"plaquette": float(np.real(plaq)), "chi_t": float(np.real(q2)) / V}
