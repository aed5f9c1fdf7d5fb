r"""Periodic (circular) convolution on a lattice, computed channels-last.

The parameters and their initialisation are those of `eqx.nn.Conv(..., padding_mode="CIRCULAR")`
(weight `(out, in, *kernel)`, bias `(out, 1, …)`), so checkpoints written with `eqx.nn.Conv`
load unchanged. The difference is the layout handed to XLA: channels-first convolutions inside
a `while` loop (every diffrax solve, every `lax.scan` of a sampler) run ≈ 20× slower on XLA:CPU
than the same convolution channels-last (measured in `benchmarks/bench_conv_layout.py`); outside a
loop the two are equally fast. Gradients are the other way round: a training step (value and
gradient inside the training `lax.scan`) is ~3× faster channels-first, so `sqdiff.train` traces
its step under `conv_layout(channels_last=False)`. Both layouts compute the same numbers.
"""

from __future__ import annotations

import contextlib

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["PeriodicConv", "conv_layout"]

_CHANNELS_LAST = [True]


@contextlib.contextmanager
def conv_layout(channels_last: bool):
    """Trace `PeriodicConv`s inside this block channels-last (default) or channels-first. Only
    the speed differs; it takes effect when a function is traced (e.g. on its first jit call)."""
    old = _CHANNELS_LAST[0]
    _CHANNELS_LAST[0] = bool(channels_last)
    try:
        yield
    finally:
        _CHANNELS_LAST[0] = old


_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


class PeriodicConv(eqx.Module):
    """`y = w ⋆ x + b` with periodic boundaries on a `d`-dimensional lattice; `x` is
    `(in, *spatial)`, `y` is `(out, *spatial / stride)`."""

    weight: Float[Array, "c_out c_in *kernel"]
    bias: Float[Array, "c_out ..."]
    d: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    def __init__(self, d: int, cin: int, cout: int, kernel: int, *, key: PRNGKeyArray, stride=1):
        if d not in _LAYOUTS:
            raise ValueError(f"PeriodicConv supports d = 1, 2, 3, got d={d}.")
        if kernel % 2 != 1:
            raise ValueError(f"`kernel` must be odd (centred periodic stencil), got {kernel}.")
        ref = eqx.nn.Conv(
            d, cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="CIRCULAR",
            key=key,
        )  # fmt: skip
        self.weight, self.bias = ref.weight, ref.bias
        self.d, self.stride = d, stride

    def __call__(self, x: Float[Array, "c_in ..."]) -> Float[Array, "c_out ..."]:
        d = self.d
        if x.ndim != d + 1 or x.shape[0] != self.weight.shape[1]:
            raise ValueError(
                f"PeriodicConv expects (in={self.weight.shape[1]}, *spatial) with {d} spatial "
                f"axes, got {x.shape}."
            )
        p = self.weight.shape[-1] // 2
        x = jnp.pad(x, ((0, 0),) + ((p, p),) * d, mode="wrap")
        if not _CHANNELS_LAST[0]:
            y = jax.lax.conv_general_dilated(x[None], self.weight, (self.stride,) * d, "VALID")
            return y[0] + self.bias
        x = jnp.moveaxis(x, 0, -1)[None]  # (1, *spatial, in)
        w = jnp.moveaxis(self.weight, (0, 1), (-1, -2))  # (*kernel, in, out)
        y = jax.lax.conv_general_dilated(
            x, w, (self.stride,) * d, "VALID", dimension_numbers=_LAYOUTS[d]
        )
        return jnp.moveaxis(y[0], -1, 0) + self.bias
