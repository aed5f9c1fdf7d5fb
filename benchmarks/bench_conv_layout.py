"""Channels-first vs channels-last periodic convolutions inside solver loops on XLA:CPU.

The same U-Net (and U(1) link network) weights run once with `eqx.nn.Conv` (channels first,
what sqdiff used before) and once with `sqdiff.nn.PeriodicConv` (channels last, now the
default). Timed: one batched forward pass outside any loop, a fixed-step reverse-SDE solve
(`sq.solve(sq.Reverse(...))`, a diffrax `while` loop), and for U(1) a probability-flow solve
with the exact divergence (the IMH proposal). Reported: seconds of each and the ratio
channels-first / channels-last. Run: `python benchmarks/bench_conv_layout.py [--L 16]`.
"""

from __future__ import annotations

import argparse
import json

import equinox as eqx
import jax
import jax.random as jr
from bench_langevin import best_times

import sqdiff as sq
from sqdiff.nn import PeriodicConv, U1LinkNet, UNet


def channels_first(model):
    """The same network with every `PeriodicConv` replaced by the equivalent `eqx.nn.Conv`."""

    def swap(m):
        if not isinstance(m, PeriodicConv):
            return m
        out, cin, *kernel = m.weight.shape
        conv = eqx.nn.Conv(
            m.d, cin, out, kernel[0], stride=m.stride, padding=kernel[0] // 2,
            padding_mode="CIRCULAR", key=jr.key(0),
        )  # fmt: skip
        return eqx.tree_at(lambda c: (c.weight, c.bias), conv, (m.weight, m.bias))

    return jax.tree_util.tree_map(swap, model, is_leaf=lambda m: isinstance(m, PeriodicConv))


def reverse_run(model, shape, chains, steps, group=sq.Euclidean()):
    sch = model.schedule

    @jax.jit
    def run(key):
        def one(k):
            k0, k1 = jr.split(k)
            x = sch.prior_sample(k0, shape)
            rev = sq.Reverse(sch, model, group=group)
            return sq.solve(rev, x, sch.T, 0.0, key=k1, n_steps=steps).ys[-1]

        return jax.vmap(one)(jr.split(key, chains))

    return run


def flow_run(model, shape, chains):
    flow = sq.ProbabilityFlow(model.schedule, model, divergence="exact", group=sq.U1())
    return jax.jit(
        lambda key: sq.mcmc.flow_proposals(key, flow, shape, chains, batch=chains, rtol=1e-5).log_q
    )


def forward_run(model, shape, chains):
    x = jr.normal(jr.key(1), (chains, *shape))
    return jax.jit(lambda key: jax.vmap(model, in_axes=(None, 0))(0.3, x))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--chains", type=int, default=64)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    ve = sq.VarianceExploding(25.0)
    unet = UNet(ve, d=2, channels=16, levels=2, key=jr.key(0))
    link = U1LinkNet(sq.VarianceExploding(10.0), channels=16, depth=2, key=jr.key(1))
    L, n = a.L, a.chains
    cases = {
        "unet_forward": lambda m: forward_run(m, (L, L), n),
        "unet_reverse_sde": lambda m: reverse_run(m, (L, L), n, a.steps),
        "u1_reverse_sde": lambda m: reverse_run(m, (2, 8, 8), n, a.steps, sq.U1()),
        "u1_flow_exact_divergence": lambda m: flow_run(m, (2, 8, 8), 8),
    }
    out = {"device": str(jax.devices()[0]), "L": L, "chains": n, "steps": a.steps}
    for name, make in cases.items():
        model = link if name.startswith("u1") else unet
        first, last = best_times(
            [make(channels_first(model)), make(model)], jr.key(2), repeats=a.repeats
        )
        out[name] = {
            "channels_first_s": round(first, 4),
            "channels_last_s": round(last, 4),
            "ratio_first_over_last": round(first / last, 2),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
