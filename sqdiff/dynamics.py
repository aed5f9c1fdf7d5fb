r"""Every dynamics of sqdiff as diffrax terms on Lie-group-aware states.

| dynamics | SDE | class |
| --- | --- | --- |
| forward noising | `dφ = a(t)φ dt + g(t) dW` | `Forward` |
| reverse (Anderson 1982) | `dφ = [f − g² s(t, φ)] dt + g dW̄`, `t: T → 0` | `Reverse` |
| probability-flow ODE | `dφ/dt = f − ½ g² s(t, φ)`, `d log p/dt = −∇·(drift)` | `ProbabilityFlow` |
| Langevin / SQ | `dφ = −K∇S dt + √(2K) dW` | `Langevin` |
| anything else | `dφ = b(t, φ) dt + σ(t, φ) dW` | `SDE` |

A dynamics object knows its group, its drift `b` and noise scale `σ` in **algebra
coordinates**, and builds diffrax terms (`ODETerm`, `ControlTerm`, `MultiTerm`) whose vector
fields return **increments in the state representation** (`group.algebra(b)`; for SU(N) the
anti-Hermitian `i b^a T^a`). Any diffrax solver can integrate flat (`Euclidean`, `U1`) states;
SU(N) states need the geometric solvers of `sqdiff.solvers`, which apply increments through
`exp`, as in Lie-group Euler–Maruyama (Batrouni et al., Phys. Rev. D 32 (1985) 2736).

Equations: Song et al., ICLR 2021, Eqs. (6) (reverse SDE) and (13) (probability flow);
Parisi & Wu (1981) and Wang, Aarts, Zhou (2023), Eq. (2) (stochastic quantization).
The reverse SDE is written in the reverse time `τ = T − t` (the paper's Eq. (1)) so that diffrax
integrates it forwards: `dφ = [−f(φ, T−τ) + g² s(T−τ, φ)] dτ + g dW_τ`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, Literal

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import lineax as lx
from jaxtyping import Array, ArrayLike, PRNGKeyArray, PyTree

from .groups import AbstractGroup, Euclidean
from .nn.base import AbstractExactDivergenceNetwork
from .preconditioners import AbstractKernel, as_kernel
from .schedules import AbstractSchedule
from .theories.base import AbstractAction
from .theories.function import FunctionAction, as_action

__all__ = [
    "AbstractDynamics",
    "SDE",
    "Forward",
    "Reverse",
    "ProbabilityFlow",
    "Langevin",
    "divergence_exact",
    "divergence_hutchinson",
]


def _real_dtype(y):
    return jnp.real(jnp.zeros((), jnp.result_type(y))).dtype


class AbstractDynamics(eqx.Module):
    """A (stochastic) differential equation on a field with values in `group`.

    Subclasses give `drift(t, y, args)` and `noise_scale(t, y, args)` in algebra coordinates
    (ODEs set `is_sde = False`).
    """

    group: eqx.AbstractVar[AbstractGroup]
    #: whether the solver time `s` is the reverse time `τ = T − t`
    time_reversed: ClassVar[bool] = False
    #: whether the noise amplitude is independent of the state (needed for adaptive SRK)
    additive_noise: ClassVar[bool] = True
    is_sde: ClassVar[bool] = True

    @property
    def T(self) -> float | None:
        """The time horizon for schedule-based dynamics (`None` when unbounded)."""
        return None

    @abc.abstractmethod
    def drift(self, t, y, args, /) -> Array:
        """Drift in algebra coordinates at solver time `t`."""

    def noise_scale(self, t, y, args, /):
        """Noise amplitude in algebra coordinates: an array/scalar `σ` (diagonal noise,
        `σ·dW`), or a linear map (callable or `lineax` operator) applied to `dW`."""
        raise NotImplementedError

    def noise_shape(self, y) -> tuple[int, ...]:
        """Shape of the Brownian motion driving a state like `y`."""
        return self.group.noise_shape(self.group.lattice_shape(y))

    def physical_time(self, s):
        """Physical time `t` for solver time `s`."""
        return self.T - s if self.time_reversed else s

    def terms(self, brownian: diffrax.AbstractBrownianPath | None = None) -> diffrax.AbstractTerm:
        """diffrax terms: `ODETerm` for the drift, plus a `ControlTerm` driven by `brownian`.

        Diagonal noise on flat states becomes a `lineax.DiagonalLinearOperator` (so diffrax's
        stochastic Runge–Kutta solvers apply); anything else a `FunctionLinearOperator`.
        """
        group = self.group
        drift = diffrax.ODETerm(lambda t, y, args: group.algebra(self.drift(t, y, args)))
        if not self.is_sde:
            return drift
        if brownian is None:
            raise ValueError(f"{type(self).__name__} is an SDE: `brownian` is required.")
        flat = group.element_shape == ()
        noise = brownian.shape

        def diffusion(t, y, args):
            scale = self.noise_scale(t, y, args)
            if flat and not _is_operator(scale):
                diag = jnp.broadcast_to(jnp.asarray(scale, noise.dtype), noise.shape)
                return lx.DiagonalLinearOperator(diag)
            fn = _as_linear_map(scale)
            return lx.FunctionLinearOperator(lambda dw: group.algebra(fn(dw)), noise)

        return diffrax.MultiTerm(drift, diffrax.ControlTerm(diffusion, brownian))

    # --- what `solve` asks of every dynamics (augmented-state dynamics override these) -----
    def check_state(self, y0, name: str = "y0") -> None:
        """A clear error unless `y0` is a valid state (the group's checks by default)."""
        self.group.check_state(y0, name)

    def solver_state(self, y0: Array) -> PyTree:
        """The solver's initial state for a field `y0` (the field itself by default)."""
        return y0

    def solver_terms(
        self, brownian, y0: Array, probe_key: PRNGKeyArray | None = None
    ) -> diffrax.AbstractTerm:
        """The diffrax terms for a solve from `y0` (`brownian` for SDEs, `probe_key` for
        stochastic divergence estimates)."""
        return self.terms(brownian) if self.is_sde else self.terms()

    def canonical(self, ys: PyTree) -> PyTree:
        """Solver output → canonical states (`group.canonical`: angles wrapped on U(1))."""
        return self.group.canonical(ys)

    def has_diagonal_noise(self, t, y, args=None) -> bool:
        """Whether the noise amplitude at `(t, y)` is elementwise (diagonal)."""
        return not _is_operator(self.noise_scale(t, y, args))


def _is_operator(scale) -> bool:
    return isinstance(scale, lx.AbstractLinearOperator) or callable(scale)


def _as_linear_map(scale) -> Callable[[Array], Array]:
    if isinstance(scale, lx.AbstractLinearOperator):
        return scale.mv
    if callable(scale):
        return scale
    return lambda dw: scale * dw


class SDE(AbstractDynamics):
    r"""A user-defined SDE `dφ = b(t, φ) dt + σ(t, φ) dW` in algebra coordinates.

    - `drift(t, y, args)` returns the drift coordinates `b` (shape of `group.noise_shape`).
    - `diffusion(t, y, args)` returns either an array/scalar `σ` multiplying `dW` elementwise
      (diagonal noise) or a `lineax` operator mapping `dW` to coordinates; `None` for an ODE.

    Example (an Ornstein–Uhlenbeck process):

        ou = sqdiff.SDE(lambda t, y, args: -y, lambda t, y, args: jnp.sqrt(2.0))
    """

    drift_fn: Callable
    diffusion_fn: Callable | None
    group: AbstractGroup
    noise_is_additive: bool = eqx.field(static=True)

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable | None,
        group: AbstractGroup = Euclidean(),
        additive_noise: bool = False,
    ):
        if not callable(drift):
            raise TypeError("`drift` must be a callable drift(t, y, args).")
        if diffusion is not None and not callable(diffusion):
            raise TypeError("`diffusion` must be a callable diffusion(t, y, args) or None.")
        self.drift_fn = drift
        self.diffusion_fn = diffusion
        self.group = group
        self.noise_is_additive = bool(additive_noise)

    @property
    def is_sde(self):  # type: ignore[override]
        return self.diffusion_fn is not None

    @property
    def additive_noise(self):  # type: ignore[override]
        return self.noise_is_additive

    def drift(self, t, y, args):
        return self.drift_fn(t, y, args)

    def noise_scale(self, t, y, args):
        return self.diffusion_fn(t, y, args)


