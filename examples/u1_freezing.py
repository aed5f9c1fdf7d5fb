"""2D U(1) at a coupling where HMC freezes (β = 7, L = 8): a diffusion model trained on exact,
independent configurations (plaquette-variable sampler, `sqdiff.u1_exact_samples`), sampled by
annealed Langevin + MAALA, and by independence Metropolis with probability-flow proposals on
the torus (`--imh N`; exact whatever the model, the global move that beats freezing), against
the exact plaquette and χ_t (docs/references.md) and against HMC. Optionally also the
physics-conditioned route: a model trained at β0 = 1 with its score rescaled by β/β0.

    python examples/u1_freezing.py --iters 15000 --out u1-freezing     # ~35 min on 2 cores
    python examples/u1_freezing.py --iters 30000 --imh 2560 --out u1-freezing   # + ~50 min IMH
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.sampling import sample_model
from sqdiff.train import TrainConfig, train

EXACT = {(1.0, 8): (0.446390, 0.040636), (7.0, 8): (0.925700, 0.003392)}


def row(name, action, samples, extra=None):
    r = sq.analyze(action, samples)
    q = np.rint(
        np.asarray(sq.theories.topological_charge(samples.reshape((-1,) + action.config_shape)))
    )
    out = {
        "plaquette": [r["plaquette"].value, r["plaquette"].error],
        "chi_t": [r["chi_t"].value, r["chi_t"].error, r["chi_t"].tau_int],
        "P(|Q|=1)": float(np.mean(np.abs(q) == 1)),
        **(extra or {}),
    }
    print(name, json.dumps(out))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--L", type=int, default=8)
    ap.add_argument("--beta", type=float, default=7.0)
    ap.add_argument("--beta0", type=float, default=None, help="train here (default: --beta)")
    ap.add_argument("--n-train", type=int, default=32768)
    ap.add_argument("--iters", type=int, default=15000)
    ap.add_argument("--n", type=int, default=1000, help="MAALA chains (one sample each)")
    ap.add_argument("--levels", type=int, default=200, help="annealed Langevin levels")
    ap.add_argument("--c", type=float, default=0.05)
    ap.add_argument("--mala-steps", type=int, default=200)
    ap.add_argument("--hmc", type=int, default=2000, help="HMC trajectories per chain (8)")
    ap.add_argument("--imh", type=int, default=0, help="IMH proposals (0: skip; ~1 s each)")
    ap.add_argument("--out", default="u1-freezing")
    args = ap.parse_args()
    L, beta = args.L, args.beta
    beta0 = beta if args.beta0 is None else args.beta0
    os.makedirs(args.out, exist_ok=True)
    action = sq.U1Wilson2D(L, beta)
    results = {"exact": EXACT.get((beta, L))}

    # exact independent draws and HMC from random starts (frozen topology at large β)
    exact = sq.u1_exact_samples(jr.key(1), L, beta, 8192)
    results["exact sampler"] = row("exact sampler", action, np.asarray(exact)[None])
    init = jax.vmap(action.random_config)(jr.split(jr.key(2), 8))
    hmc, acc = sq.run_chains(
        sq.HMC(action, 0.1, 10), jr.key(3), init, args.hmc, n_therm=200, progress=True
    )
    results["HMC"] = row("HMC", action, np.asarray(hmc), {"acceptance": float(acc.mean())})

    # diffusion model: U1LinkNet on exact configurations at β0
    model_dir = os.path.join(args.out, f"model_beta{beta0:g}")
    spec = {
        "model": "u1",
        "kwargs": {"channels": 16, "depth": 2},
        "schedule": {"name": "ve", "sigma": 10.0},
        "config_shape": [2, L, L],
        "group": "u1",
        "objective": {"name": "group_dsm", "importance": True},
        "theory": {"name": "u1", "params": {"L": L, "beta": beta0}},
    }
    data = sq.u1_exact_samples(jr.key(0), L, beta0, args.n_train)
    cfg = TrainConfig(steps=args.iters, batch=64, lr=2e-3, steps_per_call=250)
    train(model_dir, data, spec, cfg, resume=os.path.isdir(model_dir), progress=True)
    x, meta, *_ = sample_model(
        model_dir,
        args.n,
        "maala",
        beta=beta if beta != beta0 else None,
        steps=args.levels,
        t_mh=0.05,
        c=args.c,
        chains=args.n,
        thin=args.mala_steps,
        anneal="langevin",
        progress=True,
    )
    results["DM+MAALA"] = row(
        f"DM (β0={beta0:g}) + MAALA", action, x, {"acceptance": meta["acceptance"]}
    )
    if args.imh:
        x, meta, *_ = sample_model(
            model_dir, args.imh, "imh", beta=beta if beta != beta0 else None, progress=True
        )
        results["DM+IMH"] = row(
            f"DM (β0={beta0:g}) + IMH", action, x, {"acceptance": meta["acceptance"]}
        )
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
