"""Effective samples per second for χ2 on 2D φ⁴ near κ_c (λ = 0.022, κ_c ≈ 0.2709): HMC against
DM+MAALA (the diffusion model's reverse SDE to t_mh, then Metropolis-adjusted Langevin; every
chain contributes its final state). Training time is reported separately.

ESS = N / (2 τ_int) of χ2 (Γ-method); the rate is ESS divided by the sampling wall time in the
same run (after compilation). The DM's samples are independent by construction; its
τ_int is measured all the same. The HMC ensemble doubles as the training data.

Run: `python benchmarks/bench_dm_vs_hmc.py [--L 16 --iters 2000]`.
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--kappa", type=float, default=0.2709)
    p.add_argument("--lam", type=float, default=0.022)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--n-hmc", type=int, default=512, help="HMC samples per chain")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--n-dm", type=int, default=1024)
    p.add_argument("--mh-steps", type=int, default=40)
    p.add_argument("--steps", type=int, default=200)
    args = p.parse_args()
    L = args.L
    action = sq.Phi4(L, args.kappa, args.lam)
    hmc = sq.HMC(action, 0.1, 10)
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), args.chains))
    # compile + thermalise, then time the production run
    therm, _ = sq.run_chains(hmc, jr.key(1), init, 1, n_therm=300)
    start = jnp.asarray(therm[:, -1])
    sq.run_chains(hmc, jr.key(2), start, 8)
    t0 = time.perf_counter()
    samples, acc = sq.run_chains(hmc, jr.key(3), start, args.n_hmc)
    t_hmc = time.perf_counter() - t0
    r_hmc = sq.analyze(action, samples)["chi2_abs"]

    tmp = tempfile.mkdtemp()
    try:
        spec = {
            "model": "unet",
            "kwargs": {"d": 2, "channels": 16, "levels": 2, "antisymmetric": True},
            "schedule": {"name": "ve", "sigma": 25.0},
            "config_shape": [L, L],
            "group": "euclidean",
            "objective": {"name": "dsm", "importance": True},
            "theory": {"name": "phi4", "params": action.params},
        }
        cfg = TrainConfig(steps=args.iters, batch=64, steps_per_call=100)
        t0 = time.perf_counter()
        train(os.path.join(tmp, "m"), samples.reshape(-1, L, L), spec, cfg, progress=False)
        t_train = time.perf_counter() - t0
        kw = dict(steps=args.steps, t_mh=0.05, c=1.0, chains=args.n_dm, thin=args.mh_steps)
        sample_model(os.path.join(tmp, "m"), 16, "maala", **{**kw, "chains": 16})  # compile
        t0 = time.perf_counter()
        x, meta, *_ = sample_model(os.path.join(tmp, "m"), args.n_dm, "maala", **kw)
        t_dm = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp)
    r_dm = sq.analyze(action, x)["chi2_abs"]
    n_hmc = samples.shape[0] * samples.shape[1]
    ess_hmc = n_hmc / (2 * max(r_hmc.tau_int, 0.5))
    ess_dm = x.shape[1] / (2 * max(r_dm.tau_int, 0.5))
    out = {
        "device": str(jax.devices()[0]),
        "L": L,
        "kappa": args.kappa,
        "hmc": {
            "chi2_abs": [r_hmc.value, r_hmc.error],
            "tau_int": r_hmc.tau_int,
            "samples": n_hmc,
            "seconds": t_hmc,
            "ess_per_s": ess_hmc / t_hmc,
            "acceptance": float(np.mean(acc)),
        },
        "dm_maala": {
            "chi2_abs": [r_dm.value, r_dm.error],
            "tau_int": r_dm.tau_int,
            "samples": int(x.shape[1]),
            "seconds": t_dm,
            "ess_per_s": ess_dm / t_dm,
            "acceptance": meta["acceptance"],
            "training_seconds": t_train,
        },
    }
    out["ratio_dm_over_hmc"] = out["dm_maala"]["ess_per_s"] / out["hmc"]["ess_per_s"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
