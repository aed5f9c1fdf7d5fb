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

Paths are integrated by Euler–Maruyama (diffrax `Euler` on one custom term) on `n_steps` equal
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

from .groups import Euclidean
from .theories.base import AbstractAction

__all__ = [
    "OptimalSQ",
    "OSQPaths",
    "REFERENCES",
    "PRIORS",
    "fisher_from_marginals",
    "fisher_information",
    "fokker_planck_1d",
    "log_z_estimate",
    "sq_reference_marginal",
]

REFERENCES = ("sq", "brownian", "ou")
LOSSES = ("kl", "log_variance")
PRIORS = ("gaussian", "target", "ensemble")
TERMINALS = ("plain", "corrected")


class OSQPaths(eqx.Module):
    """Generated endpoints with their path functionals (leading batch axis when vmapped)."""

    phi: Array  # φ_T (or the saved states, time first, when `ts` is given)
    running_cost: Array  # C = ½∫ g⁻²|u − f|² dt
    martingale: Array  # M = ∫ g⁻¹ (u − f)·dW
    phi0: Array


class _ControlledTerm(diffrax.AbstractTerm):
    """`d(φ, C, M) = (u dt + g dW, ½g⁻²|c|² dt, g⁻¹ c·dW)` with `c = u − f`, the increments
    `dW` read from a grid of standard normals (one per step)."""

    osq: OptimalSQ
    noise: Array  # (n_steps, *shape)
    dt: float
    detach: bool = eqx.field(static=True, default=False)

    def vf(self, t, y, args):
        return self.osq.drift_and_control(t, y[0])

    def contr(self, t0, t1, **kwargs):
        i = jnp.clip(jnp.round(t0 / self.dt).astype(jnp.int32), 0, self.noise.shape[0] - 1)
        h = t1 - t0
        return h, jnp.sqrt(h) * self.noise[i]

    def prod(self, vf, control):
        (u, c), (h, dw) = vf, control
        g = self.osq.g
        if self.detach:  # path driven by ū = stop_gradient(u); C̃ = ∫g⁻²[c·c̄ − ½|c|²]dt
            cb = jax.lax.stop_gradient(c)
            dc = (jnp.sum(c * cb) - 0.5 * jnp.sum(c**2)) / g**2 * h
            return jax.lax.stop_gradient(u) * h + g * dw, dc, jnp.sum(c * dw) / g
        return u * h + g * dw, 0.5 * jnp.sum(c**2) / g**2 * h, jnp.sum(c * dw) / g


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
    reference: str = eqx.field(static=True)
    terminal: str = eqx.field(static=True)
    prior: str = eqx.field(static=True)
    prior_mean: float = eqx.field(static=True)
    prior_std: float = eqx.field(static=True)
    ou_std: float = eqx.field(static=True)
    loss_kind: str = eqx.field(static=True)

    def __init__(
        self,
        action: AbstractAction,
        residual: Callable,
        *,
        g: float = float(np.sqrt(2.0)),
        T: float = 1.0,
        reference: str = "sq",
        terminal: str = "plain",
        prior: str = "gaussian",
        prior_mean: float = 0.0,
        prior_std: float = 1.0,
        ou_std: float | None = None,
        loss: str = "kl",
    ):
        if not isinstance(getattr(action, "group", Euclidean()), Euclidean):
            raise ValueError("optimal SQ is implemented for scalar (Euclidean) fields.")
        if reference not in REFERENCES:
            raise ValueError(f"`reference` must be one of {REFERENCES}, got {reference!r}.")
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
        if prior == "gaussian" and prior_std == 0 and reference == "sq":
            raise ValueError("a point prior (prior_std = 0) needs reference 'brownian' or 'ou'.")
        ou_std = prior_std if ou_std is None else float(ou_std)
        if reference == "ou" and not ou_std > 0:
            raise ValueError("reference 'ou' needs `ou_std` > 0 (default: prior_std).")
        self.action, self.residual = action, residual
        self.g, self.T = float(g), float(T)
        self.reference, self.terminal, self.prior = reference, terminal, prior
        self.loss_kind = loss
        self.prior_mean, self.prior_std, self.ou_std = (
            float(prior_mean),
            float(prior_std),
            float(ou_std),
        )
        if terminal == "corrected":
            self._check_reference_marginal("the corrected terminal cost")

    # --- the dynamics -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.action.config_shape)

    def reference_drift(self, phi: Float[Array, "..."]) -> Float[Array, "..."]:
        """`f(φ)` of the reference process."""
        if self.reference == "sq":
            return -self.action.force(phi)
        if self.reference == "brownian":
            return jnp.zeros_like(phi)
        return -(self.g**2) * (phi - self.prior_mean) / (2 * self.ou_std**2)

    def drift_and_control(self, t, phi):
        """`(u_θ, u_θ − f)` with `u_θ = −δS/δφ + v_θ(φ, t)`."""
        force = -self.action.force(phi)
        u = force + self.residual(t, phi)
        c = u - force if self.reference == "sq" else u - self.reference_drift(phi)
        return u, c

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
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}.")
        k0, k1 = jr.split(key)
        phi0 = self.sample_prior(k0) if phi0 is None else jnp.asarray(phi0, float)
        noise = jr.normal(k1, (n_steps,) + phi0.shape, phi0.dtype)
        term = _ControlledTerm(self, noise, self.T / n_steps, detach)
        zero = jnp.zeros((), phi0.dtype)
        saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=jnp.asarray(ts))
        sol = diffrax.diffeqsolve(
            term,
            diffrax.Euler(),
            0.0,
            self.T,
            None,
            (phi0, zero, zero),
            saveat=saveat,
            stepsize_controller=diffrax.StepTo(ts=jnp.linspace(0.0, self.T, n_steps + 1)),
            max_steps=n_steps,
            adjoint=diffrax.RecursiveCheckpointAdjoint(),
        )
        phi, cost, mart = sol.ys
        if ts is None:
            phi, cost, mart = phi[-1], cost[-1], mart[-1]
        return OSQPaths(phi, cost, mart, phi0)

    # --- costs and weights --------------------------------------------------------------------
    @property
    def _sq_on_grid(self) -> bool:
        """SQ reference from a Gaussian π on one site: `q_T^ref` by Chapman–Kolmogorov."""
        return (
            self.reference == "sq"
            and self.prior == "gaussian"
            and int(np.prod(self.shape, dtype=int)) == 1
        )

    def _check_reference_marginal(self, what):
        ok = (
            (self.reference in ("brownian", "ou") and self.prior == "gaussian")
            or (self.reference == "sq" and self.prior == "target")
            or self._sq_on_grid
        )
        if not ok:
            raise ValueError(
                f"{what} needs the reference marginal q_T^ref: use reference 'brownian' or "
                f"'ou' with a Gaussian prior, reference 'sq' with prior 'target', or reference "
                f"'sq' with a Gaussian prior on a single-site theory (got reference "
                f"{self.reference!r}, prior {self.prior!r}, shape {self.shape})."
            )

    def reference_log_marginal(self, phi: Float[Array, "..."], n_steps: int) -> Float[Array, ""]:
        r"""`log q_T^ref(φ)` of the discrete (Euler–Maruyama, `n_steps`) reference chain:
        Brownian `N(m, s² + g²T)`; OU `N(m, r^K s² + g²h (1−r^K)/(1−r))`, `r = (1 − ah)²`,
        `a = g²/(2 s_ou²)`; SQ from the target: `−S(φ)` (up to the unknown `−log Z`); SQ from
        a Gaussian on one site: `sq_reference_marginal`."""
        self._check_reference_marginal("log q_T^ref")
        if self._sq_on_grid:
            return sq_reference_marginal(self, n_steps)(jnp.reshape(phi, ()))
        if self.reference == "sq":
            return -self.action(phi)
        h = self.T / n_steps
        s2 = self.prior_std**2
        if self.reference == "brownian":
            var = s2 + self.g**2 * self.T
        else:
            a = self.g**2 / (2 * self.ou_std**2)
            r = (1 - a * h) ** 2
            var = r**n_steps * s2 + self.g**2 * h * (1 - r**n_steps) / (1 - r)
        d = phi - self.prior_mean
        return jnp.sum(-0.5 * d**2 / var - 0.5 * jnp.log(2 * jnp.pi * var))

    def terminal_cost(self, phi: Float[Array, "..."], n_steps: int) -> Float[Array, ""]:
        """`S(φ_T)` (plain) or `S(φ_T) + log q_T^ref(φ_T)` (corrected; identically 0 for the SQ
        reference started at the target)."""
        if self.terminal == "plain":
            return self.action(phi)
        if self.reference == "sq" and self.prior == "target":  # S + log q_T^ref = −log Z
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
        return (self.reference in ("brownian", "ou") and self.prior == "gaussian") or (
            self._sq_on_grid
        )


