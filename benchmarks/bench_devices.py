"""Device scaling: the same work on 1, 2, 4, … devices (`sq.sharding.use_devices`).

Rows: HMC chains (`run_chains`, 2D φ⁴ κ = 0.21, λ = 0.022; `--chains` chains of `--n`
trajectories of 10 leapfrog steps) and reverse-SDE samples (`sample_sde`, a random-weight U-Net,
`--samples` samples of `--steps` Euler–Maruyama steps). Each is timed after a compiling run,
interleaved over device counts, minimum of `--repeats`; the ratio is time on 1 device / time on
k devices (ideal: k).

On a CPU, fake devices come from `XLA_FLAGS=--xla_force_host_platform_device_count=8`; they share
the same cores, so the curve there measures the partitioning overhead, not a speed-up.

Run: `XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/bench_devices.py`.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.random as jr

import sqdiff as sq


def hmc_run(L, chains, n):
    action = sq.Phi4(L=L, kappa=0.21, lam=0.022)
    hmc = sq.mcmc.HMC(action, step_size=0.1, n_steps=10)
    start = jr.normal(jr.key(0), (chains, L, L))
    return lambda: sq.mcmc.run_chains(hmc, jr.key(1), start, n, chunk=n)


def sde_run(L, samples, steps):
    action = sq.Phi4(L=L, kappa=0.21, lam=0.022)
    net = sq.nn.UNet(sq.VarianceExploding(25.0), channels=16, levels=2, key=jr.key(0))
    return lambda: (
        sq.sampling.sample_sde(jr.key(2), net, action, samples, steps=steps, batch=samples).samples
    )


def timed(fn, devices, repeats):
    best = {}
    for k in devices:  # compile once per device count
        with sq.sharding.use_devices(k):
            jax.block_until_ready(fn())
    for _ in range(repeats):
        for k in devices:
            with sq.sharding.use_devices(k):
                start = time.perf_counter()
                jax.block_until_ready(fn())
                best[k] = min(best.get(k, float("inf")), time.perf_counter() - start)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--chains", type=int, default=64)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args()
    n_dev = len(jax.devices())
    devices = [k for k in (1, 2, 4, 8, 16) if k <= n_dev]
    print(f"{n_dev} devices ({jax.devices()[0].platform}); L = {args.L}")
    out = {}
    rows = {
        "hmc": hmc_run(args.L, args.chains, args.n),
        "sde": sde_run(args.L, args.samples, args.steps),
    }
    for name, fn in rows.items():
        best = timed(fn, devices, args.repeats)
        out[name] = {str(k): best[k] for k in devices}
        cells = "  ".join(f"{k}: {best[k]:.3f} s (×{best[1] / best[k]:.2f})" for k in devices)
        print(f"{name:<5}{cells}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
