r"""ILDG gauge configurations in LIME files, with SciDAC checksums.

**The ILDG binary format** (ILDG file format 1.0, "ildg-binary-data"): the links of one 4D
configuration as big-endian IEEE floats (`precision` 32 or 64), sites in lexicographic order
with x fastest and t slowest, at each site the four directions μ = x, y, z, t, each link an
`N×N` complex matrix row by row (`U[a][b]`, b fastest), each complex number as (re, im). The
"ildg-format" record (XML) gives the field type, the precision and `lx ly lz lt`.

**sqdiff's layout** is `(d, L, L, L, L, N, N)`: axis 0 the direction μ, lattice axis k the
coordinate `x_k` (x, y, z, t), so the ILDG array `F[t, z, y, x, μ, a, b] = U[μ, x, y, z, t, a,
b]` (`U.transpose(4, 3, 2, 1, 0, 5, 6)`, a permutation that is its own inverse).

**Field types**: SU(3) is `su3gauge` (the standard); SU(2) is stored the same way, as full 2×2
complex matrices, with field `su2gauge` (what QDP/Chroma-style SU(2) codes write; no compressed
or quaternion forms are read). Only 4D hypercubic `L⁴` lattices map onto sqdiff theories.

**SciDAC checksum** ("scidac-checksum", USQCD QIO): for each site with lexicographic rank `r`
the CRC-32 `c` of its bytes as stored; `suma = ⊕ rotl32(c, r mod 29)`, `sumb = ⊕ rotl32(c, r
mod 31)`, written in hex. A mismatch on reading is an error.

A file holds one ILDG message per configuration ("ildg-format", "ildg-binary-data",
"scidac-checksum", "ildg-data-lfn"); sqdiff puts its ensemble metadata (JSON) in a first
message of type "sqdiff-metadata". Foreign files (one or several configurations, no sqdiff
metadata) are read as one chain.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

import numpy as np

from .lime import read_lime, read_record, write_lime

__all__ = ["IldgFile", "is_sqdiff_lime", "read_ildg", "scidac_checksum", "write_ildg"]

_FIELDS = {"su3gauge": 3, "su2gauge": 2}
_META = "sqdiff-metadata"
_MAX_XML = 1 << 20


class IldgFile(NamedTuple):
    """What `read_ildg` returns: `configs` `(n, 4, L, L, L, L, N, N)` (native complex), the
    sqdiff metadata (None for foreign files) and the stored precision (32 or 64)."""

    configs: np.ndarray
    metadata: dict | None
    precision: int


def _perm(a: np.ndarray) -> np.ndarray:
    """sqdiff `(4, x, y, z, t, N, N)` ↔ ILDG `(t, z, y, x, 4, N, N)` (self-inverse)."""
    return a.transpose(4, 3, 2, 1, 0, 5, 6)


def scidac_checksum(site_bytes: np.ndarray) -> tuple[int, int]:
    """`(suma, sumb)` of the SciDAC checksum for `site_bytes` `(V, nbytes)` (uint8, one row per
    site in lexicographic order, the bytes as stored in the file)."""
    crc = np.array([zlib.crc32(row.tobytes()) for row in site_bytes], np.uint64)
    rank = np.arange(site_bytes.shape[0], dtype=np.uint64)
    mask = np.uint64(0xFFFFFFFF)

    def xor_rotl(shift):
        rot = ((crc << shift) | (crc >> (np.uint64(32) - shift))) & mask
        return int(np.bitwise_xor.reduce(rot)) if rot.size else 0

    return xor_rotl(rank % np.uint64(29)), xor_rotl(rank % np.uint64(31))


def _format_xml(field: str, precision: int, L: int) -> bytes:
    dims = "".join(f"<l{c}>{L}</l{c}>" for c in "xyzt")
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ildgFormat xmlns="http://www.lqcd.org/ildg" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation='
        '"http://www.lqcd.org/ildg http://www.lqcd.org/ildg/filefmt.xsd"><version>1.0</version>'
        f"<field>{field}</field><precision>{precision}</precision>{dims}</ildgFormat>"
    ).encode()


def _checksum_xml(suma: int, sumb: int) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><scidacChecksum><version>1.0</version>'
        f"<suma>{suma:x}</suma><sumb>{sumb:x}</sumb></scidacChecksum>"
    ).encode()


def _xml_fields(data: bytes, what: str, path: str) -> dict[str, str]:
    """Child tags (namespaces stripped) → text of a small XML record."""
    if len(data) > _MAX_XML:
        raise ValueError(f"{path}: {what} record is implausibly large ({len(data)} bytes).")
    try:
        root = ET.fromstring(data.rstrip(b"\0"))
    except ET.ParseError:
        raise ValueError(f"{path}: {what} record is not valid XML.") from None
    return {el.tag.rsplit("}", 1)[-1]: (el.text or "").strip() for el in root}


def _site_bytes(F: np.ndarray) -> np.ndarray:
    """The stored bytes of an ILDG-ordered array `(t, z, y, x, 4, N, N)`, one row per site."""
    F = np.ascontiguousarray(F)
    return F.view(np.uint8).reshape(int(np.prod(F.shape[:4])), -1)


def _encode(U: np.ndarray, precision: int) -> tuple[np.ndarray, bytes]:
    big = np.ascontiguousarray(_perm(U)).astype(">c16" if precision == 64 else ">c8")
    return _site_bytes(big), big.tobytes()


def _to_double(configs: np.ndarray) -> np.ndarray:
    """Links computed in single precision, to be stored in double: their polar projection onto
    SU(N) in double precision (`W V†` of the SVD, det phase removed). The file then holds group
    elements to its own precision; the raw cast would keep float32's ~1e-7 drift, which a
    double-precision reader refuses (`SU(N).membership_tol`)."""
    W, _, Vh = np.linalg.svd(configs.astype(np.complex128))
    P = W @ Vh
    phase = np.angle(np.linalg.det(P))
    return P * np.exp(-1j * phase / P.shape[-1])[..., None, None]


def write_ildg(
    fh: BinaryIO,
    configs: np.ndarray,
    *,
    metadata: dict | None = None,
    precision: int | None = None,
    lfn: str = "sqdiff",
) -> None:
    """Write SU(2)/SU(3) configurations `(n, 4, L, L, L, L, N, N)` to an open file as LIME
    (one ILDG message each, with SciDAC checksums; `metadata` as a first JSON record).

    Args:
        fh: a binary file open for writing (e.g. from `sqdiff.io.atomic_write`).
        configs: the links.
        metadata: sqdiff's ensemble metadata (JSON-serialisable) or None.
        precision: 32 or 64 (default: 64 for complex128, 32 for complex64).
        lfn: the logical file name stem ("ildg-data-lfn" is `lfn/k`).
    """
    configs = np.asarray(configs)
    if configs.ndim != 8 or configs.shape[1] != 4 or len(set(configs.shape[2:6])) != 1:
        raise ValueError(
            "ILDG stores 4D gauge fields: configurations must have shape (n, 4, L, L, L, L, N, "
            f"N), got {configs.shape}."
        )
    N = configs.shape[-1]
    field = {n: f for f, n in _FIELDS.items()}.get(N)
    if field is None or configs.shape[-2] != N:
        raise ValueError(f"ILDG stores SU(2) and SU(3) links; got {configs.shape[-2:]} matrices.")
    if precision is None:
        precision = 64 if configs.dtype == np.complex128 else 32
    if precision not in (32, 64):
        raise ValueError(f"`precision` must be 32 or 64, got {precision!r}.")
    if precision == 64 and configs.dtype != np.complex128:
        configs = _to_double(configs)
    messages: list[Sequence[tuple[str, bytes]]] = []
    if metadata is not None:
        messages.append([(_META, json.dumps(metadata, sort_keys=True).encode())])
    fmt = _format_xml(field, precision, configs.shape[2])
    for k, U in enumerate(configs):
        sites, data = _encode(U, precision)
        messages.append(
            [
                ("ildg-format", fmt),
                ("ildg-binary-data", data),
                ("scidac-checksum", _checksum_xml(*scidac_checksum(sites))),
                ("ildg-data-lfn", f"{lfn}/{k}".encode()),
            ]
        )
    write_lime(fh, messages)


def _parse_format(data: bytes, path: str) -> tuple[int, int, int]:
    """`(N, precision, L)` from an "ildg-format" record."""
    f = _xml_fields(data, "ildg-format", path)
    if f.get("field") not in _FIELDS:
        raise ValueError(
            f"{path}: ILDG field {f.get('field')!r} is not supported (su3gauge, su2gauge)."
        )
    try:
        precision = int(f["precision"])
        dims = [int(f[f"l{c}"]) for c in "xyzt"]
    except (KeyError, ValueError):
        raise ValueError(f"{path}: ildg-format lacks a valid precision or lx/ly/lz/lt.") from None
    if precision not in (32, 64):
        raise ValueError(f"{path}: ILDG precision {precision} (only 32 and 64 exist).")
    if len(set(dims)) != 1 or dims[0] < 2:
        raise ValueError(f"{path}: lattice {dims}: sqdiff theories need a hypercubic L⁴, L ≥ 2.")
    return _FIELDS[f["field"]], precision, dims[0]


def _decode(data: bytes, N: int, precision: int, L: int, path: str, k: int) -> np.ndarray:
    dtype = np.dtype(">c16" if precision == 64 else ">c8")
    shape = (L, L, L, L, 4, N, N)
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: configuration {k} has {len(data)} bytes of links, its ildg-format says "
            f"{expected} ({L}⁴ sites × 4 × {N}×{N} complex, {precision}-bit)."
        )
    F = np.frombuffer(data, dtype).reshape(shape)
    return F


def _check_sum(F: np.ndarray, record: bytes, path: str, k: int) -> None:
    f = _xml_fields(record, "scidac-checksum", path)
    try:
        stored = (int(f["suma"], 16), int(f["sumb"], 16))
    except (KeyError, ValueError):
        raise ValueError(f"{path}: configuration {k}: unreadable scidac-checksum.") from None
    found = scidac_checksum(_site_bytes(F))
    if found != stored:
        raise ValueError(
            f"{path}: configuration {k} fails its SciDAC checksum (stored {stored[0]:x} "
            f"{stored[1]:x}, computed {found[0]:x} {found[1]:x}): the file is corrupted."
        )


def is_sqdiff_lime(path: str) -> bool:
    """Whether `path` is a LIME file whose first record is sqdiff's metadata."""
    try:
        with open(path, "rb") as fh:
            return read_lime(fh, path)[0].type == _META
    except (OSError, ValueError):
        return False


