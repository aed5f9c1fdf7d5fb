r"""Statistics: cumulants from samples and jackknife errors.

Cumulants from raw moments `μ_n = E[x^n]` by the recursion
`κ_n = μ_n − Σ_{m=1}^{n−1} C(n−1, m−1) κ_m μ_{n−m}` (Kendall & Stuart, *The Advanced Theory of
Statistics*, Vol. 1, §3.14). Errors by the delete-one-block jackknife (Efron & Stein 1981).
"""

from __future__ import annotations

from collections.abc import Callable
from math import comb

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["cumulants_from_moments", "cumulants", "jackknife"]


def cumulants_from_moments(moments: Float[ArrayLike, " n"]) -> Float[Array, " n"]:
    """`κ_1…κ_n` from raw moments `μ_1…μ_n` (last axis)."""
    mu = jnp.asarray(moments)
    n = mu.shape[-1]
    mom = [jnp.ones_like(mu[..., 0])] + [mu[..., i] for i in range(n)]
    kappa = [None]
    for k in range(1, n + 1):
        val = mom[k]
        for m in range(1, k):
            val = val - comb(k - 1, m - 1) * kappa[m] * mom[k - m]
        kappa.append(val)
    return jnp.stack(kappa[1:], axis=-1)


def cumulants(x: Float[ArrayLike, " n"], order: int = 8) -> Float[Array, " order"]:
    """Plug-in cumulants `κ_1…κ_order` of samples `x` (flattened)."""
    x = jnp.ravel(jnp.asarray(x))
    mu = jnp.stack([jnp.mean(x**k) for k in range(1, order + 1)])
    return cumulants_from_moments(mu)


def jackknife(
    estimator: Callable[[np.ndarray], ArrayLike],
    data: ArrayLike,
    n_blocks: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Delete-one-block jackknife of `estimator(data)` over the leading axis of `data`.

    Returns `(estimate, error)` with `error² = (B−1)/B Σ_b (θ_b − θ̄)²`. Blocks of consecutive
    samples absorb autocorrelation shorter than the block length.
    """
    data = np.asarray(data)
    n = data.shape[0]
    if n_blocks < 2 or n < n_blocks:
        raise ValueError(f"`n_blocks` must be in [2, len(data)={n}], got {n_blocks}.")
    usable = n - n % n_blocks
    blocks = np.array_split(np.arange(usable), n_blocks)
    full = np.asarray(estimator(data[:usable]), dtype=float)
    leave = np.stack(
        [np.asarray(estimator(np.delete(data[:usable], b, axis=0)), dtype=float) for b in blocks]
    )
    err = np.sqrt((n_blocks - 1) / n_blocks * np.sum((leave - leave.mean(0)) ** 2, axis=0))
    return full, err
