"""Map a function over many PRNG keys in vmapped batches (bounded memory), and the progress
bar shared by every long stage (tqdm)."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import jax.random as jr

from ._xla import hot_jit
from .sharding import shard_batch


class Progress:
    """The progress bar of every long stage: tqdm on stderr, quiet by itself when stderr is not
    a terminal (a log file or a pipe gets no bar), and off when `enabled` is False."""

    def __init__(self, total: int, label: str, enabled: bool = True, unit: str = "it"):
        from tqdm.auto import tqdm

        # disable=None: tqdm turns itself off on a non-TTY stream
        self._bar = tqdm(
            total=total,
            desc=label,
            unit=unit,
            file=sys.stderr,
            disable=None if enabled else True,
            dynamic_ncols=True,
            leave=True,
        )

    def update(self, k: int, **postfix) -> None:
        """Advance by `k`; keyword arguments are shown after the bar (e.g. `loss=0.12`)."""
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(k)

    def write(self, message: str) -> None:
        """A line on stderr that does not break the bar."""
        self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()


def map_batched(fn, keys, batch: int, progress: bool = False, label: str = "sampling"):
    """`jax.vmap(fn)(keys)` computed `batch` keys at a time; the last batch is padded with extra
    keys whose results are dropped. Outputs may be pytrees. Each batch is split over the devices
    in use (`sqdiff.sharding`). Without `progress` the batches run
    as one `lax.map`; with it, one compiled vmapped call per batch and a bar on stderr."""
    n = keys.shape[0]
    batch = max(1, min(batch, n))
    nb = -(-n // batch)
    if nb * batch > n:
        keys = jnp.concatenate([keys, jr.split(keys[0], nb * batch - n)])
    keys = shard_batch(keys.reshape((nb, batch) + keys.shape[1:]), axis=1)  # over the devices
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
