"""Effective samples per second on 2D φ⁴ near κ_c (λ = 0.022): HMC, Fourier-accelerated HMC,
HMC + Wolff cluster flips and DM+MAALA (the diffusion model's reverse SDE to t_mh, then
Metropolis-adjusted Langevin; every chain contributes its final state), with the training time
and the break-even number of effective samples after which the DM's training pays off.

The published setting (Wang, Aarts, Zhou 2024: τ_int(|M|) of 80 for local Monte Carlo, 41 for
HMC and 2.4 for their DM Metropolis sampler) is L = 32, κ = 0.27, the default here.

ESS = N / (2 τ_int) (Γ-method) of ⟨|M|⟩ and of χ2 (|M|); the rate is ESS divided by the
sampling wall time in the same run (after compilation and thermalisation). The DM's samples are
independent by construction; its τ_int is measured all the same. The HMC ensemble doubles as
the training data. Break-even: the DM costs `t_train + N/r_DM` seconds for N effective samples,
a classical sampler `N/r`; the DM is cheaper beyond `N* = t_train / (1/r − 1/r_DM)` when
`r_DM > r`, never otherwise.

A rate means nothing for a wrong sampler, so the DM row is checked twice: against the most
precise classical sampler of the run (its pull; a line starting with `!` beyond 4σ), and by the
paired drift test of its chains between MAALA step `mh_steps/2` and `mh_steps`
(`sq.mcmc.relaxation`).

Run: `python benchmarks/bench_dm_vs_hmc.py [--L 32 --kappa 0.27 --iters 1000]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.sampling import sample_model
from sqdiff.train import TrainConfig, train


def classical(action, mass2):
    """The three classical samplers, all with trajectories of length ε·n = 1."""
    hmc = sq.HMC(action, 0.1, 10)
    kernel = sq.FourierKernel.free_field(action.lattice_shape, mass2)
    return {
        "HMC": hmc,
        "FA-HMC": sq.HMC(action, 0.1, 10, kernel=kernel),
        "HMC+Wolff": sq.Composed(hmc, sq.WolffPhi4(action, n_flips=1)),
    }


def rates(action, samples, seconds):
    """Value, error, τ_int and ESS/s of ⟨|M|⟩ and χ2 (|M|)."""
    res = sq.analyze(action, samples)
    n = samples.shape[0] * samples.shape[1]
    out = {"samples": int(n), "seconds": seconds}
    for name, key in (("|M|", "<|M|>"), ("chi2_abs", "chi2_abs")):
        r = res[key]
        ess = n / (2 * max(r.tau_int, 0.5))
        out[name] = {"value": [r.value, r.error], "tau_int": r.tau_int, "ess_per_s": ess / seconds}
    return out


def break_even(t_train, r_classical, r_dm):
    """Effective samples after which training + DM sampling beats the classical sampler."""
    if r_dm <= r_classical:
        return None  # never
    return t_train / (1 / r_classical - 1 / r_dm)


def run_classical(action, mass2: float, chains: int, n_hmc: int, out: dict) -> dict:
    """Each classical sampler compiled and thermalised (500 trajectories), then timed over
    `n_hmc` trajectories of `chains` chains; its rates in `out[name]` (printed). Returns the
    samples by name."""
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), chains))
    samples_by_name = {}
    for name, sampler in classical(action, mass2).items():
        # compile + thermalise, then time the production run (one compilation per sampler)
        therm, _ = sq.run_chains(sampler, jr.key(1), init, 1, n_therm=500)
        start = jnp.asarray(therm[:, -1])
        t0 = time.perf_counter()
        samples, acc = sq.run_chains(sampler, jr.key(3), start, n_hmc)
        samples = np.asarray(samples)
        out[name] = {
            **rates(action, samples, time.perf_counter() - t0),
            "acceptance": float(np.mean(acc)),
        }
        samples_by_name[name] = samples
        print(name, json.dumps(out[name]), flush=True)
    return samples_by_name


def agreement(out: dict, names: list[str], sampler: str = "DM+MAALA") -> dict:
    """`sampler`'s pull (value − ref)/σ against the most precise classical sampler of this
    run, per observable; a line for every |pull| > 4: a fast sampler that is wrong has no
    rate."""
    dm, pulls = out[sampler], {}
    for k in ("|M|", "chi2_abs"):
        ref = min(names, key=lambda n: out[n][k]["value"][1])
        (v, e), (rv, re) = dm[k]["value"], out[ref][k]["value"]
        pulls[k] = {"against": ref, "pull": (v - rv) / float(np.hypot(e, re))}
        if not abs(pulls[k]["pull"]) <= 4:
            print(
                f"! {sampler} DISAGREES with {ref} on {k}: {v:.4g} ± {e:.2g} against "
                f"{rv:.4g} ± {re:.2g} ({pulls[k]['pull']:+.1f}σ); its ESS/s is not that of a "
                "correct sampler",
                flush=True,
            )
    return pulls


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--kappa", type=float, default=0.27)
    p.add_argument("--lam", type=float, default=0.022)
    p.add_argument("--mass2", type=float, default=0.05, help="FA-HMC m²_eff")
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--n-hmc", type=int, default=1024, help="trajectories per chain")
    p.add_argument("--iters", type=int, default=1000)
    p.add_argument("--n-dm", type=int, default=256)
    p.add_argument("--mh-steps", type=int, default=40)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument(
        "--sigma", type=float, default=100.0, help="VE σ: Σ(T)² must exceed V⟨M²⟩ = G(0)"
    )
    args = p.parse_args()
    L = args.L
    action = sq.Phi4(L, args.kappa, args.lam)
    out = {"device": str(jax.devices()[0]), "L": L, "kappa": args.kappa, "lam": args.lam}
    samples = run_classical(action, args.mass2, args.chains, args.n_hmc, out)
    train_data = samples["HMC+Wolff"].reshape(-1, L, L)  # the best-decorrelated ensemble

    tmp = tempfile.mkdtemp()
    try:
        spec = {
            "model": "unet",
            "kwargs": {"d": 2, "channels": 16, "levels": 2, "antisymmetric": True},
            "schedule": {"name": "ve", "sigma": args.sigma},
            "config_shape": [L, L],
            "group": "euclidean",
            "objective": {"name": "dsm", "importance": True},
            "theory": {"name": "phi4", "params": action.params},
        }
        cfg = TrainConfig(steps=args.iters, batch=64, steps_per_call=100)
        t0 = time.perf_counter()
        train(os.path.join(tmp, "m"), train_data, spec, cfg, progress=False)
        t_train = time.perf_counter() - t0
        kw = dict(steps=args.steps, t_mh=0.05, c=1.0, chains=args.n_dm, thin=args.mh_steps)
        sample_model(os.path.join(tmp, "m"), 16, "maala", **{**kw, "chains": 16})  # compile
        t0 = time.perf_counter()
        res = sample_model(os.path.join(tmp, "m"), args.n_dm, "maala", **kw)
        t_dm = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp)
    x, relax = np.asarray(res.samples), res.metadata.get("relaxation")
    out["DM+MAALA"] = {
        **rates(action, x, t_dm),
        "acceptance": res.metadata["acceptance"],
        "training_seconds": t_train,
        "nfe_per_sample": res.metadata["nfe"]["mean"],
        "sigma": args.sigma,
        # the paired drift test of the chains' final states ([]: none seen; None: not run)
        "not_relaxed": relax["drifting"] if relax else None,
    }
    if drifting := sq.mcmc.drift_message(res.metadata):
        print("!", drifting, flush=True)
    dm = out["DM+MAALA"]
    dm["pull"] = agreement(out, list(classical(action, args.mass2)))
    print("DM+MAALA", json.dumps(dm), flush=True)
    for name in classical(action, args.mass2):
        r = out[name]
        r["ratio_dm_over_this"] = {
            k: dm[k]["ess_per_s"] / r[k]["ess_per_s"] for k in ("|M|", "chi2_abs")
        }
        r["break_even_ess"] = {
            k: break_even(t_train, r[k]["ess_per_s"], dm[k]["ess_per_s"])
            for k in ("|M|", "chi2_abs")
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
