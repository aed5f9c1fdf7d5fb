r"""Sampling a trained diffusion model: reverse SDE, probability-flow ODE, MAALA and IMH, at the
training theory or conditioned on another lattice size / coupling.

- `sde`: Euler–Maruyama reverse SDE from the prior at T to t = 0 (independent samples).
- `ode`: probability-flow ODE (Tsit5, fixed steps) from the prior (independent samples).
- `pc`: predictor–corrector, reverse SDE steps each followed by `corrector_steps` Langevin
  corrector steps at signal-to-noise ratio `snr` (independent samples).
- `maala`: reverse SDE to `t_mh` (or, with `anneal="langevin"`, annealed Langevin on `steps`
  levels geometric in t from T to `t_mh`, 5 steps each with `ε_i = c Σ(t_i)²`, the published
  U(1) schedule), then Metropolis-adjusted Langevin with the learned drift, step
  `ε = c Σ(t_mh)²` (exact chain).
  `chains` chains each keep every `thin`-th step; with `chains = n` each chain contributes its
  state after `thin` steps, giving `n` independent samples.
- `imh`: independence Metropolis with probability-flow proposals and their exact density
  (exact chain; the exact Jacobian restricts it to small systems). On U(1) the flow runs on
  the torus with the wrapped-normal prior: a global move between topological sectors.

Conditioning on a U(1) coupling β ≠ β0 (the training one) rescales the score by `β/β0` in every
stage (the annealed reverse process and the MAALA drift): at small t the score is `−∇S_{β0}`, and
`(β/β0)(−∇S_{β0}) = −∇S_β` (the published U(1) study, trained at β0 = 1).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._batching import map_batched
from .dynamics import ProbabilityFlow, Reverse
from .io import THEORIES
from .mcmc import MAALA, flow_proposals, imh_chain, independence_mh, run_chains
from .osq import log_z_estimate
from .predictor_corrector import annealed_langevin, predictor_corrector
from .solvers import solve
from .stats import kish_ess
from .train import build_osq, is_osq, load_checkpoint, load_model

__all__ = ["METHODS", "OSQ_METHODS", "RescaledScore", "sample_model", "sample_osq"]

METHODS = ("sde", "ode", "pc", "maala", "imh")
IMH_MAX_SITES = 256


class RescaledScore(eqx.Module):
    """`(β/β0) s_θ(t, φ)`, carrying the network's schedule."""

    model: eqx.Module
    factor: float

    @property
    def schedule(self):
        return self.model.schedule

    def __call__(self, t, phi):
        return self.factor * self.model(t, phi)


def _with_lattice_size(theory: dict, L: int | None) -> dict:
    """The recorded theory parameters, with the lattice size replaced by `L` if given."""
    params = dict(theory["params"])
    if L is not None:
        if "L" not in params:
            raise ValueError(f"theory {theory['name']!r} has no lattice size to change.")
        params["L"] = L
    return params


def _check_runs_on(network, shape) -> None:
    """A clear error if `network(t, φ)` cannot take a field of `shape` (e.g. an L the U-Net's
    down-sampling cannot handle)."""
    try:
        jax.eval_shape(network, 0.5, jax.ShapeDtypeStruct(shape, jnp.float32))
    except ValueError as e:
        raise ValueError(f"the model cannot run on {shape}: {e}") from None


