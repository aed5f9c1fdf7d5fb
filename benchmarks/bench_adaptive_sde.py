"""Network evaluations per sample of the reverse SDE: fixed Euler–Maruyama against adaptive steps.

The two-Gaussian mixture `½[N(1, 0.25²) + N(−1, 0.25²)]` with its exact score (VE σ = 25 and
VP β 0.1 → 20, T = 1), 10⁵ samples per row, reverse SDE from the prior at T to 0:

- `em N`: N fixed Euler–Maruyama steps (`solve(..., n_steps=N)`);
- `em-sigma N`: N fixed steps equal in `log(Σ/m)` (`log Σ` on VE) (`sample_sde(..., grid="sigma")`);
- `tree rtol/atol`: adaptive, `VirtualBrownianTree`, ShARK (two evaluations per step attempt,
  rejected steps retried on the same Brownian path);
- `fresh rtol/atol`: adaptive, Gotta Go Fast's Euler–Maruyama/Heun pair on fresh increments, no
  step rejected (`solve(..., noise="fresh")`, `PredictableSteps`);
- `ggf-reject rtol/atol`: the same pair and fresh increments, rejected steps retried with *new*
  noise, as Gotta Go Fast does (kept here to show its bias; not offered by `solve`).

Reported per row: network evaluations per sample (mean, max, rejected steps included, from
`sol.stats["num_evaluations"]`), the largest |pull| of κ2, κ4, κ6, κ8 against the exact 1.0625,
−2, 16, −272 (jackknife errors, 50 blocks), and wall seconds. The target: the accuracy of 1000
Euler–Maruyama steps (every |pull| < 3 at 10⁵ samples) within 100 evaluations per sample.

Run: `python benchmarks/bench_adaptive_sde.py [--n 100000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import json
import time

import diffrax
import jax
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.sampling import reverse_grid

EXACT = np.array([1.0625, -2.0, 16.0, -272.0])
SCHEDULES = {"VE": sq.VarianceExploding(25.0), "VP": sq.VariancePreserving(0.1, 20.0)}
TOLERANCES = ((0.1, 0.05), (0.05, 0.02), (0.02, 0.01), (0.01, 0.005))


def ggf_reject(rtol, atol):
    """Gotta Go Fast as published: fresh noise for every attempt, rejected steps retried."""

    def solve(reverse, x, t0, t1, key):
        terms = reverse.solver_terms(
            _Fresh(jax.ShapeDtypeStruct(reverse.noise_shape(x), x.dtype), key), x, None
        )
        s0, s1 = reverse.physical_time(t0), reverse.physical_time(t1)
        pid = diffrax.PIDController(rtol=rtol, atol=atol, pcoeff=0.0, icoeff=0.9)
        sol = diffrax.diffeqsolve(
            terms, sq.GeometricHeun(), s0, s1, (s1 - s0) / 100, x,
            stepsize_controller=pid, max_steps=16384, adjoint=diffrax.ForwardMode(),
        )  # fmt: skip
        return sol.ys[-1], 2 * sol.stats["num_steps"]

    return solve


class _Fresh(diffrax.AbstractBrownianPath):
    """Fresh increments keyed by (t0, t1) that diffrax accepts under an adaptive controller."""

    shape: jax.ShapeDtypeStruct
    key: jax.Array
    levy_area: type = diffrax.BrownianIncrement

    @property
    def t0(self):
        return -np.inf

    @property
    def t1(self):
        return np.inf

    def evaluate(self, t0, t1=None, left=True, use_levy=False):
        path = diffrax.UnsafeBrownianPath(shape=self.shape, key=self.key)
        return path.evaluate(t0, t1)


def with_solve(**options):
    def solve(reverse, x, t0, t1, key):
        sol = sq.solve(reverse, x, t0, t1, key=key, **options)
        return sol.ys[-1], sol.stats["num_evaluations"]

    return solve


def sigma_grid(n_steps):
    """`n_steps` Euler–Maruyama steps equal in `log(Σ/m)` to `10⁻³ T`, then one to 0 (the grid
    of `sample_sde(..., grid="sigma")`)."""

    def solve(reverse, x, t0, t1, key):
        ts = reverse_grid(reverse.schedule, t1, n_steps, "sigma")
        sol = sq.solve(reverse, x, t0, t1, key=key, n_steps=n_steps, grid=ts)
        return sol.ys[-1], sol.stats["num_evaluations"]

    return solve


def rows():
    for n_steps in (30, 50, 100):
        yield f"em {n_steps}", with_solve(n_steps=n_steps)
        yield f"em-sigma {n_steps}", sigma_grid(n_steps)
    yield "em 1000", with_solve(n_steps=1000)
    for noise in ("tree", "fresh"):
        for rtol, atol in TOLERANCES:
            opts = dict(adaptive=True, noise=noise, rtol=rtol, atol=atol)
            yield f"{noise} {rtol}/{atol}", with_solve(**opts)
    for rtol, atol in TOLERANCES[1:3]:
        yield f"ggf-reject {rtol}/{atol}", ggf_reject(rtol, atol)


def measure(schedule, solve, n):
    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    reverse = sq.Reverse(schedule, lambda t, x: mix.score(t, x, schedule))

    def one(k):
        k0, k1 = jr.split(k)
        return solve(reverse, schedule.prior_sample(k0, ()), schedule.T, 0.0, k1)

    run = jax.jit(jax.vmap(one))
    keys = jr.split(jr.key(0), n)
    jax.block_until_ready(run(keys[:8]))  # compile
    start = time.perf_counter()
    x, nfe = jax.block_until_ready(run(keys))
    seconds = time.perf_counter() - start
    est, err = sq.stats.jackknife(
        lambda d: np.asarray(sq.stats.cumulants(d, 8))[1::2], np.asarray(x, np.float64), 50
    )
    pulls = (np.asarray(est) - EXACT) / np.asarray(err)
    nfe = np.asarray(nfe, np.float64)
    return {
        "nfe_mean": float(nfe.mean()),
        "nfe_max": float(nfe.max()),
        "max_abs_pull": float(np.max(np.abs(pulls))),
        "pulls": np.round(pulls, 2).tolist(),
        "seconds": seconds,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--json")
    p.add_argument("--rows", help="only the rows whose label contains this (e.g. em)")
    args = p.parse_args()
    out = {}
    print(f"{'schedule':<9}{'row':<22}{'nfe mean':>9}{'max':>6}{'max|pull|':>11}{'s':>7}")
    for name, schedule in SCHEDULES.items():
        for label, solve in rows():
            if args.rows and args.rows not in label:
                continue
            r = measure(schedule, solve, args.n)
            out[f"{name} {label}"] = r
            print(
                f"{name:<9}{label:<22}{r['nfe_mean']:9.1f}{r['nfe_max']:6.0f}"
                f"{r['max_abs_pull']:11.1f}{r['seconds']:7.1f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
