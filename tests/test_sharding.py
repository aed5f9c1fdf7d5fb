"""Chains, samples and training on 8 (forced CPU) devices against one device.

XLA fixes the number of CPU devices when the backend starts, so the comparison runs in a fresh
process (`tests/sharding_check.py`) started with `--xla_force_host_platform_device_count=8`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import sqdiff as sq


@pytest.fixture(scope="module")
def comparison():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    script = Path(__file__).with_name("sharding_check.py")
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_batches_spread_over_the_devices_that_divide_them(comparison):
    assert comparison["spread"] == 8  # 16 chains on 8 devices
    assert comparison["spread_12"] == 4  # 12 on gcd(12, 8) = 4
    assert comparison["one_device"] == 1  # use_devices(1)


def test_chains_are_bit_identical_on_8_devices_and_on_1(comparison):
    assert comparison["chains_equal"]


def test_samples_on_8_devices_equal_those_on_1(comparison):
    fixed_sde, adaptive_sde, maala = comparison["samples_equal"]
    assert fixed_sde and maala  # same operations per sample: bit-identical
    # adaptive steps: the RMS norm over a configuration may vectorise differently per device
    # (float rounding); the step sequence and the samples agree to float32 precision
    assert comparison["samples_max_abs"][1] < 1e-5


def test_data_parallel_training_matches_one_device(comparison):
    # the gradient is reduced across devices: a float sum in another order
    assert comparison["loss_max_rel"] < 1e-5
    assert comparison["params_max_abs"] < 1e-5


def test_use_devices_refuses_bad_counts():
    n = len(jax.devices())
    with pytest.raises(ValueError, match="between 1 and"):
        with sq.sharding.use_devices(n + 1):
            pass
    with pytest.raises(ValueError, match="at least one device"):
        with sq.sharding.use_devices([]):
            pass
    with pytest.raises(ValueError, match="same length"):
        sq.sharding.shard_batch((jnp.zeros(4), jnp.zeros(3)))