class _ScheduleDynamics(AbstractDynamics):
    schedule: eqx.AbstractVar[AbstractSchedule]

    @property
    def T(self):
        return self.schedule.T

    def _check_group(self):
        if not self.group.is_vector_space and not self.schedule.drift_free:
            raise ValueError(
                f"{type(self.schedule).__name__} has a linear drift a(t)φ, which is only defined "
                f"for Euclidean fields; use VarianceExploding on {self.group}."
            )

    def prior_sample(self, key: PRNGKeyArray, config_shape: tuple[int, ...]) -> Array:
        """A state drawn from the prior at `t = T`: the schedule's Gaussian on Euclidean
        fields, the group's large-noise law elsewhere (wrapped Gaussian on U(1), Haar on
        SU(N)/U(N): `exp(iσηT) U_0` tends to Haar as σ → ∞)."""
        if self.group.is_vector_space:
            return self.schedule.prior_sample(key, tuple(config_shape))
        lattice = self.group.lattice_of(tuple(config_shape), "config_shape")
        return self.group.diffusion_prior(key, lattice, self.schedule.prior_std)


class Forward(_ScheduleDynamics):
    r"""Forward noising `dφ = a(t) φ dt + g(t) dW` (Song et al. 2021, Eq. 5).

    On a group (VE only) the noise is algebra-valued: `dU = i g(t) dW^a T^a U`.
    """

    schedule: AbstractSchedule
    group: AbstractGroup

    def __init__(self, schedule: AbstractSchedule, group: AbstractGroup = Euclidean()):
        self.schedule = schedule
        self.group = group
        self._check_group()

    def drift(self, t, y, args):
        if self.schedule.drift_free:  # the only kind allowed on a group (no `a(t)φ` there)
            return jnp.zeros(self.noise_shape(y), jnp.real(y).dtype)
        return self.schedule.drift_coeff(t) * y

    def noise_scale(self, t, y, args):
        return self.schedule.diffusion(t)


