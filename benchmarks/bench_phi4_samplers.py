"""φ⁴ site updates per second of HMC (leapfrog force evaluations) and Langevin, and the
memory-bandwidth bound they imply.

One "site update" = one force evaluation + field update at one site. For HMC that is one
leapfrog step at one site; for Langevin (sqdiff.solve, Euler–Maruyama) one time step. The
bound: a float32 site update reads φ (with neighbours from cache) and writes φ and the
momentum/noise, ≈ 16 bytes per site update for HMC (φ, P read + written) and ≈ 8 bytes for
Langevin (φ read + written; noise generated on chip), so `bytes/s = rate × bytes`.

Run: `python benchmarks/bench_phi4_samplers.py [--L 64 --chains 16]`.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.random as jr

import sqdiff as sq


def timed(fn, *args, repeats=5):
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=64)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--trajectories", type=int, default=20)
    p.add_argument("--n-md", type=int, default=10)
    p.add_argument("--langevin-steps", type=int, default=200)
    a = p.parse_args()
    action = sq.Phi4(a.L, 0.21, 0.022)
    hmc = sq.HMC(action, 0.1, a.n_md)
    keys = jr.split(jr.key(0), a.chains)
    phi0 = jax.vmap(action.random_config)(keys)

    @jax.jit
    def run_hmc(keys, phi):
        def chain(k, x):
            def body(x, kk):
                return hmc.step(kk, x)[0], None

            return jax.lax.scan(body, x, jr.split(k, a.trajectories))[0]

        return jax.vmap(chain)(keys, phi)

    dyn = sq.Langevin(action)

    @jax.jit
    def run_langevin(keys, phi):
        return jax.vmap(
            lambda k, x: sq.solve(
                dyn, x, 0.0, 0.01 * a.langevin_steps, key=k, n_steps=a.langevin_steps
            ).ys[-1]
        )(keys, phi)

    V = a.L**2
    t_hmc = timed(run_hmc, keys, phi0)
    t_lan = timed(run_langevin, keys, phi0)
    # n_md + 1 force evaluations per trajectory (+1 for the action at the end, not counted)
    hmc_rate = a.chains * V * a.trajectories * a.n_md / t_hmc
    lan_rate = a.chains * V * a.langevin_steps / t_lan
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "L": a.L,
                "chains": a.chains,
                "hmc_site_updates_per_s": f"{hmc_rate:.3e}",
                "hmc_bytes_per_s_at_16B": f"{hmc_rate * 16:.3e}",
                "langevin_site_updates_per_s": f"{lan_rate:.3e}",
                "langevin_bytes_per_s_at_8B": f"{lan_rate * 8:.3e}",
            }
        )
    )


if __name__ == "__main__":
    main()
