"""Typed, frozen, hashable specs: what a model directory records and what the command line
parses into, with versioned JSON.

A `Spec` is a registry name plus parameters (JSON scalars or lists of them), frozen so it can
be a static `jit` argument and compared by value. `ModelSpec` composes them: the network, its
noise schedule (none for the optimal-SQ residual), the training objective, the group and shape
of the configurations, and the theory when it has a name (custom actions are passed to
`train`/sampling as objects instead). `ModelSpec.from_json` reads this version and the
version-1 dicts that sqdiff 0.1 wrote into `config.json`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.random as jr
import numpy as np

from .groups import GROUPS, AbstractGroup
from .nn.base import NETWORKS, AbstractScoreNetwork, zero_output
from .objectives.base import OBJECTIVES
from .registry import Registry
from .schedules import SCHEDULES, AbstractSchedule
from .theories.base import THEORIES, AbstractAction

__all__ = [
    "GroupSpec",
    "ModelSpec",
    "NetworkSpec",
    "ObjectiveSpec",
    "ScheduleSpec",
    "Spec",
    "TheorySpec",
    "SPEC_VERSION",
]

SPEC_VERSION = 2
_SCALARS = (str, int, float, bool, type(None))


def _freeze(name: str, value: Any):
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"spec parameter {name!r} must be finite, got {value!r}.")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(name, v) for v in value)
    if isinstance(value, (np.generic, np.ndarray, jax.Array)) and np.ndim(value) == 0:
        return _freeze(name, np.asarray(value).item())  # numpy / jax scalars
    raise ValueError(
        f"spec parameter {name!r} must be a JSON number, string, bool, null or list of those, "
        f"got {type(value).__name__}."
    )


def _thaw(value: Any):
    return [_thaw(v) for v in value] if isinstance(value, tuple) else value


@dataclasses.dataclass(frozen=True)
class Spec:
    """A registry entry by name with frozen parameters: `spec.build(**extra)` calls
    `registry[name](**params, **extra)`."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()
    registry: ClassVar[Registry]

    def __init__(self, name: str, params: Mapping[str, Any] | None = None):
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {type(self).__name__} needs a name string, got {name!r}.")
        params = dict(params or {})
        for k in params:
            if not isinstance(k, str):
                raise ValueError(f"spec parameter names must be strings, got {k!r}.")
        frozen = tuple(sorted((k, _freeze(k, v)) for k, v in params.items()))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "params", frozen)

    @property
    def kwargs(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.params}

    def replace(self, **params) -> Spec:
        return type(self)(self.name, {**self.kwargs, **params})

    def build(self, *args, **extra):
        cls = self.registry[self.name]
        try:
            return cls(*args, **self.kwargs, **extra)
        except TypeError as e:
            raise ValueError(
                f"{self.registry.kind} {self.name!r} cannot be built from {self.kwargs}: {e}"
            ) from None

    def to_json(self) -> dict:
        return {"name": self.name, "params": self.kwargs}

    @classmethod
    def of(cls, obj: Any):
        """The spec of an object with `name` and `params` (an action, schedule or group)."""
        return cls(obj.name, obj.params)

    @classmethod
    def from_json(cls, data: Any):
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError(f"a {cls.__name__} must be an object with a 'name', got {data!r}.")
        params = data.get("params", {})
        if not isinstance(params, Mapping):
            raise ValueError(f"{cls.__name__} 'params' must be an object, got {params!r}.")
        return cls(data["name"], params)


class TheorySpec(Spec):
    """An action by name (`THEORIES`); `TheorySpec.of(action)`."""

    registry = THEORIES


class ScheduleSpec(Spec):
    """A noise schedule by name (`SCHEDULES`); `ScheduleSpec.of(schedule)`."""

    registry = SCHEDULES


class GroupSpec(Spec):
    """A group by name (`GROUPS`); `GroupSpec.of(group)`."""

    registry = GROUPS


class NetworkSpec(Spec):
    registry = NETWORKS


