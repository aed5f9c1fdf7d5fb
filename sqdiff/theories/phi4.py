r"""Scalar φ⁴ theory on a periodic `L^d` lattice in the hopping parametrisation:

    S = Σ_x [ −2κ Σ_μ φ(x) φ(x+μ̂) + (1 − 2λ) φ(x)² + λ φ(x)⁴ ]

(Wang, Aarts, Zhou 2023, Sec. 3; Vierhaus's convention). Free field at λ = 0, stable for
κ < 1/(2d); 2D critical κ_c(λ = 0.022) ≈ 0.2709.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from ..groups import Euclidean
from ..stats import cumulants_from_moments
from ._lattice import check_lattice, finite
from .base import AbstractAction


class Phi4(AbstractAction):
    """φ⁴ on an `L^d` periodic lattice; a configuration has shape `(L,)*d`."""

    L: int = eqx.field(static=True)
    d: int = eqx.field(static=True)
    kappa: float = eqx.field(static=True)
    lam: float = eqx.field(static=True)
    name = "phi4"
    z2_symmetric = True

    def __init__(self, L: int, kappa: float, lam: float, d: int = 2):
        self.L, self.d = check_lattice(L, d)
        self.kappa = finite(kappa, "kappa")
        self.lam = finite(lam, "lam")
        if self.lam < 0:
            raise ValueError(f"`lam` must be ≥ 0 (the action is unbounded below), got {lam}.")
        if self.lam == 0 and self.kappa >= 1 / (2 * d):
            raise ValueError(f"free field (lam = 0) needs kappa < 1/(2d) = {1 / (2 * d)}.")

    def default_network(self):
        return "unet" if self.d in (2, 3) else None

    @property
    def group(self):
        return Euclidean()

    @property
    def lattice_shape(self):
        return (self.L,) * self.d

    @property
    def params(self):
        return {"L": self.L, "d": self.d, "kappa": self.kappa, "lam": self.lam}

    def _axes(self, phi):
        return range(phi.ndim - self.d, phi.ndim)

    def __call__(self, phi):
        hop = sum(phi * jnp.roll(phi, -1, axis=a) for a in self._axes(phi))
        return jnp.sum(-2 * self.kappa * hop + (1 - 2 * self.lam) * phi**2 + self.lam * phi**4)

    def force(self, phi):
        nn = sum(jnp.roll(phi, s, axis=a) for a in self._axes(phi) for s in (1, -1))
        return -2 * self.kappa * nn + 2 * (1 - 2 * self.lam) * phi + 4 * self.lam * phi**3

    def two_point(self, phi):
        """`G(p) = |φ̃(p)|²/V` of one configuration on the full momentum grid."""
        axes = tuple(self._axes(phi))
        return jnp.abs(jnp.fft.fftn(phi, axes=axes)) ** 2 / self.L**self.d

    def measure(self, phi):
        M = jnp.mean(phi)
        axes = tuple(self._axes(phi))
        out = {"M": M, "absM": jnp.abs(M), "M2": M**2, "M4": M**4}
        out["link"] = jnp.mean(sum(phi * jnp.roll(phi, -1, axis=a) for a in axes)) / self.d
        out.update({f"m{k}": jnp.mean(phi**k) for k in range(1, 9)})
        G = self.two_point(phi)
        for k in range(self.L // 2 + 1):  # momenta (2πk/L, 0, …)
            out[f"G{k}"] = G[(k,) + (0,) * (self.d - 1)]
        return out

    def definitions(self):
        return {
            "<M>": "M = (1/V) Σ_x φ_x per configuration",
            "<|M|>": "⟨|M|⟩",
            "chi2": "χ2 = V (⟨M²⟩ − ⟨M⟩²), connected",
            "chi2_abs": "V (⟨M²⟩ − ⟨|M|⟩²)",
            "U_L": "Binder cumulant 1 − ⟨M⁴⟩ / (3⟨M²⟩²)",
            "<phi^2>": "(1/V) Σ_x ⟨φ_x²⟩",
            "<phi(x)phi(x+mu)>": "(1/Vd) Σ_{x,μ} ⟨φ_x φ_{x+μ̂}⟩",
            "kappa2": "cumulants κ_n of the single-site φ from its moments (also kappa4…8)",
            "G(p=2pi*0/L)": "G(p) = ⟨|φ̃(p)|²⟩/V at p = (2πk/L, 0, …)",
        }

    def observables(self):
        V = self.L**self.d
        obs = {
            "<M>": (("M",), lambda a: a[0]),
            "<|M|>": (("absM",), lambda a: a[0]),
            "chi2": (("M", "M2"), lambda a: V * (a[1] - a[0] ** 2)),
            "chi2_abs": (("absM", "M2"), lambda a: V * (a[1] - a[0] ** 2)),
            "U_L": (("M2", "M4"), lambda a: 1 - a[1] / (3 * a[0] ** 2)),
            "<phi^2>": (("m2",), lambda a: a[0]),
            "<phi(x)phi(x+mu)>": (("link",), lambda a: a[0]),
        }
        moments = tuple(f"m{k}" for k in range(1, 9))
        for n in (2, 4, 6, 8):
            obs[f"kappa{n}"] = (moments, lambda a, n=n: float(cumulants_from_moments(a)[n - 1]))
        for k in range(self.L // 2 + 1):
            obs[f"G(p=2pi*{k}/L)"] = ((f"G{k}",), lambda a: a[0])
        return obs
