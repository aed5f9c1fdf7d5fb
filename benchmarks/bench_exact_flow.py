"""Exact independence sampling at any volume: a `FeatureConv` split-step flow trained by reverse
KL, IMH through its exact density, against HMC, FA-HMC and HMC + Wolff in the same run.

The theory is 2D φ⁴ in Gerdes et al.'s convention (SciPost Phys. 15, 238 (2023); their
released `configs/single.yaml`: m² = −4, λ_G = 6.975 at L = 6),

    S_G = Σ_x [Σ_μ (φ_{x+μ} − φ_x)² + m² φ² + λ_G φ⁴],

which is this project's `S = Σ_x [−2κ Σ_μ φφ_{x+μ} + (1 − 2λ)φ² + λφ⁴]` with `φ_G = √κ φ`:
`λ = λ_G κ²` and `(2d + m²)κ = 1 − 2λ`, i.e. `κ = [−(2d + m²) + √((2d + m²)² + 8λ_G)]/(4λ_G)`
(at m² = −4, d = 2: `κ = 1/√(2λ_G)`, `λ = 1/2`). `--kappa/--lam` override it (e.g. the DMasSQ
setting κ = 0.27, λ = 0.022).

Reported (JSON): the training time and its final loss; ESS per proposal (Kish, 4096 fresh
draws) and Pareto k̂; the IMH acceptance, ⟨|M|⟩ and χ2 with τ_int (Γ-method) and ESS/s of the
IMH chain (sampling time only, after compilation); the same for the three classical samplers;
the IMH's pull against the most precise classical sampler (a `!` line beyond 4σ: an exact
sampler that disagrees is a bug); the network passes per proposal (2 per step: the score and
its diagonal; the diagonal costs about one more feature evaluation per site).

Run: `python benchmarks/bench_exact_flow.py [--L 16 --iters 2000 --flow-steps 16]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shutil
import tempfile
import time

import jax
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, train

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_dm_vs_hmc", f"{_here}/bench_dm_vs_hmc.py")
assert _spec is not None and _spec.loader is not None
dm_vs_hmc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dm_vs_hmc)


def gerdes_couplings(lam_g: float, m2: float, d: int = 2) -> tuple[float, float]:
    """(κ, λ) of Gerdes et al.'s (m², λ_G) (module docstring)."""
    b = 2 * d + m2
    kappa = (-b + math.sqrt(b * b + 8 * lam_g)) / (4 * lam_g)
    return kappa, lam_g * kappa**2


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--lam-g", type=float, default=6.975, help="Gerdes et al.'s λ")
    p.add_argument("--m2", type=float, default=-4.0, help="Gerdes et al.'s m²")
    p.add_argument("--kappa", type=float, default=None, help="override: this project's κ")
    p.add_argument("--lam", type=float, default=None, help="override: this project's λ")
    p.add_argument("--iters", type=int, default=1000, help="reverse-KL optimiser steps")
    p.add_argument("--batch", type=int, default=64, help="draws per reverse-KL step")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--flow-steps", type=int, default=16)
    p.add_argument("--features", type=int, default=16)
    p.add_argument("--sigma", type=float, default=5.0, help="VE σ of the flow's time axis")
    p.add_argument("--proposals", type=int, default=8192, help="IMH proposals")
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--n-hmc", type=int, default=1024, help="trajectories per chain")
    p.add_argument("--mass2", type=float, default=0.05, help="FA-HMC m²_eff")
    args = p.parse_args()
    L = args.L
    if args.kappa is not None or args.lam is not None:
        if args.kappa is None or args.lam is None:
            p.error("give both --kappa and --lam")
        kappa, lam = args.kappa, args.lam
    else:
        kappa, lam = gerdes_couplings(args.lam_g, args.m2)
    action = sq.Phi4(L, kappa, lam)
    out = {"device": str(jax.devices()[0]), "L": L, "kappa": kappa, "lam": lam}
    if args.kappa is None:
        out["gerdes"] = {"m2": args.m2, "lam": args.lam_g}
    print(json.dumps(out), flush=True)

    names = list(dm_vs_hmc.classical(action, args.mass2))
    samples = dm_vs_hmc.run_classical(action, args.mass2, args.chains, args.n_hmc, out)
    scale = float(np.std(samples["HMC+Wolff"]))  # the data scale σ_d the flow's prior assumes

    tmp = tempfile.mkdtemp()
    try:
        spec = ModelSpec(
            network=NetworkSpec(
                "fconv",
                {"d": 2, "features": args.features, "radius": L // 2, "data_std": scale},
            ),
            schedule=ScheduleSpec("ve", {"sigma": args.sigma}),
            objective=ObjectiveSpec(
                "reverse_kl", {"steps": args.flow_steps, "samples": args.batch}
            ),
            config_shape=(L, L),
            theory=TheorySpec.of(action),
        )
        cfg = TrainConfig(
            steps=args.iters, batch=args.batch, lr=args.lr, warmup=50, steps_per_call=50,
            checkpoint_every=10**9, ema=0.99,
        )  # fmt: skip
        t0 = time.perf_counter()
        res = train(os.path.join(tmp, "m"), None, spec, cfg, progress=False)
        t_train = time.perf_counter() - t0
        net = res.model
    finally:
        shutil.rmtree(tmp)
    obj = spec.build_objective()
    _, _, log_w = obj.draws(net, jr.key(11), 4096)
    log_w = np.asarray(log_w, np.float64)
    flow = obj.flow(net)
    flow_out = {
        "training_seconds": t_train,
        "final_loss": float(np.mean(res.losses[-50:])),
        "ess_per_proposal": sq.stats.kish_ess(log_w) / log_w.size,
        "pareto_k": sq.stats.pareto_khat(log_w),
        "var_log_w": float(np.var(log_w)),
        "min_invertibility_margin": float(np.min(flow.invertibility_margins(L))),
        "network_passes_per_proposal": 2 * 2 * args.flow_steps,
        "flow_steps": args.flow_steps,
    }
    sq.sampling.sample_imh(jr.key(12), net, action, 256, steps=args.flow_steps)  # compile
    t0 = time.perf_counter()
    imh = sq.sampling.sample_imh(jr.key(13), net, action, args.proposals, steps=args.flow_steps)
    t_imh = time.perf_counter() - t0
    out["IMH"] = {
        **dm_vs_hmc.rates(action, np.asarray(imh.samples), t_imh),
        "acceptance": imh.metadata["acceptance"],
        **flow_out,
    }
    # exactness: the IMH chain against the most precise classical sampler of this run
    out["IMH"]["pull"] = dm_vs_hmc.agreement(out, names, "IMH")
    for name in names:
        out[name]["ratio_imh_over_this"] = {
            k: out["IMH"][k]["ess_per_s"] / out[name][k]["ess_per_s"] for k in ("|M|", "chi2_abs")
        }
    print("IMH", json.dumps(out["IMH"]), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
