"""Wilson flow and 4D HMC throughput in link updates per second, against the Wilson force in
the same run.

All `jit`-compiled, on a batch of configurations, timed interleaved (minimum of repeats):

- *force*: the analytic Wilson force of the batch (the unit of cost);
- *flow*: `n_flow` Lüscher RK3 steps (`sq.wilson_flow`, 3 forces + 3 exponentials per step);
- *flow + observables*: the same with `E` (plaquette, clover), `dE/dt` and the clover `Q`
  saved at 11 times (what `sqdiff measure --flow` does);
- *HMC*: one trajectory of `n_md` leapfrog steps per configuration.

A link update is one link moved by one step (flow step or leapfrog step); the ratio
"flow step / force" says how far the RK3 step is from its floor of 3 forces.

Run: `python benchmarks/bench_flow.py [--N 3 --L 4 --batch 4]`.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.random as jr
import numpy as np
from bench_langevin import best_times

import sqdiff as sq
from sqdiff.gradient_flow import flow_observables, wilson_flow


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=2)
    p.add_argument("--L", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--n-flow", type=int, default=50)
    p.add_argument("--n-md", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    action = sq.SUNWilson(a.N, a.L, 2.3 if a.N == 2 else 6.0, d=4)
    U = jax.vmap(action.random_config)(jr.split(jr.key(0), a.batch))
    ts = np.linspace(0, 0.02 * a.n_flow, 11)
    force = jax.jit(jax.vmap(action.force))
    flow = jax.jit(
        jax.vmap(lambda V: wilson_flow(action, V, 0.02 * a.n_flow, n_steps=a.n_flow).ys[-1])
    )
    flow_obs = jax.jit(jax.vmap(lambda V: flow_observables(action, V, ts, n_steps=a.n_flow)))
    hmc = sq.HMC(action, 0.05, a.n_md)
    states = jax.vmap(hmc.init)(U)
    hmc_step = jax.jit(jax.vmap(hmc.step))
    keys = jr.split(jr.key(1), a.batch)

    t_force, t_flow, t_obs, t_hmc = best_times(
        [
            lambda: force(U),
            lambda: flow(U),
            lambda: flow_obs(U),
            lambda: hmc_step(keys, states),
        ],
        repeats=a.repeats,
    )
    links = a.batch * 4 * a.L**4
    row = {
        "group": f"SU({a.N})",
        "lattice": f"{a.L}^4",
        "batch": a.batch,
        "device": jax.devices()[0].platform,
        "flow step / force": round(t_flow / a.n_flow / t_force, 2),
        "flow link updates/s": float(f"{links * a.n_flow / t_flow:.3g}"),
        "flow+obs link updates/s": float(f"{links * a.n_flow / t_obs:.3g}"),
        "HMC link updates/s": float(f"{links * a.n_md / t_hmc:.3g}"),
        "force link evaluations/s": float(f"{links / t_force:.3g}"),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