def read_ildg(path: str) -> IldgFile:
    """Read every ILDG configuration of a LIME file, verifying SciDAC checksums where present.

    Args:
        path: the file.
    """
    configs, meta, fmt, precisions = [], None, None, set()
    with open(path, "rb") as fh:
        records = read_lime(fh, path)
        pending = None  # the last configuration, waiting for its checksum
        for rec in records:
            if rec.type == _META:
                try:
                    meta = json.loads(read_record(fh, rec))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ValueError(f"{path}: sqdiff-metadata is not valid JSON.") from None
            elif rec.type == "ildg-format":
                fmt = _parse_format(read_record(fh, rec), path)
            elif rec.type == "ildg-binary-data":
                if fmt is None:
                    raise ValueError(f"{path}: ildg-binary-data before any ildg-format record.")
                N, precision, L = fmt
                precisions.add(precision)
                pending = _decode(read_record(fh, rec), N, precision, L, path, len(configs))
                configs.append(pending)
            elif rec.type == "scidac-checksum" and pending is not None:
                _check_sum(pending, read_record(fh, rec), path, len(configs) - 1)
                pending = None
    if not configs:
        raise ValueError(f"{path}: no ildg-binary-data record (not an ILDG gauge file).")
    if len({c.shape for c in configs}) != 1 or len(precisions) != 1:
        raise ValueError(f"{path}: configurations of different sizes or precisions.")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"{path}: sqdiff-metadata must be a JSON object.")
    precision = precisions.pop()
    native = np.complex128 if precision == 64 else np.complex64
    out = np.stack([_perm(c) for c in configs]).astype(native)
    return IldgFile(out, meta, precision)
