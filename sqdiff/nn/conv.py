r"""Periodic (circular) convolution on a lattice, computed channels-last.

The parameters and their initialisation are those of `eqx.nn.Conv(..., padding_mode="CIRCULAR")`
(weight `(out, in, *kernel)`, bias `(out, 1, …)`), so checkpoints written with `eqx.nn.Conv`
load unchanged. The difference is the layout handed to XLA: channels-first convolutions inside
a `while` loop (every diffrax solve, every `lax.scan` of a sampler) run ≈ 20× slower on XLA:CPU
than the same convolution channels-last (measured in `benchmarks/bench_conv_layout.py`); outside a
loop the two are equally fast. Gradients are the other way round: a training step (value and
gradient inside the training `lax.scan`) is ~3× faster channels-first, so `sqdiff.train` trains
`with_conv_layout(model, channels_last=False)`. Both layouts compute the same numbers. The
layout is a static field of each convolution (no global switch).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["PeriodicConv", "with_conv_layout"]


_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


class PeriodicConv(eqx.Module):
    """`y = w ⋆ x + b` with periodic boundaries on a `d`-dimensional lattice; `x` is
    `(in, *spatial)`, `y` is `(out, *spatial / stride)`."""

    weight: Float[Array, "c_out c_in *kernel"]
    bias: Float[Array, "c_out ..."]
    d: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)
    channels_last: bool = eqx.field(static=True)

    def __init__(
        self,
        d: int,
        cin: int,
        cout: int,
        kernel: int,
        *,
        key: PRNGKeyArray,
        stride: int = 1,
        channels_last: bool = True,
    ):
        if d not in _LAYOUTS:
            raise ValueError(f"PeriodicConv supports d = 1, 2, 3, got d={d}.")
        if kernel % 2 != 1:
            raise ValueError(f"`kernel` must be odd (centred periodic stencil), got {kernel}.")
        ref = eqx.nn.Conv(
            d, cin, cout, kernel, stride=stride, padding=kernel // 2, padding_mode="CIRCULAR",
            key=key,
        )  # fmt: skip
        self.weight, self.bias = ref.weight, ref.bias
        self.d, self.stride, self.channels_last = d, stride, bool(channels_last)

    def relayout(self, channels_last: bool) -> PeriodicConv:
        """The same convolution (same arrays) computed in the other layout."""
        new = object.__new__(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(new, f.name, getattr(self, f.name))
        object.__setattr__(new, "channels_last", bool(channels_last))
        return new

    def __call__(self, x: Float[Array, "c_in ..."]) -> Float[Array, "c_out ..."]:
        d = self.d
        if x.ndim != d + 1 or x.shape[0] != self.weight.shape[1]:
            raise ValueError(
                f"PeriodicConv expects (in={self.weight.shape[1]}, *spatial) with {d} spatial "
                f"axes, got {x.shape}."
            )
        p = self.weight.shape[-1] // 2
        x = jnp.pad(x, ((0, 0),) + ((p, p),) * d, mode="wrap")
        if not self.channels_last:
            y = jax.lax.conv_general_dilated(x[None], self.weight, (self.stride,) * d, "VALID")
            return y[0] + self.bias
        x = jnp.moveaxis(x, 0, -1)[None]  # (1, *spatial, in)
        w = jnp.moveaxis(self.weight, (0, 1), (-1, -2))  # (*kernel, in, out)
        y = jax.lax.conv_general_dilated(
            x, w, (self.stride,) * d, "VALID", dimension_numbers=_LAYOUTS[d]
        )
        return jnp.moveaxis(y[0], -1, 0) + self.bias


def with_conv_layout(model, channels_last: bool):
    """`model` with every `PeriodicConv` computed channels-last or channels-first (same
    weights, same numbers; only the speed differs)."""
    is_conv = lambda m: isinstance(m, PeriodicConv)  # noqa: E731
    return jax.tree_util.tree_map(
        lambda m: m.relayout(channels_last) if is_conv(m) else m, model, is_leaf=is_conv
    )
