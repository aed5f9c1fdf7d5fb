r"""The Wilson (gradient) flow of SU(N)/U(N) lattice gauge fields, inside diffrax.

The flow (Lüscher, JHEP 08 (2010) 071, Eq. 1.3 / 2.2)

    dV_μ(x)/dt = −g0² ∂_{x,μ} S_W(V) V_μ(x),   V_μ(x)|_{t=0} = U_μ(x),

with the Wilson action `g0² S_W = 2 Σ_p Re tr(1 − V_p)` (independent of β = 2N/g0²), in
sqdiff's algebra coordinates `V → exp(i X^a T^a) V` is `X^a = −(2N/β) ∇^a S_β(V)`: the Langevin
drift of the Wilson theory without noise, rescaled. A weak plane wave of momentum p decays as
`e^{−p̂² t}` (`p̂² = Σ_μ 4 sin²(p_μ/2)`), which the tests check.

`LuscherRK3` is the third-order commutator-free (Crouch–Grossmann type) Runge–Kutta scheme of
Lüscher, Commun. Math. Phys. 293 (2010) 899, Eq. (C.1)–(C.3) (JHEP 08 (2010) 071, App. C):

    W1 = exp(¼ Z0) W0,
    W2 = exp(8/9 Z1 − 17/36 Z0) W1,
    V(t+ε) = exp(¾ Z2 − 8/9 Z1 + 17/36 Z0) W2,      Z_i = ε Z(W_i),

as a diffrax solver (like `GeometricEulerMaruyama`). For adaptive steps it carries the embedded
second-order step `exp(2 Z1 − Z0) W0` (abelian weights `b = (−1, 2)` at `c = (0, ¼)`; the Magnus
commutator enters only at O(ε³), so it is second order on the group) as its error estimate.

`flow_observables` measures, at flow times `ts`, the plaquette and clover energy densities,
`dE/dt` (clover, exact: the derivative of `E` along the flow velocity), and the topological charge
(clover in 4D, `arg det` in 2D U(N)); `scale_t0` / `scale_w0` solve `t²⟨E⟩ = 0.3` and
`t d/dt(t²⟨E⟩) = 0.3` (Lüscher 2010; Borsányi et al., JHEP 09 (2012) 010).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Complex, Float

from ._checks import positive_float
from .solvers import LuscherRK3, _diffeqsolve
from .stats import GammaResult
from .theories.field_strength import (
    energy_density_clover,
    energy_density_plaquette,
    topological_charge_clover,
)
from .theories.sun import UNWilson, _WilsonGauge

__all__ = [
    "LuscherRK3",
    "analyze_flow",
    "flow_grid",
    "flow_observables",
    "flowed_primaries",
    "flow_velocity",
    "scale_t0",
    "scale_w0",
    "wilson_flow",
]


def _check_action(action) -> _WilsonGauge:
    if not isinstance(action, _WilsonGauge):
        raise TypeError(
            "the Wilson flow needs an SU(N) or U(N) Wilson gauge theory (`SUNWilson`, "
            f"`UNWilson`), got {type(action).__name__}."
        )
    return action


def flow_velocity(action: _WilsonGauge, U: Complex[Array, "d *lattice N N"]) -> Array:
    r"""`X^a = −g0² ∇^a S_W(U) = −(2N/β) ∇^a S_β(U)`: the flow velocity in algebra coordinates
    (shape `(d, L, …, L, n_generators)`).

    Args:
        action: the Wilson gauge theory (its group and lattice; β drops out).
        U: links `(d, L, …, L, N, N)`.
    """
    action = _check_action(action)
    return -(2 * action.N / action.beta) * action.force(U)


class _FlowField(eqx.Module):
    """The flow's vector field `i X^a T^a` (a module, so that compiled solves are reused)."""

    action: _WilsonGauge

    def __call__(self, t, U, args):
        return self.action.group.algebra(flow_velocity(self.action, U))


class _Flowed(eqx.Module):
    """`SaveAt.fn` of `flow_observables`: the observables of the flowed field."""

    action: _WilsonGauge

    def __call__(self, t, U, args):
        return _flowed(self.action, U)


