"""Which distribution does optimal SQ converge to? Plain terminal cost `S(φ_T)` against the
corrected `S(φ_T) + log q_T^ref(φ_T)`, on the double well `(φ² − 1)²` with the SQ reference
`dφ = −S'(φ) dt + √2 dW` from π = N(0, 1) (T = 1, 100 Euler–Maruyama steps).

Doob's h-transform says the optimum ends at `q_T^ref e^{−S}/Z'` (plain; a tilted law) or at
`e^{−S}/Z` (corrected). Both are computed on a grid here (`q_T^ref` of the discrete chain by
Chapman–Kolmogorov, `osq.sq_reference_marginal`), and the trained samplers' 10⁴ endpoints are
compared with each by Kolmogorov–Smirnov.

    python examples/osq_tilt.py --out osq-tilt        # ~8 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import stats

from sqdiff.osq import sq_reference_marginal
from sqdiff.train import TrainConfig, build_osq, train


def spec_for(terminal, steps, loss):
    return {
        "model": "mlp",
        "kwargs": {"width": 64, "depth": 3},
        "schedule": None,
        "zero_init": True,
        "config_shape": [],
        "group": "euclidean",
        "theory": {"name": "double_well", "params": {}},
        "objective": {
            "name": "osq",
            "T": 1.0,
            "g": float(np.sqrt(2)),
            "steps": steps,
            "reference": "sq",
            "terminal": terminal,
            "loss": loss,
            "prior": "gaussian",
            "prior_mean": 0.0,
            "prior_std": 1.0,
        },
    }


def cdf_on(grid, density):
    c = np.cumsum(density)
    return lambda v: np.interp(v, grid, c / c[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--loss", default="log_variance", choices=("kl", "log_variance"))
    ap.add_argument("--out", default="osq-tilt")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    grid = np.linspace(-4, 4, 4001)
    results, samples = {}, {}
    for terminal in ("plain", "corrected"):
        spec = spec_for(terminal, args.steps, args.loss)
        model_dir = os.path.join(args.out, terminal)
        cfg = TrainConfig(
            steps=args.iters, batch=256, lr=3e-3, warmup=50, steps_per_call=250, ema=0.99
        )
        res = train(model_dir, None, spec, cfg, resume=os.path.isdir(model_dir), progress=True)
        osq = build_osq(spec, res.model)
        if terminal == "plain":
            log_q = jax.vmap(sq_reference_marginal(osq, args.steps))(jnp.asarray(grid))
            log_s = -np.asarray(jax.vmap(osq.action)(jnp.asarray(grid)), np.float64)
            target = np.exp(log_s - log_s.max())
            tilted = np.exp(np.asarray(log_q, np.float64) + log_s)
            tilted /= tilted.sum() * (grid[1] - grid[0])
            target /= target.sum() * (grid[1] - grid[0])
        paths = jax.jit(jax.vmap(lambda k, o=osq: o.simulate(k, args.steps)))(
            jr.split(jr.key(5), args.n)
        )
        x = np.asarray(paths.phi, np.float64)
        samples[terminal] = x
        results[terminal] = {
            "<phi^2>": float(np.mean(x**2)),
            "KS vs e^-S": stats.kstest(x, cdf_on(grid, target)).pvalue,
            "KS vs q_T^ref e^-S": stats.kstest(x, cdf_on(grid, tilted)).pvalue,
        }
        print(terminal, json.dumps(results[terminal]))
    dx = grid[1] - grid[0]
    results["exact <phi^2>"] = float(np.sum(grid**2 * target) * dx)
    results["tilted <phi^2>"] = float(np.sum(grid**2 * tilted) * dx)
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    print(json.dumps(results))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for terminal, colour in (("plain", "C0"), ("corrected", "C1")):
        ax.hist(
            samples[terminal],
            bins=120,
            range=(-2.5, 2.5),
            density=True,
            alpha=0.45,
            color=colour,
            label=f"trained, {terminal} cost",
        )
    ax.plot(grid, target, "k", label="target e^{-S}")
    ax.plot(grid, tilted, "r--", label="tilted q_T^ref e^{-S}")
    ax.set_xlim(-2.5, 2.5)
    ax.set_xlabel("φ_T")
    ax.set_title("double well, SQ reference from N(0,1): plain vs corrected terminal cost")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "osq_tilt.png"), dpi=120)


if __name__ == "__main__":
    main()
