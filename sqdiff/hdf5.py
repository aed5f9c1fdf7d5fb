r"""HDF5 ensembles (h5py): the interchange format for tools outside lattice QCD.

Layout of a sqdiff HDF5 ensemble: dataset `samples` `(chains, n, *config)` (native dtype,
chunked per configuration, Fletcher-32 checksummed by HDF5), optional `log_weights`
`(chains, n)`, and the file attribute `sqdiff_metadata` (the ensemble metadata as JSON, with the
same SHA-256 content digest as the `.npz` format). Written through `sqdiff.io.atomic_write`.

**A damaged file never reaches the HDF5 library.** A byte-damaged HDF5 file can crash the
library inside the process (a segfault: no Python exception, nothing printed). So every file
sqdiff writes starts with a 512-byte HDF5 *user block* (which HDF5 skips) holding a SHA-256 of
the rest of the file; it is checked with plain Python before h5py opens the file, and a damaged
file is a `ValueError`. Files without it (written before this check existed) are read only with
`allow_unverified=True`, and then only after a probe in a separate process has read them
without crashing.

    import h5py, json
    with h5py.File("ens.h5") as f:
        U = f["samples"][0, -1]                       # the last configuration of chain 0
        meta = json.loads(f.attrs["sqdiff_metadata"])  # theory, params, sampler, …
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from typing import BinaryIO

import numpy as np

__all__ = ["is_hdf5_ensemble", "read_hdf5", "write_hdf5"]

_ATTR = "sqdiff_metadata"
_MEMBERS = ("samples", "log_weights")
_USERBLOCK = 512
_MAGIC = b"sqdiff-hdf5 sha256 "


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is in the test extra
        raise ValueError(
            "HDF5 ensembles need h5py: pip install 'sqdiff[hdf5]' (or use .npz / .lime)."
        ) from None
    return h5py


def write_hdf5(fh: BinaryIO, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write `arrays` (`samples`, optionally `log_weights`) and `metadata` to an open binary
    file."""
    h5py = _h5py()
    buf = io.BytesIO()
    with h5py.File(buf, "w", userblock_size=_USERBLOCK) as f:
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            chunks = (1, 1) + a.shape[2:] if name == "samples" else None
            f.create_dataset(name, data=a, chunks=chunks, fletcher32=chunks is not None)
        f.attrs[_ATTR] = json.dumps(metadata, sort_keys=True)
    data = buf.getbuffer()
    header = _MAGIC + hashlib.sha256(data[_USERBLOCK:]).hexdigest().encode() + b"\n"
    fh.write(header.ljust(_USERBLOCK, b"\0"))
    fh.write(data[_USERBLOCK:])


def _verified(path: str) -> bool:
    """True when `path` carries sqdiff's whole-file checksum and it matches; False when it has
    none; a `ValueError` when it does not match (read with plain Python, never with HDF5)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_USERBLOCK)
            if not head.startswith(_MAGIC):
                return False
            h = hashlib.sha256()
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror or e}.") from None
    if head[len(_MAGIC) : len(_MAGIC) + 64] != h.hexdigest().encode():
        raise ValueError(f"{path!r}: the file does not match its checksum (damaged or edited).")
    return True


_PROBE = """
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    for name in ("samples", "log_weights"):
        if name in f:
            f[name][()]
    dict(f.attrs)
"""


def _probe(path: str) -> None:
    """Open and read `path` with h5py in a child process: a file that crashes the HDF5 library
    there is refused here instead of taking this process down."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE, path], capture_output=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired:
        raise ValueError(f"{path!r}: the HDF5 library hangs on this file.") from None
    if r.returncode < 0:
        raise ValueError(
            f"{path!r} crashes the HDF5 library (signal {-r.returncode}): a damaged file."
        )


def is_hdf5_ensemble(path: str) -> bool:
    """Whether `path` is an HDF5 ensemble written by sqdiff (its checksummed user block; the
    file is not opened with HDF5)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def read_hdf5(path: str, *, allow_unverified: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """`(arrays, metadata)` of a sqdiff HDF5 ensemble; an unreadable, damaged or corrupted file
    is a `ValueError` naming it, never a crash. A file without sqdiff's whole-file checksum is
    read only with `allow_unverified` (after a crash probe in a child process)."""
    if not _verified(path):
        if not allow_unverified:
            raise ValueError(
                f"{path!r} has no sqdiff file checksum (written before sqdiff 0.2, or not by "
                "sqdiff); it could be damaged unnoticed: --allow-unverified reads it anyway."
            )
        _probe(path)
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            if _ATTR not in f.attrs or "samples" not in f:
                raise ValueError(f"{path!r} is not a sqdiff HDF5 ensemble (needs samples and "
                                 f"the {_ATTR} attribute).")  # fmt: skip
            arrays = {}
            for name in _MEMBERS:
                if name not in f:
                    continue
                ds = f[name]
                if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "fc":
                    raise ValueError(f"{path!r}: {name!r} is not a numeric dataset.")
                arrays[name] = np.asarray(ds[()])
            meta = json.loads(str(f.attrs[_ATTR]))
    except json.JSONDecodeError:
        raise ValueError(f"{path!r}: {_ATTR} is not valid JSON.") from None
    except ValueError:
        raise
    except (OSError, KeyError, TypeError, RuntimeError) as e:
        what = type(e).__name__
        raise ValueError(f"{path!r} is not a readable HDF5 ensemble ({what}).") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path!r}: {_ATTR} must be a JSON object.")
    return arrays, meta
