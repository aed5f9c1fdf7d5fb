r"""`hot_jit`: `eqx.filter_jit` for sqdiff's hot loops, with XLA:CPU's convolutions in Eigen.

XLA:CPU hands a convolution to YNNPACK or to Eigen. For the periodic convolutions of sqdiff's
networks Eigen is the faster of the two on the CPUs measured (a 3×3, 32-channel layer on
32 × 32² sites: value and both gradients 9.7 ms against 17 ms; `benchmarks/README.md`), so the
compiled training scan, the solver and the chain loops ask for YNNPACK on dot products only
(`xla_cpu_experimental_ynn_fusion_type`). The option is experimental in XLA: it is probed once,
and dropped (default compilation) if this jaxlib does not know it, if the default backend is
not the CPU, or if the user's `XLA_FLAGS` already choose the YNNPACK fusions.
"""

from __future__ import annotations

import functools
import os

import equinox as eqx
import jax
import jax.numpy as jnp

__all__ = ["hot_jit", "xla_cpu_options"]

_YNN = "xla_cpu_experimental_ynn_fusion_type"


@functools.cache
def xla_cpu_options() -> dict[str, str]:
    """The compiler options `hot_jit` uses (empty where they do not apply)."""
    if _YNN in os.environ.get("XLA_FLAGS", "") or jax.default_backend() != "cpu":
        return {}
    options = {_YNN: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
    try:
        jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros(())).compile()
    except Exception:  # an XLA without this option: compile as usual
        return {}
    return options


def hot_jit(fun):
    """`eqx.filter_jit(fun)`, compiled with `xla_cpu_options()` when called at top level (JAX
    accepts compiler options only there; inside another trace it is a plain `filter_jit`).
    The options are chosen at the first call, so importing sqdiff starts no backend."""
    plain = eqx.filter_jit(fun)
    tuned = None

    @functools.wraps(fun)
    def call(*args, **kwargs):
        nonlocal tuned
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs))):
            return plain(*args, **kwargs)
        if tuned is None:
            tuned = eqx.filter_jit(fun, compiler_options=xla_cpu_options())
        try:
            return tuned(*args, **kwargs)
        except ValueError as e:  # inside a trace that none of the arguments reveals
            if "compiler_options" not in str(e):
                raise
            return plain(*args, **kwargs)

    return call
