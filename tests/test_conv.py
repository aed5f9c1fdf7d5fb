"""The periodic-convolution primitive: exact against `eqx.nn.Conv` (`lax.conv` with JAX's own
derivatives) under every transformation, and no XLA:CPU fallback convolution in the scanned
training step, the sampler loops or the probability flow."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from sqdiff.nn import PeriodicConv, periodic_conv


def _pair(d, cin, cout, kernel, stride):
    """A `PeriodicConv` and the `eqx.nn.Conv` with the same float64 weights."""
    conv = PeriodicConv(d, cin, cout, kernel, stride=stride, key=jr.key(0))
    conv = eqx.tree_at(lambda c: (c.weight, c.bias), conv,
                       (conv.weight.astype(float), conv.bias.astype(float)))  # fmt: skip
    ref = eqx.nn.Conv(d, cin, cout, kernel, stride=stride, padding=kernel // 2,
                      padding_mode="CIRCULAR", key=jr.key(0))  # fmt: skip
    return conv, eqx.tree_at(lambda c: (c.weight, c.bias), ref, (conv.weight, conv.bias))


CASES = [(2, 8, 3, 1), (2, 8, 3, 2), (2, 5, 3, 2), (1, 10, 5, 1), (3, 4, 3, 2), (2, 6, 1, 1)]


@pytest.mark.parametrize("d,L,kernel,stride", CASES)
def test_values_and_derivatives_match_lax_conv(d, L, kernel, stride, x64):
    conv, ref = _pair(d, 3, 4, kernel, stride)
    x = jr.normal(jr.key(1), (5, 3) + (L,) * d, float)
    v = jr.normal(jr.key(2), x.shape, float)

    def loss(m, x):
        return jnp.sum(jnp.sin(jax.vmap(m)(x)))

    def close(a, b):
        for u, w in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(u, w, rtol=1e-12, atol=1e-12)

    close(jax.vmap(conv)(x), jax.vmap(ref)(x))
    # reverse mode (both arguments), forward mode, and second order both ways
    close(eqx.filter_grad(loss)(conv, x), eqx.filter_grad(loss)(ref, x))
    close(jax.grad(loss, 1)(conv, x), jax.grad(loss, 1)(ref, x))
    close(jax.jvp(jax.vmap(conv), (x,), (v,)), jax.jvp(jax.vmap(ref), (x,), (v,)))
    close(
        jax.jvp(lambda x: jax.grad(loss, 1)(conv, x), (x,), (v,))[1],
        jax.jvp(lambda x: jax.grad(loss, 1)(ref, x), (x,), (v,))[1],
    )
    close(
        jax.grad(lambda x: jnp.sum(jax.grad(loss, 1)(conv, x) ** 2))(x),
        jax.grad(lambda x: jnp.sum(jax.grad(loss, 1)(ref, x) ** 2))(x),
    )

    # per-example weight gradients: the kernel is batched too (one conv per member)
    def per_example(m):
        return jax.vmap(lambda xi: eqx.filter_grad(lambda m: jnp.sum(jnp.sin(m(xi))))(m))(x)

    close(per_example(conv).weight, per_example(ref).weight)


def test_vmap_over_kernels_and_inputs():
    x = jr.normal(jr.key(1), (3, 2, 6, 6, 3))  # (members, batch, *spatial, in)
    w = jr.normal(jr.key(2), (3, 3, 3, 3, 4))  # (members, *kernel, in, out)
    for axes in [(0, 0), (None, 0), (0, None)]:
        xs = x if axes[0] == 0 else x[0]
        ws = w if axes[1] == 0 else w[0]
        out = jax.vmap(lambda a, b: periodic_conv(a, b, 2), in_axes=axes)(xs, ws)
        for i in range(3):
            a = x[i] if axes[0] == 0 else x[0]
            b = w[i] if axes[1] == 0 else w[0]
            np.testing.assert_allclose(out[i], periodic_conv(a, b, 2), rtol=1e-5, atol=1e-5)


def test_channels_last_and_bad_input():
    conv, ref = _pair(2, 3, 4, 3, 1)
    x = jr.normal(jr.key(1), (3, 6, 6), float)
    np.testing.assert_allclose(
        conv.channels_last(jnp.moveaxis(x, 0, -1)), jnp.moveaxis(ref(x), 0, -1), atol=1e-5
    )
    with pytest.raises(ValueError, match="channels_last expects"):
        conv.channels_last(x)
    with pytest.raises(ValueError, match="matching rank"):
        periodic_conv(jnp.zeros((1, 6, 6, 3)), jnp.zeros((3, 3, 4, 2)))
    with pytest.raises(ValueError, match="odd"):
        periodic_conv(jnp.zeros((1, 6, 6, 3)), jnp.zeros((2, 2, 3, 2)))
    with pytest.raises(ValueError, match="stride"):
        periodic_conv(jnp.zeros((1, 6, 6, 3)), jnp.zeros((3, 3, 3, 2)), 0)


_LOOPS = textwrap.dedent(
    """
    import sys, tempfile
    import jax, jax.numpy as jnp, jax.random as jr
    import sqdiff as sq
    from sqdiff.train import TrainConfig, train

    if sys.argv[1] == "control":  # JAX's own conv gradient in a scan: XLA:CPU falls back
        import equinox as eqx
        conv = eqx.nn.Conv(2, 4, 4, 3, padding=1, padding_mode="CIRCULAR", key=jr.key(0))
        x = jr.normal(jr.key(1), (4, 4, 8, 8))
        g = lambda m, x: eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(x) ** 2))(m).weight
        step = lambda c, _: (c + 1e-3 * jnp.sum(g(conv, x * c)), None)  # depends on the carry
        jax.block_until_ready(jax.jit(lambda: jax.lax.scan(step, 1.0, None, length=2))())
        sys.exit(0)
    L = 8
    spec = {"model": "unet", "kwargs": {"d": 2, "channels": 8, "levels": 2},
            "schedule": {"name": "ve", "sigma": 10.0}, "config_shape": [L, L],
            "group": "euclidean"}
    data = jr.normal(jr.key(0), (16, L, L))
    cfg = TrainConfig(steps=2, batch=4, steps_per_call=2, checkpoint_every=10**6)
    model = train(tempfile.mkdtemp() + "/m", data, spec, cfg, progress=False).model
    action = sq.Phi4(L, kappa=0.2, lam=0.02)
    sq.sampling.sample_maala(jr.key(1), model, action, 4, steps=3, chains=2, thin=2)
    link = sq.nn.U1LinkNet(sq.VarianceExploding(10.0), channels=4, depth=1, key=jr.key(2))
    flow = sq.ProbabilityFlow(link.schedule, link, divergence="exact", group=sq.U1())
    sq.mcmc.flow_proposals(jr.key(3), flow, (2, 4, 4), 2, batch=2)
    """
)


def _fallbacks(mode: str) -> int:
    """Convolutions XLA:CPU compiled as its unoptimised fallback while running `mode`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="thunk_emitter=2",
               JAX_PLATFORMS="cpu")  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _LOOPS, mode], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr.count("Falling back to unoptimized convolution")


def test_no_fallback_convolution_in_scanned_training_sampling_and_flow():
    if _fallbacks("control") == 0:  # the log line this test relies on is gone from XLA
        pytest.skip("this XLA:CPU reports no fallback even for lax.conv gradients in a scan")
    assert _fallbacks("sqdiff") == 0