# long: the signature and the argument docs
def wilson_flow(
    action: _WilsonGauge,
    U: Complex[ArrayLike, "d *lattice N N"],
    t_max: float,
    *,
    n_steps: int | None = None,
    adaptive: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    ts: Sequence[float] | Array | None = None,
    fn: Callable | None = None,
    max_steps: int = 100_000,
) -> diffrax.Solution:
    r"""Integrate the Wilson flow `dV/dt = −g0² ∂S_W(V) V` from `t = 0` to `t_max` with
    `LuscherRK3` (Lüscher, JHEP 08 (2010) 071).

    Args:
        action: the `SUNWilson` / `UNWilson` theory of `U` (group and lattice).
        U: the links at flow time 0, `(d, L, …, L, N, N)`.
        t_max: the final flow time (lattice units, `t/a²`), > 0.
        n_steps: fixed steps `ε = t_max / n_steps` (Lüscher uses ε = 0.01–0.02).
        adaptive: adaptive steps from the embedded second-order estimate (`rtol`, `atol`)
            instead of `n_steps`.
        rtol, atol: tolerances of the adaptive controller.
        ts: flow times at which to save (default: `t_max` only).
        fn: save `fn(t, V, args)` instead of the links (e.g. observables; see
            `flow_observables`).
        max_steps: cap on the number of adaptive steps.

    Returns:
        The `diffrax.Solution`; `sol.ys` holds the saved links (or `fn` values) at `sol.ts`.
    """
    action = _check_action(action)
    t_max = positive_float(t_max, "t_max")
    group = action.group
    U = jnp.asarray(U)
    group.check_state(U, "U")
    if tuple(U.shape) != action.config_shape:
        raise ValueError(f"`U` must have shape {action.config_shape}, got {tuple(U.shape)}.")
    if adaptive == (n_steps is not None):
        raise ValueError("give either `n_steps` (fixed steps) or `adaptive=True`.")
    real = jnp.real(U).dtype
    if adaptive:
        controller = diffrax.PIDController(rtol=rtol, atol=atol)
        dt0 = t_max / 100
    else:
        if not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"`n_steps` must be a positive integer, got {n_steps!r}.")
        _check_steps(n_steps, "`n_steps`")
        # constant steps with a traced ε: one compiled program serves every n_steps ≤ 4096
        controller = diffrax.ConstantStepSize()
        dt0, max_steps = t_max / n_steps, max(4096, n_steps + 16)
    save_ts = jnp.asarray([t_max] if ts is None else ts, real)
    t_max, dt0 = jnp.asarray(t_max, real), jnp.asarray(dt0, real)
    saveat = diffrax.SaveAt(ts=save_ts, fn=fn) if fn is not None else diffrax.SaveAt(ts=save_ts)
    term = diffrax.ODETerm(_FlowField(action))
    return _diffeqsolve(term, LuscherRK3(group), 0.0, t_max, dt0, U, None, saveat, controller,
                        diffrax.ForwardMode(), max_steps)  # fmt: skip


def _topological_charge(action, U):
    """Clover Q in 4D; `UNWilson.topological_charge` (`(1/2π) Σ arg det U_01`) in 2D U(N);
    nan otherwise."""
    if action.d == 4:
        return topological_charge_clover(U, action.group.is_special)
    if isinstance(action, UNWilson) and action.d == 2:
        return action.topological_charge(U)
    return jnp.asarray(jnp.nan, jnp.real(U).dtype)


def _flowed(action, U) -> dict[str, Array]:
    """The observables saved along the flow for one configuration."""
    group = action.group
    special = group.is_special

    def e_clover(V):
        return energy_density_clover(V, special)

    X = flow_velocity(action, U)
    zero = jnp.zeros((), jnp.real(U).dtype)  # d/ds E((1 + s iX·T) U) at s = 0 is exact
    _, dE = jax.jvp(lambda s: e_clover(group.first_order_retract(U, s * X)), (zero,),
                    (jnp.ones_like(zero),))  # fmt: skip
    return {
        "E_plaq": energy_density_plaquette(U),
        "E_clov": e_clover(U),
        "dE_clov": dE,
        "Q": _topological_charge(action, U),
    }