class Reverse(_ScheduleDynamics):
    r"""Reverse-time SDE `dφ = [f − g² s(t, φ)] dt + g dW̄` (Anderson 1982; Song et al. Eq. 6).

    `score(t, φ)` approximates `∇ log p_t(φ)` (algebra coordinates on a group). Integrated in
    `τ = T − t`: `dφ = [−a(t)φ + g(t)² s(t, φ)] dτ + g(t) dW_τ`. Use `sqdiff.solve` with
    physical times `t0 = T` → `t1 = t_min`.
    """

    schedule: AbstractSchedule
    score: Callable
    group: AbstractGroup
    time_reversed: ClassVar[bool] = True

    def __init__(
        self, schedule: AbstractSchedule, score: Callable, group: AbstractGroup = Euclidean()
    ):
        if not callable(score):
            raise TypeError("`score` must be a callable score(t, φ).")
        self.schedule = schedule
        self.score = score
        self.group = group
        self._check_group()

    def drift(self, s, y, args):
        t = self.T - s
        g = self.schedule.diffusion(t)
        linear = 0.0 if self.schedule.drift_free else -self.schedule.drift_coeff(t) * y
        return linear + g**2 * self.score(t, y)

    def noise_scale(self, s, y, args):
        return self.schedule.diffusion(self.T - s)


def wrapped_normal_logp(z: Array, std: float, terms: int = 16) -> Array:
    """Summed log-density of `N(0, std²)` wrapped onto the circle, at the angles `z`."""
    if not std >= 1.0:
        raise ValueError(f"the wrapped-normal prior needs a prior std >= 1, got {std}.")
    k = jnp.arange(1, terms + 1)
    series = 1.0 + 2.0 * jnp.sum(
        jnp.exp(-0.5 * (k * std) ** 2) * jnp.cos(k * jnp.asarray(z)[..., None]), axis=-1
    )
    return jnp.sum(jnp.log(series)) - jnp.size(z) * jnp.log(2 * jnp.pi)


def divergence_exact(fn: Callable[[Array], Array], x: Array) -> Array:
    """`∇·fn(x)` as the trace of the full Jacobian (forward mode; cost ∝ number of sites)."""
    n = x.size
    flat = lambda v: fn(v.reshape(x.shape)).reshape(-1)  # noqa: E731
    return jnp.trace(jax.jacfwd(flat)(x.reshape(-1)).reshape(n, n))


def divergence_hutchinson(fn: Callable[[Array], Array], x: Array, probe: Array) -> Array:
    """Hutchinson's unbiased estimate `ε·(∂fn/∂x) ε` with a Rademacher/Gaussian probe `ε`."""
    _, jvp = jax.jvp(fn, (x,), (probe,))
    return jnp.sum(probe * jvp)


