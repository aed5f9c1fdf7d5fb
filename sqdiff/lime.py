r"""LIME files (Lattice QCD Interchange Message Encapsulation, USQCD/SciDAC, "LIME version 1.2").

A LIME file is a sequence of records, grouped into messages. Each record is a 144-byte header
(big-endian): the magic number `0x456789ab` (4 bytes), the format version 1 (2 bytes), the flags
(2 bytes: bit 15 message begin, bit 14 message end), the data length in bytes (8 bytes) and the
record type (128 bytes, NUL-padded ASCII); then the data, padded with zeros to a multiple of 8
bytes. The first record of a file begins a message; a record after a message end begins one.

Reading checks every header against the file's size, so a truncated or corrupted file is a
one-line `ValueError`, never a partial read.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import BinaryIO, NamedTuple

__all__ = ["LimeRecord", "read_lime", "read_record", "write_lime"]

MAGIC = 0x456789AB
VERSION = 1
HEADER = struct.Struct(">IHHQ128s")  # 144 bytes
MB, ME = 0x8000, 0x4000


class LimeRecord(NamedTuple):
    """One record: its type, where its data start, their length, and the message flags."""

    type: str
    offset: int
    length: int
    begins_message: bool
    ends_message: bool


def _pad(n: int) -> int:
    return (-n) % 8


def read_lime(fh: BinaryIO, path: str = "file") -> list[LimeRecord]:
    """The records of an open LIME file (headers only; `read_record` reads data)."""
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    records, pos = [], 0
    while pos < size:
        head = fh.read(HEADER.size)
        if len(head) < HEADER.size:
            raise ValueError(f"{path}: truncated LIME record header at byte {pos}.")
        magic, version, flags, length, name = HEADER.unpack(head)
        if magic != MAGIC:
            raise ValueError(f"{path}: not a LIME file (bad magic number at byte {pos}).")
        if version != VERSION:
            raise ValueError(f"{path}: LIME version {version} at byte {pos}; only 1 is known.")
        start = pos + HEADER.size
        end = start + length + _pad(length)
        if end > size:
            raise ValueError(
                f"{path}: truncated LIME record {_type(name)!r} (needs {length} bytes at byte "
                f"{start}, the file has {size - start})."
            )
        records.append(LimeRecord(_type(name), start, length, bool(flags & MB), bool(flags & ME)))
        pos = end
        fh.seek(pos)
    if not records:
        raise ValueError(f"{path}: empty LIME file.")
    return records


def _type(name: bytes) -> str:
    return name.split(b"\0", 1)[0].decode("ascii", "replace")


def read_record(fh: BinaryIO, record: LimeRecord) -> bytes:
    """The data of one record."""
    fh.seek(record.offset)
    return fh.read(record.length)


def write_lime(fh: BinaryIO, messages: Sequence[Sequence[tuple[str, bytes]]]) -> None:
    """Write `messages`, each a sequence of `(record type, data)` pairs, as LIME records with
    the message-begin/-end flags set on the first/last record of each message."""
    for message in messages:
        if not message:
            raise ValueError("a LIME message needs at least one record.")
        for i, (kind, data) in enumerate(message):
            name = kind.encode("ascii")
            if len(name) >= 128:
                raise ValueError(f"LIME record type {kind!r} is longer than 127 characters.")
            flags = (MB if i == 0 else 0) | (ME if i == len(message) - 1 else 0)
            fh.write(HEADER.pack(MAGIC, VERSION, flags, len(data), name))
            fh.write(data)
            fh.write(b"\0" * _pad(len(data)))