def flow_observables(
    action: _WilsonGauge,
    U: Complex[ArrayLike, "d *lattice N N"],
    ts: Sequence[float] | Array,
    *,
    n_steps: int | None = None,
    eps: float = 0.02,
) -> dict[str, Float[Array, " n_t"]]:
    r"""Observables of one configuration along the Wilson flow, at flow times `ts`:
    `E_plaq`, `E_clov` (energy densities, `sqdiff.theories.field_strength`), `dE_clov`
    (`dE/dt` of the clover energy, by a JVP along the flow velocity) and `Q` (clover charge in
    4D, `arg det` charge in 2D U(N), nan otherwise).

    Args:
        action: the `SUNWilson` / `UNWilson` theory of `U`.
        U: links `(d, L, …, L, N, N)`.
        ts: increasing flow times ≥ 0 (the last is where the flow stops).
        n_steps: fixed RK3 steps to `max(ts)` (default: `ceil(max(ts)/eps)`).
        eps: the step size when `n_steps` is not given.
    """
    ts = np.asarray(ts, np.float64)
    if ts.ndim != 1 or ts.size == 0 or np.any(np.diff(ts) <= 0) or ts[0] < 0:
        raise ValueError(f"`ts` must be increasing flow times ≥ 0, got {ts}.")
    if ts[-1] == 0:
        return {k: v[None] for k, v in _flowed(action, jnp.asarray(U)).items()}
    if n_steps is None:
        n_steps = max(int(np.ceil(ts[-1] / positive_float(eps, "eps") - 1e-9)), 1)
    sol = wilson_flow(action, U, float(ts[-1]), n_steps=n_steps, ts=ts, fn=_Flowed(action))
    return dict(sol.ys)


def _crossing(ts, y, ref) -> float:
    """The first `t` with `y(t) = ref`, by linear interpolation on the grid (nan if none)."""
    above = np.nonzero(y >= ref)[0]
    if above.size == 0 or above[0] == 0:
        return float("nan")
    i = int(above[0])
    t0, t1, y0, y1 = ts[i - 1], ts[i], y[i - 1], y[i]
    return float(t0 + (ref - y0) * (t1 - t0) / (y1 - y0))


def scale_t0(ts: Float[ArrayLike, " n_t"], E: Float[ArrayLike, " n_t"], ref: float = 0.3) -> float:
    r"""`t0/a²`: the flow time where `t² ⟨E(t)⟩ = ref` (Lüscher 2010, Eq. 3.5; `ref = 0.3` is the
    SU(3) convention, use e.g. `0.3·(3/8)(N²−1)/N` to compare across N), by linear
    interpolation between the grid points `ts` (nan if it is not reached).

    Args:
        ts: increasing flow times.
        E: the ensemble average `⟨E(t)⟩` at `ts`.
        ref: the reference value.
    """
    ts, E = np.asarray(ts, np.float64), np.asarray(E, np.float64)
    return _crossing(ts, ts**2 * E, ref)


def scale_w0(
    ts: Float[ArrayLike, " n_t"],
    E: Float[ArrayLike, " n_t"],
    dE: Float[ArrayLike, " n_t"],
    ref: float = 0.3,
) -> float:
    r"""`w0/a`: `w0²` is the flow time where `W(t) = t d/dt (t²⟨E⟩) = 2t²⟨E⟩ + t³⟨dE/dt⟩ = ref`
    (Borsányi et al., JHEP 09 (2012) 010, Eq. 2.2), by linear interpolation in `t`.

    Args:
        ts: increasing flow times.
        E: `⟨E(t)⟩` at `ts`.
        dE: `⟨dE/dt⟩` at `ts` (exact derivatives, `flow_observables`' `dE_clov`).
        ref: the reference value.
    """
    ts = np.asarray(ts, np.float64)
    W = 2 * ts**2 * np.asarray(E, np.float64) + ts**3 * np.asarray(dE, np.float64)
    return float(np.sqrt(_crossing(ts, W, ref)))


#: the most RK3 steps one flow may take (~3 force evaluations each, per configuration): a
#: request beyond it (e.g. `t_max = 1e6` at `ε = 1e-6`) would not end, so it is refused
MAX_FLOW_STEPS = 10**6


def _check_steps(n_steps: float, what: str) -> None:
    if not n_steps <= MAX_FLOW_STEPS:  # also inf
        raise ValueError(
            f"{what} asks for {n_steps:.3g} RK3 steps per configuration, more than "
            f"{MAX_FLOW_STEPS:.0e}; flow to a smaller time or take a larger step."
        )


