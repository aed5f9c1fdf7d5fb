r"""The optimal-SQ objective: path KL (or log-variance) of the controlled SQ process
`dφ = [−∇S + v_θ] dt + g dW` against the target path measure (`sqdiff.osq.OptimalSQ.loss`;
the 2026 talk "DM as SQ on the lattice", optimal stochastic quantization)."""

from __future__ import annotations

from typing import Any

import equinox as eqx

from .._checks import integer
from ..osq import OptimalSQ
from ..theories.base import AbstractAction
from .base import AbstractObjective

__all__ = ["OptimalSQObjective"]

#: the `OptimalSQ` settings an objective spec records
OSQ_SETTINGS = (
    "g",
    "T",
    "reference",
    "terminal",
    "prior",
    "prior_mean",
    "prior_std",
    "ou_std",
    "loss",
)


class OptimalSQObjective(AbstractObjective):
    """`OptimalSQ(action, model, **settings).loss(key, paths, steps, phi0=batch)`.

    Args:
        action: the target action.
        steps: Euler–Maruyama steps on `[0, T]`.
        paths: paths per loss evaluation (when the prior is Gaussian and there is no batch).
        settings: the `OptimalSQ` keyword arguments (`g`, `T`, `reference`, …).
    """

    action: AbstractAction
    steps: int = eqx.field(static=True)
    paths: int = eqx.field(static=True)
    settings: tuple[tuple[str, Any], ...] = eqx.field(static=True)

    name = "osq"

    def __init__(self, action: AbstractAction, steps: int, paths: int, **settings: Any):
        unknown = set(settings) - set(OSQ_SETTINGS)
        if unknown:
            raise ValueError(f"unknown optimal-SQ settings {sorted(unknown)}.")
        steps, paths = integer(steps, "steps"), integer(paths, "paths")
        self.action, self.steps, self.paths = action, steps, paths
        self.settings = tuple(sorted(settings.items()))
        self.process(lambda t, x: x)  # validates the settings now, before any training

    def process(self, residual) -> OptimalSQ:
        """The controlled process around a residual network."""
        return OptimalSQ(self.action, residual, **dict(self.settings))

    @property
    def needs_data(self) -> bool:
        return dict(self.settings).get("prior", "gaussian") != "gaussian"

    def loss(self, model, key, batch):
        n = self.paths if batch is None else batch.shape[0]
        return self.process(model).loss(key, n, self.steps, phi0=batch)

    @classmethod
    def from_spec(cls, spec, action, steps=100, paths=128, **settings):
        action = spec.build_theory() if action is None else action
        return cls(action, int(steps), int(paths), **settings)
