"""Score networks inside loops on XLA:CPU: a loop step against the same evaluation outside one.

One U-Net (`--channels`, `--levels`, L × L lattice, `--chains` configurations; random weights:
the cost is measured, not the quality) is timed in four places, interleaved, minimum of
`--repeats`:

* `score, no loop` — one jitted batched evaluation `vmap(model)(t, φ)`, the unit;
* `reverse SDE step` — `sq.solve(sq.Reverse(...), n_steps=--steps)` (diffrax's `while` loop,
  Euler–Maruyama, one score evaluation per step), per step;
* `MAALA step` — `sq.MAALA` on 2D φ⁴ stepped by `sq.mcmc.run_chains` (`lax.scan`, cached
  state: one score and one action evaluation per step), per step;
* `training step` — value and gradient of the DSM loss + Adam inside `sqdiff.train`'s scan,
  per step, against the same step jitted alone.

Each row is run with sqdiff's `PeriodicConv` and, as the baseline of the same run, with
`eqx.nn.Conv` (`lax.conv` with JAX's own derivatives: what sqdiff 0.2 ran). The ratio
*loop step / no loop* is the number to read: ≈ 1 means the loop costs no more than its body.
Run: `python benchmarks/bench_conv_loops.py [--L 32 --channels 32 --levels 3 --chains 32]`.
"""

from __future__ import annotations

import argparse
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from bench_langevin import best_times

import sqdiff as sq
from sqdiff._xla import hot_jit
from sqdiff.checkpoint import TrainConfig, make_optimizer
from sqdiff.nn import PeriodicConv, UNet
from sqdiff.train import _advance


class _EqxConv(eqx.Module):
    """`eqx.nn.Conv` behind `PeriodicConv`'s interface (the baseline)."""

    conv: eqx.nn.Conv

    def __call__(self, x):
        return self.conv(x)

    def channels_last(self, x):
        return jnp.moveaxis(self.conv(jnp.moveaxis(x, -1, 0)), 0, -1)


def with_eqx_convs(model):
    """The same network and weights with every `PeriodicConv` computed by `eqx.nn.Conv`."""

    def swap(m):
        if not isinstance(m, PeriodicConv):
            return m
        out, cin, *kernel = m.weight.shape
        conv = eqx.nn.Conv(
            m.d, cin, out, kernel[0], stride=m.stride, padding=kernel[0] // 2,
            padding_mode="CIRCULAR", key=jr.key(0),
        )  # fmt: skip
        return _EqxConv(eqx.tree_at(lambda c: (c.weight, c.bias), conv, (m.weight, m.bias)))

    return jax.tree_util.tree_map(swap, model, is_leaf=lambda m: isinstance(m, PeriodicConv))


def score_once(model, x):
    f = hot_jit(lambda m, x: jax.vmap(m, in_axes=(None, 0))(0.3, x))
    return lambda: f(model, x)


def reverse_sde(model, x, steps):
    rev = sq.Reverse(model.schedule, model)

    @eqx.filter_jit
    def run(model, x, key):
        rev_m = eqx.tree_at(lambda r: r.score, rev, model)
        solve = lambda x, k: sq.solve(rev_m, x, 1.0, 0.05, key=k, n_steps=steps).ys[-1]  # noqa: E731
        return jax.vmap(solve)(x, jr.split(key, x.shape[0]))

    return lambda: run(model, x, jr.key(3))


def maala(model, x, steps):
    action = sq.Phi4(x.shape[1], kappa=0.21, lam=0.022)
    sampler = sq.MAALA(action, model, 0.05, 1e-3)
    return lambda: sq.mcmc.run_chains(sampler, jr.key(4), x, steps, chunk=steps)


def training(model, data, batch, steps, in_loop):
    spec = sq.specs.ModelSpec.from_json(
        {"model": "unet", "kwargs": {}, "schedule": {"name": "ve", "sigma": 25.0},
         "config_shape": list(data.shape[1:]), "group": "euclidean"}, None,
    )  # fmt: skip
    objective = spec.build_objective(None)
    config = TrainConfig(steps=steps, batch=batch, steps_per_call=steps)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    state = (params, params, make_optimizer(config).init(params))
    if in_loop:
        return lambda: _advance(objective, config, static, data, state, jnp.int32(0), steps)
    one = hot_jit(lambda state, i: _advance(objective, config, static, data, state, i, 1))

    def run():
        s = state
        for i in range(steps):
            s, _ = one(s, jnp.int32(i))
        return s

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--levels", type=int, default=2)
    p.add_argument("--chains", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    net = UNet(sq.VarianceExploding(25.0), d=2, channels=a.channels, levels=a.levels,
               key=jr.key(0))  # fmt: skip
    x = jr.normal(jr.key(1), (a.chains, a.L, a.L))
    out = {"device": str(jax.devices()[0]), "L": a.L, "channels": a.channels,
           "levels": a.levels, "chains": a.chains, "steps": a.steps}  # fmt: skip
    for name, model in [("PeriodicConv", net), ("eqx.nn.Conv", with_eqx_convs(net))]:
        fns = [
            score_once(model, x),
            reverse_sde(model, x, a.steps),
            maala(model, x, a.steps),
            training(model, x, a.chains, a.steps, in_loop=False),
            training(model, x, a.chains, a.steps, in_loop=True),
        ]
        t = best_times(fns, repeats=a.repeats)
        per = [t[0], t[1] / a.steps, t[2] / a.steps, t[3] / a.steps, t[4] / a.steps]
        out[name] = {
            "score_no_loop_ms": round(1e3 * per[0], 2),
            "reverse_sde_step_ms": round(1e3 * per[1], 2),
            "maala_step_ms": round(1e3 * per[2], 2),
            "train_step_no_loop_ms": round(1e3 * per[3], 1),
            "train_step_in_scan_ms": round(1e3 * per[4], 1),
            "reverse_sde_over_score": round(per[1] / per[0], 2),
            "maala_over_score": round(per[2] / per[0], 2),
            "train_scan_over_no_loop": round(per[4] / per[3], 2),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
