r"""Hybrid (Hamiltonian) Monte Carlo on flat and group-valued fields.

`H(φ, P) = ½ P·K P + S(φ)` with momenta `P` in the Lie algebra (coordinates `P^a`), `K` a
kernel (`IdentityKernel`, or a `FourierKernel` for Fourier acceleration, `K = M⁻¹`,
`M(p) = p̂² + m²_eff`). Equations of motion `dφ = exp(i ε (K P)^a T^a) φ` (retract),
`dP = −ε ∇S`, integrated by `integrators.leapfrog` or `integrators.omelyan`.
Duane, Kennedy, Pendleton, Roweth, PLB 195 (1987) 216.

The state caches `S(φ)` and `∇S(φ)`: a trajectory of `n` steps costs `n` (leapfrog) or `2n`
(Omelyan) force evaluations and one action evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Bool, Float

from .._checks import integer
from ..groups import AbstractGroup
from ..preconditioners import AbstractKernel, as_kernel
from ..theories import AbstractAction, as_action
from .base import AbstractInfo, AbstractState, AbstractStepSizeSampler
from .integrators import leapfrog, omelyan
from .proposal import metropolis_accept

INTEGRATORS = {"leapfrog": leapfrog, "omelyan": omelyan}


class HMCState(AbstractState):
    """Position with its cached action `S` and force `∇S` (algebra coordinates)."""

    position: Array
    action: Float[Array, ""]
    force: Array


class HMCInfo(AbstractInfo):
    """Acceptance and the energy change `ΔH` of the trajectory."""

    accept_prob: Float[Array, ""]
    accepted: Bool[Array, ""]
    energy_change: Float[Array, ""]


class HMC(AbstractStepSizeSampler):
    """HMC with a leapfrog or Omelyan integrator, optionally Fourier-accelerated.

    Args:
        action: the action `S(φ)`: an `AbstractAction` or any callable (force by autodiff).
        step_size: molecular-dynamics step `ε > 0`.
        n_steps: steps per trajectory.
        integrator: `"leapfrog"` or `"omelyan"`.
        kernel: `None` (`K = 1`) or an `AbstractKernel` (`FourierKernel.free_field(...)`).
        group: the field's group (default: the action's).
    """

    action: AbstractAction
    step_size: float
    n_steps: int = eqx.field(static=True)
    integrator: Literal["leapfrog", "omelyan"] = eqx.field(static=True)
    kernel: AbstractKernel
    fourier: bool = eqx.field(static=True)

    def __init__(
        self,
        action: AbstractAction | Callable,
        step_size: float,
        n_steps: int,
        integrator: Literal["leapfrog", "omelyan"] = "leapfrog",
        kernel: AbstractKernel | None = None,
        group: AbstractGroup | None = None,
    ):
        if not (float(step_size) > 0):
            raise ValueError(f"`step_size` must be > 0, got {step_size!r}.")
        n_steps = integer(n_steps, "n_steps")
        if integrator not in INTEGRATORS:
            raise ValueError(f"`integrator` must be 'leapfrog' or 'omelyan', got {integrator!r}.")
        self.action = as_action(action, group=group)
        self.kernel = as_kernel(kernel)
        if self.kernel.needs_flat and not self.action.group.is_vector_space:
            raise ValueError("Fourier acceleration needs a Euclidean (scalar) field.")
        self.step_size = float(step_size)
        self.n_steps = n_steps
        self.integrator = integrator
        self.fourier = kernel is not None

    @property
    def group(self) -> AbstractGroup:
        return self.action.group

    def kinetic(self, P):
        """`½ P·K P`."""
        return 0.5 * jnp.sum(P * self.kernel(P))

    def sample_momentum(self, key, pos):
        """`P ~ N(0, K⁻¹)` in algebra coordinates."""
        group = self.group
        shape = group.noise_shape(group.lattice_shape(pos))
        return self.kernel.inverse_sqrt(jr.normal(key, shape, jnp.real(pos).dtype))

    def integrate(self, pos, P, F=None):
        """The molecular-dynamics trajectory `(φ, P) → (φ', P', ∇S(φ'))`."""
        F = self.action.force(pos) if F is None else F
        fn = INTEGRATORS[self.integrator]
        return fn(
            self.action.force, self.group, self.kernel, pos, P, F, self.step_size, self.n_steps
        )

    def init(self, position):
        position = jnp.asarray(position)
        return HMCState(position, self.action(position), self.action.force(position))

    def step(self, key, state):
        k_mom, k_acc = jr.split(key)
        P = self.sample_momentum(k_mom, state.position)
        new, P1, F1 = self.integrate(state.position, P, state.force)
        proposed = HMCState(new, self.action(new), F1)
        dH = proposed.action - state.action + self.kinetic(P1) - self.kinetic(P)
        state, p, accepted = metropolis_accept(k_acc, -dH, proposed, state)
        return state, HMCInfo(p, accepted, dH)

    @property
    def settings(self):
        return {
            "sampler": "fahmc" if self.fourier else "hmc",
            "integrator": self.integrator,
            "step_size": self.step_size,
            "n_steps": self.n_steps,
        }
