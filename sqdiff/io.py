"""Ensembles on disk, written atomically (temporary file + rename), read without pickle.

The format follows the file name: `.npz` (sqdiff's own: configurations + JSON metadata),
`.lime` / `.ildg` (ILDG gauge configurations in LIME with SciDAC checksums, 4D SU(2)/SU(3);
`sqdiff.ildg`) and `.h5` / `.hdf5` (`sqdiff.hdf5`). Every format carries the same metadata and
SHA-256 content digest, and reads back bit-exactly."""

from __future__ import annotations

import hashlib
import json
import math
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


_ILDG, _HDF5 = (".lime", ".ildg"), (".h5", ".hdf5")


def _real(v) -> bool:
    """A JSON number that fits a float (not a bool; an integer such as 10**400 does not)."""
    return isinstance(v, float) or (
        isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**63
    )


def _count(v, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v < 2**63


def _relaxation(v) -> bool:
    from .mcmc.drift import Relaxation

    try:
        r = Relaxation.from_json(v)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return False
    return all(isinstance(k, str) for k in r.drifting) and all(k in r.t for k in r.drifting)


def _health(v) -> bool:
    return v is None or (
        isinstance(v, dict)
        and isinstance(v.get("ok"), bool)
        and isinstance(v.get("problems", []), list)
        and all(isinstance(p, str) for p in v.get("problems", []))
    )


#: the recorded settings that readers rely on, and the form each must have: a file whose
#: checksum is valid but whose metadata has another form is refused in one line here, not with
#: a traceback (or a skipped check, as with an acceptance of −inf) later
_METADATA_FORMS: dict[str, tuple[Callable[[object], bool], str]] = {
    "theory": (lambda v: isinstance(v, str), "a theory name"),
    "params": (lambda v: isinstance(v, dict), "an object of theory parameters"),
    "sampler": (
        lambda v: isinstance(v, (dict, str)),
        "an object of sampler settings (or a name, as for imported files)",
    ),
    "seed": (lambda v: v is None or _count(v, 0), "an integer ≥ 0 (or null)"),
    "acceptance": (
        lambda v: _real(v) and (math.isnan(v) or 0 <= v <= 1),
        "a number in [0, 1] (NaN: not a sampler run of sqdiff's)",
    ),
    "acceptance_error": (
        lambda v: v is None or (_real(v) and 0 <= v <= 1),
        "a number in [0, 1] (or null)",
    ),
    "n_therm": (lambda v: _count(v, 0), "an integer ≥ 0"),
    "thin": (lambda v: _count(v, 1), "an integer ≥ 1"),
    "n_chains": (lambda v: _count(v, 1), "an integer ≥ 1"),
    "n_samples": (lambda v: _count(v, 1), "an integer ≥ 1"),
    "config_shape": (
        lambda v: isinstance(v, list) and all(_count(n, 1) for n in v),
        "a list of positive integers",
    ),
    "weighted": (lambda v: isinstance(v, bool), "true or false"),
    "health": (_health, 'null or an object {"ok": bool, "problems": [str]}'),
    "relaxation": (_relaxation, "a relaxation verdict (sqdiff.mcmc.Relaxation.to_json)"),
    "sqdiff_version": (lambda v: isinstance(v, str), "a version string"),
    "sha256": (lambda v: isinstance(v, str), "a hex digest"),
}


def _check_metadata(meta: dict, path: str) -> None:
    for key, (ok, form) in _METADATA_FORMS.items():
        if key in meta and not ok(meta[key]):
            raise ValueError(f"{path!r}: metadata {key!r} must be {form}, got {meta[key]!r:.60}.")


def _format(path) -> str:
    ext = os.path.splitext(os.fspath(path))[1].lower()
    return "ildg" if ext in _ILDG else "hdf5" if ext in _HDF5 else "npz"


class Ensemble(NamedTuple):
    samples: np.ndarray  # (chains, n, *config)
    metadata: dict
    action: AbstractAction
    log_weights: np.ndarray | None = None  # (chains, n) importance log-weights, if any
    verified: bool = True  # False: no checksum (read with `allow_unverified`)


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


class PendingWrite:
    """A file written in full now, through `write(fh)`, to a temporary file beside `path`
    (fsynced, with the permissions of the umask), and put in place by `commit()` (an
    `os.replace`: readers see the old file or the complete new one) or removed by `discard()`;
    nothing else is ever removed. Written before the compute, it makes a full disk or a
    read-only folder fail at once, not after the run (`OUT.config.toml`)."""

    def __init__(self, path: str, write: Callable[[BinaryIO], object]):
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path)) or "."
        os.makedirs(folder, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            self.discard()
            raise

    def commit(self) -> str:
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        try:
            os.remove(self._tmp)
        except FileNotFoundError:
            pass


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a file through a temporary file in the same directory, fsync, then `os.replace`
    (a `PendingWrite` committed at once): readers see the old file or the complete new one,
    never a partial write."""
    pending = PendingWrite(path, write)
    try:
        pending.commit()
    except BaseException:
        pending.discard()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def is_ensemble_file(path: str) -> bool:
    """Whether `path` is a regular file that holds a sqdiff ensemble (an .npz archive with
    `samples` and `metadata`, a LIME file with sqdiff metadata, or a sqdiff HDF5 file)."""
    fmt = _format(path)
    if fmt == "hdf5":
        from .hdf5 import is_hdf5_ensemble

        return os.path.isfile(path) and is_hdf5_ensemble(path)
    if fmt == "ildg":
        from .ildg import is_sqdiff_lime

        return os.path.isfile(path) and is_sqdiff_lime(path)
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    return {"samples.npy", "metadata.npy"} <= names


def is_sqdiff_figure(path: str) -> bool:
    """Whether `path` is a figure sqdiff wrote (PNG, PDF or SVG carrying sqdiff as its
    creator; see `sqdiff.plots`): the only existing files a figure replaces unasked."""
    try:
        if os.path.getsize(path) > 64 << 20:
            return False
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return False
    marks = {
        b"\x89PNG": b"Software\x00sqdiff figure",
        b"%PDF": b"/Creator (sqdiff figure)",
        b"<?xml": b"<dc:title>sqdiff figure</dc:title>",
    }
    return any(data.startswith(magic) and mark in data for magic, mark in marks.items())


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def check_output(
    path: str,
    *,
    force: bool = False,
    what: str = "ensemble",
    owned: Callable[[str], bool] = is_ensemble_file,
) -> None:
    """Before any compute: a clear `ValueError` unless `path` can take a new `what` file.

    Never replaced: directories, FIFOs, devices, sockets. Replaced only with `force`: symlinks
    (the link itself, not its target) and regular files that sqdiff did not write as a `what`
    (`owned(path)` is false: for ensembles `is_ensemble_file`, for figures `is_sqdiff_figure`,
    for `OUT.config.toml` `is_resolved_config`). The folder must exist and be writable."""
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
            raise ValueError(f"{path!r} is a symbolic link; not replacing it with {_a(what)} "
                             "(--force replaces the link, not its target).")  # fmt: skip
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path!r} is not a regular file (a folder, FIFO or device); never "
                         f"replacing it with {_a(what)}.")  # fmt: skip
    if not owned(path) and not force:
        raise ValueError(
            f"{path!r} exists and is not a sqdiff {what}; not replacing it (--force does, where "
            "the command has it; or choose another path)."
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
    _check_metadata(meta, path)
    meta["sha256"] = _content_digest(arrays, meta)
    fmt = _format(path)
    if fmt == "ildg":
        from .ildg import write_ildg

        if meta["theory"] != "sun" or action.params.get("d") != 4 or action.params["N"] > 3:
            raise ValueError(
                f"{path!r}: ILDG files hold 4D SU(2)/SU(3) gauge fields, not {meta['theory']} "
                f"{action.params}; use .npz or .h5."
            )
        if log_weights is not None:
            raise ValueError(f"{path!r}: ILDG files hold no importance weights; use .npz or .h5.")
        configs = samples.reshape((-1,) + samples.shape[2:])
        lfn = os.path.splitext(os.path.basename(path))[0]
        atomic_write(path, lambda fh: write_ildg(fh, configs, metadata=meta, lfn=lfn))
    elif fmt == "hdf5":
        from .hdf5 import write_hdf5

        atomic_write(path, lambda fh: write_hdf5(fh, arrays, meta))
    else:
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


def _read_npz_ensemble(path: str) -> tuple[dict[str, np.ndarray], dict]:
    arrays = _read_npz(path)
    if arrays["metadata"].shape != () or arrays["metadata"].dtype.kind != "U":
        raise ValueError(f"{path!r}: metadata is not a JSON string.")
    try:
        meta = json.loads(str(arrays.pop("metadata")))
    except json.JSONDecodeError:
        raise ValueError(f"{path!r}: metadata is not valid JSON.") from None
    return arrays, meta


_BETA_ONLY_FOREIGN = (
    "{path!r} carries its own metadata (theory and coupling); `beta` (--beta) is only for ILDG "
    "files written by other programs."
)


def _read_ildg_ensemble(path: str, beta: float | None) -> tuple[dict[str, np.ndarray], dict]:
    """A LIME/ILDG file: sqdiff's own (metadata inside) or foreign (one chain; needs β)."""
    from ._version import __version__
    from .ildg import read_ildg

    f = read_ildg(path)
    configs, meta = f.configs, f.metadata
    if meta is not None and beta is not None:
        raise ValueError(_BETA_ONLY_FOREIGN.format(path=path))
    if meta is None:
        if beta is None:
            raise ValueError(
                f"{path!r} is an ILDG file without sqdiff metadata: give its coupling β "
                "(load_ensemble(path, beta=…), sqdiff measure --beta)."
            )
        N, L = configs.shape[-1], configs.shape[2]
        meta = {
            "theory": "sun",
            "params": {"N": int(N), "L": int(L), "d": 4, "beta": float(beta)},
            "sampler": "imported (ILDG)",
            "seed": None,
            "acceptance": float("nan"),  # unknown: not a sampler run of ours
            "sqdiff_version": __version__,
            "n_chains": 1,
            "n_samples": int(configs.shape[0]),
            "config_shape": list(configs.shape[1:]),
        }
    chains, n = meta.get("n_chains"), meta.get("n_samples")
    if not (isinstance(chains, int) and isinstance(n, int) and chains * n == configs.shape[0]):
        raise ValueError(
            f"{path!r}: holds {configs.shape[0]} configurations, its metadata says {chains}×{n}."
        )
    return {"samples": configs.reshape((chains, n) + configs.shape[1:])}, meta


def load_ensemble(
    path: str, *, beta: float | None = None, allow_unverified: bool = False
) -> Ensemble:
    """Read an ensemble written by `save_ensemble` (no pickle), checking its structure, its
    metadata and its content checksum: a corrupted or edited file is a `ValueError`, never
    different numbers, and a damaged file never crashes the process. The format follows the
    suffix (see the module).

    Args:
        path: the file.
        beta: the coupling of a foreign ILDG file (one without sqdiff metadata); its
            configurations are read as one chain of the 4D `sun` theory.
        allow_unverified: read a sqdiff file that carries no checksum (written before sqdiff
            0.2, or with its `sha256` removed). Without it such a file is refused, because a
            deleted checksum would otherwise switch the integrity check off. The result has
            `verified=False`, and `sqdiff measure` says so.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ensemble file at {path!r}.")
    fmt = _format(path)
    if beta is not None and fmt != "ildg":
        raise ValueError(_BETA_ONLY_FOREIGN.format(path=path))
    if fmt == "ildg":
        arrays, meta = _read_ildg_ensemble(path, beta)
    elif fmt == "hdf5":
        from .hdf5 import read_hdf5

        arrays, meta = read_hdf5(path, allow_unverified=allow_unverified)
    else:
        arrays, meta = _read_npz_ensemble(path)
    samples, log_weights = arrays["samples"], arrays.get("log_weights")
    if not isinstance(meta, dict):
        raise ValueError(f"{path!r}: metadata must be a JSON object.")
    foreign = fmt == "ildg" and beta is not None  # no sqdiff metadata: SciDAC checksums only
    verified = foreign or "sha256" in meta
    if not verified and not allow_unverified:
        raise ValueError(
            f"{path!r}: its metadata has no sha256 checksum (written before sqdiff 0.2, or the "
            "key was removed), so edits cannot be detected; --allow-unverified "
            "(allow_unverified=True) reads it anyway."
        )
    if "sha256" in meta and meta["sha256"] != _content_digest(arrays, meta):
        raise ValueError(f"{path!r}: content does not match its checksum (edited or corrupted).")
    missing = [k for k in REQUIRED + ("n_chains", "n_samples", "config_shape") if k not in meta]
    if missing:
        raise ValueError(f"{path!r}: metadata lacks {missing}.")
    _check_metadata(meta, path)
    action = action_from_metadata(meta)
    n_chains, n_samples = meta["n_chains"], meta["n_samples"]
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
    action.group.check_state(samples, f"{path!r}: samples")  # e.g. links not in SU(N)
    return Ensemble(samples, meta, action, log_weights, verified)
