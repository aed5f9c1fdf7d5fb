r"""Sampling trained models: one small function per method, and one front door.

Diffusion models (score networks trained by denoising score matching):

- `sample_sde`: Euler–Maruyama reverse SDE from the prior at T to t = 0 (independent samples),
  or adaptive steps per sample (`adaptive=True`: Gotta Go Fast's mixed tolerance, on a Brownian
  tree by default or on fresh noise without rejection, `noise="fresh"`).
- `sample_ode`: probability-flow ODE (Tsit5, fixed steps) from the prior.
- `sample_pc`: predictor–corrector (reverse SDE steps, each followed by Langevin corrector steps
  at signal-to-noise ratio `snr`).
- `sample_maala`: reverse SDE (or annealed Langevin on `steps` geometric levels, 5 steps each
  with `ε_i = c Σ(t_i)²`, the published U(1) schedule) down to `t_mh`, then Metropolis-adjusted
  Langevin with the learned drift, step `ε = c Σ(t_mh)²` (exact chain). With `chains = n`
  each chain contributes its state after `thin` steps: `n` independent samples.
- `sample_imh`: independence Metropolis with probability-flow proposals and their exact density
  (exact; the exact Jacobian restricts it to small systems). On U(1) the flow runs on the torus.

Optimal-SQ models (residual networks): `sample_osq_paths` (Euler–Maruyama paths with their
Girsanov log-weights where the reference marginal is known) and `sample_osq_imh` (the exact
independence chain through those paths).

`sample_model(model_dir, n, method, ...)` loads (and verifies) the checkpoint once and looks the
method up in the table of its objective. Every method returns a `SampleResult`; the diffusion
samplers record their cost in `metadata["nfe"]`: network evaluations per sample (`mean`, `max`),
rejected and burn-in steps included.

Conditioning on a coupling β ≠ β0 (the training one, for actions ∝ β) rescales the score by
`β/β0` in every stage: at small t the score is `−∇S_{β0}` and `(β/β0)(−∇S_{β0}) = −∇S_β`
(the published U(1) study, trained at β0 = 1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ._batching import map_batched
from ._checks import integer
from .checkpoint import ModelDir
from .dynamics import ProbabilityFlow, Reverse
from .flows import SplitStepFlow
from .mcmc import (
    MAALA,
    Composed,
    InstantonU1,
    chain_health,
    flow_proposals,
    imh_chain,
    relaxation,
    run_chains,
    tune_step_size,
)
from .mcmc.imh import GROUP_FLOW_STEPS, Proposals, target_log_weights
from .nn.base import NETWORKS, AbstractExactDivergenceNetwork
from .observables import measure_primaries
from .osq import OptimalSQ, log_z_estimate
from .predictor_corrector import annealed_langevin, predictor_corrector
from .schedules import AbstractSchedule
from .solvers import solve
from .stats import kish_ess, pareto_khat, warn_pareto_k
from .theories.base import AbstractAction

__all__ = [
    "DM_METHODS",
    "GRIDS",
    "OSQ_METHODS",
    "RescaledScore",
    "reverse_grid",
    "SampleResult",
    "sample_imh",
    "sample_maala",
    "sample_model",
    "sample_ode",
    "sample_osq",
    "sample_osq_imh",
    "sample_osq_paths",
    "sample_pc",
    "sample_sde",
]

IMH_MAX_SITES = 256


class SampleResult(NamedTuple):
    """Samples `(chains, n_per_chain, *config)` with their ensemble metadata, the target
    action and (importance-weighted samplers) the log-weights `(chains, n_per_chain)`."""

    samples: np.ndarray
    metadata: dict
    action: AbstractAction
    log_weights: np.ndarray | None = None


class RescaledScore(eqx.Module):
    """`(β/β0) s_θ(t, φ)`, carrying the network's schedule."""

    model: Any
    factor: float

    @property
    def schedule(self):
        return self.model.schedule

    def __call__(self, t, phi):
        return self.factor * self.model(t, phi)


