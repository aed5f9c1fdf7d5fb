"""The interface every lattice action implements."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from ..groups import AbstractGroup
from ..registry import Registry


def _first(a):
    return a[0]


class AbstractAction(eqx.Module):
    """A Euclidean action `S(φ)` on one configuration (use `jax.vmap` for batches).

    Subclasses give `__call__` (the value), `force` (the analytic gradient `∇S` in algebra
    coordinates; the Lie derivative on a group), `group`, `lattice_shape` (the configuration
    shape without the group's element shape), `params` (metadata) and `measure` (the primary
    per-configuration observables that `sqdiff measure` analyses).
    """

    #: name used in ensemble metadata and on the command line
    name: ClassVar[str]
    #: `S(−φ) = S(φ)` for every parameter value (a real field's Z2): the score is then odd,
    #: and `sqdiff train` imposes `s(−φ) = −s(φ)` on networks that take `antisymmetric`
    z2_symmetric: ClassVar[bool] = False

    @property
    @abc.abstractmethod
    def group(self) -> AbstractGroup: ...

    @property
    @abc.abstractmethod
    def lattice_shape(self) -> tuple[int, ...]: ...

    @property
    @abc.abstractmethod
    def params(self) -> dict:
        """Parameters that rebuild the action: `type(self).from_params(**params)`."""

    @abc.abstractmethod
    def __call__(self, phi: Array, /) -> Float[Array, ""]: ...

    @abc.abstractmethod
    def force(self, phi: Array, /) -> Array:
        """`∇S(φ)` (algebra coordinates, the lattice shape + `group.coord_shape`)."""

    def measure(self, phi: Array, /) -> dict[str, Array]:
        """Primary (per-configuration, scalar) observables of one configuration."""
        return {"action": self(phi)}

    def observables(self) -> dict[str, tuple[tuple[str, ...], Callable]]:
        """Physics observables as functions of ensemble means of primaries:
        `name -> (primary names, f(means))`. Errors follow from the Γ-method."""
        return {name: ((name,), _first) for name in self.measure_names()}

    def definitions(self) -> dict[str, str]:
        """What each observable of `observables()` is, as one line of formula per name
        (printed by `sqdiff measure`); names without an entry are the primaries themselves."""
        return {}

    def measure_names(self) -> tuple[str, ...]:
        shape = jax.ShapeDtypeStruct(self.config_shape, self.group.state_dtype())
        return tuple(jax.eval_shape(self.measure, shape))

    @property
    def config_shape(self) -> tuple[int, ...]:
        return tuple(self.lattice_shape) + self.group.element_shape

    def random_config(self, key: PRNGKeyArray) -> Array:
        """A start configuration: Haar-random on compact groups, N(0, 1) for scalar fields."""
        if self.group.is_vector_space:
            return jr.normal(key, self.lattice_shape)
        return self.group.sample_haar(key, self.lattice_shape)

    def exact_samples(self, key: PRNGKeyArray, n: int) -> Array:
        """`n` independent exact configurations, for theories that have an exact sampler
        (`sqdiff generate --sampler exact`)."""
        have = [
            n
            for n, c in THEORIES.entries().items()
            if c.exact_samples is not AbstractAction.exact_samples
        ]
        raise ValueError(f"theory {self.name!r} has no exact sampler (these have one: {have}).")

    def default_network(self) -> str | None:
        """The registry name of the score network `sqdiff train --model auto` picks (None: no
        network fits this theory yet)."""
        return None

    def check_config(self, phi, name: str = "phi") -> None:
        self.group.check_state(phi, name)
        if tuple(jnp.shape(phi)) != self.config_shape:
            raise ValueError(
                f"`{name}` has shape {tuple(jnp.shape(phi))}, expected {self.config_shape} for "
                f"{type(self).__name__}."
            )


#: every action class with a `name` (defining one registers it)
THEORIES: Registry = Registry("theory", AbstractAction)
