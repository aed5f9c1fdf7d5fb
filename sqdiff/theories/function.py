"""Plain callables `S(φ)` as first-class actions.

Everything in sqdiff that takes an action (samplers, `analyze`, `train`, `OptimalSQ`, the
dynamics) accepts an `AbstractAction` or any callable `S(φ) -> scalar`; `as_action` wraps the
callable in `FunctionAction`, whose force is the (Lie) gradient by autodiff and whose
configuration shape comes from an example state when one is given.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..groups import AbstractGroup, Euclidean
from .base import AbstractAction

__all__ = ["FunctionAction", "as_action"]


class FunctionAction(AbstractAction):
    """A user action `S(φ)` with its force by autodiff (`group.grad`).

    `config_shape` (optional) fixes the configuration shape; without it any state of the
    group is accepted and only the group's own checks run.
    """

    fn: Callable[[Array], Float[Array, ""]]
    group_: AbstractGroup
    shape: tuple[int, ...] | None = eqx.field(static=True)
    name = "custom"

    def __init__(
        self,
        fn: Callable[[Array], Float[Array, ""]],
        group: AbstractGroup | None = None,
        config_shape: tuple[int, ...] | None = None,
    ):
        if not callable(fn):
            raise TypeError(f"`fn` must be a callable S(φ), got {type(fn).__name__}.")
        self.fn = fn
        self.group_ = Euclidean() if group is None else group
        self.shape = None if config_shape is None else tuple(int(n) for n in config_shape)

    @property
    def group(self) -> AbstractGroup:
        return self.group_

    @property
    def lattice_shape(self) -> tuple[int, ...]:
        if self.shape is None:
            raise ValueError(
                "this custom action has no configuration shape; build it with "
                "`as_action(S, example=φ)` or `FunctionAction(S, config_shape=...)`."
            )
        k = len(self.group_.element_shape)
        return self.shape[: len(self.shape) - k]

    @property
    def params(self) -> dict:
        return {} if self.shape is None else {"config_shape": list(self.shape)}

    def __call__(self, phi):
        return jnp.asarray(self.fn(phi))

    def force(self, phi):
        return self.group_.grad(self.fn, phi)

    def check_config(self, phi, name: str = "phi") -> None:
        if self.shape is None:
            self.group_.check_state(phi, name)
        else:
            super().check_config(phi, name)


def as_action(
    action: AbstractAction | Callable,
    *,
    group: AbstractGroup | None = None,
    example: Array | None = None,
) -> AbstractAction:
    """`action` itself if it is an `AbstractAction`, else `FunctionAction(action, group, …)`
    with the configuration shape of `example` (if given)."""
    if isinstance(action, AbstractAction):
        if group is not None and action.group != group:
            raise ValueError(f"the action lives on {action.group}, not on {group}.")
        return action
    shape = None if example is None else tuple(jnp.shape(example))
    return FunctionAction(action, group, shape)
