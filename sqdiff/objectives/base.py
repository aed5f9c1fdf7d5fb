"""The objective interface: `loss(model, key, batch) -> scalar`, and its registry.

`train(model_dir, data, spec, config)` never branches on the kind of model: it asks the
objective for the loss of a batch. An objective class with a `name` registers itself;
`ModelSpec.build_objective` builds it with `cls.from_spec(model_spec, action, **params)`.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any, ClassVar

import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from ..registry import Registry

if TYPE_CHECKING:
    from ..specs import ModelSpec
    from ..theories.base import AbstractAction

__all__ = ["AbstractObjective", "OBJECTIVES"]


class AbstractObjective(eqx.Module):
    """A training objective for a network `model(t, x)`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def loss(self, model: eqx.Module, key: PRNGKeyArray, batch: Array | None) -> Float[Array, ""]:
        """The loss of one minibatch (`batch` is `None` for data-free objectives)."""

    @property
    def needs_data(self) -> bool:
        """Whether training takes configurations (`False`: `data=None`)."""
        return True

    @property
    def weighted_data_ok(self) -> bool:
        """Whether importance-weighted ensembles are fine as data (they are not for plain score
        matching, which would learn the proposal instead of the target)."""
        return False

    @classmethod
    @abc.abstractmethod
    def from_spec(
        cls, spec: ModelSpec, action: AbstractAction | None, **params: Any
    ) -> AbstractObjective:
        """The objective of a model spec with its recorded settings."""


#: every objective class with a `name`
OBJECTIVES: Registry = Registry("objective", AbstractObjective)
