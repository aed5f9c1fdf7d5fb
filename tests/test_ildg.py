"""ILDG/LIME gauge files and HDF5 ensembles: bit-exact round trips, a hand-made file read with
its independently computed SciDAC checksum, and one-line errors on damaged files."""

import json
import struct
import subprocess
import sys
import zlib

import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.ildg import read_ildg, scidac_checksum, write_ildg
from sqdiff.lime import read_lime


def _meta(**kw):
    m = {
        "theory": "sun",
        "params": {"N": 3, "L": 2, "d": 4, "beta": 5.5},
        "sampler": {"sampler": "hmc"},
        "seed": 1,
        "acceptance": 0.9,
    }
    m.update(kw)
    return m


def _links(N=3, L=2, n=(2, 3), dtype=np.complex64, seed=0):
    group = sq.SUN(N)
    U = group.sample_haar(jr.key(seed), n + (4,) + (L,) * 4)
    return np.asarray(U).astype(dtype)


def _record(kind: str, data: bytes, mb: bool, me: bool) -> bytes:
    """A LIME record written from the specification (independent of sqdiff.lime)."""
    flags = (0x8000 if mb else 0) | (0x4000 if me else 0)
    head = struct.pack(">IHHQ", 0x456789AB, 1, flags, len(data)) + kind.encode().ljust(128, b"\0")
    return head + data + b"\0" * ((-len(data)) % 8)


def _rotl(c: int, n: int) -> int:
    return ((c << n) | (c >> (32 - n))) & 0xFFFFFFFF


def test_hand_made_ildg_file_with_known_checksum(tmp_path):
    """An SU(3) 2⁴ file built byte by byte: link U_μ(x) = diag(e^{iα}, e^{iβ}, e^{−i(α+β)})
    with angles from the site rank and μ, 64-bit big-endian, x fastest."""
    L, N = 2, 3
    sites, expected = [], np.zeros((4,) + (L,) * 4 + (N, N), complex)
    suma = sumb = 0
    for rank in range(L**4):
        x, y, z, t = rank % L, (rank // L) % L, (rank // L**2) % L, rank // L**3
        site = b""
        for mu in range(4):
            a, b = 0.1 * rank + 0.3 * mu, -0.05 * rank + 0.2
            U = np.diag(np.exp(1j * np.array([a, b, -a - b])))
            expected[mu, x, y, z, t] = U
            for v in U.reshape(-1):
                site += struct.pack(">dd", v.real, v.imag)
        sites.append(site)
        crc = zlib.crc32(site)
        suma ^= _rotl(crc, rank % 29)
        sumb ^= _rotl(crc, rank % 31)
    fmt = (
        b"<?xml version='1.0'?><ildgFormat xmlns='http://www.lqcd.org/ildg'><version>1.0</version>"
        b"<field>su3gauge</field><precision>64</precision><lx>2</lx><ly>2</ly><lz>2</lz><lt>2</lt>"
        b"</ildgFormat>"
    )
    checksum = f"<scidacChecksum><version>1.0</version><suma>{suma:x}</suma><sumb>{sumb:x}</sumb></scidacChecksum>"  # noqa: E501
    blob = (
        _record("ildg-format", fmt, True, False)
        + _record("ildg-binary-data", b"".join(sites), False, False)
        + _record("scidac-checksum", checksum.encode(), False, False)
        + _record("ildg-data-lfn", b"lfn://test/1", False, True)
    )
    path = tmp_path / "hand.lime"
    path.write_bytes(blob)
    f = read_ildg(str(path))
    assert f.precision == 64 and f.metadata is None and f.configs.dtype == np.complex128
    np.testing.assert_array_equal(f.configs[0], expected)
    # our writer produces the same bytes for the links and the same checksum
    data = np.asarray(expected.transpose(4, 3, 2, 1, 0, 5, 6), ">c16")
    assert scidac_checksum(data.view(np.uint8).reshape(L**4, -1)) == (suma, sumb)
    # as an ensemble: foreign files need the coupling and are one chain
    with pytest.raises(ValueError, match="beta"):
        sq.load_ensemble(str(path))
    ens = sq.load_ensemble(str(path), beta=6.0)
    assert ens.samples.shape == (1, 1, 4, 2, 2, 2, 2, 3, 3)
    assert ens.action.params == {"N": 3, "L": 2, "d": 4, "beta": 6.0}
    # a flipped byte in the links fails the checksum
    bad = bytearray(blob)
    bad[2 * 144 + len(fmt) + ((-len(fmt)) % 8) + 100] ^= 1
    (tmp_path / "bad.lime").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match="checksum"):
        read_ildg(str(tmp_path / "bad.lime"))


