"""The VE schedule's range from the data (issue 39) against the earlier fixed σ = 25, in the
same run: 2D φ⁴ in the broken phase (L = 16, κ = 0.5, λ = 0.022, where the zero mode's
`V⟨M²⟩ ≈ 6000` is 60 times the σ = 25 prior's `Σ(T)² = 97`).

One HMC + Wolff ensemble is the training data and the reference. The same U-Net is trained
twice with the same steps, batch and seed, once under σ = 25 and once under the σ that
`sqdiff train` now derives (`sq.train.data_sigma`: `Σ(T)² = 9 λ_max`), and a third time with
that σ and the odd score (`antisymmetric`, now the default for φ⁴); each is sampled by the
reverse SDE alone. Printed per recipe: ⟨|M|⟩, χ2 and P(M < 0) with errors, their pulls against
the ensemble, the held-out DSM loss, and the training time.

Run: `python benchmarks/bench_schedule_from_data.py [--L 16 --kappa 0.5 --iters 2000]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

import jax
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.sampling import sample_model
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.stats import gamma_method
from sqdiff.train import TrainConfig, data_sigma, train


def summary(action, samples, weights=None) -> dict:
    """⟨|M|⟩, χ2 and P(M < 0), all with Γ-method errors (autocorrelation included)."""
    res = sq.analyze(action, samples)
    M = np.mean(np.asarray(samples), axis=tuple(range(2, samples.ndim)))
    neg = gamma_method((M < 0).astype(np.float64)[..., None])
    return {
        "|M|": [res["<|M|>"].value, res["<|M|>"].error],
        "chi2": [res["chi2"].value, res["chi2"].error],
        "P(M<0)": [neg.value, neg.error],
    }


def pulls(got: dict, ref: dict) -> dict:
    return {
        k: (got[k][0] - ref[k][0]) / float(np.hypot(got[k][1], ref[k][1]) or np.inf) for k in got
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--kappa", type=float, default=0.5)
    p.add_argument("--lam", type=float, default=0.022)
    p.add_argument("--chains", type=int, default=8)
    p.add_argument("--n-hmc", type=int, default=512, help="trajectories per chain")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-dm", type=int, default=512)
    p.add_argument("--steps", type=int, default=500, help="reverse-SDE steps")
    args = p.parse_args()
    print(f"devices: {jax.devices()}", flush=True)

    action = sq.Phi4(args.L, args.kappa, args.lam)
    sampler = sq.Composed(sq.HMC(action, 0.1, 10), sq.WolffPhi4(action, n_flips=1))
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), args.chains))
    ens, _ = sq.run_chains(sampler, jr.key(1), init, args.n_hmc, n_therm=500)
    ens = np.asarray(ens)
    data = ens.reshape((-1,) + action.config_shape)
    train_x, held = data[0::2], data[1::2]
    ref = summary(action, ens)
    out = {"ensemble": ref}
    print("ensemble", json.dumps(ref), flush=True)
    sigma = data_sigma([train_x])
    recipes = {
        "sigma=25 (before)": (25.0, False),
        "sigma from the data": (sigma, False),
        "sigma from the data + Z2 (now the default)": (sigma, True),
    }
    for name, (sigma, z2) in recipes.items():
        spec = ModelSpec(
            network=NetworkSpec("unet", {"d": 2, "channels": 16, "levels": 2, "antisymmetric": z2}),
            schedule=ScheduleSpec("ve", {"sigma": sigma}),
            objective=ObjectiveSpec("dsm"),
            config_shape=action.config_shape,
            theory=TheorySpec.of(action),
        )
        cfg = TrainConfig(steps=args.iters, batch=args.batch, lr=2e-3, seed=0)
        folder = tempfile.mkdtemp()
        try:
            t0 = time.perf_counter()
            res = train(folder + "/m", train_x, spec, cfg, progress=False)
            t_train = time.perf_counter() - t0
            draws = sample_model(folder + "/m", args.n_dm, "sde", seed=7, steps=args.steps)
        finally:
            shutil.rmtree(folder)
        objective = spec.build_objective(action)
        held_loss = float(
            np.mean(
                [
                    objective.loss(res.model, jr.key(100 + i), held[i * 64 : (i + 1) * 64])
                    for i in range(min(8, held.shape[0] // 64))
                ]
            )
        )
        got = summary(action, np.asarray(draws.samples).reshape((1, -1) + action.config_shape))
        row = {
            "sigma": sigma,
            "antisymmetric": z2,
            "prior_variance": float(spec.build_schedule().prior_std ** 2),
            "train_seconds": t_train,
            "held_out_dsm_loss": held_loss,
            **got,
            "pulls": pulls(got, ref),
        }
        out[name] = row
        print(name, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
