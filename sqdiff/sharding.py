r"""Many devices with JAX's own engine: the batch axes of sqdiff sharded over a device mesh.

Three axes are independent across their entries and are split over devices:

- the chain axis of `mcmc.run_chains` (and so of `sqdiff generate` and MAALA),
- the sample axis of the `sample_*` functions (`_batching.map_batched`),
- the minibatch axis of training (data parallel: the parameters are replicated, the batch is
  split, and the compiler reduces the gradients across devices).

Each is a 1-D `jax.sharding.Mesh` named `"batch"` over the devices in use (all of them unless
`use_devices` says otherwise) and a `NamedSharding` of that axis; `jit` partitions the vmapped
programs (GSPMD). No process pools and no hand-written collectives. When the axis length does
not divide over every device, the mesh takes the largest number of devices that divides it
(`gcd`), so 12 chains on 8 devices run on 4.

Results do not depend on the number of devices: a chain or a sample is computed by the same
operations on any device, and JAX's threefry random bits are the same under any sharding, so
chains and samples are bit-identical on 1 and on N devices; training reduces the gradient over
the batch across devices, which changes the order of a float sum (equal to float tolerance).
Tested on the CPU with `XLA_FLAGS=--xla_force_host_platform_device_count=8`.

Several hosts: call `initialize()` (`jax.distributed.initialize`) first on every host, with the
same program; `jax.devices()` is then global and the mesh spans every host (see the docs'
recipe). Not tested here: this project's machines have one host.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["batch_sharding", "devices_in_use", "initialize", "shard_batch", "use_devices"]

AXIS = "batch"
_devices: tuple | None = None  # None: every device


def devices_in_use() -> tuple:
    """The devices sqdiff shards over: `use_devices`' choice, else `jax.devices()`."""
    return tuple(jax.devices()) if _devices is None else _devices


@contextlib.contextmanager
def use_devices(devices: Sequence | int) -> Iterator[None]:
    """Shard over `devices` (a sequence of `jax.Device`, or the first `n` devices) inside the
    `with` block; `use_devices(1)` runs everything on one device."""
    global _devices
    if isinstance(devices, int):
        if not 1 <= devices <= len(jax.devices()):
            raise ValueError(
                f"`devices` must be between 1 and {len(jax.devices())} (the devices present), "
                f"got {devices}."
            )
        devices = jax.devices()[:devices]
    chosen = tuple(devices)
    if not chosen:
        raise ValueError("`devices` must name at least one device.")
    previous, _devices = _devices, chosen
    try:
        yield
    finally:
        _devices = previous


def batch_sharding(size: int, ndim: int = 1, axis: int = 0) -> NamedSharding | None:
    """The sharding of axis `axis` (length `size`) of an `ndim`-dimensional array over the
    largest number of devices in use that divides `size`; `None` when that is one device."""
    devices = devices_in_use()
    k = math.gcd(int(size), len(devices))
    if k <= 1:
        return None
    spec = [None] * ndim
    spec[axis] = AXIS
    return NamedSharding(Mesh(np.asarray(devices[:k]), (AXIS,)), PartitionSpec(*spec))


def shard_batch(tree, axis: int = 0):
    """Every array of `tree` placed with its axis `axis` split over the devices in use (left
    where it is when that is one device). All leaves must share that axis' length."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return tree
    size = leaves[0].shape[axis]
    if any(x.shape[axis] != size for x in leaves):
        raise ValueError(f"every array must have the same length {size} along axis {axis}.")
    if batch_sharding(size) is None:
        return tree
    return jax.tree.map(lambda x: jax.device_put(x, batch_sharding(size, x.ndim, axis)), tree)


def initialize(**kwargs) -> None:
    """`jax.distributed.initialize(**kwargs)`: run on every host before anything else (the
    coordinator address, the number of processes and this process' id come from the arguments
    or the cluster's environment: SLURM, Open MPI, Kubernetes, Cloud TPU)."""
    jax.distributed.initialize(**kwargs)
