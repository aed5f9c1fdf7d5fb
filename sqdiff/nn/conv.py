r"""Periodic (circular) convolution on a lattice, as one JAX primitive with its own derivatives.

`y_{j,o} = b_o + Σ_{k,i} w_{o,i,k} x_{i,(s·j + k − p) mod L}` with kernel `K = 2p + 1` and stride
`s`. The parameters and their initialisation are those of
`eqx.nn.Conv(..., padding_mode="CIRCULAR")` (weight `(out, in, *kernel)`, bias `(out, 1, …)`),
so checkpoints written with `eqx.nn.Conv` load unchanged.

Why a primitive (`periodic_conv_p`) instead of `lax.conv_general_dilated` with JAX's own
derivatives: on XLA:CPU only convolutions in the canonical layout (input `N…C`, kernel `…IO`,
output `N…C`) run fast, and XLA rewrites other layouts into it only in the entry computation.
The convolutions JAX writes for a gradient (the input gradient with swapped kernel axes and a
dilated input; the kernel gradient with batch and feature axes swapped) are not canonical, so
inside a `lax.scan` or a diffrax `while` loop — every training step, every sampler — all of
them fell back to XLA's unoptimised loop convolution (80 per U-Net training step, ≈ 10× slower
than PyTorch on the same network). Here the rules are written by hand in canonical form:

* forward: `x` wrapped by `p` on every side, one canonical convolution (`jvp` is the same
  convolution, bilinear: `P(ẋ, w) + P(x, ẇ)`);
* input transpose: the cotangent up-sampled by the stride (zeros between), then the same
  primitive with the kernel reflected and its `in`/`out` axes swapped — itself differentiable;
* kernel transpose: one canonical convolution of the wrapped input (batch and feature axes
  exchanged by explicit transposes) with the up-sampled cotangent as the window.

Every convolution carries one row of (cropped) zero padding: XLA:CPU's YNNPACK path is ≈ 10×
slower on `VALID` convolutions than on padded ones (31 ms against 3 ms for a 3×3, 32-channel
layer on 32 × 32² sites); `benchmarks/bench_train_torch.py` records the result against PyTorch
and `tests/test_nn.py` fails if a scanned training step emits a fallback convolution.
Everything is computed channels-last inside; `vmap` merges the mapped axis into the batch
axis, so a per-configuration network `vmap`-ed over a batch runs one convolution per layer.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["PeriodicConv", "periodic_conv"]


_LAYOUTS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


def _wrap(x: Array, p: int) -> Array:
    """Periodic padding by `p` of the spatial axes of a channels-last `(N, *S, C)` array."""
    d = x.ndim - 2
    return jnp.pad(x, ((0, 0),) + ((p, p),) * d + ((0, 0),), mode="wrap") if p else x


def _out_size(n: int, stride: int) -> int:
    return -(-n // stride)


def _canonical(lhs: Array, rhs: Array, stride: int, n_out: tuple[int, ...]) -> Array:
    """`out_j = Σ_k lhs[s·j + k] rhs[k]` (VALID) computed with one row of low zero padding
    and the first output row cropped (the padded form is XLA:CPU's fast path)."""
    d = lhs.ndim - 2
    out = jax.lax.conv_general_dilated(
        lhs, rhs, (stride,) * d, ((stride, 0),) * d, dimension_numbers=_LAYOUTS[d]
    )
    return out[(slice(None),) + tuple(slice(1, 1 + n) for n in n_out)]


def _conv_impl(x, w, *, stride):
    p = w.shape[0] // 2
    n_out = tuple(_out_size(n, stride) for n in x.shape[1:-1])
    return _canonical(_wrap(x, p), w, stride, n_out)


def _conv_abstract(x, w, *, stride):
    shape = (x.shape[0],) + tuple(_out_size(n, stride) for n in x.shape[1:-1]) + (w.shape[-1],)
    return jax.core.ShapedArray(shape, x.dtype)


periodic_conv_p = Primitive("sqdiff_periodic_conv")
periodic_conv_p.def_impl(_conv_impl)
periodic_conv_p.def_abstract_eval(_conv_abstract)
mlir.register_lowering(periodic_conv_p, mlir.lower_fun(_conv_impl, multiple_results=False))


def _upsample(ct: Array, stride: int, spatial: tuple[int, ...]) -> Array:
    """The cotangent of a strided output on the full lattice: `ct` at multiples of the
    stride, zero elsewhere (one `lax.pad` with interior padding)."""
    if stride == 1:
        return ct
    config = [(0, 0, 0)]
    for n_out, n in zip(ct.shape[1:-1], spatial, strict=True):
        config.append((0, n - 1 - (n_out - 1) * stride, stride - 1))
    return jax.lax.pad(ct, jnp.zeros((), ct.dtype), config + [(0, 0, 0)])


def _transpose_x(ct, x, w, *, stride):
    # x is the undefined primal (only its aval is known), w a value
    if type(ct) is ad.Zero:
        return ad.Zero(x.aval)
    d = w.ndim - 2
    dyu = _upsample(ct, stride, x.aval.shape[1:-1])
    w_adj = jnp.swapaxes(jnp.flip(w, tuple(range(d))), -1, -2)
    return periodic_conv_p.bind(dyu, w_adj, stride=1)


def _transpose_w(ct, x, w, *, stride):
    if type(ct) is ad.Zero:
        return ad.Zero(w.aval)
    d = x.ndim - 2
    K = w.aval.shape[0]  # w is the undefined primal
    dyu = _upsample(ct, stride, x.shape[1:-1])
    # dw[k, i, o] = Σ_{n, j} wrap(x)[n, j + k, i] · dyu[n, j, o]: a convolution with the
    # features `n` contracted, `i` as its batch axis and the lattice of dyu as its window
    lhs = jnp.moveaxis(_wrap(x, K // 2), (0, -1), (-1, 0))  # (I, *S+2p, N)
    rhs = jnp.moveaxis(dyu, 0, -2)  # (*S, N, O)
    out = _canonical(lhs, rhs, 1, (K,) * d)  # (I, *K, O)
    return jnp.moveaxis(out, 0, -2)


ad.defbilinear(periodic_conv_p, _transpose_x, _transpose_w)


def _batch(args, dims, *, stride):
    x, w = args
    bx, bw = dims
    if bw is None:
        x = jnp.moveaxis(x, bx, 0)
        B, N = x.shape[:2]
        y = periodic_conv_p.bind(x.reshape((B * N,) + x.shape[2:]), w, stride=stride)
        return y.reshape((B, N) + y.shape[1:]), 0
    # per-member kernels (rare): one convolution per member
    size = x.shape[bx] if bx is not None else w.shape[bw]
    x = batching.bdim_at_front(x, bx, size)
    w = jnp.moveaxis(w, bw, 0)
    return jax.lax.map(lambda a: periodic_conv_p.bind(*a, stride=stride), (x, w)), 0


batching.primitive_batchers[periodic_conv_p] = _batch


def periodic_conv(
    x: Float[Array, "n *spatial c_in"], w: Float[Array, "*kernel c_in c_out"], stride: int = 1
) -> Float[Array, "n *spatial_out c_out"]:
    """Periodic convolution, channels-last: `y[n, j, o] = Σ_{k, i} w[k, i, o]
    x[n, (s j + k − p) mod L, i]`, with `p = (K − 1)/2`.

    Args:
        x: `(batch, *spatial, in)` (d = 1, 2, 3 spatial axes).
        w: `(*kernel, in, out)`, every kernel side the same odd `K`.
        stride: `s`; the output has `ceil(L/s)` sites per axis.
    """
    d = x.ndim - 2
    if d not in _LAYOUTS or w.ndim != d + 2 or x.shape[-1] != w.shape[-2]:
        raise ValueError(
            f"periodic_conv needs x (n, *spatial, in) with 1–3 spatial axes and w (*kernel, "
            f"in, out) of matching rank and `in`; got x {x.shape}, w {w.shape}."
        )
    K = w.shape[0]
    if K % 2 != 1 or any(k != K for k in w.shape[:d]):
        raise ValueError(f"the kernel must be odd and the same along every axis, got {w.shape}.")
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"`stride` must be a positive integer, got {stride!r}.")
    dtype = jnp.result_type(x, w)
    return periodic_conv_p.bind(x.astype(dtype), w.astype(dtype), stride=stride)


class PeriodicConv(eqx.Module):
    """`y = w ⋆ x + b` with periodic boundaries on a `d`-dimensional lattice; `x` is
    `(in, *spatial)`, `y` is `(out, *spatial / stride)`."""

    weight: Float[Array, "c_out c_in *kernel"]
    bias: Float[Array, "c_out ..."]
    d: int = eqx.field(static=True)
    stride: int = eqx.field(static=True)

    def __init__(
        self, d: int, cin: int, cout: int, kernel: int, *, key: PRNGKeyArray, stride: int = 1
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
        self.d, self.stride = d, stride

    def __call__(self, x: Float[Array, "c_in ..."]) -> Float[Array, "c_out ..."]:
        """Channels-first, `(in, *spatial) → (out, *spatial / stride)`."""
        if x.ndim != self.d + 1:
            raise ValueError(
                f"PeriodicConv expects (in={self.weight.shape[1]}, *spatial) with {self.d} "
                f"spatial axes, got {x.shape}."
            )
        return jnp.moveaxis(self.channels_last(jnp.moveaxis(x, 0, -1)), -1, 0)

    def channels_last(self, x: Float[Array, "... c_in"]) -> Float[Array, "... c_out"]:
        """The same convolution on channels-last fields, `(*spatial, in) → (*spatial / stride,
        out)`: networks that keep their activations channels-last (the U-Net) avoid two
        transposes per layer."""
        d = self.d
        if x.ndim != d + 1 or x.shape[-1] != self.weight.shape[1]:
            raise ValueError(
                f"PeriodicConv.channels_last expects (*spatial, in={self.weight.shape[1]}) with "
                f"{d} spatial axes, got {x.shape}."
            )
        w = jnp.moveaxis(self.weight, (0, 1), (-1, -2))  # (*kernel, in, out)
        return periodic_conv(x[None], w, self.stride)[0] + self.bias.reshape(-1)