def log_z_estimate(log_w: Float[Array, " n"]) -> tuple[float, float]:
    """`log Z ≈ log mean(w)` with its delta-method error `std(w)/(√n mean(w))`."""
    lw = np.asarray(log_w, np.float64)
    w = np.exp(lw - lw.max())
    n = lw.shape[0]
    return float(np.log(w.mean()) + lw.max()), float(w.std(ddof=1) / (np.sqrt(n) * w.mean()))


# --- the discrete SQ reference marginal (one site) -------------------------------------------
_SQ_TABLES: dict = {}


def sq_reference_marginal(osq: OptimalSQ, n_steps: int, points_per_width: int = 8) -> Callable:
    r"""`log q_T^ref` of the *discrete* SQ reference chain on one site,
    `φ_{k+1} = φ_k − h S'(φ_k) + g√h ξ_k`, `h = T/n_steps`, `φ_0 ~ N(m, s²)`, as a function of
    `φ`. Chapman–Kolmogorov on a uniform grid `x_i` (spacing `g√h/points_per_width`, range
    `m ± (10 s + 10 g√T)`): `q_{k+1}(x_j) = Σ_i Δx q_k(x_i) N(x_j; x_i − hS'(x_i), g²h)` (a
    banded matrix, ±12 kernel widths), and the last step is evaluated at the point itself,
    `log q_K(φ) = logsumexp_i[log(Δx q_{K−1}(x_i)) + log N(φ; x_i − hS'(x_i), g²h)]`, so it
    is smooth and differentiable in φ. The integrands are Gaussians resolved by
    `points_per_width` points, where the trapezoid rule is spectrally accurate: the weights
    `log w` are exact for the discrete chain to ~1e-6 (checked against the OU closed form).
    Tables are cached per (action, g, T, π, n_steps)."""
    from scipy import sparse

    if not osq.prior_std > 0:
        raise ValueError("the SQ reference marginal needs a Gaussian prior with std > 0.")
    action = osq.action
    key = (
        action.name,
        tuple(sorted(action.params.items())),
        osq.g,
        osq.T,
        osq.prior_mean,
        osq.prior_std,
        int(n_steps),
        points_per_width,
    )
    if key not in _SQ_TABLES:
        h = osq.T / n_steps
        width = osq.g * np.sqrt(h)
        half = 10 * osq.prior_std + 10 * osq.g * np.sqrt(osq.T)
        dx = width / points_per_width
        x = osq.prior_mean + np.arange(-half, half + dx / 2, dx)
        with jax.ensure_compile_time_eval():
            force = jax.vmap(lambda p: action.force(jnp.reshape(p, osq.shape)))(jnp.asarray(x))
            mu = x - h * np.asarray(force, np.float64).reshape(-1)
        band = 12 * points_per_width
        rows, cols, vals = [], [], []
        offs = np.arange(-band, band + 1)
        centre = np.rint((mu - x[0]) / dx).astype(int)
        for o in offs:  # a loop over band offsets (≈ 200), vectorised over the grid
            j = centre + o
            ok = (j >= 0) & (j < x.size)
            i = np.nonzero(ok)[0]
            z = (x[j[ok]] - mu[ok]) / width
            rows.append(j[ok])
            cols.append(i)
            vals.append(np.exp(-0.5 * z**2) / (np.sqrt(2 * np.pi) * width) * dx)
        K = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(x.size, x.size),
        )
        q = np.exp(-0.5 * ((x - osq.prior_mean) / osq.prior_std) ** 2)
        q /= np.sqrt(2 * np.pi) * osq.prior_std
        for _ in range(n_steps - 1):  # a loop over time steps of a 1-D table, not of a field
            q = K @ q
        _SQ_TABLES[key] = (
            np.log(np.maximum(q * dx, 1e-300)),
            mu,
            width,
        )
    log_mass, mu, width = _SQ_TABLES[key]

    def log_q(phi):
        z = (phi - jnp.asarray(mu, phi.dtype)) / width
        return jax.nn.logsumexp(jnp.asarray(log_mass, phi.dtype) - 0.5 * z**2) - jnp.log(
            jnp.sqrt(2 * jnp.pi) * width
        ).astype(phi.dtype)

    return log_q


