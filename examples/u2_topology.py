"""2D U(2) at a coupling where HMC's topological charge freezes (β = 12, L = 4): an L-CNN
diffusion model trained on HMC configurations, sampled by DM + MAALA (local, exact for the
plaquette, but it keeps the model's sector mix) and by independence Metropolis with
probability-flow proposals on U(2) (`--imh N`; the flow's density comes from the exact Jacobian
of every Lie-group RK3 step, so the chain is exact for any model, and its moves are global),
against the exact plaquette and `χ_t = ⟨Q²⟩/V` (character expansion on the torus,
`tests/gauge_reference.u2_torus`; the values are printed in the docs) and against HMC.
Each row reports τ_int of the plaquette and of Q², and effective samples of Q² per second.

    python examples/u2_topology.py --out u2-topology            # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.sampling import sample_model
from sqdiff.specs import GroupSpec, ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, train

#: exact values on the L×L torus (character expansion with a θ-term, `u2_torus(β, L)`)
EXACT = {(12.0, 4): {"plaquette": 0.8307686, "chi_t": 0.0047417}}


def row(name, action, samples, seconds, extra=None):
    """Plaquette and χ_t with Γ-method errors, τ_int, charge changes and ESS/s of Q²."""
    samples = np.asarray(samples)
    res = sq.analyze(action, samples)
    q = np.asarray(jax.vmap(jax.vmap(action.topological_charge))(jnp.asarray(samples)))
    n = samples.shape[0] * samples.shape[1]
    tau = res["chi_t"].tau_int
    out = {
        "plaquette": [res["plaquette"].value, res["plaquette"].error, res["plaquette"].tau_int],
        "chi_t": [res["chi_t"].value, res["chi_t"].error, tau],
        "P(Q=0)": float(np.mean(np.rint(q) == 0)),
        "charge changes": int(np.sum(np.rint(np.diff(q, axis=1)) != 0)),
        "seconds": seconds,
        "ess/s(Q^2)": n / (2 * tau) / seconds,
        **(extra or {}),
    }
    print(f"{name:<24}", json.dumps(out), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--beta", type=float, default=12.0)
    ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--n-hmc", type=int, default=2000, help="HMC trajectories per chain (8)")
    ap.add_argument("--iters", type=int, default=4000, help="training steps")
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--chains", type=int, default=16, help="MAALA chains")
    ap.add_argument("--maala", type=int, default=100, help="MAALA samples per chain")
    ap.add_argument("--therm", type=int, default=200, help="MAALA burn-in steps per chain")
    ap.add_argument("--imh", type=int, default=1024, help="IMH proposals (0: none)")
    ap.add_argument("--imh-steps", type=int, default=64, help="flow steps per proposal")
    ap.add_argument("--out", default="u2-topology")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    action = sq.UNWilson(2, args.L, args.beta)
    exact = EXACT.get((args.beta, args.L))
    print(f"U(2), β = {args.beta:g}, L = {args.L}; exact {exact}")
    results = {"exact": exact}

    # HMC from 8 random starts: the training data, and the baseline
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), 8))
    step = 0.1 * np.sqrt(4.0 / args.beta)
    t = time.perf_counter()
    hmc, acc = sq.run_chains(sq.HMC(action, step, 10), jr.key(1), init, args.n_hmc, n_therm=200)
    results["HMC"] = row("HMC", action, hmc, time.perf_counter() - t,
                         {"acceptance": float(acc.mean())})  # fmt: skip

    spec = ModelSpec(
        network=NetworkSpec(
            "lcnn", {"group": "un", "N": 2, "d": 2, "channels": args.channels, "depth": args.depth}
        ),
        schedule=ScheduleSpec("ve", {"sigma": 5.0}),
        objective=ObjectiveSpec("group_dsm", {"t_min": 1e-3}),
        config_shape=action.config_shape,
        group=GroupSpec.of(action.group),
        theory=TheorySpec.of(action),
    )
    model_dir = os.path.join(args.out, "model")
    t = time.perf_counter()
    data = np.asarray(hmc).reshape((-1,) + action.config_shape)
    cfg = TrainConfig(steps=args.iters, batch=32, lr=2e-3, steps_per_call=250)
    train(model_dir, data, spec, cfg, resume=os.path.isdir(model_dir), progress=True)
    results["training_seconds"] = time.perf_counter() - t

    t = time.perf_counter()
    ma = sample_model(model_dir, args.chains * args.maala, "maala", steps=200,
                      chains=args.chains, seed=1, n_therm=args.therm)  # fmt: skip
    results["DM+MAALA"] = row("DM + MAALA", action, ma.samples, time.perf_counter() - t,
                              {"acceptance": ma.metadata["acceptance"]})  # fmt: skip
    if args.imh:
        t = time.perf_counter()
        imh = sample_model(model_dir, args.imh, "imh", steps=args.imh_steps, seed=2, batch=64,
                           progress=True)  # fmt: skip
        meta = {"acceptance": imh.metadata["acceptance"], "pareto_k": imh.metadata["pareto_k"]}
        results["IMH"] = row("DM IMH (flow)", action, imh.samples, time.perf_counter() - t, meta)
    if exact:
        for name in ("HMC", "DM+MAALA", "IMH"):
            if name in results:
                r = results[name]
                pulls = {k: (r[k][0] - exact[k]) / r[k][1] for k in ("plaquette", "chi_t")}
                print(f"{name}: (value − exact)/σ", json.dumps(pulls))
                r["pulls"] = pulls
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main()