def _independent(x, action, sampler, nfe=None, **settings) -> SampleResult:
    meta = {"sampler": {"sampler": sampler, **settings}, "acceptance": 1.0}
    if nfe is not None:
        meta["nfe"] = _nfe_summary(nfe)
    return SampleResult(np.asarray(x)[None], meta, action)


def _nfe_summary(counts) -> dict:
    """Network evaluations per sample: `{"mean": …, "max": …}` of per-sample counts."""
    counts = np.asarray(counts, np.float64)
    return {"mean": float(np.mean(counts)), "max": float(np.max(counts))}


#: adaptive reverse solves stop at `ADAPTIVE_STOP · T` and finish with one Euler–Maruyama step,
#: which evaluates the score at its start: score networks are singular at t = 0 (Σ(0) = 0 on
#: VE), and Heun's second stage would evaluate there
ADAPTIVE_STOP = 1e-3


#: the fixed-step grids of the reverse SDE (`sample_sde`, `sample_maala`'s `grid`)
GRIDS = ("uniform", "sigma")


def reverse_grid(
    schedule: AbstractSchedule, t_end: float, steps: int, grid: str
) -> str | Float[Array, " steps+1"]:
    """`solve`'s `grid` for `steps` reverse-SDE steps from `T` to `t_end`.

    Args:
        schedule: the model's noise schedule.
        t_end: where the reverse SDE stops (0 for `sample_sde`, `t_mh` for MAALA).
        steps: the number of Euler–Maruyama steps.
        grid: `"uniform"` in `t` (returned as is), or `"sigma"`: equal steps in `log(Σ(t)/m(t))`
            (`schedule.noise_level_grid`; Song et al. 2021, Eq. (47)). To `t_end = 0` the sigma
            grid stops at `ADAPTIVE_STOP · T` (Σ(0) = 0) and takes its last step from there.
    """
    if grid not in GRIDS:
        raise ValueError(f"`grid` must be one of {GRIDS}, got {grid!r}.")
    if grid == "uniform":
        return "uniform"
    if t_end > 0:
        return schedule.noise_level_grid(schedule.T, t_end, steps)
    if steps < 2:
        raise ValueError(f"grid='sigma' to t = 0 needs `steps` ≥ 2, got {steps}.")
    ts = schedule.noise_level_grid(schedule.T, ADAPTIVE_STOP * schedule.T, steps - 1)
    return jnp.append(ts, 0.0)


def _reverse_to(model, action, t_end, steps, adaptive: dict | None = None, grid="uniform"):
    """`key ↦ (φ(t_end), network evaluations)` by the reverse SDE from the prior at `T`:
    `steps` Euler–Maruyama steps on `grid` (`GRIDS`), or adaptive steps with `solve`'s
    options `adaptive`."""
    sch, shape = model.schedule, action.config_shape
    rev = Reverse(sch, model, group=action.group)
    ts = None if adaptive is not None else reverse_grid(sch, t_end, steps, grid)

    def one(k):
        k0, k1, k2 = jr.split(k, 3)
        x = rev.prior_sample(k0, shape)
        if adaptive is None:
            sol = solve(rev, x, sch.T, t_end, key=k1, n_steps=steps, grid=ts)
            return sol.ys[-1], sol.stats["num_evaluations"]
        t_stop = t_end + ADAPTIVE_STOP * sch.T
        sol = solve(rev, x, sch.T, t_stop, key=k1, adaptive=True, **adaptive)
        last = solve(rev, sol.ys[-1], t_stop, t_end, key=k2, n_steps=1)
        return last.ys[-1], sol.stats["num_evaluations"] + 1

    return one


