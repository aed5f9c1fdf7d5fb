"""The flow of the effective action learned by a diffusion model (Wang, Aarts, Zhou, NeurIPS
ML4PS 2023, Sec. 3 and Fig. 2): 0-dim `S = μ²φ²/2 + gφ⁴/4!`, single well (μ² = 1) and double
well (μ² = −1), g = 0.4, 5120 training configurations.

The trained score gives `S_DM(φ, t) = −∫^φ s_θ(t, φ') dφ'` (`sqdiff.effective_action`); the
exact one is `−log p_t(φ)`, `p_t = P0 ∗ N(0, Ξ(t))` by quadrature (the VE forward marginal).
The paper's τ runs from noise to data (τ = T is the data); here t is the diffusion time
(t = 0 is the data), so the paper's τ → T is t → 0. Also: 1024 training vs 1024 generated
samples (reverse SDE), and ⟨φ²⟩ of 20 000 generated samples against quadrature.

Run: `python examples/effective_action_flow.py [--iters 20000] [--json out.json]
[--figure effective_action.png]` (1.5 minutes on 2 cores). docs/studies/effective_action.md
is this run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import jax.numpy as jnp
import numpy as np

import sqdiff as sq
from sqdiff.sampling import sample_model
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, load_model, train

THEORIES = {"single well": (1.0, 0.4), "double well": (-1.0, 0.4)}
TIMES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.5)
SIGMA = 10.0
GRID = np.linspace(-6.5, 6.5, 1301)


def action(phi, mu2, g):
    return mu2 / 2 * phi**2 + g / 24 * phi**4


def density_grid(mu2, g):
    """`(x, e^{−S(x)} up to a constant)` on a fine grid over the support."""
    x = np.linspace(-8, 8, 200_001)
    s = action(x, mu2, g)
    return x, np.exp(-(s - s.min()))


def exact_samples(mu2, g, n, seed):
    """n exact draws of e^{−S} by inverting its CDF on a fine grid."""
    x, w = density_grid(mu2, g)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    u = np.random.default_rng(seed).random(n)
    return np.interp(u, cdf, x)


def exact_effective_action(mu2, g, schedule, t):
    """`−log p_t(φ)` on GRID, p_t = e^{−S} convolved with N(0, Ξ(t)) (quadrature)."""
    x0 = np.linspace(-8, 8, 8001)
    logw = -action(x0, mu2, g)
    var = float(schedule.marginal_std(t)) ** 2
    logk = -((GRID[:, None] - x0[None]) ** 2) / (2 * var) - 0.5 * math.log(2 * math.pi * var)
    a = logw[None] + logk
    m = a.max(1, keepdims=True)
    return -(m[:, 0] + np.log(np.exp(a - m).sum(1) * (x0[1] - x0[0])))


def moment2(mu2, g):
    x, w = density_grid(mu2, g)
    return float((x**2 * w).sum() / w.sum())


def study(iters, folder):
    out = {}
    for i, (name, (mu2, g)) in enumerate(THEORIES.items()):
        data = exact_samples(mu2, g, 5120, seed=i)
        spec = ModelSpec(
            network=NetworkSpec("mlp", {"width": 64, "depth": 3}),
            schedule=ScheduleSpec("ve", {"sigma": SIGMA}),
            objective=ObjectiveSpec("dsm", {"importance": True}),
            config_shape=(),
            theory=TheorySpec.of(sq.Quartic0D(mu2, g)),
        )
        model_dir = os.path.join(folder, name.replace(" ", "-"))
        t0 = time.perf_counter()
        train(
            model_dir,
            jnp.asarray(data),
            spec,
            TrainConfig(steps=iters, batch=512, lr=3e-3, steps_per_call=500, seed=i),
        )
        t_train = time.perf_counter() - t0
        model = load_model(model_dir)
        rows = []
        for t in TIMES:
            s_dm = np.asarray(sq.effective_action(model, t, jnp.asarray(GRID)))
            s_ex = exact_effective_action(mu2, g, model.schedule, t)
            p = np.exp(-(s_ex - s_ex.min()))
            p /= p.sum()
            shift = np.sum(p * (s_dm - s_ex))  # the additive constant, matched under p_t
            rms = float(np.sqrt(np.sum(p * (s_dm - shift - s_ex) ** 2)))
            rows.append(
                {"t": t, "S_DM": (s_dm - shift).tolist(), "S_exact": s_ex.tolist(), "rms": rms}
            )
        gen = sample_model(model_dir, 20_000, "sde", steps=500, seed=10 + i).samples
        gen = np.asarray(gen, np.float64).reshape(-1)
        phi2 = sq.stats.gamma_method(gen**2)
        out[name] = {
            "mu2": mu2,
            "g": g,
            "train_seconds": t_train,
            "flow": rows,
            "phi2": [phi2.value, phi2.error],
            "phi2_exact": moment2(mu2, g),
            "train_samples": data[:1024].tolist(),
            "generated": gen[:1024].tolist(),
        }
        print(
            f"{name}: trained {iters} steps in {t_train:.0f} s; p_t-weighted rms of "
            + ", ".join(f"t={r['t']}: {r['rms']:.3f}" for r in rows)
            + f"; <φ²> generated {phi2.value:.4f}({phi2.error:.4f}), exact "
            f"{out[name]['phi2_exact']:.4f}"
        )
    return out


def figure(path, res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
    for col, (name, r) in enumerate(res.items()):
        ax = axes[0, col]
        for j, row in enumerate(r["flow"]):
            s_ex = np.array(row["S_exact"])
            keep = s_ex - s_ex.min() < 12
            ax.plot(GRID[keep], np.array(row["S_DM"])[keep], color=f"C{j}", label=f"t = {row['t']}")
            ax.plot(GRID[keep], s_ex[keep], "k:", lw=1)
        s0 = np.array(r["flow"][0]["S_exact"])
        ax.set_ylim(s0.min() - 2, s0[s0 - s0.min() < 12].max() + 2)
        ax.set(
            xlabel="φ",
            ylabel="S(φ, t)",
            title=f"{name}, μ² = {r['mu2']}: S_DM (colour), −log p_t (dotted)",
        )
        ax.legend(fontsize=8)
        ax = axes[1, col]
        bins = np.linspace(-6, 6, 61)
        ax.hist(r["train_samples"], bins=bins, alpha=0.5, label="1024 training")
        ax.hist(r["generated"], bins=bins, alpha=0.5, label="1024 generated (reverse SDE)")
        ax.set(xlabel="φ", ylabel="count")
        ax.legend(fontsize=8)
    fig.suptitle("The effective action learned by a diffusion model, 0-dim φ⁴ (t = 0: data)")
    fig.savefig(path, dpi=85)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=20000, help="optimiser steps per theory")
    p.add_argument("--json", help="write the numbers to this file")
    p.add_argument("--figure", help="write the figure to this file (needs matplotlib)")
    a = p.parse_args()
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        res = study(a.iters, folder)
    if a.figure:
        figure(a.figure, res)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {
                    k: {f: v for f, v in r.items() if f not in ("train_samples", "generated")}
                    for k, r in res.items()
                },
                fh,
            )
    print(f"done in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