class ProbabilityFlow(_ScheduleDynamics):
    r"""Probability-flow ODE `dφ/dt = v = a(t)φ − ½ g(t)² s(t, φ)` (Song et al. 2021, Eq. 13),
    augmented with `dΔ/dt = ∇·v` so that `log p_{t1}(φ_{t1}) = log p_{t0}(φ_{t0}) − Δ(t1)`
    (instantaneous change of variables; Chen et al., NeurIPS 2018, Thm. 1).

    State: the pair `(φ, Δ)`, integrated in physical time in either direction.
    `divergence="exact"` traces the Jacobian (small systems), or, for a score network that
    knows its own Jacobian diagonal (`sqdiff.nn.AbstractExactDivergenceNetwork`: `FeatureConv`),
    sums it in one pass at any size; `"hutchinson"` uses one fixed Rademacher probe per solve
    (Grathwohl et al., FFJORD, ICLR 2019), unbiased for `log p`.

    On U(1) angles (`group=U1()`, VE schedule, a score network periodic in every angle) the
    velocity `−½ g² s` is a periodic field, so the flow is a diffeomorphism of the torus and the
    same formula holds for densities on `(−π, π]^n` with the wrapped-normal prior
    (`prior_logp`); the endpoint is wrapped into `(−π, π]`.

    On SU(N) and U(N) links (VE schedule) the flow is `dU/dt = i v^a T^a U` with the same
    `v^a = −½ g² s^a` in algebra coordinates (the forward process's heat equation
    `∂_t p = ½ g² Σ_a ∇^a∇^a p` written as a continuity equation), the prior is Haar
    (`log p_T = 0` for normalised Haar measure) and `solve` integrates it with a fixed-step
    Lie-group Runge–Kutta method (`LuscherRK3`) whose steps carry their exact log-Jacobian
    (`LogDetSolver`): `Δ` is then the log-density change of the *discrete* map, exact at any
    step count. `divergence="exact"` computes it, `"none"` skips it (`Δ = 0`; sampling only).
    """

    schedule: AbstractSchedule
    score: Callable
    divergence: Literal["exact", "hutchinson", "none"] = eqx.field(static=True)
    group: AbstractGroup
    is_sde: ClassVar[bool] = False

    def __init__(
        self,
        schedule: AbstractSchedule,
        score: Callable,
        divergence: Literal["exact", "hutchinson", "none"] = "exact",
        group: AbstractGroup = Euclidean(),
    ):
        allowed = ("exact", "hutchinson", "none") if group.is_flat else ("exact", "none")
        if divergence not in allowed:
            raise ValueError(
                f"`divergence` must be one of {allowed} on {group}, got {divergence!r}."
            )
        if not callable(score):
            raise TypeError("`score` must be a callable score(t, φ).")
        self.schedule = schedule
        self.score = score
        self.divergence = divergence
        self.group = group
        self._check_group()

    @property
    def step_jacobian(self) -> bool:
        """Whether `solve` integrates this flow with `LogDetSolver` (matrix groups): fixed
        steps, `Δ` from the exact Jacobian of each step."""
        return not self.group.is_flat

    def velocity(self, t, phi):
        """`v(t, φ) = a(t)φ − ½ g(t)² s(t, φ)` in algebra coordinates (`a = 0` off Euclidean
        fields, where only VE is allowed)."""
        kick = -0.5 * self.schedule.diffusion(t) ** 2 * self.score(t, phi)
        return kick if self.schedule.drift_free else self.schedule.drift_coeff(t) * phi + kick

    @property
    def one_pass_divergence(self) -> bool:
        """Whether the score network knows its own divergence (`AbstractExactDivergenceNetwork`,
        e.g. `FeatureConv`): `divergence="exact"` then costs one pass, with no Jacobian, on
        scalar fields of any size."""
        return self.group.is_vector_space and isinstance(self.score, AbstractExactDivergenceNetwork)

    def velocity_divergence(self, t, phi):
        """`∇·v = a(t)·n − ½ g(t)² ∇·s`, from the network's one-pass divergence."""
        if not isinstance(self.score, AbstractExactDivergenceNetwork):
            raise ValueError("this flow's score does not know its own divergence.")
        div = -0.5 * self.schedule.diffusion(t) ** 2 * self.score.divergence(t, phi)
        if self.schedule.drift_free:
            return div
        return div + self.schedule.drift_coeff(t) * jnp.size(phi)

    def prior_logp(self, z: Array) -> Array:
        """Log-density of the prior at `t = T`: `N(0, Σ(T)²)` per site, wrapped onto the circle
        for U(1) angles (`log` of `(1/2π)[1 + 2 Σ_k e^{−k²Σ²/2} cos kz]`, Jacobi's dual series,
        exact to double precision for `Σ(T) ≥ 1`); `0` for Haar links on SU(N)/U(N) (the
        density against normalised Haar measure, in which `e^{−S}` is also written)."""
        if self.group.is_vector_space:
            return self.schedule.prior_logp(z)
        if not self.group.is_flat:
            return jnp.zeros((), _real_dtype(z))
        return wrapped_normal_logp(z, self.schedule.prior_std)

    def endpoint(self, phi: Array) -> Array:
        """The state as a configuration: `group.canonical` (wrapped into `(−π, π]` on U(1));
        `solve` already returns canonical states."""
        return self.group.canonical(phi)

    def solver_state(self, y0):
        return (y0, jnp.zeros((), _real_dtype(y0)))

    def solver_terms(self, brownian, y0, probe_key=None):
        return self.terms(key=probe_key, shape=jnp.shape(y0))

    def canonical(self, ys):
        phi, delta = ys
        return self.group.canonical(phi), delta

    def drift(self, t, y, args):
        return self.velocity(t, y)

    def noise_shape(self, y):
        return jnp.shape(y[0])

    def terms(
        self, brownian=None, *, key: PRNGKeyArray | None = None, shape=None
    ) -> diffrax.AbstractTerm:
        """`ODETerm` on `(φ, Δ)`: the increment of `φ` in the state representation and
        `∇·v` (`0` with `divergence="none"`, and on matrix groups, whose `Δ` is the solver's:
        `LogDetSolver`). `key` and `shape` draw the Hutchinson probe."""
        if self.divergence == "none" or self.step_jacobian:

            def div(t, phi):
                return jnp.zeros((), _real_dtype(phi))
        elif self.divergence == "hutchinson":
            if key is None or shape is None:
                raise ValueError("divergence='hutchinson' needs `key` and `shape` for its probe.")
            probe = jr.rademacher(key, shape).astype(float)

            def div(t, phi):
                return divergence_hutchinson(lambda x: self.velocity(t, x), phi, probe)
        elif self.one_pass_divergence:

            def div(t, phi):
                return self.velocity_divergence(t, phi)
        else:

            def div(t, phi):
                return divergence_exact(lambda x: self.velocity(t, x), phi)

        def vf(t, y, args):
            phi, _ = y
            return self.group.algebra(self.velocity(t, phi)), div(t, phi)

        return diffrax.ODETerm(vf)


