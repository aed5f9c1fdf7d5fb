r"""Model directories: training settings, checkpoints written atomically, loaded and verified
once. Both files are covered by checksums: the weights by `sha256`, config.json by
`config_sha256` over its own canonical content (an edited κ or σ is refused, naming the file).

A model directory holds `config.json` (the `ModelSpec`, the `TrainConfig`, the step, the loss
history and the name + SHA-256 of the weights file) and `weights-<step>.eqx` (equinox
`tree_serialise_leaves` of `(params, ema_params, opt_state)`, never pickle). A new weights file
is written first, then `config.json` is replaced atomically to point at it, then the old
weights are removed: at every instant the directory holds a complete checkpoint.
Directories written by sqdiff 0.1 (version-1 specs, no `config_sha256`) load with
`ModelDir(path, allow_unverified=True)` only: a checksum that is missing is an error, so that
deleting it cannot switch the check off. sqdiff never deletes a file it did not write in the
current run: an interrupted write may leave a `.tmp-*` file behind, which is harmless.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import os
from typing import Any, NamedTuple

import equinox as eqx
import optax

from ._checks import integer
from ._version import __version__
from .io import atomic_write
from .specs import ModelSpec

__all__ = ["Checkpoint", "ModelDir", "TrainConfig", "make_optimizer"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (all saved in `config.json`).

    Args:
        steps: optimiser steps in all.
        batch: configurations per step.
        lr: peak learning rate of the warm-up + cosine schedule.
        warmup: linear warm-up steps.
        clip: global gradient-norm clip.
        ema: EMA decay of the weights used for sampling.
        steps_per_call: optimiser steps per compiled `lax.scan` call.
        checkpoint_every: steps between checkpoints.
        seed: the seed of minibatches and noise (step i uses `fold_in(seed, i)`).
        volume_batch: with training data at several lattice sizes, `"configs"` draws `batch`
            configurations of every volume per step; `"sites"` draws about as many lattice
            sites of each as `batch` configurations of the first volume hold,
            `max(1, round(batch · V_first / V))` configurations of a volume of `V` sites (the
            large volumes' per-site losses are averaged over as many sites, at a fraction of
            the cost).
    """

    steps: int = 2000
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100
    clip: float = 1.0
    ema: float = 0.999
    steps_per_call: int = 100
    checkpoint_every: int = 500
    seed: int = 0
    volume_batch: str = "configs"

    def __post_init__(self):
        if self.volume_batch not in ("configs", "sites"):
            raise ValueError(
                f"`volume_batch` must be 'configs' or 'sites', got {self.volume_batch!r}."
            )
        for name in ("steps", "batch", "steps_per_call", "checkpoint_every"):
            object.__setattr__(self, name, integer(getattr(self, name), name))
        object.__setattr__(self, "warmup", integer(self.warmup, "warmup", 0))
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"`seed` must be an integer in [0, 2^63), got {self.seed!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr` must be > 0, got {self.lr}.")
        if not 0 <= self.ema < 1:
            raise ValueError(f"`ema` must be in [0, 1), got {self.ema}.")
        if not isinstance(self.warmup, int) or self.warmup < 0 or not self.clip > 0:
            raise ValueError("`warmup` must be an integer ≥ 0 and `clip` > 0.")

    @classmethod
    def from_json(cls, data: Any) -> TrainConfig:
        """The recorded settings (version-1 files also held `t_min`/`importance`, which now
        belong to the objective)."""
        if not isinstance(data, dict):
            raise ValueError(f"training settings must be a JSON object, got {data!r}.")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as e:
            raise ValueError(f"bad training settings: {e}") from None


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Warm-up + cosine Adam with global-norm clipping, over one flat parameter vector."""
    warmup = max(config.warmup, 1)  # optax needs ≥ 1 warm-up step and a decay after it
    lr = optax.warmup_cosine_decay_schedule(
        0.0, config.lr, warmup, max(config.steps, warmup + 1), end_value=0.01 * config.lr
    )
    # one flat parameter vector for the optimiser: a few large kernels instead of several per
    # leaf (the U-Net has ~100 leaves; per-leaf updates are launch-bound on a GPU)
    return optax.flatten(optax.chain(optax.clip_by_global_norm(config.clip), optax.adam(lr)))


def _config_digest(meta: dict) -> str:
    """SHA-256 of config.json's content (without this field), canonical JSON."""
    body = {k: v for k, v in meta.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class Checkpoint(NamedTuple):
    spec: ModelSpec
    config: TrainConfig
    step: int
    losses: list[float]
    model: eqx.Module  # the network with initial weights (the template)
    state: tuple  # (params, ema_params, opt_state)

    def network(self, ema: bool = True) -> eqx.Module:
        """The trained network (EMA weights by default)."""
        params, ema_params, _ = self.state
        return eqx.combine(ema_params if ema else params, self.model)


def templates(spec: ModelSpec, config: TrainConfig):
    """The initial network and a state template `(params, params, opt_state)`."""
    model = spec.build_network()
    params = eqx.filter(model, eqx.is_inexact_array)
    return model, (params, params, make_optimizer(config).init(params))


class ModelDir:
    """A model directory on disk: `save` a checkpoint, `load` it (checksum verified once)."""

    def __init__(self, path: str | os.PathLike, *, allow_unverified: bool = False):
        """Args:
        path: the model directory.
        allow_unverified: load a `config.json` without its `config_sha256` (written by sqdiff
            0.1, or with the key removed). Without it such a directory is refused: deleting
            the checksum must not switch the integrity check off.
        """
        self.path = os.fspath(path)
        self.allow_unverified = allow_unverified

    def __repr__(self):
        return f"ModelDir({self.path!r})"

    @property
    def config_path(self) -> str:
        return os.path.join(self.path, "config.json")

    def exists(self) -> bool:
        return os.path.isfile(self.config_path)

    def check_writable(self, resume: bool) -> None:
        """Before training: the path is a model directory to resume, or a new or empty folder
        in a writable place (a clear error instead of a failure after the whole run)."""
        path = self.path
        if os.path.lexists(path) and not os.path.isdir(path):
            raise ValueError(f"{path!r} exists and is not a folder; choose a model folder.")
        if os.path.isdir(path):
            if not self.exists() and any(not n.startswith(".") for n in os.listdir(path)):
                raise ValueError(
                    f"{path!r} is a folder with other files and no model; choose a new or "
                    "empty folder."
                )
            if not os.access(path, os.W_OK):
                raise ValueError(f"{path!r} is not writable.")
        else:
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
                raise ValueError(f"cannot create {path!r}: {parent!r} is missing or read-only.")

    @contextlib.contextmanager
    def lock(self):
        """Hold an exclusive `fcntl` lock on the directory for the life of a writer: a second
        trainer on the same directory fails at once instead of overwriting the first."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(
                    f"{self.path!r} is being written by another sqdiff process (locked); wait "
                    "for it or choose another folder."
                ) from None
            yield self
        finally:
            os.close(fd)

    def read_meta(self) -> dict:
        """`config.json`, checked for the fields every checkpoint has."""
        path = self.config_path
        if not os.path.isfile(path):
            raise ValueError(f"{self.path!r} is not a sqdiff model directory (no config.json).")
        try:
            with open(path) as fh:
                meta = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError(f"{path!r} is not valid JSON.") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{path!r} must hold a JSON object.")
        for k in ("spec", "train", "step", "weights", "sha256"):
            if k not in meta:
                raise ValueError(f"{path!r} lacks {k!r}; not a sqdiff model directory.")
        if "config_sha256" not in meta and not self.allow_unverified:
            raise ValueError(
                f"{path!r} has no config_sha256 checksum (written by sqdiff 0.1, or the key was "
                "removed), so an edited setting would go unnoticed; load it with "
                "ModelDir(path, allow_unverified=True) (sqdiff sample --allow-unverified)."
            )
        if "config_sha256" in meta:  # written since 0.2; 0.1 files have none
            if meta["config_sha256"] != _config_digest(meta):
                raise ValueError(
                    f"{path!r} was changed after sqdiff wrote it (its checksum does not match): "
                    "an edited setting would silently change the model; restore the file."
                )
        return meta

    def read_spec(self) -> tuple[ModelSpec, TrainConfig]:
        """The recorded spec and settings, without touching the weights."""
        meta = self.read_meta()
        return ModelSpec.from_json(meta["spec"], meta["train"]), TrainConfig.from_json(
            meta["train"]
        )

    def load(self) -> Checkpoint:
        """The whole checkpoint, the weights verified against their SHA-256 (once)."""
        meta = self.read_meta()
        spec, config = (
            ModelSpec.from_json(meta["spec"], meta["train"]),
            TrainConfig.from_json(meta["train"]),
        )
        if (
            not isinstance(meta["weights"], str)
            or os.path.basename(meta["weights"]) != meta["weights"]
        ):
            raise ValueError(f"{self.config_path!r}: 'weights' must be a file name.")
        path = os.path.join(self.path, meta["weights"])
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            # a writer may have replaced config.json and removed these weights since we read
            # it: read the new config once more (a checkpoint is always complete on disk)
            again = self.read_meta()
            if again["weights"] == meta["weights"]:
                raise ValueError(
                    f"{self.path!r}: weights file {meta['weights']!r} is missing."
                ) from None
            return self.load()
        if hashlib.sha256(data).hexdigest() != meta["sha256"]:
            raise ValueError(f"{path!r} does not match the checksum in config.json.")
        model, template = templates(spec, config)
        try:
            state = eqx.tree_deserialise_leaves(io.BytesIO(data), template)
        except Exception as e:  # shape mismatch between spec and weights
            raise ValueError(f"{path!r} does not fit the model in config.json: {e}") from None
        step = meta["step"]
        if not isinstance(step, int) or step < 0:
            raise ValueError(f"{self.config_path!r}: 'step' must be an integer ≥ 0.")
        return Checkpoint(spec, config, step, list(meta.get("losses", [])), model, state)

    def save(
        self, spec: ModelSpec, config: TrainConfig, step: int, state: tuple, losses: list[float]
    ) -> None:
        """Write `state` as the checkpoint of `step` (weights, then config.json, atomically)."""
        os.makedirs(self.path, exist_ok=True)
        buf = io.BytesIO()
        eqx.tree_serialise_leaves(buf, state)
        data = buf.getvalue()
        name = f"weights-{step}.eqx"
        atomic_write(os.path.join(self.path, name), lambda fh: fh.write(data))
        old = self.read_meta() if self.exists() else None
        meta = {
            "sqdiff_version": __version__,
            "spec": spec.to_json(),
            "train": dataclasses.asdict(config),
            "step": step,
            "losses": losses,
            "weights": name,
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        meta["config_sha256"] = _config_digest(meta)
        text = json.dumps(meta, indent=1).encode()
        atomic_write(self.config_path, lambda fh: fh.write(text))
        if old and old.get("weights") not in (None, name):
            try:
                os.remove(os.path.join(self.path, os.path.basename(str(old["weights"]))))
            except FileNotFoundError:
                pass
