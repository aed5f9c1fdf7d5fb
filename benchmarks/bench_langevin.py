"""Overhead of sqdiff's diffrax-based Langevin sampler against a hand-written `lax.scan` loop.

Both integrate `dφ = −∇S dt + √2 dW` with Euler–Maruyama for the 2D φ⁴ action
`S = Σ_x [−2κ Σ_μ φ(x)φ(x+μ̂) + (1−2λ)φ² + λφ⁴]` (same analytic force, same number of normal
draws per step), vmapped over chains. Reported: wall time per step of each, and the ratio
sqdiff / scan (target ≤ 1.05). Run: `python benchmarks/bench_langevin.py [--L 64 --chains 16]`.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import jax.random as jr

import sqdiff as sq


def phi4_force(phi, kappa=0.21, lam=0.022):
    neighbours = sum(jnp.roll(phi, s, axis=a) for a in (-2, -1) for s in (1, -1))
    return -2 * kappa * neighbours + 2 * (1 - 2 * lam) * phi + 4 * lam * phi**3


def make_sqdiff_run(n_steps, dt):
    dyn = sq.Langevin(force=phi4_force)

    @jax.jit
    def run(keys, phi0):
        solve = lambda k, p: sq.solve(dyn, p, 0.0, n_steps * dt, key=k, n_steps=n_steps).ys[-1]  # noqa: E731
        return jax.vmap(solve)(keys, phi0)

    return run


def make_scan_run(n_steps, dt):
    sqrt_2dt = jnp.sqrt(2 * dt)

    def one_chain(key, phi0):
        def step(phi, k):
            eta = jr.normal(k, phi.shape, phi.dtype)
            return phi - dt * phi4_force(phi) + sqrt_2dt * eta, None

        phi, _ = jax.lax.scan(step, phi0, jr.split(key, n_steps))
        return phi

    return jax.jit(jax.vmap(one_chain))


def best_times(fns, *args, repeats=7):
    """Minimum wall time of each function, measured interleaved so that machine noise
    (frequency scaling, other load) affects all of them alike."""
    for fn in fns:
        jax.block_until_ready(fn(*args))  # compile
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            ts.append(time.perf_counter() - t)
    return [min(ts) for ts in times]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--dt", type=float, default=0.01)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    keys = jr.split(jr.key(0), a.chains)
    phi0 = jnp.zeros((a.chains, a.L, a.L))
    t_sq, t_scan = best_times(
        [make_sqdiff_run(a.steps, a.dt), make_scan_run(a.steps, a.dt)],
        keys,
        phi0,
        repeats=a.repeats,
    )
    site_updates = a.chains * a.L**2 * a.steps
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "L": a.L,
                "chains": a.chains,
                "steps": a.steps,
                "sqdiff_s": round(t_sq, 4),
                "scan_s": round(t_scan, 4),
                "ratio_sqdiff_over_scan": round(t_sq / t_scan, 3),
                "sqdiff_site_updates_per_s": f"{site_updates / t_sq:.3e}",
            }
        )
    )


if __name__ == "__main__":
    main()
