r"""HDF5 ensembles (h5py): the interchange format for tools outside lattice QCD.

Layout of a sqdiff HDF5 ensemble: dataset `samples` `(chains, n, *config)` (native dtype,
chunked per configuration, Fletcher-32 checksummed by HDF5), optional `log_weights`
`(chains, n)`, and the file attribute `sqdiff_metadata` (the ensemble metadata as JSON, with the
same SHA-256 content digest as the `.npz` format). Written through `sqdiff.io.atomic_write`.

    import h5py, json
    with h5py.File("ens.h5") as f:
        U = f["samples"][0, -1]                       # the last configuration of chain 0
        meta = json.loads(f.attrs["sqdiff_metadata"])  # theory, params, sampler, …
"""

from __future__ import annotations

import json
from typing import BinaryIO

import numpy as np

__all__ = ["is_hdf5_ensemble", "read_hdf5", "write_hdf5"]

_ATTR = "sqdiff_metadata"
_MEMBERS = ("samples", "log_weights")


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
    with h5py.File(fh, "w") as f:
        for name, a in arrays.items():
            a = np.ascontiguousarray(a)
            chunks = (1, 1) + a.shape[2:] if name == "samples" else None
            f.create_dataset(name, data=a, chunks=chunks, fletcher32=chunks is not None)
        f.attrs[_ATTR] = json.dumps(metadata, sort_keys=True)


def is_hdf5_ensemble(path: str) -> bool:
    """Whether `path` is an HDF5 file with sqdiff ensemble metadata."""
    try:
        h5py = _h5py()
        with h5py.File(path, "r") as f:
            return _ATTR in f.attrs and "samples" in f
    except (OSError, ValueError):
        return False


def read_hdf5(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """`(arrays, metadata)` of a sqdiff HDF5 ensemble; an unreadable or corrupted file is a
    `ValueError` naming it."""
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