# --- Fokker–Planck on a grid (0-dim): marginals and the Fisher-information curve -------------
def fokker_planck_1d(
    osq: OptimalSQ,
    ts: Float[Array, " k"],
    x_max: float = 6.0,
    n_grid: int = 601,
    controlled: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Marginals `q_t` of a 0-dim process on the grid `[−x_max, x_max]`: the Fokker–Planck
    equation `∂_t q = −∂_x(u q) + (g²/2) ∂_x² q` in conservative finite-volume form (zero flux at
    the ends, upwind-free central fluxes), integrated by diffrax (Tsit5, adaptive) from the
    Gaussian prior. `controlled=False` evolves the reference process instead. Returns
    `(x, q)` with `q` of shape `(len(ts), n_grid)`, each row normalised on the grid."""
    if osq.shape != ():
        raise ValueError("the Fokker–Planck grid is for 0-dimensional theories.")
    if osq.prior != "gaussian" or osq.prior_std <= 0:
        raise ValueError("the Fokker–Planck grid starts from a Gaussian prior with std > 0.")
    x = jnp.linspace(-x_max, x_max, n_grid)
    dx = x[1] - x[0]
    faces = 0.5 * (x[1:] + x[:-1])
    g2 = osq.g**2

    def drift(t, xs):
        if controlled:
            return jax.vmap(lambda p: osq.drift_and_control(t, p)[0])(xs)
        return jax.vmap(osq.reference_drift)(xs)

    def rhs(t, q, args):
        qf = 0.5 * (q[1:] + q[:-1])
        flux = drift(t, faces) * qf - 0.5 * g2 * (q[1:] - q[:-1]) / dx
        flux = jnp.concatenate([jnp.zeros(1), flux, jnp.zeros(1)])
        return -(flux[1:] - flux[:-1]) / dx

    q0 = jnp.exp(-0.5 * ((x - osq.prior_mean) / osq.prior_std) ** 2)
    q0 = q0 / (jnp.sum(q0) * dx)
    ts = jnp.asarray(ts, float)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(rhs),
        diffrax.Tsit5(),
        0.0,
        float(ts[-1]),
        1e-4,
        q0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-9),
        max_steps=1_000_000,
    )
    q = np.clip(np.asarray(sol.ys, np.float64), 0, None)
    q /= q.sum(1, keepdims=True) * float(dx)
    return np.asarray(x), q


def fisher_information(
    osq: OptimalSQ,
    ts: Float[Array, " k"],
    normalisation: float = 1.0,
    **grid,
) -> np.ndarray:
    r"""The Fisher-information curve `c(t) = 𝒩 E_{q_t}[|∂_φ ln q_t|²] = 𝒩 ∫ (∂_φ q_t)²/q_t dφ`
    along the trained process (0-dim), with `q_t` from `fokker_planck_1d`. `𝒩 = normalisation`.
    Use `fisher_from_marginals` when the marginals are already at hand."""
    return normalisation * fisher_from_marginals(*fokker_planck_1d(osq, ts, **grid))


def fisher_from_marginals(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """`∫ (∂_φ q)²/q dφ` for each row of grid densities `q` on the uniform grid `x` (central
    differences for `∂_φ q`; cells with `q < 10⁻¹²` of the row's peak left out)."""
    dx = x[1] - x[0]
    dq = np.gradient(q, dx, axis=1)
    mask = q > 1e-12 * q.max(1, keepdims=True)
    integrand = np.where(mask, dq**2 / np.where(mask, q, 1.0), 0.0)
    return integrand.sum(1) * dx