@pytest.mark.parametrize("N, dtype", [(3, np.complex64), (3, np.complex128), (2, np.complex64)])
def test_ildg_round_trip_is_bit_exact(tmp_path, N, dtype):
    configs = _links(N=N, n=(3,), dtype=dtype)
    path = tmp_path / "c.lime"
    with open(path, "wb") as fh:
        write_ildg(fh, configs)
    f = read_ildg(str(path))
    assert f.configs.dtype == dtype and f.precision == (64 if dtype == np.complex128 else 32)
    np.testing.assert_array_equal(f.configs, configs)
    with open(path, "rb") as fh:
        kinds = [r.type for r in read_lime(fh)]
    assert kinds == ["ildg-format", "ildg-binary-data", "scidac-checksum", "ildg-data-lfn"] * 3


@pytest.mark.parametrize("ext", ["npz", "lime", "h5"])
def test_ensemble_formats_round_trip_with_metadata(tmp_path, ext):
    samples = _links()
    path = str(tmp_path / f"ens.{ext}")
    sq.save_ensemble(path, samples, _meta())
    ens = sq.load_ensemble(path)
    np.testing.assert_array_equal(ens.samples, samples)
    assert ens.samples.dtype == samples.dtype
    assert ens.metadata["n_chains"] == 2 and ens.metadata["theory"] == "sun"
    with pytest.raises(ValueError, match="own metadata"):  # β is not overridden
        sq.load_ensemble(path, beta=6.0)
    assert ens.action.beta == 5.5
    assert sq.io.is_ensemble_file(path)
    sq.save_ensemble(path, samples[:, :2], _meta(seed=2))  # replaces its own kind of file
    assert sq.load_ensemble(path).metadata["seed"] == 2


def test_hdf5_is_readable_with_h5py_alone(tmp_path):
    import h5py

    samples = _links()
    lw = np.zeros(samples.shape[:2])
    path = str(tmp_path / "ens.h5")
    sq.save_ensemble(path, samples, _meta(), log_weights=lw)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["samples"][0, -1], samples[0, -1])
        assert json.loads(f.attrs["sqdiff_metadata"])["params"]["beta"] == 5.5
        assert f["samples"].fletcher32
    np.testing.assert_array_equal(sq.load_ensemble(path).log_weights, lw)
    with h5py.File(path, "r+") as f:  # an edit that HDF5 accepts is caught by our digest
        f["log_weights"][0, 0] = 1.0
    with pytest.raises(ValueError, match="checksum"):
        sq.load_ensemble(path)


def test_damaged_files_are_one_line_errors(tmp_path):
    samples = _links()
    good = tmp_path / "ens.lime"
    sq.save_ensemble(str(good), samples, _meta())
    blob = good.read_bytes()
    cases = {
        "truncated.lime": (blob[:-500], "truncated"),
        "magic.lime": (b"\0" * 8 + blob[8:], "not a LIME"),
        "empty.lime": (b"", "empty"),
        "h5junk.h5": (b"not hdf5" * 100, "no sqdiff file checksum"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=match):
            sq.load_ensemble(str(tmp_path / name))
    with pytest.raises(ValueError, match="not a readable HDF5"):  # probed, then read: refused
        sq.load_ensemble(str(tmp_path / "h5junk.h5"), allow_unverified=True)
    # wrong size: the format record says L = 3 while the links are L = 2
    wrong = blob.replace(b"<lx>2</lx><ly>2</ly><lz>2</lz><lt>2</lt>",
                         b"<lx>3</lx><ly>3</ly><lz>3</lz><lt>3</lt>")  # fmt: skip
    (tmp_path / "size.lime").write_bytes(wrong)
    with pytest.raises(ValueError, match="bytes of links"):
        sq.load_ensemble(str(tmp_path / "size.lime"))
    # what ILDG cannot hold is refused before writing
    un = np.asarray(sq.UN(2).sample_haar(jr.key(0), (1, 2, 4) + (2,) * 4))
    un_meta = _meta(theory="un", params={"N": 2, "L": 2, "d": 4, "beta": 1.0})
    with pytest.raises(ValueError, match="ILDG"):
        sq.save_ensemble(str(tmp_path / "x.lime"), un, un_meta)
    r = subprocess.run(
        [sys.executable, "-m", "sqdiff", "measure", str(tmp_path / "truncated.lime")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "truncated" in r.stderr


def test_single_precision_links_stored_in_double_are_reprojected(tmp_path):
    """Issue 40 (6): float32 links written with `precision=64` are projected onto SU(3) in
    double precision, so that a double-precision reader (tolerance 16·N·ε of float64) accepts
    them; they differ from the float32 links by rounding only."""
    from sqdiff import SU

    configs = _links(N=3, n=(2,), dtype=np.complex64)
    raw = configs.astype(np.complex128)
    with pytest.raises(ValueError, match="not in SU"):
        SU(3).check_state(raw)  # the raw cast keeps float32's drift
    path = tmp_path / "c.lime"
    with open(path, "wb") as fh:
        write_ildg(fh, configs, precision=64)
    f = read_ildg(str(path))
    assert f.configs.dtype == np.complex128
    SU(3).check_state(f.configs)
    assert np.max(np.abs(f.configs - raw)) < 1e-6
