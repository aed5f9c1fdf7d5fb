r"""Zero-dimensional toy theories (one degree of freedom).

`Quartic0D`: `S = μ²/2 φ² + g/4! φ⁴` (Wang, Aarts, Zhou 2023, Eq. 3; single well μ² > 0,
double well μ² < 0). `DoubleWell0D`: `S = (φ² − 1)²`. `Cosine0D`: `S = φ²/2 − cos(kφ)` (the
optimal-SQ examples of the 2026 talk). A configuration is a scalar (shape `()`).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._checks import positive_float
from ..groups import Euclidean
from ..stats import cumulants_from_moments
from .base import AbstractAction


class _ZeroDim(AbstractAction):
    @property
    def group(self):
        return Euclidean()

    def default_network(self):
        return "mlp"

    @property
    def lattice_shape(self):
        return ()

    def measure(self, phi):
        return {f"phi{k}": phi**k for k in range(1, 9)}

    def definitions(self):
        return {"kappa2": "cumulants κ_n of φ from its moments ⟨φ^k⟩, k ≤ 8 (also kappa4…8)"}

    def observables(self):
        obs = {
            "<phi>": (("phi1",), lambda a: a[0]),
            "<phi^2>": (("phi2",), lambda a: a[0]),
            "<phi^4>": (("phi4",), lambda a: a[0]),
        }
        moments = tuple(f"phi{k}" for k in range(1, 9))
        for n in (2, 4, 6, 8):
            obs[f"kappa{n}"] = (moments, lambda a, n=n: float(cumulants_from_moments(a)[n - 1]))
        return obs


class Quartic0D(_ZeroDim):
    """`S = μ²/2 φ² + g/4! φ⁴` (g ≥ 0; g > 0 needed when μ² ≤ 0)."""

    mu2: float = eqx.field(static=True)
    g: float = eqx.field(static=True)
    name = "quartic"
    z2_symmetric = True

    def __init__(self, mu2: float = 1.0, g: float = 0.4):
        self.mu2, self.g = float(mu2), float(g)
        if self.g < 0 or (self.g == 0 and self.mu2 <= 0):
            raise ValueError(f"need g ≥ 0 (and g > 0 if mu2 ≤ 0), got g={g}, mu2={mu2}.")

    @property
    def params(self):
        return {"mu2": self.mu2, "g": self.g}

    def __call__(self, phi):
        return jnp.sum(self.mu2 / 2 * phi**2 + self.g / 24 * phi**4)

    def force(self, phi):
        return self.mu2 * phi + self.g / 6 * phi**3


class DoubleWell0D(_ZeroDim):
    """`S = (φ² − 1)²`."""

    name = "double_well"
    z2_symmetric = True

    @property
    def params(self):
        return {}

    def __call__(self, phi):
        return jnp.sum((phi**2 - 1) ** 2)

    def force(self, phi):
        return 4 * phi * (phi**2 - 1)


class Cosine0D(_ZeroDim):
    """`S = φ²/2 − cos(kφ)`."""

    k: float = eqx.field(static=True)
    name = "cosine"
    z2_symmetric = True

    def __init__(self, k: float = 5.0):
        self.k = positive_float(k, "k")

    @property
    def params(self):
        return {"k": self.k}

    def __call__(self, phi):
        return jnp.sum(phi**2 / 2 - jnp.cos(self.k * phi))

    def force(self, phi):
        return phi + self.k * jnp.sin(self.k * phi)
