"""The two-Gaussian cumulant study and stochastic quantization checks, end to end on CPU.

1. Reverse-time SDE (VE and VP) with the exact score of `½[N(1, 0.25²) + N(−1, 0.25²)]`:
   cumulants κ2…κ8 of the generated samples against the exact 1.0625, −2, 16, −272
   (Wang, Aarts, Zhou, NeurIPS ML4PS 2023; the source talks' cumulant table).
2. Langevin / stochastic quantization of the 0-dim quartic `S = μ²/2 φ² + g/4! φ⁴` against
   quadrature, and of a single U(1) plaquette and SU(2) link against Bessel-function ratios.

Run: `python examples/cumulant_study.py [--samples 100000] [--steps 1000] [--json out.json]
[--figure cumulants.png]` (about a minute). The figure shows the generated samples against the
exact density and the cumulants κ4, κ6, κ8 along the reverse process against their exact flow:
conserved without drift (VE), `κ_n(t) = κ_n(0) f(t)^n` → 0 with drift (VP). docs/studies/
cumulants.md is this run.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import jax.numpy as jnp
import jax.random as jr
import numpy as np
from scipy import integrate, special

import sqdiff as sq


def row(name, est, err, exact):
    pulls = (np.asarray(est) - exact) / np.asarray(err)
    cells = "  ".join(f"{e:10.4f}({d:.4f})" for e, d in zip(est, err, strict=True))
    return f"{name:<28}{cells}   max |pull| = {np.max(np.abs(pulls)):.1f}σ"


#: times at which the reverse process is measured for the figure (fractions of T = 1)
FLOW_TIMES = (0.5, 0.3, 0.2, 0.15, 0.1, 0.05, 0.02, 0.0)
SCHEDULES = {
    "VE": ("VE (σ = 25)", sq.VarianceExploding(25.0)),
    "VP": ("VP (β 0.1 → 20)", sq.VariancePreserving(0.1, 20.0)),
}
EXACT = np.array([1.0625, -2.0, 16.0, -272.0])  # κ2, κ4, κ6, κ8 of ½[N(±1, 0.25²)]
#: Wang, Aarts, Zhou (NeurIPS ML4PS 2023) / the source talks: 10⁵ samples
PUBLISHED = {
    "VE": ([1.0692, -2.001, 16.03, -272.7], [0.0006, 0.002, 0.03, 0.6]),
    "VP": ([1.0609, -1.976, 15.72, -265.6], [0.0005, 0.002, 0.02, 0.6]),
}


def _cumulants(x):
    """κ2, κ4, κ6, κ8 with jackknife errors (50 blocks)."""
    est, err = sq.stats.jackknife(
        lambda d: np.asarray(sq.stats.cumulants(d, 8))[1::2], np.asarray(x, float), 50
    )
    return np.asarray(est), np.asarray(err)


def cumulant_study(n, steps):
    """The reverse SDE from the prior with the exact score, saved at `FLOW_TIMES`; returns
    per schedule the cumulants at t = 0, along the flow, and the samples at t = 0."""
    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    print(f"\nReverse SDE with the exact score, {n} samples, {steps} Euler–Maruyama steps")
    print(f"{'':<28}" + "  ".join(f"{k:>18}" for k in ("κ2", "κ4", "κ6", "κ8")))
    print(f"{'exact':<28}" + "  ".join(f"{v:18.4f}" for v in EXACT))
    out = {}
    for key, (name, schedule) in SCHEDULES.items():
        reverse = sq.Reverse(schedule, lambda t, x, s=schedule: mix.score(t, x, s))
        x_T = schedule.prior_sample(jr.key(0), (n,))
        ts = jnp.array((schedule.T, *FLOW_TIMES))
        ys = sq.solve(reverse, x_T, schedule.T, 0.0, key=jr.key(1), n_steps=steps, ts=ts).ys
        flow = [_cumulants(y) for y in ys[1:]]
        est, err = flow[-1]
        print(row(name, est, err, EXACT))
        value, error = PUBLISHED[key]
        print(row(f"  published {key}", value, error, EXACT))
        out[key] = {
            "kappa": est.tolist(),
            "error": err.tolist(),
            "flow_t": list(FLOW_TIMES),
            "flow_kappa": [f[0].tolist() for f in flow],
            "flow_error": [f[1].tolist() for f in flow],
            "samples": np.asarray(ys[-1]),
        }
    return out


def exact_flow(schedule, t):
    """κ2, κ4, κ6, κ8 of the forward marginal p_t: κ2 = Ξ + E[x0²] f², κ_n = κ_n(0) fⁿ."""
    f = float(schedule.mean_coeff(t))
    xi = float(schedule.marginal_std(t)) ** 2
    return np.array([xi + EXACT[0] * f**2, *(EXACT[1:] * f ** np.array([4, 6, 8]))])


def figure(path, res):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    grid = np.linspace(-2, 2, 400)
    density = np.exp(np.asarray(mix.log_prob(0.0, jnp.asarray(grid))))
    ax = axes[0]
    for i, key in enumerate(SCHEDULES):
        ax.hist(
            res[key]["samples"],
            bins=120,
            range=(-2, 2),
            density=True,
            histtype="step",
            color=f"C{i}",
            label=f"{key} reverse SDE",
        )
    ax.plot(grid, density, "k--", lw=1, label="exact P0")
    ax.set(xlabel="x", ylabel="density", title="generated samples (t = 0)")
    ax.legend()
    for ax, key in zip(axes[1:], SCHEDULES, strict=True):
        schedule = SCHEDULES[key][1]
        t_line = np.linspace(0, 0.5, 101)
        ex = np.array([exact_flow(schedule, t) for t in t_line])
        t_pts = np.array(res[key]["flow_t"])
        k_pts = np.array(res[key]["flow_kappa"])
        e_pts = np.array(res[key]["flow_error"])
        for j, n in enumerate((4, 6, 8)):
            ax.plot(t_line, ex[:, j + 1] / EXACT[j + 1], color=f"C{j}", lw=1)
            ax.errorbar(
                t_pts,
                k_pts[:, j + 1] / EXACT[j + 1],
                yerr=e_pts[:, j + 1] / abs(EXACT[j + 1]),
                fmt="o",
                ms=3,
                color=f"C{j}",
                label=f"κ{n}(t)/κ{n}(0)",
            )
        ax.set(xlabel="t", ylabel="κ_n(t) / κ_n(0)", title=f"{SCHEDULES[key][0]}: cumulant flow")
        ax.set_ylim(-0.5, 1.6)
        ax.legend()
    fig.suptitle("Two-Gaussian mixture: reverse SDE with the exact score (lines: exact flow)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def mean_with_error(x):
    x = np.asarray(x, np.float64)
    return x.mean(), x.std() / math.sqrt(x.size)


def langevin_checks(chains):
    print(f"\nLangevin / stochastic quantization, {chains} independent chains")
    mu2, g = -1.0, 0.4
    w = lambda x: math.exp(-(mu2 / 2 * x**2 + g / 24 * x**4))  # noqa: E731
    z = integrate.quad(w, -np.inf, np.inf)[0]
    exact = integrate.quad(lambda x: x**2 * w(x), -np.inf, np.inf)[0] / z
    dyn = sq.Langevin(lambda p: jnp.sum(mu2 / 2 * p**2 + g / 24 * p**4))
    phi = sq.solve(
        dyn, 4 * jr.normal(jr.key(2), (chains,)), 0.0, 10.0, key=jr.key(3), n_steps=5000
    ).ys[-1]
    m, e = mean_with_error(phi**2)
    print(f"  double well ⟨φ²⟩        {m:9.4f} ± {e:.4f}   quadrature {exact:.4f}")

    beta = 2.0
    u1 = sq.Langevin(lambda th: -beta * jnp.sum(jnp.cos(th)), group=sq.U1())
    th = sq.solve(
        u1, sq.U1().sample_haar(jr.key(4), (chains,)), 0.0, 8.0, key=jr.key(5), n_steps=4000
    ).ys[-1]
    m, e = mean_with_error(jnp.cos(th))
    print(
        f"  U(1) ⟨cos θ⟩, β = 2     {m:9.4f} ± {e:.4f}   I1/I0      "
        f"{special.iv(1, beta) / special.iv(0, beta):.4f}"
    )

    beta, G = 3.0, sq.SU(2)
    su2 = sq.Langevin(
        lambda U: -beta / 2 * jnp.sum(jnp.real(jnp.trace(U, axis1=-2, axis2=-1))), group=G
    )
    U = sq.solve(
        su2, G.sample_haar(jr.key(6), (chains,)), 0.0, 8.0, key=jr.key(7), n_steps=4000
    ).ys[-1]
    m, e = mean_with_error(0.5 * jnp.real(jnp.trace(U, axis1=-2, axis2=-1)))
    print(
        f"  SU(2) ⟨½ Re tr U⟩, β = 3 {m:8.4f} ± {e:.4f}   I2/I1      "
        f"{special.iv(2, beta) / special.iv(1, beta):.4f}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--chains", type=int, default=20_000)
    p.add_argument("--json", help="write the cumulants (and their flow) to this file")
    p.add_argument("--figure", help="write the figure to this file (needs matplotlib)")
    p.add_argument("--no-langevin", action="store_true", help="only the cumulant study")
    a = p.parse_args()
    t = time.perf_counter()
    res = cumulant_study(a.samples, a.steps)
    if a.figure:
        figure(a.figure, res)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                {k: {f: v for f, v in r.items() if f != "samples"} for k, r in res.items()},
                fh,
                indent=1,
            )
    if not a.no_langevin:
        langevin_checks(a.chains)
    print(f"\ndone in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
