"""Map a function over many PRNG keys in vmapped batches (bounded memory)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.random as jr


def map_batched(fn, keys, batch: int):
    """`jax.vmap(fn)(keys)` computed `batch` keys at a time (`lax.map` across batches); the last
    batch is padded with extra keys whose results are dropped. Outputs may be pytrees."""
    n = keys.shape[0]
    batch = max(1, min(batch, n))
    nb = -(-n // batch)
    if nb * batch > n:
        keys = jnp.concatenate([keys, jr.split(keys[0], nb * batch - n)])
    out = jax.lax.map(jax.vmap(fn), keys.reshape((nb, batch) + keys.shape[1:]))
    return jax.tree.map(lambda x: x.reshape((nb * batch,) + x.shape[2:])[:n], out)