class Langevin(AbstractDynamics):
    r"""Langevin dynamics / stochastic quantization `dφ = −K ∇S(φ) dt + √(2K) dW`
    (Parisi & Wu 1981; Wang, Aarts, Zhou 2023, Eq. 2 with α = 1). Stationary: `e^{−S}`.

    - `action`: `S(φ) → scalar`. Its gradient is `action.force` when the action provides one,
      else autodiff (`group.grad`, the Lie derivative `∇^a S` on a group).
    - `force`: give `∇S` directly instead (algebra coordinates).
    - `kernel`: `None` (K = 1), a positive scalar/array (elementwise K) or any
      `AbstractKernel` (e.g. `FourierKernel`, the same object FA-HMC takes).

    On SU(N) the increment `exp(i(−∇^a S dt + √2 dW^a) T^a)` is applied by the geometric
    Euler–Maruyama solver; it samples the Haar-weighted `e^{−S} dU`.
    """

    force: Callable
    group: AbstractGroup
    kernel: AbstractKernel
    config_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(
        self,
        action: Callable | None = None,
        *,
        force: Callable | None = None,
        group: AbstractGroup = Euclidean(),
        kernel: AbstractKernel | ArrayLike | None = None,
    ):
        if force is None:
            if action is None:
                raise ValueError("Langevin needs an `action` S(φ) or a `force` ∇S(φ).")
            if not callable(action):
                raise TypeError("`action` must be a callable S(φ) returning a scalar.")
            action = as_action(action, group=group)
            force = action.force
        kernel = as_kernel(kernel)
        if kernel.needs_flat and not group.is_vector_space:
            raise ValueError(f"A {type(kernel).__name__} needs a Euclidean (scalar) field.")
        self.force = force
        self.group = group
        self.kernel = kernel
        known = isinstance(action, AbstractAction) and not isinstance(action, FunctionAction)
        self.config_shape = tuple(action.config_shape) if known else None

    def check_state(self, y0, name: str = "y0") -> None:
        """The group's checks, and the action's configuration shape (after any batch axes)."""
        super().check_state(y0, name)
        shape, cs = tuple(jnp.shape(y0)), self.config_shape
        if cs is not None and (len(shape) < len(cs) or shape[len(shape) - len(cs) :] != cs):
            raise ValueError(
                f"`{name}` has shape {shape}, but the action's configurations have shape {cs} "
                "(a batch of them may add leading axes)."
            )

    def drift(self, t, y, args):
        return -self.kernel(self.force(y))

    def noise_scale(self, t, y, args):
        return self.kernel.langevin_noise()
