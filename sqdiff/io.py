"""Ensembles on disk: one `.npz` per ensemble (configurations + JSON metadata), written
atomically (temporary file + rename), read without pickle."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from typing import BinaryIO, NamedTuple

import numpy as np

from .theories.base import THEORIES, AbstractAction

__all__ = ["Ensemble", "save_ensemble", "load_ensemble", "action_from_metadata", "THEORIES"]

REQUIRED = ("theory", "params", "sampler", "seed", "acceptance", "sqdiff_version")


class Ensemble(NamedTuple):
    samples: np.ndarray  # (chains, n, *config)
    metadata: dict
    action: AbstractAction
    log_weights: np.ndarray | None = None  # (chains, n) importance log-weights, if any


def action_from_metadata(meta: dict) -> AbstractAction:
    """Rebuild the action named by ensemble metadata."""
    theory = meta.get("theory")
    if not isinstance(theory, str) or theory not in THEORIES:
        raise ValueError(f"unknown theory {theory!r} in metadata; known: {THEORIES.names()}.")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ValueError("metadata field 'params' must be an object of theory parameters.")
    try:
        return THEORIES[theory](**params)
    except TypeError as e:
        raise ValueError(f"metadata 'params' do not fit theory {theory!r}: {e}") from None


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary file in the same directory, fsync, then `os.replace`:
    readers see the old file or the complete new one, never a partial write."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_ensemble(path: str, samples, metadata: dict, log_weights=None) -> None:
    """Write `samples` `(chains, n, *config)` with `metadata` (needs the fields `REQUIRED`) and,
    for importance-weighted samples, their `log_weights` `(chains, n)`."""
    from ._version import __version__

    samples = np.asarray(samples)
    meta = dict(metadata)
    meta.setdefault("sqdiff_version", __version__)
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise ValueError(f"ensemble metadata lacks {missing}.")
    action = action_from_metadata(meta)
    if samples.ndim < 2 or tuple(samples.shape[2:]) != action.config_shape:
        raise ValueError(
            f"samples must have shape (chains, n, *{action.config_shape}), got {samples.shape}."
        )
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples contain non-finite values; refusing to write the ensemble.")
    arrays = {"samples": samples}
    if log_weights is not None:
        log_weights = np.asarray(log_weights, np.float64)
        if log_weights.shape != samples.shape[:2] or not np.all(np.isfinite(log_weights)):
            raise ValueError(
                f"`log_weights` must be finite with shape {samples.shape[:2]}, got "
                f"{log_weights.shape}."
            )
        arrays["log_weights"] = log_weights
    meta["n_chains"], meta["n_samples"] = int(samples.shape[0]), int(samples.shape[1])
    meta["config_shape"] = list(action.config_shape)
    meta["weighted"] = log_weights is not None
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load_ensemble(path: str) -> Ensemble:
    """Read an ensemble written by `save_ensemble` (no pickle), checking its metadata."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ensemble file at {path!r}.")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # not an .npz / truncated
        raise ValueError(f"{path!r} is not a readable .npz ensemble ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not a readable .npz ensemble (a bare .npy array).")
    with z:
        if "samples" not in z.files or "metadata" not in z.files:
            raise ValueError(f"{path!r} is not a sqdiff ensemble (needs samples + metadata).")
        samples = z["samples"]
        text = str(z["metadata"])
        log_weights = z["log_weights"] if "log_weights" in z.files else None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{path!r}: metadata is not valid JSON.") from None
    missing = [k for k in REQUIRED + ("n_chains", "n_samples", "config_shape") if k not in meta]
    if missing:
        raise ValueError(f"{path!r}: metadata lacks {missing}.")
    action = action_from_metadata(meta)
    expected = (meta["n_chains"], meta["n_samples"], *action.config_shape)
    if tuple(samples.shape) != tuple(expected) or list(meta["config_shape"]) != list(
        action.config_shape
    ):
        raise ValueError(
            f"{path!r}: samples have shape {samples.shape} but metadata says {expected}."
        )
    if log_weights is not None and log_weights.shape != samples.shape[:2]:
        raise ValueError(f"{path!r}: log_weights shape {log_weights.shape} ≠ {samples.shape[:2]}.")
    return Ensemble(samples, meta, action, log_weights)
