"""Training steps per second of the periodic U-Net on 32² φ⁴ configurations (DSM, VE).

Times `sqdiff.train.train` itself (jit-compiled `lax.scan` of `steps_per_call` optimiser steps
per host call) for N steps, after a warm-up call with the same settings that compiles it; the
rate includes the per-call costs (model set-up, checks, the final checkpoint), so it is a lower
bound on the steady state. The baseline in the same run is one forward pass of the same batch,
giving the step cost in forward-pass units.
Run: `python benchmarks/bench_train.py [--L 32 --batch 32 --channels 32]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time

import jax
import jax.numpy as jnp
import jax.random as jr

from sqdiff.train import TrainConfig, build_model, train


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--iters", type=int, default=100)
    a = p.parse_args()
    spec = {
        "model": "unet",
        "kwargs": {"d": 2, "channels": a.channels, "levels": a.levels},
        "schedule": {"name": "ve", "sigma": 25.0},
        "config_shape": [a.L, a.L],
        "group": "euclidean",
    }
    data = jr.normal(jr.key(0), (512, a.L, a.L))
    tmp = tempfile.mkdtemp()
    cfg = TrainConfig(
        steps=a.iters, batch=a.batch, steps_per_call=min(a.iters, 100), checkpoint_every=10**9
    )
    try:
        t = time.perf_counter()
        train(f"{tmp}/warm", data, spec, cfg, progress=False)  # compiles
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        train(f"{tmp}/run", data, spec, cfg, progress=False)  # same settings: no compilation
        t_run = time.perf_counter() - t
    finally:
        shutil.rmtree(tmp)
    t_step = t_run / a.iters
    model = build_model(spec)
    fwd = jax.jit(jax.vmap(model))
    ts, xs = jnp.full((a.batch,), 0.5), data[: a.batch]
    jax.block_until_ready(fwd(ts, xs))
    t = time.perf_counter()
    for _ in range(20):
        out = fwd(ts, xs)
    jax.block_until_ready(out)
    t_fwd = (time.perf_counter() - t) / 20
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "L": a.L,
                "batch": a.batch,
                "channels": a.channels,
                "train_steps_per_s": round(1 / t_step, 2),
                "compile_s": round(t_first - t_run, 2),
                "step_over_forward": round(t_step / t_fwd, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
