"""The interface of score / drift networks and their registry.

A network is an `eqx.Module` `(t, x) -> s(t, x)` of x's shape (algebra coordinates on a group),
built as `cls(schedule, **kwargs, key=key)`; `schedule` is `None` for a plain time-dependent
field (the optimal-SQ residual). Defining a subclass with a `name` registers it in `NETWORKS`,
so a `NetworkSpec(name, kwargs)` can rebuild it from a model directory.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..registry import Registry
from ..schedules import AbstractSchedule

__all__ = ["AbstractScoreNetwork", "NETWORKS", "zero_output"]


class AbstractScoreNetwork(eqx.Module):
    """`(t, x) -> s(t, x)`, built as `cls(schedule, **kwargs, key=key)`."""

    name: ClassVar[str]
    #: the registry names of the groups whose fields this network takes
    groups: ClassVar[tuple[str, ...]] = ("euclidean",)
    schedule: eqx.AbstractVar[AbstractSchedule | None]

    @abc.abstractmethod
    def __call__(self, t: Float[Array, ""], x: Array, /) -> Array: ...

    @abc.abstractmethod
    def output_layer(self) -> tuple[Array, ...]:
        """The weights and biases of the layers that produce the output (zeroed by
        `zero_output`): `(weight, bias)` of the last layer, or of every branch's last layer."""


def zero_output(model: AbstractScoreNetwork) -> AbstractScoreNetwork:
    """The network with its last layer's weights and bias set to zero, so it starts as the zero
    field (the optimal-SQ residual then starts from plain stochastic quantization)."""
    return eqx.tree_at(lambda m: m.output_layer(), model, replace_fn=jnp.zeros_like)


#: every network class with a `name` (defining one registers it)
NETWORKS: Registry = Registry("network", AbstractScoreNetwork)