def flow_grid(t_max: float, eps: float = 0.02, max_points: int = 51) -> tuple[np.ndarray, int]:
    """`(ts, n_steps)`: `n_steps = round(t_max/eps)` RK3 steps and at most `max_points` save
    times on step boundaries (so every saved field is an RK3 step, never an interpolant)."""
    t_max, eps = positive_float(t_max, "t_max"), positive_float(eps, "eps")
    _check_steps(t_max / eps, f"t_max/eps = {t_max:g}/{eps:g}")
    n_steps = max(int(round(t_max / eps)), 1)
    every = int(np.ceil(n_steps / (max_points - 1)))
    k = np.arange(0, n_steps + 1, every)
    if k[-1] != n_steps:
        k = np.append(k, n_steps)
    return k * (t_max / n_steps), n_steps


def flowed_primaries(
    action: _WilsonGauge, samples, t_max: float, *, eps: float = 0.02, batch: int = 16
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """`(ts, primaries)`: `flow_observables` of every configuration of `samples`
    `(chains, n, *config)`, each primary of shape `(chains, n, len(ts))`.

    Args:
        action: the `SUNWilson` / `UNWilson` theory.
        samples: the ensemble's configurations.
        t_max: the final flow time.
        eps: the RK3 step.
        batch: configurations flowed at once (`vmap`).
    """
    action = _check_action(action)
    ts, n_steps = flow_grid(t_max, eps)
    samples = np.asarray(samples)
    c, n = samples.shape[:2]
    flat = samples.reshape((c * n,) + action.config_shape)
    grid = tuple(float(t) for t in ts)
    parts = [
        _flow_batch(action, jnp.asarray(flat[i : i + batch]), grid, n_steps)
        for i in range(0, c * n, batch)
    ]
    return ts, {
        k: np.concatenate([np.asarray(p[k]) for p in parts]).reshape(c, n, len(ts))
        for k in parts[0]
    }


@eqx.filter_jit
def _flow_batch(action, Us, ts: tuple[float, ...], n_steps: int):
    return jax.vmap(lambda U: flow_observables(action, U, ts, n_steps=n_steps))(Us)


def analyze_flow(
    action: _WilsonGauge, samples, t_max: float, *, eps: float = 0.02, ref: float = 0.3
) -> dict[str, GammaResult]:
    r"""Flowed observables of an ensemble with Γ-method errors (chains as replicas):
    `t²E` (clover and plaquette) at `t_max`, `t0/a²` and `w0/a` (clover, `ref`), and — in 4D
    (clover) and 2D U(N) — `Q(t_max)` and `χ_t = ⟨Q²⟩/V`. A scale not reached by `t_max`
    has value nan (flow longer).

    Args:
        action: the `SUNWilson` / `UNWilson` theory.
        samples: configurations `(chains, n, *config)`.
        t_max: the final flow time (lattice units).
        eps: the RK3 step.
        ref: the reference value of `t0` and `w0` (0.3 for SU(3)).
    """
    from .stats import gamma_method

    ts, prim = flowed_primaries(action, samples, t_max, eps=eps)
    T, n_t = ts[-1], len(ts)
    E, dE = prim["E_clov"], prim["dE_clov"]
    out = {
        f"t2E_clov(t={T:g})": gamma_method(T**2 * E[..., -1:]),
        f"t2E_plaq(t={T:g})": gamma_method(T**2 * prim["E_plaq"][..., -1:]),
    }
    nan = GammaResult(math.nan, math.nan, math.nan, math.nan, 0, math.nan)
    t0 = scale_t0(ts, E.mean((0, 1)), ref)
    out["t0/a^2"] = nan if math.isnan(t0) else gamma_method(E, lambda a: scale_t0(ts, a, ref))
    w0 = scale_w0(ts, E.mean((0, 1)), dE.mean((0, 1)), ref)
    out["w0/a"] = (
        nan
        if math.isnan(w0)
        else gamma_method(
            np.concatenate([E, dE], -1), lambda a: scale_w0(ts, a[:n_t], a[n_t:], ref)
        )
    )
    Q = prim["Q"][..., -1]
    if np.all(np.isfinite(Q)):
        V = action.L**action.d
        out[f"Q(t={T:g})"] = gamma_method(Q[..., None])
        out[f"chi_t(t={T:g})"] = gamma_method(Q[..., None] ** 2 / V)
    return out
