"""Ensembles on disk: one `.npz` per ensemble (configurations + JSON metadata), written
atomically (temporary file + rename), read without pickle."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
import tokenize
import zipfile
import zlib
from collections.abc import Callable
from typing import BinaryIO, NamedTuple

import numpy as np

from .theories.base import THEORIES, AbstractAction

__all__ = [
    "Ensemble",
    "action_from_metadata",
    "atomic_write",
    "check_output",
    "is_ensemble_file",
    "load_ensemble",
    "save_ensemble",
    "THEORIES",
]

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
    except (TypeError, OverflowError) as e:
        raise ValueError(f"metadata 'params' do not fit theory {theory!r}: {e}") from None


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary file in the same directory, fsync, then `os.replace`:
    readers see the old file or the complete new one, never a partial write."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result respects the umask
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_ensemble_file(path: str) -> bool:
    """Whether `path` is a regular file that holds a sqdiff ensemble (an .npz archive with
    `samples` and `metadata`)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return {"samples.npy", "metadata.npy"} <= names


def check_output(path: str, *, force: bool = False, what: str = "ensemble") -> None:
    """Before any compute: a clear `ValueError` unless `path` can take a new `what` file.

    Never replaced: directories, FIFOs, devices, sockets. Replaced only with `force`: symlinks
    (the link itself, not its target) and regular files that are not sqdiff ensembles. The
    folder must exist and be writable."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"`out` must be a file path, got {path!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path!r}: the folder {folder!r} does not exist.")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {path!r}: the folder {folder!r} is not writable.")
    if not os.path.lexists(path):
        return
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        if not force:
            raise ValueError(f"{path!r} is a symbolic link; not replacing it (--force replaces "
                             "the link, not its target).")  # fmt: skip
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path!r} is not a regular file (a folder, FIFO or device); never "
                         f"replacing it with an {what}.")  # fmt: skip
    if not is_ensemble_file(path) and not force:
        raise ValueError(
            f"{path!r} exists and is not a sqdiff {what}; not replacing it (--force does)."
        )


def save_ensemble(
    path: str, samples, metadata: dict, log_weights=None, *, force: bool = False
) -> None:
    """Write `samples` `(chains, n, *config)` with `metadata` (needs the fields `REQUIRED`) and,
    for importance-weighted samples, their `log_weights` `(chains, n)`. An existing file is
    replaced only if it is a sqdiff ensemble (or with `force`; see `check_output`)."""
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
    action.group.check_state(samples, "samples")  # e.g. links that are not in SU(N)
    check_output(path, force=force)
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
    meta["sha256"] = _content_digest(arrays, meta)
    arrays["metadata"] = np.array(json.dumps(meta, sort_keys=True))
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _content_digest(arrays: dict[str, np.ndarray], meta: dict) -> str:
    """SHA-256 over the arrays (name, dtype, shape, bytes) and the canonical metadata JSON
    without this digest: any edit of an ensemble's numbers or settings changes it."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    body = {k: v for k, v in meta.items() if k != "sha256"}
    h.update(json.dumps(body, sort_keys=True).encode())
    return h.hexdigest()


_MEMBERS = ("samples", "metadata", "log_weights")


class _BadFile(ValueError):
    """A file found unreadable by our own checks (its message already names it)."""


def _read_member(z: zipfile.ZipFile, name: str, path: str) -> np.ndarray:
    """One `.npy` member, read without pickle; its header must agree with its size (a corrupted
    header cannot make us allocate what the file does not hold)."""
    info = z.getinfo(name + ".npy")
    with z.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype.hasobject:
            raise _BadFile(f"{path!r}: member {name!r} holds Python objects; not loading it.")
        header = fh.tell()
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes != info.file_size - header:
            raise _BadFile(f"{path!r}: member {name!r} is corrupted (size does not match).")
        data = fh.read()  # the CRC of the member is checked when it is read to the end
    arr = np.frombuffer(data, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def _read_npz(path: str) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.removesuffix(".npy") for n in z.namelist()}
            if not {"samples", "metadata"} <= names:
                raise _BadFile(f"{path!r} is not a sqdiff ensemble (needs samples + metadata).")
            return {m: _read_member(z, m, path) for m in _MEMBERS if m in names}
    except _BadFile:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, struct.error, KeyError,
            NotImplementedError, SyntaxError, TypeError, UnicodeDecodeError, OverflowError,
            MemoryError, tokenize.TokenError) as e:  # fmt: skip
        raise ValueError(
            f"{path!r} is not a readable sqdiff ensemble ({type(e).__name__})."
        ) from None


def load_ensemble(path: str) -> Ensemble:
    """Read an ensemble written by `save_ensemble` (no pickle), checking its structure, its
    metadata and (files written since 0.2) its content checksum: a corrupted or edited file is
    a `ValueError`, never different numbers."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ensemble file at {path!r}.")
    arrays = _read_npz(path)
    samples, log_weights = arrays["samples"], arrays.get("log_weights")
    if arrays["metadata"].shape != () or arrays["metadata"].dtype.kind != "U":
        raise ValueError(f"{path!r}: metadata is not a JSON string.")
    try:
        meta = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError:
        raise ValueError(f"{path!r}: metadata is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path!r}: metadata must be a JSON object.")
    if "sha256" in meta:
        stored = {k: v for k, v in arrays.items() if k != "metadata"}
        if meta["sha256"] != _content_digest(stored, meta):
            raise ValueError(
                f"{path!r}: content does not match its checksum (edited or corrupted)."
            )
    missing = [k for k in REQUIRED + ("n_chains", "n_samples", "config_shape") if k not in meta]
    if missing:
        raise ValueError(f"{path!r}: metadata lacks {missing}.")
    action = action_from_metadata(meta)
    n_chains, n_samples = meta["n_chains"], meta["n_samples"]
    if not all(isinstance(v, int) and v >= 1 for v in (n_chains, n_samples)):
        raise ValueError(f"{path!r}: needs at least one chain and one sample.")
    expected = (n_chains, n_samples, *action.config_shape)
    if tuple(samples.shape) != tuple(expected) or meta["config_shape"] != list(action.config_shape):
        raise ValueError(
            f"{path!r}: samples have shape {samples.shape} but metadata says {expected}."
        )
    if not np.issubdtype(samples.dtype, np.number) or not np.all(np.isfinite(samples)):
        raise ValueError(f"{path!r}: samples must be finite numbers.")
    if log_weights is not None and (
        log_weights.shape != samples.shape[:2] or not np.all(np.isfinite(log_weights))
    ):
        raise ValueError(f"{path!r}: log_weights must be finite with shape {samples.shape[:2]}.")
    if not isinstance(meta.get("acceptance"), (int, float)):
        raise ValueError(f"{path!r}: metadata 'acceptance' must be a number.")
    action.group.check_state(samples, f"{path!r}: samples")  # e.g. links not in SU(N)
    return Ensemble(samples, meta, action, log_weights)