def sample_sde(
    key: PRNGKeyArray, model, action: AbstractAction, n: int, *, steps: int = 500,
    adaptive: bool = False, rtol: float = 0.02, atol: float = 0.01, noise: str = "tree",
    grid: str = "uniform", batch: int = 256, progress: bool = False,
) -> SampleResult:  # fmt: skip
    """`n` independent samples by the reverse SDE (Song et al. 2021, Eq. 6) from `T` to 0.

    Args:
        steps: Euler–Maruyama steps (fixed grid), unless `adaptive`.
        grid: the fixed steps' times: `"uniform"` in `t`, or `"sigma"`, equal steps in
            `log(Σ(t)/m(t))` down to `10⁻³ T` (Song et al. 2021, Eq. (47); `noise_level_grid`),
            then one step to 0. Better when the data vary on scales ≲ 0.1 (N(0, 0.01): 15 %
            off at 40 steps against 220 %); no better on the two-Gaussian mixture or φ⁴
            (docs/diffusion.md, "The reverse SDE's time grid").
        adaptive: per-sample adaptive steps with the mixed tolerance of Gotta Go Fast
            (Jolicoeur-Martineau et al., arXiv:2105.14080) in the RMS norm of the configuration,
            down to `10⁻³ T`; one Euler–Maruyama step from there to 0 (`ADAPTIVE_STOP`).
        rtol, atol: its tolerances (state units).
        noise: `"tree"`: a `VirtualBrownianTree`, rejected steps retried on the same Brownian
            path (ShARK on flat fields, step-doubling Heun on groups): converges for any score.
            `"fresh"`: Gotta Go Fast's Euler–Maruyama/Heun pair on fresh increments, no step
            rejected (`solve(..., noise="fresh")`, `PredictableSteps`): no tree, but a score
            steep enough to overshoot before the step shrinks makes the solve fail (non-finite);
            flat fields and U(1) only.
    """
    if adaptive:
        if grid != "uniform":
            raise ValueError(f"`grid={grid!r}` sets fixed steps: not with `adaptive`.")
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"`rtol` and `atol` must be > 0, got {rtol}, {atol}.")
        tol = {"rtol": float(rtol), "atol": float(atol), "noise": noise}
        one = _reverse_to(model, action, 0.0, None, tol)
        settings = {"adaptive": True, **tol}
    else:
        one = _reverse_to(model, action, 0.0, integer(steps, "steps"), grid=grid)
        settings = {"steps": steps, "grid": grid}
    x, nfe = map_batched(one, jr.split(key, n), batch, progress, "dm-sde")
    return _independent(x, action, "dm-sde", nfe, **settings)


def sample_pc(
    key: PRNGKeyArray, model, action: AbstractAction, n: int, *, steps: int = 500,
    corrector_steps: int = 1, snr: float = 0.16, batch: int = 256, progress: bool = False,
) -> SampleResult:  # fmt: skip
    """`n` samples by predictor–corrector (Song et al. 2021, Algs. 4–5)."""
    shape = action.config_shape

    def one(k):
        return predictor_corrector(
            k, model.schedule, model, shape, n_steps=steps, corrector_steps=corrector_steps,
            snr=snr, group=action.group,
        )  # fmt: skip

    x = map_batched(one, jr.split(key, n), batch, progress, "dm-pc")
    nfe = np.full(n, steps * (1 + corrector_steps))  # one predictor and the corrector steps
    return _independent(
        x, action, "dm-pc", nfe, steps=steps, corrector_steps=corrector_steps, snr=snr
    )


def sample_ode(
    key: PRNGKeyArray, model, action: AbstractAction, n: int, *, steps: int = 500,
    batch: int = 256, progress: bool = False,
) -> SampleResult:  # fmt: skip
    """`n` samples by the probability-flow ODE (Song et al. 2021, Eq. 13) from `T` to `10⁻³ T`:
    `steps` Tsit5 steps on flat fields, `steps` Lie-group RK3 steps (`LuscherRK3`) on a
    geometric grid on SU(N)/U(N)."""
    sch, shape = model.schedule, action.config_shape
    flow = ProbabilityFlow(sch, model, divergence="none", group=action.group)
    grid = "geometric" if flow.step_jacobian else "uniform"

    def one(k):
        z = flow.prior_sample(k, shape)
        sol = solve(flow, z, sch.T, 1e-3 * sch.T, n_steps=steps, grid=grid)
        return sol.ys[0][-1], sol.stats["num_evaluations"]

    x, nfe = map_batched(one, jr.split(key, n), batch, progress, "dm-ode")
    return _independent(x, action, "dm-ode", nfe, steps=steps)


