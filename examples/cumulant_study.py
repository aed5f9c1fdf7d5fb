"""The two-Gaussian cumulant study and stochastic quantization checks, end to end on CPU.

1. Reverse-time SDE (VE and VP) with the exact score of `½[N(1, 0.25²) + N(−1, 0.25²)]`:
   cumulants κ2…κ8 of the generated samples against the exact 1.0625, −2, 16, −272
   (Wang, Aarts, Zhou, NeurIPS ML4PS 2023; the source talks' cumulant table).
2. Langevin / stochastic quantization of the 0-dim quartic `S = μ²/2 φ² + g/4! φ⁴` against
   quadrature, and of a single U(1) plaquette and SU(2) link against Bessel-function ratios.

Run: `python examples/cumulant_study.py [--samples 100000] [--steps 1000]` (about a minute).
"""

from __future__ import annotations

import argparse
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


def cumulant_study(n, steps):
    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    exact = np.array([1.0625, -2.0, 16.0, -272.0])
    print(f"\nReverse SDE with the exact score, {n} samples, {steps} Euler–Maruyama steps")
    print(f"{'':<28}" + "  ".join(f"{k:>18}" for k in ("κ2", "κ4", "κ6", "κ8")))
    print(f"{'exact':<28}" + "  ".join(f"{v:18.4f}" for v in exact))
    for name, schedule in [
        ("VE (σ = 25)", sq.VarianceExploding(25.0)),
        ("VP (β 0.1 → 20)", sq.VariancePreserving(0.1, 20.0)),
    ]:
        reverse = sq.Reverse(schedule, lambda t, x, s=schedule: mix.score(t, x, s))
        x_T = schedule.prior_sample(jr.key(0), (n,))
        x_0 = sq.solve(reverse, x_T, schedule.T, 0.0, key=jr.key(1), n_steps=steps).ys[-1]
        est, err = sq.stats.jackknife(
            lambda d: np.asarray(sq.stats.cumulants(d, 8))[1::2], np.asarray(x_0, float), 50
        )
        print(row(name, est, err, exact))


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
    a = p.parse_args()
    t = time.perf_counter()
    cumulant_study(a.samples, a.steps)
    langevin_checks(a.chains)
    print(f"\ndone in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
