r"""Optimal stochastic quantization (OSQ): a finite-time sampler that learns a Doob residual force
and needs no training data (talk "DM as SQ on the lattice", 2026, the "Optimal Stochastic
Quantization" slides).

Controlled dynamics, `0 ≤ t ≤ T`, from an initial distribution π:

    dφ = u_θ(φ, t) dt + g dW,        u_θ = −δS/δφ + v_θ(φ, t).

Reference process `P_ref: dφ = f(φ) dt + g dW`, `φ_0 ~ π`, with `f` one of

- `"sq"`: `f = −δS/δφ`, stochastic quantization itself (then the running cost is `|v_θ|²`);
- `"brownian"`: `f = 0` (the Föllmer / path-integral-sampler reference; `q_T^ref` Gaussian);
- `"ou"`: `f = −g²(φ − m)/(2s²)`, the Ornstein–Uhlenbeck process that keeps π = N(m, s²).

Objective (path KL to the reference plus a terminal cost; Girsanov for the KL):

    L(θ) = E_{P_θ}[ ½ ∫_0^T g⁻² |u_θ − f|² dt + Φ(φ_T) ],

with `Φ = S` ("plain", the talk's choice) or `Φ = S + log q_T^ref` ("corrected"). The optimal
path measure is `P* ∝ P_ref e^{−Φ(φ_T)}` (Boué–Dupuis / Doob: `v* = g² ∇ log h_t`,
`h_t(φ) = E_ref[e^{−Φ(φ_T)} | φ_t = φ]`), so its terminal marginal is

- plain:      `q_T* ∝ q_T^ref e^{−S}` — a *tilted* distribution; with the SQ reference and
  `g² = 2` started at the target it is `∝ e^{−2S}`;
- corrected:  `q_T* ∝ e^{−S}`, exactly the target (needs `q_T^ref`, known for the Brownian and
  OU references from a Gaussian π, and for the SQ reference started at the target, where it is
  the target itself and the corrected cost is constant: the optimal residual is zero). For a
  single-site (0-dim) theory the SQ reference from a Gaussian π is also allowed: its discrete
  marginal is computed by Chapman–Kolmogorov on a grid (`sq_reference_marginal`). The running
  cost is then `½∫g⁻²|v_θ|²` alone and the reference already carries the force, so the residual
  only has to move mass between the wells that Langevin dynamics cannot cross in time T.

Paths are integrated by Euler–Maruyama (`ControlledSQ`, an augmented-state dynamics on
`(φ, C, M)`, solved by `sq.solve` with diffrax `Euler` and a `GridBrownianPath`) on `n_steps` equal
steps, with the running cost `C = ½∫g⁻²|u−f|²dt` and the martingale `M = ∫g⁻¹(u−f)·dW`
accumulated in the same solve. For Euler–Maruyama `C + M` is *exactly* the log-likelihood ratio
of the discrete controlled and reference chains, and `q_T^ref` is the exact marginal of the
discrete reference chain, so the importance weights

    log w = −(C + M) − S(φ_T) − log q_T^ref(φ_T),       E_θ[w] = Z,

are unbiased at any step size (self-normalised estimates, ESS, `log Z`; IMH with these weights
is an exact chain). Gradients flow through the solve by diffrax's `RecursiveCheckpointAdjoint`
(discretise-then-optimise: exact gradients of the discrete loss, memory by checkpointing); the
noise is drawn up front on the step grid, so recomputed steps see the same increments.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import integer
from ..dynamics import AbstractDynamics
from ..groups import AbstractGroup, Euclidean
from ..solvers import solve
from ..stats import log_z_estimate
from ..theories.base import AbstractAction
from ..theories.function import as_action
from .references import REFERENCES, AbstractReference, OUReference

__all__ = [
    "ControlledSQ",
    "GridBrownianPath",
    "OptimalSQ",
    "OSQPaths",
    "PRIORS",
    "log_z_estimate",
]

LOSSES = ("kl", "log_variance")
PRIORS = ("gaussian", "target", "ensemble")
TERMINALS = ("plain", "corrected")


class OSQPaths(eqx.Module):
    """Generated endpoints with their path functionals (leading batch axis when vmapped)."""

    phi: Array  # φ_T (or the saved states, time first, when `ts` is given)
    running_cost: Array  # C = ½∫ g⁻²|u − f|² dt
    martingale: Array  # M = ∫ g⁻¹ (u − f)·dW
    phi0: Array


class GridBrownianPath(diffrax.AbstractBrownianPath):
    """Brownian increments read from a grid of standard normals drawn up front, one per step of
    a fixed grid of width `dt`: `W(t1) − W(t0) = √(t1 − t0) ξ_i`, `i = round(t0/dt)`. A pure
    function of the grid, so recomputed steps (checkpointed reverse-mode autodiff) see the
    same increments."""

    noise: Array  # (n_steps, *shape)
    dt: float
    levy_area: type = eqx.field(static=True)

    def __init__(self, noise: Array, dt: float):
        self.noise, self.dt = noise, float(dt)
        self.levy_area = diffrax.BrownianIncrement

    # diffrax declares t0/t1 as abstract variables and shows them implemented as properties;
    # pyright reads that as a variable override
    @property
    def t0(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return 0.0

    @property
    def t1(self):  # pyright: ignore[reportIncompatibleVariableOverride]
        return self.dt * self.noise.shape[0]

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        i = jnp.clip(jnp.round(t0 / self.dt).astype(jnp.int32), 0, self.noise.shape[0] - 1)
        return jnp.sqrt(t1 - t0) * self.noise[i]


class _ControlledTerm(diffrax.AbstractTerm):
    """`d(φ, C, M) = (u dt + g dW, ½g⁻²|c|² dt, g⁻¹ c·dW)` with `c = u − f`."""

    osq: OptimalSQ
    brownian: diffrax.AbstractBrownianPath
    detach: bool = eqx.field(static=True, default=False)

    def vf(self, t, y, args):
        return self.osq.drift_and_control(t, y[0])

    def contr(self, t0, t1, **kwargs):
        return t1 - t0, self.brownian.evaluate(t0, t1)

    def prod(self, vf, control):
        (u, c), (h, dw) = vf, control
        g = self.osq.g
        if self.detach:  # path driven by ū = stop_gradient(u); C̃ = ∫g⁻²[c·c̄ − ½|c|²]dt
            cb = jax.lax.stop_gradient(c)
            dc = (jnp.sum(c * cb) - 0.5 * jnp.sum(c**2)) / g**2 * h
            return jax.lax.stop_gradient(u) * h + g * dw, dc, jnp.sum(c * dw) / g
        return u * h + g * dw, 0.5 * jnp.sum(c**2) / g**2 * h, jnp.sum(c * dw) / g


class ControlledSQ(AbstractDynamics):
    r"""The controlled SQ process `dφ = u_θ dt + g dW` as a dynamics on the augmented state
    `(φ, C, M)` (running cost and Girsanov martingale in the same solve), for `sq.solve`."""

    osq: OptimalSQ
    detach: bool = eqx.field(static=True)
    group: AbstractGroup

    def __init__(self, osq: OptimalSQ, detach: bool = False):
        self.osq, self.detach, self.group = osq, bool(detach), Euclidean()

    def drift(self, t, y, args, /):
        return self.osq.drift_and_control(t, y)[0]

    def noise_scale(self, t, y, args, /):
        return self.osq.g

    def solver_state(self, y0):
        zero = jnp.zeros((), y0.dtype)
        return (y0, zero, zero)

    def solver_terms(self, brownian, y0, probe_key=None):
        return _ControlledTerm(self.osq, brownian, self.detach)

    def canonical(self, ys):
        return ys


class OptimalSQ(eqx.Module):
    r"""The controlled SQ process of one action and residual network `v_θ(t, φ)`.

    `prior_mean`, `prior_std` define π = N(m, s²) per site (`prior="gaussian"`; `s = 0` is the
    point `m`, allowed for the Brownian and OU references); `prior="target"` means the initial
    states are given and drawn from `e^{−S}`; `prior="ensemble"` any given initial states.
    """

    action: AbstractAction
    residual: Callable
    g: float = eqx.field(static=True)
    T: float = eqx.field(static=True)
    reference: AbstractReference
    terminal: str = eqx.field(static=True)
    prior: str = eqx.field(static=True)
    prior_mean: float = eqx.field(static=True)
    prior_std: float = eqx.field(static=True)
    loss_kind: str = eqx.field(static=True)

    def __init__(
        self,
        action: AbstractAction,
        residual: Callable,
        *,
        g: float = float(np.sqrt(2.0)),
        T: float = 1.0,
        reference: str | AbstractReference = "sq",
        terminal: str = "plain",
        prior: str = "gaussian",
        prior_mean: float = 0.0,
        prior_std: float = 1.0,
        ou_std: float | None = None,
        loss: str = "kl",
    ):
        action = as_action(action)
        if not action.group.is_vector_space:
            raise ValueError("optimal SQ is implemented for scalar (Euclidean) fields.")
        if isinstance(reference, str):
            if reference not in REFERENCES:
                raise ValueError(
                    f"`reference` must be one of {REFERENCES.names()}, got {reference!r}."
                )
            reference = OUReference(ou_std) if reference == "ou" else REFERENCES[reference]()
        elif ou_std is not None:
            raise ValueError("`ou_std` goes with reference='ou'; set it on the reference object.")
        if terminal not in TERMINALS:
            raise ValueError(f"`terminal` must be one of {TERMINALS}, got {terminal!r}.")
        if prior not in PRIORS:
            raise ValueError(f"`prior` must be one of {PRIORS}, got {prior!r}.")
        if loss not in LOSSES:
            raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}.")
        for name, v in (("g", g), ("T", T)):
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"`{name}` must be a finite number > 0, got {v!r}.")
        if not (np.isfinite(prior_std) and prior_std >= 0):
            raise ValueError(f"`prior_std` must be ≥ 0, got {prior_std!r}.")
        self.action, self.residual = action, residual
        self.g, self.T = float(g), float(T)
        self.reference, self.terminal, self.prior = reference, terminal, prior
        self.loss_kind = loss
        self.prior_mean, self.prior_std = float(prior_mean), float(prior_std)
        reference.check(self)
        if terminal == "corrected":
            self._check_reference_marginal("the corrected terminal cost")

    # --- the dynamics -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.action.config_shape)

    def reference_drift(self, phi: Float[Array, "..."]) -> Float[Array, "..."]:
        """`f(φ)` of the reference process."""
        return self.reference.drift(self, phi)

    def drift_and_control(self, t, phi):
        """`(u_θ, u_θ − f)` with `u_θ = −δS/δφ + v_θ(φ, t)`."""
        force = -self.action.force(phi)
        u = force + self.residual(t, phi)
        return u, u - self.reference_drift(phi)

    def sample_prior(self, key: PRNGKeyArray) -> Float[Array, "..."]:
        if self.prior != "gaussian":
            raise ValueError(f"prior {self.prior!r}: pass the initial states `phi0`.")
        return self.prior_mean + self.prior_std * jr.normal(key, self.shape)

    def simulate(
        self,
        key: PRNGKeyArray,
        n_steps: int,
        phi0: Float[Array, "..."] | None = None,
        ts: Float[Array, " k"] | None = None,
        detach: bool = False,
    ) -> OSQPaths:
        """One path by Euler–Maruyama on `n_steps` equal steps; `vmap` over keys (and `phi0`).
        `ts` saves the states at those times (for figures) instead of only `φ_T`. `detach=True`
        (the log-variance loss) drives the path by `stop_gradient(u)`: the values are the same,
        and θ enters only through the integrands of `C + M` (Nüsken & Richter 2021)."""
        n_steps = integer(n_steps, "n_steps")
        k0, k1 = jr.split(key)
        phi0 = self.sample_prior(k0) if phi0 is None else jnp.asarray(phi0, float)
        noise = jr.normal(k1, (n_steps,) + phi0.shape, phi0.dtype)
        sol = solve(
            ControlledSQ(self, detach),
            phi0,
            0.0,
            self.T,
            key=k1,
            n_steps=n_steps,
            ts=ts,
            brownian=GridBrownianPath(noise, self.T / n_steps),
            solver=diffrax.Euler(),
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
            check_finite=False,  # training's NaN guard stops on non-finite losses instead
        )
        phi, cost, mart = sol.ys
        if ts is None:
            phi, cost, mart = phi[-1], cost[-1], mart[-1]
        return OSQPaths(phi, cost, mart, phi0)

    # --- costs and weights --------------------------------------------------------------------
    def _check_reference_marginal(self, what):
        if not self.reference.marginal_known(self):
            raise ValueError(
                f"{what} needs the reference marginal q_T^ref: use reference 'brownian' or "
                f"'ou' with a Gaussian prior, reference 'sq' with prior 'target', or reference "
                f"'sq' with a Gaussian prior on a single-site theory (got reference "
                f"{self.reference.name!r}, prior {self.prior!r}, shape {self.shape})."
            )

    def reference_log_marginal(self, phi: Float[Array, "..."], n_steps: int) -> Float[Array, ""]:
        r"""`log q_T^ref(φ)` of the discrete (Euler–Maruyama, `n_steps`) reference chain (see
        the reference classes: Brownian and OU in closed form, SQ from the target `−S(φ)` up to
        `−log Z`, SQ from a Gaussian on one site by Chapman–Kolmogorov)."""
        self._check_reference_marginal("log q_T^ref")
        return self.reference.log_marginal(self, phi, n_steps)

    def terminal_cost(self, phi: Float[Array, "..."], n_steps: int) -> Float[Array, ""]:
        """`S(φ_T)` (plain) or `S(φ_T) + log q_T^ref(φ_T)` (corrected; identically 0 for the SQ
        reference started at the target)."""
        if self.terminal == "plain":
            return self.action(phi)
        if self.reference.corrected_cost_is_constant(self):  # S + log q_T^ref = −log Z
            return jnp.zeros((), phi.dtype)
        return self.action(phi) + self.reference_log_marginal(phi, n_steps)

    def loss(
        self,
        key: PRNGKeyArray,
        batch: int,
        n_steps: int,
        phi0: Float[Array, "batch ..."] | None = None,
    ) -> Float[Array, ""]:
        r"""Monte Carlo estimate of the training loss over `batch` paths.

        - `loss="kl"`: `L(θ) = E[½∫g⁻²|u−f|² dt + Φ(φ_T)]`, the path KL to `P*` up to a
          constant, differentiated through the solve (the martingale `M` has mean zero and is
          left out: it only adds variance).
        - `loss="log_variance"`: `Var[log dP^u/dP_ref + Φ(φ_T)]` over paths driven by the
          detached drift `ū` (Nüsken & Richter 2021, "log-variance loss"): it is zero exactly at
          the optimal control, where `C + M + Φ ≡ −log Z`, so its gradient noise vanishes
          there, unlike the KL's. Numerically it is the variance of the log-weights
          (`−log w = C + M + Φ` for the corrected cost): it maximises the ESS directly."""
        keys = jr.split(key, batch)
        detach = self.loss_kind == "log_variance"
        if phi0 is None:
            paths = jax.vmap(lambda k: self.simulate(k, n_steps, detach=detach))(keys)
        else:
            paths = jax.vmap(lambda k, p: self.simulate(k, n_steps, p, detach=detach))(keys, phi0)
        term = jax.vmap(lambda p: self.terminal_cost(p, n_steps))(paths.phi)
        if detach:
            return jnp.var(paths.running_cost + paths.martingale + term)
        return jnp.mean(paths.running_cost + term)

    def log_weights(self, paths: OSQPaths, n_steps: int) -> Float[Array, " n"]:
        r"""Girsanov log-weights of generated paths against the target path measure
        `P* = P_ref e^{−S(φ_T)} / (Z q_T^ref(φ_T))`:
        `log w = −(C + M) − S(φ_T) − log q_T^ref(φ_T)`, with `E[w] = Z` (for the SQ reference
        from the target, `Z` cancels and only ratios are meaningful)."""
        self._check_reference_marginal("Girsanov weights against the target")
        s = jax.vmap(self.action)(paths.phi)
        lq = jax.vmap(lambda p: self.reference_log_marginal(p, n_steps))(paths.phi)
        return -(paths.running_cost + paths.martingale) - s - lq

    @property
    def has_log_z(self) -> bool:
        """Whether `log_weights` estimate `log Z` (normalised reference marginal)."""
        return self.reference.normalised(self)