def sample_model(
    model_dir: str,
    n: int,
    method: str = "sde",
    *,
    seed: int = 0,
    L: int | None = None,
    beta: float | None = None,
    steps: int = 500,
    t_mh: float = 0.05,
    c: float = 0.5,
    chains: int = 16,
    thin: int = 1,
    batch: int = 256,
    corrector_steps: int = 1,
    snr: float = 0.16,
    anneal: str = "sde",
    progress: bool = False,
):
    """Draw `n` configurations from the model in `model_dir`. Returns
    `(samples (chains, n_per_chain, *config), metadata, action)` ready for `save_ensemble`.
    `t_mh` is a fraction of T."""
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, got {method!r}.")
    if not isinstance(n, int) or n < 1 or not isinstance(steps, int) or steps < 1:
        raise ValueError("`n` and `steps` must be positive integers.")
    spec, *_ = load_checkpoint(model_dir)
    if is_osq(spec):
        raise ValueError(f"{model_dir!r} is an optimal-SQ model: sample it with `sample_osq`.")
    theory = spec.get("theory")
    if not theory or theory.get("name") not in THEORIES:
        raise ValueError(f"{model_dir!r} records no theory; it cannot be sampled here.")
    params = _with_lattice_size(theory, L)
    beta_ratio = 1.0
    if beta is not None:
        if theory["name"] != "u1":
            raise ValueError("--beta conditioning is implemented for the U(1) theory.")
        beta_ratio = float(beta) / params["beta"]
        params["beta"] = float(beta)
    action = THEORIES[theory["name"]](**params)
    model = load_model(model_dir)
    if beta_ratio != 1.0:
        model = RescaledScore(model, beta_ratio)
    sch = model.schedule
    shape = action.config_shape
    _check_runs_on(model, shape)
    if not 0 < t_mh < 1:
        raise ValueError(f"`t_mh` must lie in (0, 1) (a fraction of T), got {t_mh}.")
    if not c > 0:
        raise ValueError(f"`c` must be > 0, got {c}.")
    if anneal not in ("sde", "langevin"):
        raise ValueError(f"`anneal` must be 'sde' or 'langevin', got {anneal!r}.")
    key = jr.key(seed)
    group = action.group
    meta = {
        "theory": action.name,
        "params": action.params,
        "seed": seed,
        "sampler": {"sampler": f"dm-{method}", "model_dir": str(model_dir), "steps": steps},
    }

    def reverse_to(t_end):
        rev = Reverse(sch, model, group=group)

        def one(k):
            k0, k1 = jr.split(k)
            return solve(rev, sch.prior_sample(k0, shape), sch.T, t_end, key=k1, n_steps=steps).ys[
                -1
            ]

        return one

    bar = dict(progress=progress, label=f"dm-{method}")
    if method == "sde":
        x = map_batched(reverse_to(0.0), jr.split(key, n), batch, **bar)
        return np.asarray(x)[None], {**meta, "acceptance": 1.0}, action
    if method == "pc":
        meta["sampler"].update(corrector_steps=corrector_steps, snr=snr)

        def pc(k):
            return predictor_corrector(
                sch,
                model,
                k,
                shape,
                n_steps=steps,
                corrector_steps=corrector_steps,
                snr=snr,
                group=group,
            )

        x = map_batched(pc, jr.split(key, n), batch, **bar)
        return np.asarray(x)[None], {**meta, "acceptance": 1.0}, action
    if method == "ode":
        flow = ProbabilityFlow(sch, model, divergence="hutchinson", group=group)

        def one(k):
            sol = solve(
                flow, sch.prior_sample(k, shape), sch.T, 1e-3 * sch.T, n_steps=steps, probe_key=k
            )
            return flow.endpoint(sol.ys[0][-1])

        x = map_batched(one, jr.split(key, n), batch, **bar)
        return np.asarray(x)[None], {**meta, "acceptance": 1.0}, action
    if method == "maala":
        chains = max(1, min(chains, n))
        per_chain = -(-n // chains)
        k0, k1 = jr.split(key)
        eps = c * float(sch.marginal_std(t_mh * sch.T)) ** 2
        if anneal == "sde":
            start = map_batched(reverse_to(t_mh * sch.T), jr.split(k0, chains), batch, **bar)
        else:
            levels = sch.T * (t_mh) ** jnp.linspace(0.0, 1.0, steps)

            def annealed(k):
                ka, kb = jr.split(k)
                x = sch.prior_sample(ka, shape)
                return annealed_langevin(
                    sch, model, kb, x, levels, steps_per_level=5, step_size=eps, group=group
                )

            start = map_batched(annealed, jr.split(k0, chains), batch, **bar)
            meta["sampler"]["anneal"] = "langevin"
        # the rescaling is already in `model`; record it in the settings
        sampler = MAALA(action, model, t_mh * sch.T, eps, group=group)
        samples, acc = run_chains(
            sampler, k1, start, per_chain, n_therm=0, thin=thin, progress=progress
        )
        if per_chain == 1:  # final states of independent chains: independent samples
            samples = samples.reshape((1, chains) + tuple(shape))
        meta["sampler"].update(sampler.settings, beta_ratio=beta_ratio, chains=chains, thin=thin)
        return samples, {**meta, "acceptance": float(np.mean(acc))}, action
    # imh
    if int(np.prod(shape)) > IMH_MAX_SITES:
        raise ValueError(
            f"IMH needs the exact Jacobian: at most {IMH_MAX_SITES} sites, got "
            f"{int(np.prod(shape))}; use method='maala'."
        )
    flow = ProbabilityFlow(sch, model, divergence="exact", group=group)  # checks the group
    k0, k1 = jr.split(key)
    # rtol 1e-6: log q within ~3e-3 of rtol 1e-7 on U(1) L = 8 (1e-5: ~1e-2 off, 1e-4: ~0.4)
    props = flow_proposals(flow, k0, shape, n, rtol=1e-6, atol=1e-6, batch=batch, progress=progress)
    chain, accepted = independence_mh(action, props, k1)
    return np.asarray(chain)[None], {**meta, "acceptance": float(jnp.mean(accepted))}, action


OSQ_METHODS = ("sde", "imh")


def sample_osq(
    model_dir: str,
    n: int,
    method: str = "sde",
    *,
    seed: int = 0,
    L: int | None = None,
    steps: int | None = None,
    batch: int = 256,
    progress: bool = False,
):
    """Draw `n` configurations from the optimal-SQ model in `model_dir` by Euler–Maruyama paths
    (`steps`, default the training steps), with their Girsanov log-weights against the target
    when the reference marginal is known. `method="imh"` returns the independence-MH chain
    through the paths instead (exact). Returns `(samples (1, n, *config), metadata, action,
    log_weights or None)`; the metadata record ESS and `log Z` where available."""
    if method not in OSQ_METHODS:
        raise ValueError(
            f"an optimal-SQ model samples with `method` in {OSQ_METHODS}, got {method!r}."
        )
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"`n` must be a positive integer, got {n!r}.")
    spec, *_ = load_checkpoint(model_dir)
    if not is_osq(spec):
        raise ValueError(f"{model_dir!r} is not an optimal-SQ model; use `sample_model`.")
    steps = int(spec["objective"]["steps"]) if steps is None else steps
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be a positive integer, got {steps!r}.")
    spec = {**spec, "theory": {**spec["theory"], "params": _with_lattice_size(spec["theory"], L)}}
    osq = build_osq(spec, load_model(model_dir))
    if osq.prior != "gaussian":
        raise ValueError("sampling needs a Gaussian prior π (this model starts from an ensemble).")
    _check_runs_on(osq.residual, osq.shape)
    key_paths, key_mh = jr.split(jr.key(seed))
    paths = map_batched(
        lambda k: osq.simulate(k, steps), jr.split(key_paths, n), batch, progress, "osq paths"
    )
    meta = {
        "theory": osq.action.name,
        "params": osq.action.params,
        "seed": seed,
        "sampler": {"sampler": f"osq-{method}", "model_dir": str(model_dir), "steps": steps},
        "acceptance": 1.0,
    }
    log_w = None
    if osq.has_log_z:  # Brownian / OU reference from a Gaussian π: q_T^ref known
        log_w = np.asarray(osq.log_weights(paths, steps), np.float64)
        meta["ess"] = kish_ess(log_w)
        meta["log_z"], meta["log_z_error"] = log_z_estimate(log_w)
    else:
        meta["weights"] = "none: the SQ reference marginal from a Gaussian prior is unknown"
    x = np.asarray(paths.phi)
    if method == "imh":
        if log_w is None:
            raise ValueError(
                "IMH needs the Girsanov weights: train with a known reference marginal."
            )
        chain, accepted = imh_chain(x, log_w, key_mh)
        meta["acceptance"] = float(jnp.mean(accepted))
        return np.asarray(chain)[None], meta, osq.action, None
    return x[None], meta, osq.action, None if log_w is None else log_w[None]