def _final_states_checked(sampler, key, start, action, burn, thin, progress):
    """`run_chains` for one kept state per chain after `burn + thin` steps, with each chain
    also kept at step `thin − ⌊thin/2⌋` (the same steps run) for the paired drift test.
    Returns `(samples (chains, 1, *config), acceptance, mcmc.Relaxation)`."""
    h = thin // 2
    both, acc = run_chains(
        sampler, key, start, 2, n_therm=burn + thin % 2, thin=h, progress=progress
    )  # fmt: skip
    prim = measure_primaries(action, both)  # (chains, 2) each: at step thin − h and thin
    verdict = relaxation(
        {k: v[:, 0] for k, v in prim.items()}, {k: v[:, 1] for k, v in prim.items()},
        (thin - h, thin),
    )  # fmt: skip
    return both[:, 1:], acc, verdict


def sample_maala(
    key: PRNGKeyArray, model, action: AbstractAction, n: int, *, steps: int = 500,
    t_mh: float = 0.05, c: float = 0.5, chains: int = 16, thin: int = 1, anneal: str = "sde",
    beta_ratio: float = 1.0, batch: int = 256, progress: bool = False, n_therm: int = 0,
    instanton: int = 0, target_acceptance: float | None = None, grid: str = "uniform",
) -> SampleResult:  # fmt: skip
    """Exact samples by MAALA: reverse SDE (or annealed Langevin) to `t_mh` (a fraction of T),
    on `grid` (`"uniform"` in `t`, or `"sigma"`: equal steps in `log(Σ/m)`, see `sample_sde`),
    then Metropolis-adjusted Langevin with the learned drift, `ε = c Σ(t_mh)²`; the first
    `n_therm` MAALA steps of each chain are discarded (burn-in: the chains start from the
    model's samples at `t_mh`, not from the target). With `target_acceptance`, the step adapts
    during those `n_therm` steps (dual averaging from `ε = c Σ(t_mh)²`, `mcmc.tune_step_size`)
    and the kept steps use the tuned one. On 2D U(1), `instanton = k` follows every MAALA step
    by `k` instanton-insertion moves (`mcmc.InstantonU1`: exact, change Q by ±1), which the
    local steps cannot do at large β. With one sample per chain (`n ≤ chains`) and `thin ≥ 2`,
    each chain is also measured at step `thin − ⌊thin/2⌋` and the paired drift test
    (`mcmc.relaxation`) judges whether the final states have forgotten the model's start; its
    verdict is `metadata["relaxation"]` (the same steps and evaluations as without it)."""
    if not 0 < t_mh < 1:
        raise ValueError(f"`t_mh` must lie in (0, 1) (a fraction of T), got {t_mh}.")
    if not c > 0:
        raise ValueError(f"`c` must be > 0, got {c}.")
    if anneal not in ("sde", "langevin"):
        raise ValueError(f"`anneal` must be 'sde' or 'langevin', got {anneal!r}.")
    if anneal == "langevin" and grid != "uniform":  # `reverse_grid` checks the name
        raise ValueError(
            f"`grid` sets the reverse SDE's steps; annealed Langevin has its own geometric "
            f"levels: leave 'uniform', got {grid!r} with anneal={anneal!r}."
        )
    instanton = integer(instanton, "instanton", minimum=0)
    n_therm = integer(n_therm, "n_therm", minimum=0)
    if target_acceptance is not None and n_therm < 20:
        raise ValueError(
            f"`target_acceptance` adapts the step during the burn-in: give `n_therm` ≥ 20, got "
            f"{n_therm}."
        )
    moves = InstantonU1(action, instanton) if instanton else None  # checks the theory first
    sch, shape = model.schedule, action.config_shape
    chains = max(1, min(integer(chains, "chains"), n))
    per_chain = -(-n // chains)
    k0, k1 = jr.split(key)
    eps = c * float(sch.marginal_std(t_mh * sch.T)) ** 2
    if anneal == "sde":
        start_fn = _reverse_to(model, action, t_mh * sch.T, steps, grid=grid)
    else:  # 5 Langevin steps on each of `steps` levels
        levels = sch.T * t_mh ** jnp.linspace(0.0, 1.0, steps)

        def start_fn(k):
            ka, kb = jr.split(k)
            x = Reverse(sch, model, group=action.group).prior_sample(ka, shape)
            x = annealed_langevin(
                kb, sch, model, x, levels, steps_per_level=5, step_size=eps, group=action.group
            )
            return x, jnp.asarray(5 * steps)

    start, start_nfe = map_batched(start_fn, jr.split(k0, chains), batch, progress, "dm-maala")
    maala = MAALA(action, model, t_mh * sch.T, eps)
    tuning = {}
    if target_acceptance is not None:  # the burn-in adapts the step (MAALA steps alone)
        k_tune, k1 = jr.split(k1)
        maala, start, tuning = tune_step_size(
            maala, k_tune, start, n_therm, target_acceptance, progress=progress
        )
    # the MAALA cache is rebuilt after the moves: one more evaluation per step
    sampler = maala if moves is None else Composed(maala, moves)
    burn = 0 if tuning else n_therm
    relaxed = None
    if per_chain == 1 and thin >= 2:  # final states of independent chains: check relaxation
        samples, acc, relaxed = _final_states_checked(
            sampler, k1, start, action, burn, thin, progress
        )
    else:
        samples, acc = run_chains(
            sampler, k1, start, per_chain, n_therm=burn, thin=thin, progress=progress
        )
    if per_chain == 1:  # final states of independent chains: independent samples
        samples = samples.reshape((1, chains) + tuple(shape))
    settings = {
        **maala.settings, "sampler": "dm-maala", "steps": steps, "anneal": anneal, "grid": grid,
        "beta_ratio": beta_ratio, "chains": chains, "thin": thin, "n_therm": n_therm,
        **({"instanton": instanton} if instanton else {}), **tuning,
    }  # fmt: skip
    health = chain_health(samples, acc, independent=per_chain == 1)
    acc = np.asarray(acc, dtype=float).reshape(-1)  # per-chain mean acceptance
    meta = {
        "sampler": settings,
        "acceptance": float(np.mean(acc)),
        # the spread over independent chains: the error of the mean acceptance
        "acceptance_error": float(np.std(acc, ddof=1) / np.sqrt(acc.size))
        if acc.size > 1
        else None,
        "health": health.to_json(),
        **({"relaxation": relaxed.to_json()} if relaxed is not None else {}),
    }
    # per chain: its start, one drift at the start of MALA, one per MALA step (the drift at
    # the current point is cached); shared out over the chain's samples. Tuning steps make no
    # instanton moves, and the tuned chains restart (one more drift).
    per_step = 2 if instanton else 1
    burn_in = n_therm + 1 if tuning else per_step * n_therm
    mala = 1 + burn_in + per_step * per_chain * thin
    per_sample = (np.asarray(start_nfe) + mala) / per_chain
    meta["nfe"] = _nfe_summary(per_sample)
    return SampleResult(samples, meta, action)


def sample_imh(
    key: PRNGKeyArray, model, action: AbstractAction, n: int, *, steps: int | None = None,
    batch: int = 256, progress: bool = False, reweight: bool = False,
) -> SampleResult:  # fmt: skip
    """The exact independence-MH chain through `n` probability-flow proposals (or, with
    `reweight`, the `n` proposals themselves with their importance log-weights).

    - A network whose Jacobian is triangular per sublattice (`FeatureConv(checkerboard=True)`,
      `sqdiff train --model fconv`): the even/odd split-step map of `steps` steps (default: the
      model's reverse-KL steps, else `SPLIT_STEP_STEPS`), `log q` exact for the map applied, at
      two network evaluations per half step (the score and its diagonal); any lattice size
      (`sqdiff.flows.SplitStepFlow`).
    - Other networks on flat fields: exact divergence by Jacobian, adaptive at
      rtol = atol = 1e-6 (log q within ~3e-3 of rtol 1e-7 on U(1) L = 8); at most
      `IMH_MAX_SITES` coordinates.
    - SU(N)/U(N): `steps` (default 100) Lie-group RK3 steps on a geometric time grid, each with
      its exact Jacobian (`LogDetSolver`), so log q is exact for the map applied."""
    shape = action.config_shape
    group = action.group
    if split_step_capable(model):
        return _sample_split_step(key, model, action, n, steps, batch, progress, reweight)
    dims = int(np.prod(group.noise_shape(group.lattice_of(tuple(shape)))))
    if dims > IMH_MAX_SITES:
        raise ValueError(
            f"this network ({type(model).__name__}) has no one-pass divergence, so IMH needs the "
            f"exact Jacobian: at most {IMH_MAX_SITES} coordinates, got {dims}. Networks with an "
            f"exact density at any volume: {', '.join(split_step_networks())} (sqdiff train "
            "--model fconv); or use method='maala'."
        )
    flow = ProbabilityFlow(model.schedule, model, divergence="exact", group=group)
    if flow.step_jacobian and steps is None:
        steps = GROUP_FLOW_STEPS  # recorded in the metadata
    k0, k1 = jr.split(key)
    props = flow_proposals(
        k0, flow, shape, n, rtol=1e-6, atol=1e-6, batch=batch, progress=progress, steps=steps
    )
    sampler = {"sampler": "dm-imh", **({} if steps is None else {"steps": steps})}
    return _imh_result(k1, action, props, sampler, reweight)


#: split-step map steps of an IMH proposal when neither the caller nor the model gives any
SPLIT_STEP_STEPS = 32


def split_step_capable(model) -> bool:
    """Whether `model` gives an exact density at any volume through `SplitStepFlow`."""
    return isinstance(model, AbstractExactDivergenceNetwork) and model.sublattice_triangular


def split_step_networks() -> list[str]:
    """The registered networks with a one-pass divergence (the exact density at any volume)."""
    return [k for k in NETWORKS.names() if issubclass(NETWORKS[k], AbstractExactDivergenceNetwork)]


def _sample_split_step(key, model, action, n, steps, batch, progress, reweight):
    if not action.group.is_vector_space:
        raise ValueError(f"the split-step map is for scalar fields, not {action.group}.")
    steps = SPLIT_STEP_STEPS if steps is None else integer(steps, "steps")
    flow = SplitStepFlow(model, steps)
    flow.check_invertible(action.config_shape[0])  # a bijection, so log q is exact
    shape = tuple(action.config_shape)
    k0, k1 = jr.split(key)
    x, log_q = map_batched(
        lambda k: flow.sample_and_log_prob(k, shape), jr.split(k0, n), batch, progress,
        "split-step proposals",
    )  # fmt: skip
    sampler = {"sampler": "dm-imh-split-step", "steps": steps}
    return _imh_result(k1, action, Proposals(x, log_q), sampler, reweight)


def _imh_result(key, action, props, sampler: dict, reweight: bool) -> SampleResult:
    """The IMH chain through `props` (or the weighted proposals), with ESS and Pareto k̂."""
    log_w = np.asarray(target_log_weights(action, props), np.float64)
    k = pareto_khat(log_w)
    warn_pareto_k(k, "IMH proposal weights")
    meta = {"sampler": sampler, "pareto_k": k, "ess": kish_ess(log_w)}
    if reweight:
        meta["acceptance"] = 1.0
        meta["sampler"] = {**sampler, "sampler": sampler["sampler"] + "-reweight"}
        return SampleResult(np.asarray(props.x)[None], meta, action, log_w[None])
    chain, accepted = imh_chain(key, props.x, jnp.asarray(log_w))
    meta["acceptance"] = float(jnp.mean(accepted))
    return SampleResult(np.asarray(chain)[None], meta, action)


def sample_osq_paths(
    key: PRNGKeyArray, osq: OptimalSQ, n: int, *, steps: int, batch: int = 256,
    progress: bool = False,
) -> SampleResult:  # fmt: skip
    """`n` Euler–Maruyama paths of the controlled process; their endpoints with the Girsanov
    log-weights against the target when the reference marginal is known (ESS and log Z in the
    metadata)."""
    if osq.prior != "gaussian":
        raise ValueError("sampling needs a Gaussian prior π (this model starts from an ensemble).")
    paths = map_batched(lambda k: osq.simulate(k, steps), jr.split(key, n), batch, progress,
                        "osq paths")  # fmt: skip
    meta: dict = {"sampler": {"sampler": "osq-sde", "steps": steps}, "acceptance": 1.0}
    log_w = None
    if osq.has_log_z:  # Brownian / OU reference from a Gaussian π: q_T^ref known
        log_w = np.asarray(osq.log_weights(paths, steps), np.float64)
        meta["ess"] = kish_ess(log_w)
        meta["pareto_k"] = pareto_khat(log_w)
        warn_pareto_k(meta["pareto_k"], "optimal-SQ path weights")
        meta["log_z"], meta["log_z_error"] = log_z_estimate(log_w)
    else:
        meta["weights"] = "none: the SQ reference marginal from a Gaussian prior is unknown"
    x = np.asarray(paths.phi)[None]
    return SampleResult(x, meta, osq.action, None if log_w is None else log_w[None])


def sample_osq_imh(
    key: PRNGKeyArray, osq: OptimalSQ, n: int, *, steps: int, batch: int = 256,
    progress: bool = False,
) -> SampleResult:  # fmt: skip
    """The exact independence chain through `n` weighted optimal-SQ paths."""
    k_paths, k_mh = jr.split(key)
    res = sample_osq_paths(k_paths, osq, n, steps=steps, batch=batch, progress=progress)
    if res.log_weights is None:
        raise ValueError("IMH needs the Girsanov weights: train with a known reference marginal.")
    chain, accepted = imh_chain(k_mh, jnp.asarray(res.samples[0]), jnp.asarray(res.log_weights[0]))
    meta = {**res.metadata, "acceptance": float(jnp.mean(accepted))}
    meta["sampler"] = {**meta["sampler"], "sampler": "osq-imh"}
    return SampleResult(np.asarray(chain)[None], meta, res.action)


#: method name → sampler, per kind of model
DM_METHODS: dict[str, Callable[..., SampleResult]] = {
    "sde": sample_sde,
    "ode": sample_ode,
    "pc": sample_pc,
    "maala": sample_maala,
    "imh": sample_imh,
}
OSQ_METHODS: dict[str, Callable[..., SampleResult]] = {
    "sde": sample_osq_paths,
    "imh": sample_osq_imh,
}
METHODS = tuple(DM_METHODS)


def _check_runs_on(network, action: AbstractAction) -> None:
    """A clear error if `network(t, φ)` cannot take a configuration of `action` (e.g. an L the
    U-Net's down-sampling cannot handle)."""
    shape = action.config_shape
    try:
        one = jax.ShapeDtypeStruct(shape, action.group.state_dtype(jnp.float32))
        jax.eval_shape(network, 0.5, one)
    except ValueError as e:
        raise ValueError(f"the model cannot run on {shape}: {e}") from None


def _target(theory, L, beta):
    """The recorded theory with the lattice size and coupling replaced, and `β/β0`."""
    params = theory.kwargs
    if L is not None:
        if "L" not in params:
            raise ValueError(f"theory {theory.name!r} has no lattice size to change.")
        params["L"] = L
    ratio = 1.0
    if beta is not None:
        if "beta" not in params:
            raise ValueError(f"theory {theory.name!r} has no coupling β to condition on.")
        ratio = float(beta) / float(params["beta"])
        params["beta"] = float(beta)
    return type(theory)(theory.name, params).build(), ratio


# long: the argument docs; the body loads once and dispatches through a table
def sample_model(
    model_dir: str | ModelDir,
    n: int,
    method: str = "sde",
    *,
    seed: int = 0,
    L: int | None = None,
    beta: float | None = None,
    action: AbstractAction | None = None,
    **options: Any,
) -> SampleResult:
    """Draw `n` configurations from the model in `model_dir` (checkpoint verified once).

    Args:
        model_dir: a trained model directory (a path, or a `ModelDir`, e.g. one with
            `allow_unverified=True`).
        n: configurations to draw.
        method: `sde`, `ode`, `pc`, `maala`, `imh` (diffusion models); `sde`, `imh` (OSQ).
        seed: the PRNG seed.
        L: sample at another lattice size (translation-equivariant networks).
        beta: condition on another coupling β (score × β/β0; actions ∝ β).
        action: the target action for a model of a custom action (no recorded theory).
        options: the method's keyword arguments (`steps`, `t_mh`, `c`, `chains`, …).
    """
    n, seed = integer(n, "n"), integer(seed, "seed", 0)
    directory = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
    ck = directory.load()
    spec = ck.spec
    is_osq = spec.objective.name == "osq"
    table = OSQ_METHODS if is_osq else DM_METHODS
    if method not in table:
        kind = "an optimal-SQ" if is_osq else "a diffusion"
        raise ValueError(f"{kind} model samples with `method` in {tuple(table)}, got {method!r}.")
    if action is None:
        if spec.theory is None:
            raise ValueError(f"{model_dir!r} records no theory: pass the target `action`.")
        action, beta_ratio = _target(spec.theory, L, beta)
    elif L is not None or beta is not None:
        raise ValueError("give either `action` or `L`/`beta`, not both.")
    else:
        beta_ratio = 1.0
    network = ck.network()
    key = jr.key(seed)
    if is_osq:
        if beta is not None:
            raise ValueError("`beta` conditioning is for diffusion models.")
        osq = spec.build_objective(action).process(network)
        _check_runs_on(osq.residual, osq.action)
        options.setdefault("steps", dict(spec.objective.kwargs).get("steps", 100))
        res = table[method](key, osq, n, **options)
    else:
        model = network if beta_ratio == 1.0 else RescaledScore(network, beta_ratio)
        _check_runs_on(model, action)
        if method == "maala":
            options["beta_ratio"] = beta_ratio
        if method == "imh" and spec.objective.name == "reverse_kl":  # the map it was trained as
            options.setdefault("steps", dict(spec.objective.kwargs).get("steps", 32))
        res = table[method](key, model, action, n, **options)
    meta = {
        "theory": action.name,
        "params": action.params,
        "seed": seed,
        "health": chain_health(res.samples, independent=True).to_json(),
        **res.metadata,
        "sampler": {**res.metadata["sampler"], "model_dir": directory.path},
    }
    return res._replace(metadata=meta)


def sample_osq(model_dir: str, n: int, method: str = "sde", **kwargs) -> SampleResult:
    """`sample_model` for an optimal-SQ model (kept for the 0.1 API)."""
    return sample_model(model_dir, n, method, **kwargs)
