r"""Hybrid (Hamiltonian) Monte Carlo on flat and group-valued fields.

`H(φ, P) = ½ P·K P + S(φ)` with momenta `P` in the Lie algebra (coordinates `P^a`), `K = 1` or
a `FourierKernel` (Fourier acceleration, `K = M⁻¹`, `M(p) = p̂² + m²_eff`). Equations of motion
`dφ = exp(i ε (K P)^a T^a) φ` (retract), `dP = −ε ∇S`. Integrators: leapfrog and Omelyan's
second-order minimum-norm scheme (λ = 0.1931833; Omelyan, Mryglod, Folk, Comput. Phys.
Commun. 151 (2003) 272, Eq. 31). Duane, Kennedy, Pendleton, Roweth, PLB 195 (1987) 216.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr

from ..groups import AbstractGroup, Euclidean
from ..kernels import FourierKernel
from .base import AbstractSampler

OMELYAN_LAMBDA = 0.1931833275037836


def _velocity(kernel, P):
    return P if kernel is None else kernel(P)


def leapfrog(force, group, kernel, pos, P, eps, n_steps):
    """`n_steps` leapfrog steps (kick ½, drift, kick ½ with merged kicks)."""
    P = P - 0.5 * eps * force(pos)

    def body(i, carry):
        pos, P = carry
        pos = group.retract(pos, eps * _velocity(kernel, P))
        F = force(pos)
        P = P - jnp.where(i == n_steps - 1, 0.5, 1.0) * eps * F
        return pos, P

    return jax.lax.fori_loop(0, n_steps, body, (pos, P))


def omelyan(force, group, kernel, pos, P, eps, n_steps, lam=OMELYAN_LAMBDA):
    """`n_steps` steps of Omelyan's 2MN integrator (5 stages, 2 forces per step)."""

    def body(i, carry):
        pos, P = carry
        P = P - lam * eps * force(pos)
        pos = group.retract(pos, 0.5 * eps * _velocity(kernel, P))
        P = P - (1 - 2 * lam) * eps * force(pos)
        pos = group.retract(pos, 0.5 * eps * _velocity(kernel, P))
        P = P - lam * eps * force(pos)
        return pos, P

    return jax.lax.fori_loop(0, n_steps, body, (pos, P))


class HMC(AbstractSampler):
    """HMC with a leapfrog or Omelyan integrator, optionally Fourier-accelerated."""

    action: Callable
    step_size: float
    n_steps: int = eqx.field(static=True)
    integrator: Literal["leapfrog", "omelyan"] = eqx.field(static=True)
    kernel: FourierKernel | None
    group: AbstractGroup
    force: Callable

    def __init__(
        self,
        action: Callable,
        step_size: float,
        n_steps: int,
        integrator: Literal["leapfrog", "omelyan"] = "leapfrog",
        kernel: FourierKernel | None = None,
        group: AbstractGroup | None = None,
    ):
        if not (float(step_size) > 0):
            raise ValueError(f"`step_size` must be > 0, got {step_size!r}.")
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}.")
        if integrator not in ("leapfrog", "omelyan"):
            raise ValueError(f"`integrator` must be 'leapfrog' or 'omelyan', got {integrator!r}.")
        group = group or getattr(action, "group", Euclidean())
        if kernel is not None and not isinstance(group, Euclidean):
            raise ValueError("Fourier acceleration needs a Euclidean (scalar) field.")
        self.action = action
        self.step_size = float(step_size)
        self.n_steps = n_steps
        self.integrator = integrator
        self.kernel = kernel
        self.group = group
        self.force = getattr(action, "force", None) or (lambda x: group.grad(action, x))

    def kinetic(self, P):
        """`½ P·K P`."""
        return 0.5 * jnp.sum(P * _velocity(self.kernel, P))

    def sample_momentum(self, key, pos):
        eta = jr.normal(
            key, self.group.noise_shape(self.group.lattice_shape(pos)), jnp.real(pos).dtype
        )
        return eta if self.kernel is None else self.kernel.inverse_sqrt(eta)

    def integrate(self, pos, P):
        """The molecular-dynamics trajectory `(φ, P) → (φ', P')`."""
        fn = leapfrog if self.integrator == "leapfrog" else omelyan
        return fn(self.force, self.group, self.kernel, pos, P, self.step_size, self.n_steps)

    def step(self, key, position):
        k_mom, k_acc = jr.split(key)
        P = self.sample_momentum(k_mom, position)
        H0 = self.action(position) + self.kinetic(P)
        new, P1 = self.integrate(position, P)
        dH = self.action(new) + self.kinetic(P1) - H0
        accept_prob = jnp.where(jnp.isfinite(dH), jnp.minimum(1.0, jnp.exp(-dH)), 0.0)
        accepted = jr.uniform(k_acc) < accept_prob
        return jnp.where(accepted, new, position), {"accept": accept_prob, "dH": dH}

    @property
    def settings(self):
        return {
            "sampler": "fahmc" if self.kernel is not None else "hmc",
            "integrator": self.integrator,
            "step_size": self.step_size,
            "n_steps": self.n_steps,
        }