class ObjectiveSpec(Spec):
    registry = OBJECTIVES


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything that rebuilds a model's network and its training objective.

    Args:
        network: the network class and its keyword arguments.
        schedule: the noise schedule (`None`: a plain time-dependent field, e.g. the OSQ
            residual).
        objective: the training objective and its settings.
        config_shape: the shape of one configuration.
        group: the group of the field values.
        theory: the target theory by name, if it has one (`None` for custom actions).
        zero_init: start from a zero last layer.
        init_seed: the seed of the initial weights.
    """

    network: NetworkSpec
    schedule: ScheduleSpec | None
    objective: ObjectiveSpec
    config_shape: tuple[int, ...]
    group: GroupSpec = GroupSpec("euclidean")
    theory: TheorySpec | None = None
    zero_init: bool = False
    init_seed: int = 0

    def __post_init__(self):
        shape = tuple(self.config_shape)
        if not all(isinstance(n, int) and n >= 1 for n in shape):
            raise ValueError(f"`config_shape` must be positive integers, got {shape}.")
        object.__setattr__(self, "config_shape", shape)

    # --- building ---------------------------------------------------------------------------
    def build_schedule(self) -> AbstractSchedule | None:
        return None if self.schedule is None else self.schedule.build()

    def build_group(self) -> AbstractGroup:
        return self.group.build()

    def build_theory(self) -> AbstractAction:
        if self.theory is None:
            raise ValueError(
                "this model records no named theory (it was trained for a custom action): "
                "pass the action explicitly."
            )
        return self.theory.build()

    def build_network(self, key=None) -> AbstractScoreNetwork:
        key = jr.key(self.init_seed) if key is None else key
        net = self.network.build(self.build_schedule(), key=key)
        return zero_output(net) if self.zero_init else net

    def build_objective(self, action: AbstractAction | None = None):
        """The objective object; `action` is needed by objectives that use the target action
        (optimal SQ) and defaults to the recorded theory."""
        cls = self.objective.registry[self.objective.name]
        try:
            return cls.from_spec(self, action, **self.objective.kwargs)
        except TypeError as e:
            raise ValueError(
                f"objective {self.objective.name!r} cannot take {self.objective.kwargs}: {e}"
            ) from None

    # --- JSON -------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "version": SPEC_VERSION,
            "network": self.network.to_json(),
            "schedule": None if self.schedule is None else self.schedule.to_json(),
            "objective": self.objective.to_json(),
            "config_shape": list(self.config_shape),
            "group": self.group.to_json(),
            "theory": None if self.theory is None else self.theory.to_json(),
            "zero_init": self.zero_init,
            "init_seed": self.init_seed,
        }

    @classmethod
    def from_json(cls, data: Any, train: Mapping | None = None) -> ModelSpec:
        """This version's JSON, or a version-1 spec dict (sqdiff 0.1; its `t_min` and
        `importance` lived in the training settings `train`)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a model spec must be a JSON object, got {type(data).__name__}.")
        version = data.get("version", 1)
        if version == 1:
            return cls._from_v1(data, train or {})
        if version != SPEC_VERSION:
            raise ValueError(
                f"model spec version {version!r} is newer than this sqdiff understands "
                f"({SPEC_VERSION}); upgrade sqdiff."
            )
        try:
            return cls(
                network=NetworkSpec.from_json(data["network"]),
                schedule=None
                if data.get("schedule") is None
                else ScheduleSpec.from_json(data["schedule"]),
                objective=ObjectiveSpec.from_json(data["objective"]),
                config_shape=tuple(data["config_shape"]),
                group=GroupSpec.from_json(data.get("group", {"name": "euclidean"})),
                theory=None if data.get("theory") is None else TheorySpec.from_json(data["theory"]),
                zero_init=bool(data.get("zero_init", False)),
                init_seed=int(data.get("init_seed", 0)),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"model spec lacks or mistypes a field: {e}") from None

    @classmethod
    def _from_v1(cls, d: Mapping, train: Mapping) -> ModelSpec:
        try:
            sched = d.get("schedule")
            schedule = None
            if sched is not None:
                sched = dict(sched)
                schedule = ScheduleSpec(sched.pop("name"), sched)
            group = GroupSpec(d.get("group", "euclidean"))
            obj = dict(d.get("objective") or {})
            name = obj.pop("name", "dsm" if group.name == "euclidean" else "group_dsm")
            if name == "osq":
                obj.setdefault("paths", int(train.get("batch", 128)))
            else:
                obj.setdefault("t_min", train.get("t_min", 1e-3))
                obj.setdefault("importance", train.get("importance", False))
            objective = ObjectiveSpec(name, obj)
            theory = d.get("theory")
            return cls(
                network=NetworkSpec(d["model"], d.get("kwargs", {})),
                schedule=schedule,
                objective=objective,
                config_shape=tuple(d["config_shape"]),
                group=group,
                theory=None if not theory else TheorySpec(theory["name"], theory.get("params", {})),
                zero_init=bool(d.get("zero_init", False)),
                init_seed=int(d.get("init_seed", 0)),
            )
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"version-1 model spec lacks or mistypes a field: {e}") from None
