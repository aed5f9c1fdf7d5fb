"""Map a function over many PRNG keys in vmapped batches (bounded memory), and the minimal
progress bar shared by every long stage."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import jax.random as jr

from ._xla import hot_jit


class Progress:
    """A minimal progress bar on stderr (no dependency)."""

    def __init__(self, total, label, enabled=True):
        self.total, self.label, self.enabled, self.n = total, label, enabled, 0

    def update(self, k):
        if not self.enabled:
            return
        self.n += k
        frac = self.n / max(self.total, 1)
        bar = "#" * int(30 * frac)
        sys.stderr.write(f"\r{self.label}: [{bar:<30}] {self.n}/{self.total}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def map_batched(fn, keys, batch: int, progress: bool = False, label: str = "sampling"):
    """`jax.vmap(fn)(keys)` computed `batch` keys at a time; the last batch is padded with extra
    keys whose results are dropped. Outputs may be pytrees. Without `progress` the batches run
    as one `lax.map`; with it, one compiled vmapped call per batch and a bar on stderr."""
    n = keys.shape[0]
    batch = max(1, min(batch, n))
    nb = -(-n // batch)
    if nb * batch > n:
        keys = jnp.concatenate([keys, jr.split(keys[0], nb * batch - n)])
    keys = keys.reshape((nb, batch) + keys.shape[1:])
    if progress:
        vfn = hot_jit(jax.vmap(fn))
        bar = Progress(n, label)
        parts = []
        for i in range(nb):
            parts.append(jax.block_until_ready(vfn(keys[i])))
            bar.update(min(batch, n - i * batch))
        bar.close()
        out = jax.tree.map(lambda *xs: jnp.stack(xs), *parts)
    else:
        out = jax.lax.map(jax.vmap(fn), keys)
    return jax.tree.map(lambda x: x.reshape((nb * batch,) + x.shape[2:])[:n], out)
