"""Optimal stochastic quantization on the talk's 0-dim examples, `(φ² − 1)²` and
`φ²/2 − cos 5φ`: train a residual force with no data, sample 10⁴ paths, compare the marginal
with quadrature, reweight (ESS, log Z) and plot the Fisher-information curve along the trained
process.

    python examples/osq_zero_dim.py --iters 4000 --out osq-zero-dim     # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import integrate

import sqdiff as sq
from sqdiff.osq import fisher_from_marginals, fokker_planck_1d, log_z_estimate
from sqdiff.train import TrainConfig, build_osq, train

THEORIES = {"double_well": {}, "cosine": {"k": 5.0}}


def spec_for(name, params, steps, reference, prior_std):
    return {
        "model": "mlp",
        "kwargs": {"width": 64, "depth": 3},
        "schedule": None,
        "zero_init": True,
        "config_shape": [],
        "group": "euclidean",
        "theory": {"name": name, "params": params},
        "objective": {
            "name": "osq",
            "T": 1.0,
            "g": float(np.sqrt(2)),
            "steps": steps,
            "reference": reference,
            "terminal": "corrected",
            "prior": "gaussian",
            "prior_mean": 0.0,
            "prior_std": prior_std,
        },
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--reference", default="ou", choices=("brownian", "ou"))
    ap.add_argument("--prior-std", type=float, default=1.0)
    ap.add_argument("--out", default="osq-zero-dim")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    results, curves = {}, {}
    for name, params in THEORIES.items():
        spec = spec_for(name, params, args.steps, args.reference, args.prior_std)
        model_dir = os.path.join(args.out, name)
        cfg = TrainConfig(
            steps=args.iters, batch=256, lr=3e-3, warmup=50, steps_per_call=250, ema=0.99
        )
        res = train(model_dir, None, spec, cfg, resume=os.path.isdir(model_dir), progress=True)
        osq = build_osq(spec, res.model)
        paths = jax.jit(jax.vmap(lambda k, o=osq: o.simulate(k, args.steps)))(
            jr.split(jr.key(5), args.n)
        )
        x = np.asarray(paths.phi, np.float64)
        lw = np.asarray(osq.log_weights(paths, args.steps))
        f = lambda p, a=osq.action: np.exp(-float(a(jnp.asarray(p))))  # noqa: E731
        z = integrate.quad(f, -8, 8, limit=400)[0]
        m2 = integrate.quad(lambda p, f=f: p * p * f(p), -8, 8, limit=400)[0] / z
        r = sq.stats.reweighted(x**2, lw)
        lz, lz_err = log_z_estimate(lw)
        results[name] = {
            "raw <phi^2>": float(np.mean(x**2)),
            "reweighted <phi^2>": [r.value, r.error],
            "exact <phi^2>": m2,
            "log Z": [lz, lz_err],
            "exact log Z": float(np.log(z)),
            "ESS": r.ess,
            "n": args.n,
        }
        ts = np.linspace(0, 1, 21)
        grid, q = fokker_planck_1d(osq, ts)  # one solve: marginals and Fisher curve
        curves[name] = (x, ts, fisher_from_marginals(grid, q), (grid, q))
        print(name, json.dumps(results[name]))
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (name, (x, ts, c, (grid, q))) in zip(axes[:2], curves.items(), strict=True):
        action = sq.io.THEORIES[name](**THEORIES[name])
        p = np.exp(-np.asarray(jax.vmap(action)(jnp.asarray(grid))))
        ax.hist(x, bins=120, range=(-4, 4), density=True, alpha=0.5, label="OSQ samples")
        ax.plot(grid, p / (p.sum() * (grid[1] - grid[0])), "r", label="exact e^{-S}")
        ax.plot(grid, q[-1], "k--", lw=1, label="Fokker–Planck q_T")
        ax.set_title(name)
        ax.legend(fontsize=7)
        axes[2].plot(ts, c, "o-", ms=3, label=name)
    axes[2].set_xlabel("t")
    axes[2].set_title("Fisher information c(t)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "osq_zero_dim.png"), dpi=120)


if __name__ == "__main__":
    main()
