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

__all__ = ["AbstractExactDivergenceNetwork", "AbstractScoreNetwork", "NETWORKS", "zero_output"]


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


class AbstractExactDivergenceNetwork(AbstractScoreNetwork):
    """A score network that knows its Jacobian's diagonal `∂s_x/∂φ_x` in closed form, in one
    pass (scalar fields). `sqdiff.ProbabilityFlow` takes its divergence from it instead of a
    Jacobian or a Hutchinson probe, and `sqdiff.flows.SplitStepFlow` builds an exact density
    from it when `sublattice_triangular` holds."""

    #: the data's per-site scale σ_d the network's Gaussian skip assumes (None: no skip); the
    #: split-step map starts from `N(0, m(T)²σ_d² + Σ(T)²)`, the noised data's Gaussian part
    data_std: eqx.AbstractVar[float | None]

    @abc.abstractmethod
    def jacobian_diagonal(self, t: Float[Array, ""], x: Array, /) -> Array:
        """`∂s_x/∂φ_x` at every site, of `x`'s shape."""

    def divergence(self, t: Float[Array, ""], x: Array, /) -> Float[Array, ""]:
        """`∇·s = Σ_x ∂s_x/∂φ_x`."""
        return jnp.sum(self.jacobian_diagonal(t, x))

    @property
    @abc.abstractmethod
    def sublattice_triangular(self) -> bool:
        """Whether `s_x` depends on the sites of its own (even/odd) sublattice only through
        `φ_x` itself: then moving the even sites, then the odd ones, is a map with a
        triangular Jacobian."""

    @abc.abstractmethod
    def prior_log_spectrum(self, shape: tuple[int, ...], /) -> Array:
        """`k(p)` on the momentum grid of `shape` (even in `p`): the split-step map's prior is
        the Gaussian with power spectrum `s_T² e^{2k(p)}` (all zeros: white noise)."""

    @abc.abstractmethod
    def self_term(self, t: Float[Array, ""], x: Array, /) -> Array:
        """The part of `s_x` that depends on `φ_x` itself (per site, elementwise in `x`): with
        `sublattice_triangular`, `s − self_term` does not depend on the site's own sublattice,
        which is what inverts the split-step map site by site."""

    @abc.abstractmethod
    def diagonal_bound(self, t: Float[Array, ""], L: int, /) -> tuple[Array, Array]:
        """`(a, b)` with `a − b ≤ ∂s_x/∂φ_x ≤ a + b` for every field on an `L^d` lattice."""


def zero_output(model: AbstractScoreNetwork) -> AbstractScoreNetwork:
    """The network with its last layer's weights and bias set to zero, so it starts as the zero
    field (the optimal-SQ residual then starts from plain stochastic quantization)."""
    return eqx.tree_at(lambda m: m.output_layer(), model, replace_fn=jnp.zeros_like)


#: every network class with a `name` (defining one registers it)
NETWORKS: Registry = Registry("network", AbstractScoreNetwork)
