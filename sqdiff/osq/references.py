r"""Reference processes of optimal SQ, `P_ref: dφ = f(φ) dt + g dW`, `φ_0 ~ π`, one class each.

A reference knows its drift `f`, whether its terminal marginal `q_T^ref` of the discrete
(Euler–Maruyama) chain is known for a given prior, whether that marginal is normalised (then
the Girsanov weights estimate `log Z`), and `log q_T^ref` itself. Defining a subclass with a
`name` registers it (`REFERENCES`), so `OptimalSQ(..., reference="ou")` and a model spec can
name it.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..registry import Registry

if TYPE_CHECKING:
    from .process import OptimalSQ

__all__ = [
    "AbstractReference",
    "BrownianReference",
    "OUReference",
    "REFERENCES",
    "SQReference",
    "gaussian_log_density",
]


def gaussian_log_density(phi: Array, mean: float, var) -> Float[Array, ""]:
    """`Σ_x log N(φ_x; mean, var)`."""
    d = phi - mean
    return jnp.sum(-0.5 * d**2 / var - 0.5 * jnp.log(2 * jnp.pi * var))


class AbstractReference(eqx.Module):
    """A reference process for the path KL of optimal SQ."""

    name: ClassVar[str]

    @abc.abstractmethod
    def drift(self, osq: OptimalSQ, phi: Array) -> Array:
        """`f(φ)`."""

    def check(self, osq: OptimalSQ) -> None:
        """Raise for settings this reference cannot run with."""

    @abc.abstractmethod
    def marginal_known(self, osq: OptimalSQ) -> bool:
        """Whether `log q_T^ref` is available for `osq`'s prior and shape."""

    @abc.abstractmethod
    def normalised(self, osq: OptimalSQ) -> bool:
        """Whether the known marginal is normalised (weights then estimate `log Z`)."""

    @abc.abstractmethod
    def log_marginal(self, osq: OptimalSQ, phi: Array, n_steps: int) -> Float[Array, ""]:
        """`log q_T^ref(φ)` of the discrete chain with `n_steps` steps."""

    def corrected_cost_is_constant(self, osq: OptimalSQ) -> bool:
        """Whether `S + log q_T^ref` is constant (the corrected terminal cost then vanishes)."""
        return False


class SQReference(AbstractReference):
    """`f = −∇S`: stochastic quantization itself (running cost `½∫g⁻²|v_θ|²`)."""

    name = "sq"

    def drift(self, osq, phi):
        return -osq.action.force(phi)

    def check(self, osq):
        if osq.prior == "gaussian" and osq.prior_std == 0:
            raise ValueError("a point prior (prior_std = 0) needs reference 'brownian' or 'ou'.")

    def _on_grid(self, osq) -> bool:
        """SQ from a Gaussian π on one site: `q_T^ref` by Chapman–Kolmogorov."""
        return osq.prior == "gaussian" and int(np.prod(osq.shape, dtype=int)) == 1

    def marginal_known(self, osq):
        return osq.prior == "target" or self._on_grid(osq)

    def normalised(self, osq):
        return self._on_grid(osq)

    def log_marginal(self, osq, phi, n_steps):
        if self._on_grid(osq):
            from .grid import sq_reference_marginal

            return sq_reference_marginal(osq, n_steps)(jnp.reshape(phi, ()))
        return -osq.action(phi)  # started at the target: stationary, up to −log Z

    def corrected_cost_is_constant(self, osq):
        return osq.prior == "target"  # S + log q_T^ref = −log Z


class BrownianReference(AbstractReference):
    """`f = 0` (the Föllmer / path-integral-sampler reference): `q_T^ref = N(m, s² + g²T)`."""

    name = "brownian"

    def drift(self, osq, phi):
        return jnp.zeros_like(phi)

    def marginal_known(self, osq):
        return osq.prior == "gaussian"

    def normalised(self, osq):
        return self.marginal_known(osq)

    def log_marginal(self, osq, phi, n_steps):
        return gaussian_log_density(phi, osq.prior_mean, osq.prior_std**2 + osq.g**2 * osq.T)


class OUReference(AbstractReference):
    """`f = −g²(φ − m)/(2 s_ou²)`, the Ornstein–Uhlenbeck process that keeps `N(m, s_ou²)`:
    `q_T^ref = N(m, r^K s² + g²h (1−r^K)/(1−r))`, `r = (1 − ah)²`, `a = g²/(2 s_ou²)`."""

    std: float | None = eqx.field(static=True, default=None)  # None: the prior's std
    name = "ou"

    def _std(self, osq) -> float:
        return osq.prior_std if self.std is None else float(self.std)

    def check(self, osq):
        if not self._std(osq) > 0:
            raise ValueError("reference 'ou' needs `ou_std` > 0 (default: prior_std).")

    def drift(self, osq, phi):
        return -(osq.g**2) * (phi - osq.prior_mean) / (2 * self._std(osq) ** 2)

    def marginal_known(self, osq):
        return osq.prior == "gaussian"

    def normalised(self, osq):
        return self.marginal_known(osq)

    def log_marginal(self, osq, phi, n_steps):
        h = osq.T / n_steps
        a = osq.g**2 / (2 * self._std(osq) ** 2)
        r = (1 - a * h) ** 2
        var = r**n_steps * osq.prior_std**2 + osq.g**2 * h * (1 - r**n_steps) / (1 - r)
        return gaussian_log_density(phi, osq.prior_mean, var)


#: every reference class with a `name`
REFERENCES: Registry = Registry("reference", AbstractReference)
