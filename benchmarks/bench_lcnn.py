"""The gauge-equivariant L-CNN on SU(N) links: forward, training step, MAALA step, against the
Wilson force and an HMC trajectory in the same run.

All on one configuration batch, `jit`-compiled, timed interleaved (minimum of repeats):

- *force*: the analytic Wilson force `∇S` of a batch (the unit of HMC cost);
- *L-CNN*: the score network on the same batch (random weights: the cost is measured);
- *train step*: value and gradient of the group DSM loss on the batch plus an Adam update;
- *MAALA step*: one cached Metropolis-adjusted Langevin step with the L-CNN drift, per chain;
- *HMC trajectory*: `n_md` leapfrog steps with the Wilson force, per chain.

Run: `python benchmarks/bench_lcnn.py [--N 2 --d 2 --L 8 --batch 16]`.
"""

from __future__ import annotations

import argparse
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax
from bench_langevin import best_times

import sqdiff as sq
from sqdiff.nn import LCNN
from sqdiff.objectives import GroupDSM


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--N", type=int, default=2)
    p.add_argument("--d", type=int, default=2)
    p.add_argument("--L", type=int, default=8)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--n-md", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()

    action = sq.SUNWilson(a.N, a.L, 2.0, d=a.d)
    g = action.group
    sch = sq.VarianceExploding(5.0)
    net = LCNN(sch, "su", a.N, a.d, a.channels, a.depth, key=jr.key(0))
    U = jax.vmap(action.random_config)(jr.split(jr.key(1), a.batch))
    t = jnp.full((a.batch,), 0.05)

    force = jax.jit(jax.vmap(action.force))
    forward = jax.jit(jax.vmap(net))
    objective = GroupDSM(sch, g, 1e-3 * sch.T, False)
    opt = optax.adam(1e-3)
    params, static = eqx.partition(net, eqx.is_inexact_array)
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        def loss(p):
            return objective.loss(eqx.combine(p, static), key, U)

        value, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    maala = sq.MAALA(action, net, 0.05, 0.02)
    hmc = sq.HMC(action, 0.05, a.n_md)
    maala_states = jax.vmap(maala.init)(U)
    hmc_states = jax.vmap(hmc.init)(U)
    keys = jr.split(jr.key(2), a.batch)
    maala_step = jax.jit(jax.vmap(maala.step))
    hmc_step = jax.jit(jax.vmap(hmc.step))

    t_force, t_net, t_train, t_maala, t_hmc = best_times(
        [
            lambda: force(U),
            lambda: forward(t, U),
            lambda: train_step(params, opt_state, jr.key(3)),
            lambda: maala_step(keys, maala_states),
            lambda: hmc_step(keys, hmc_states),
        ],
        repeats=a.repeats,
    )
    row = {
        "device": jax.devices()[0].platform,
        "group": str(g),
        "d": a.d,
        "L": a.L,
        "batch": a.batch,
        "channels": a.channels,
        "depth": a.depth,
        "force_configs_per_s": a.batch / t_force,
        "lcnn_configs_per_s": a.batch / t_net,
        "lcnn_over_force": t_net / t_force,
        "train_steps_per_s": 1 / t_train,
        "maala_chain_steps_per_s": a.batch / t_maala,
        "hmc_trajectories_per_s": a.batch / t_hmc,
        "hmc_trajectory_over_maala_step": t_hmc / t_maala,
    }
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
