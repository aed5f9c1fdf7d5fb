"""Run by tests/test_sharding.py in a fresh process with 8 forced CPU devices: the same chains,
samples and training on 8 devices and on 1 (`sq.sharding.use_devices(1)`). Prints one JSON
object of comparisons."""

import json
import os
import sys
import tempfile

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec
from sqdiff.train import TrainConfig, train


class LinearScore(eqx.Module):
    """`−φ / (1 + Σ(t)²)`: the score of a unit Gaussian under the schedule (a stand-in
    network: the test is about where it runs, not about what it learned)."""

    schedule: sq.VarianceExploding

    def __call__(self, t, phi):
        return -phi / (1.0 + self.schedule.marginal_std(t) ** 2)


def chains():
    action = sq.Phi4(L=8, kappa=0.21, lam=0.022)
    hmc = sq.mcmc.HMC(action, step_size=0.1, n_steps=10)
    start = jr.normal(jr.key(1), (16, 8, 8))
    return sq.mcmc.run_chains(hmc, jr.key(2), start, 20, n_therm=5)


def samples():
    action = sq.Phi4(L=8, kappa=0.21, lam=0.022)
    model = LinearScore(sq.VarianceExploding(10.0))
    fixed = sq.sampling.sample_sde(jr.key(3), model, action, 40, steps=30, batch=16)
    adaptive = sq.sampling.sample_sde(jr.key(4), model, action, 24, adaptive=True, batch=24)
    maala = sq.sampling.sample_maala(jr.key(5), model, action, 16, steps=20, chains=16)
    return fixed.samples, adaptive.samples, maala.samples


def training():
    spec = ModelSpec(
        network=NetworkSpec("mlp", {"width": 32, "depth": 2}),
        schedule=ScheduleSpec("ve", {"sigma": 10.0}),
        objective=ObjectiveSpec("dsm", {}),
        config_shape=(),
    )
    data = jr.normal(jr.key(0), (512,))
    cfg = TrainConfig(steps=20, batch=64, steps_per_call=10)
    with tempfile.TemporaryDirectory() as d:
        res = train(os.path.join(d, "m"), data, spec, cfg, progress=False)
    leaves = jax.tree.leaves(eqx.filter(res.model, eqx.is_array))
    return np.asarray(res.losses), [np.asarray(x) for x in leaves]


def main():
    assert len(jax.devices()) == 8, jax.devices()
    out = {"spread": sq.sharding.shard_batch(jnp.zeros((16, 3))).sharding.num_devices}
    out["spread_12"] = sq.sharding.shard_batch(jnp.zeros((12, 3))).sharding.num_devices
    many = chains(), samples(), training()
    with sq.sharding.use_devices(1):
        out["one_device"] = sq.sharding.shard_batch(jnp.zeros((16, 3))).sharding.num_devices
        one = chains(), samples(), training()
    (c8, a8), s8, (l8, p8) = many
    (c1, a1), s1, (l1, p1) = one
    out["chains_equal"] = bool(np.array_equal(c8, c1) and np.array_equal(a8, a1))
    out["samples_equal"] = [bool(np.array_equal(x, y)) for x, y in zip(s8, s1, strict=True)]
    out["samples_max_abs"] = [float(np.max(np.abs(x - y))) for x, y in zip(s8, s1, strict=True)]
    out["loss_max_rel"] = float(np.max(np.abs(l8 - l1) / np.abs(l1)))
    out["params_max_abs"] = float(max(np.max(np.abs(x - y)) for x, y in zip(p8, p1, strict=True)))
    out["losses_identical"] = bool(np.array_equal(l8, l1))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
