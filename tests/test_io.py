import json
import os

import numpy as np
import pytest

import sqdiff as sq


def _meta(**kw):
    m = {
        "theory": "phi4",
        "params": {"L": 4, "d": 2, "kappa": 0.2, "lam": 0.1},
        "sampler": {"sampler": "hmc"},
        "seed": 1,
        "acceptance": 0.9,
    }
    m.update(kw)
    return m


def test_round_trip_and_atomic_overwrite(tmp_path):
    path = tmp_path / "ens.npz"
    samples = np.random.default_rng(0).normal(size=(2, 5, 4, 4)).astype(np.float32)
    sq.save_ensemble(str(path), samples, _meta())
    sq.save_ensemble(str(path), samples * 2, _meta(seed=2))  # replaces atomically
    ens = sq.load_ensemble(str(path))
    np.testing.assert_array_equal(ens.samples, samples * 2)
    assert ens.metadata["seed"] == 2 and ens.metadata["n_chains"] == 2
    assert ens.metadata["sqdiff_version"] == sq.__version__
    assert isinstance(ens.action, sq.Phi4) and ens.action.kappa == 0.2
    assert sorted(os.listdir(tmp_path)) == ["ens.npz"]  # no temporary files left
    with np.load(path, allow_pickle=False) as z:  # readable without pickle
        assert json.loads(str(z["metadata"]))["theory"] == "phi4"


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "ens.npz"
    good = np.zeros((1, 3, 4, 4), np.float32)
    sq.save_ensemble(str(path), good, _meta())
    with pytest.raises(ValueError, match="non-finite"):
        sq.save_ensemble(str(path), np.full((1, 3, 4, 4), np.nan), _meta())
    with pytest.raises(ValueError, match="shape"):
        sq.save_ensemble(str(path), np.zeros((1, 3, 5, 5)), _meta())
    assert sq.load_ensemble(str(path)).samples.shape == (1, 3, 4, 4)
    assert sorted(os.listdir(tmp_path)) == ["ens.npz"]


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        sq.save_ensemble(str(tmp_path / "a.npz"), np.zeros((1, 2, 4, 4)), {"theory": "phi4"})
    bad = tmp_path / "bad.npz"
    np.savez(bad, samples=np.zeros((1, 2, 4, 4)), metadata=np.array(json.dumps({"theory": "phi4"})))
    with pytest.raises(ValueError, match="no sha256 checksum"):
        sq.load_ensemble(str(bad))
    with pytest.raises(ValueError, match="lacks"):  # the structure is checked all the same
        sq.load_ensemble(str(bad), allow_unverified=True)
    meta = _meta(n_chains=1, n_samples=3, config_shape=[4, 4], sqdiff_version="0")
    np.savez(bad, samples=np.zeros((1, 2, 4, 4)), metadata=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="metadata says"):
        sq.load_ensemble(str(bad), allow_unverified=True)
    meta["theory"] = "nonsense"
    np.savez(bad, samples=np.zeros((1, 3, 4, 4)), metadata=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="unknown theory"):
        sq.load_ensemble(str(bad), allow_unverified=True)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable"):
        sq.load_ensemble(str(tmp_path / "junk.npz"))
    with pytest.raises(FileNotFoundError):
        sq.load_ensemble(str(tmp_path / "missing.npz"))


def _toy(tmp_path):
    import numpy as np

    meta = {"theory": "quartic", "params": {"mu2": 1.0, "g": 0.4}, "sampler": {}, "seed": 0,
            "acceptance": 1.0}  # fmt: skip
    return np.zeros((1, 4)), meta


def test_outputs_never_replace_other_files(tmp_path):
    samples, meta = _toy(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("my notes")
    with pytest.raises(ValueError, match="not a sqdiff ensemble"):
        sq.save_ensemble(str(text), samples, meta)
    assert text.read_text() == "my notes"
    sq.save_ensemble(str(text), samples, meta, force=True)  # asked for
    ens = tmp_path / "ens.npz"
    sq.save_ensemble(str(ens), samples, meta)
    sq.save_ensemble(str(ens), samples, meta)  # an ensemble may replace an ensemble
    link = tmp_path / "link.npz"
    link.symlink_to(ens)
    with pytest.raises(ValueError, match="symbolic link"):
        sq.save_ensemble(str(link), samples, meta)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for force in (False, True):
        with pytest.raises(ValueError, match="not a regular file"):
            sq.save_ensemble(str(fifo), samples, meta, force=force)
    with pytest.raises(ValueError, match="not a regular file"):
        sq.save_ensemble(str(tmp_path), samples, meta, force=True)


def test_files_respect_the_umask(tmp_path):
    samples, meta = _toy(tmp_path)
    old = os.umask(0o022)
    try:
        sq.save_ensemble(str(tmp_path / "e.npz"), samples, meta)
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "e.npz").st_mode & 0o777) == 0o644


def test_cli_refuses_a_model_file_as_output_before_sampling(tmp_path, capsys):
    from sqdiff.cli import main

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    argv = ["generate", "toy", "--n", "10", "--out", str(model / "config.json"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not a sqdiff ensemble" in err and (model / "config.json").read_text() == '{"a": 1}'
    assert main(["generate", "toy", "--n", "10", "--out", "/dev/null", "--quiet"]) == 2
    assert "not a regular file" in capsys.readouterr().err


# --- issue 40: nothing lost, round 2 -------------------------------------------------------


def _ens(tmp_path, name="ens.npz"):
    samples, meta = _toy(tmp_path)
    samples = np.random.default_rng(0).normal(size=(2, 32))
    path = tmp_path / name
    sq.save_ensemble(str(path), samples, meta)
    return path


def _snapshot(folder):
    """Every file under `folder` (links and FIFOs by their kind), to compare before/after."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for n in files + dirs:
            p = os.path.join(root, n)
            if os.path.islink(p):
                out[p] = ("link", os.readlink(p))
            elif os.path.isfile(p):
                out[p] = open(p, "rb").read()
            else:
                out[p] = "dir" if os.path.isdir(p) else "special"
    return out


def test_measure_plot_never_replaces_what_sqdiff_did_not_draw(tmp_path, capsys):
    from sqdiff.cli import main

    ens = _ens(tmp_path)
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.4 my paper")
    (tmp_path / "README").write_text("read me")
    (tmp_path / "link.png").symlink_to(tmp_path / "README")
    before = _snapshot(tmp_path)
    cases = {
        "paper.pdf": "not a sqdiff figure",
        "README": "ends in .png",
        "link.png": "symbolic link",
        "ens.npz": "ends in .png",  # the input ensemble itself
    }
    for name, match in cases.items():
        # the output is checked before the input is even read: a missing input is not reached
        for src in (ens, tmp_path / "missing.npz"):
            assert main(["measure", str(src), "--plot", str(tmp_path / name)]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and match in err, (name, err)
    os.mkfifo(tmp_path / "fifo.png")
    assert main(["measure", str(ens), "--plot", str(tmp_path / "fifo.png")]) == 2
    assert "not a regular file" in capsys.readouterr().err
    os.remove(tmp_path / "fifo.png")
    assert _snapshot(tmp_path) == before
    fig = tmp_path / "fig.png"
    assert main(["measure", str(ens), "--plot", str(fig)]) == 0
    assert sq.io.is_sqdiff_figure(str(fig))
    assert main(["measure", str(ens), "--plot", str(fig)]) == 0  # its own figure: replaced


def test_side_config_is_checked_before_the_compute(tmp_path, capsys):
    from sqdiff.cli import main

    out = tmp_path / "e.npz"
    side = tmp_path / "e.npz.config.toml"
    argv = ["generate", "toy", "--n", "10", "--out", str(out), "--quiet"]
    side.write_text("my own notes")
    os.mkfifo(tmp_path / "f.npz.config.toml")
    (tmp_path / "d.npz.config.toml").mkdir()
    (tmp_path / "l.npz.config.toml").symlink_to(tmp_path / "e.npz.config.toml")
    before = _snapshot(tmp_path)
    for name, match in [("e", "not a sqdiff resolved configuration"), ("f", "not a regular"),
                        ("d", "not a regular"), ("l", "symbolic link")]:  # fmt: skip
        argv[-2] = str(tmp_path / f"{name}.npz")
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, (name, err)
    assert _snapshot(tmp_path) == before  # no ensemble written, nothing replaced
    os.remove(side)
    argv[-2] = str(out)
    assert main(argv) == 0 and out.exists()
    assert side.read_text().startswith("# sqdiff ")
    assert main(argv) == 0  # a resolved configuration sqdiff wrote is replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")) == []


def test_a_full_disk_fails_before_the_compute(tmp_path, capsys, monkeypatch):
    import errno

    from sqdiff.cli import main

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "e.npz"
    assert main(["generate", "toy", "--n", "10", "--out", str(out), "--quiet"]) == 2
    assert "No space left" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []  # neither the ensemble nor a temporary file


def test_a_removed_checksum_does_not_switch_the_check_off(tmp_path, capsys):
    import io
    import zipfile

    from sqdiff.cli import main

    ens = _ens(tmp_path)
    with zipfile.ZipFile(ens) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    meta = json.loads(str(arrays["metadata"]))
    del meta["sha256"]
    arrays["samples"] = arrays["samples"] * 3  # the edit the checksum would have caught
    arrays["metadata"] = np.array(json.dumps(meta))
    edited = tmp_path / "edited.npz"
    with open(edited, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(ValueError, match="no sha256 checksum"):
        sq.load_ensemble(str(edited))
    assert main(["measure", str(edited)]) == 2
    assert "--allow-unverified" in capsys.readouterr().err
    ens2 = sq.load_ensemble(str(edited), allow_unverified=True)
    assert not ens2.verified and sq.load_ensemble(str(ens)).verified
    assert main(["measure", str(edited), "--allow-unverified"]) == 0
    assert "! UNVERIFIED" in capsys.readouterr().out
    assert main(["measure", str(edited), "--allow-unverified", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"]["unverified"] is True


def test_a_damaged_hdf5_file_never_crashes_the_process(tmp_path, capsys):
    from sqdiff.cli import main

    path = _ens(tmp_path, "ens.h5")
    blob = path.read_bytes()
    assert blob.startswith(b"sqdiff-hdf5 sha256 ")
    rng = np.random.default_rng(2)
    for start in rng.integers(0, len(blob) - 256, 40):  # one 256-byte block zeroed
        damaged = tmp_path / "damaged.h5"
        damaged.write_bytes(blob[:start] + b"\0" * 256 + blob[start + 256 :])
        if damaged.read_bytes() == blob:
            continue
        assert main(["measure", str(damaged)]) == 2  # refused before HDF5 sees the file
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "checksum" in err, (start, err)
        assert not sq.io.is_ensemble_file(str(damaged)) or blob[:512] == damaged.read_bytes()[:512]


def test_an_hdf5_file_without_the_checksum_is_probed_in_a_child_process(tmp_path, monkeypatch):
    import h5py

    import sqdiff.hdf5 as h5

    path = str(tmp_path / "old.h5")  # as sqdiff 0.1 wrote it: no user block
    _, meta = _toy(tmp_path)
    with h5py.File(path, "w") as f:
        f.create_dataset("samples", data=np.zeros((1, 4)))
        f.attrs["sqdiff_metadata"] = json.dumps(
            {**meta, "sqdiff_version": "0.1.0", "n_chains": 1, "n_samples": 4,
             "config_shape": []})  # fmt: skip
    with pytest.raises(ValueError, match="no sqdiff file checksum"):
        sq.load_ensemble(path)
    assert not sq.load_ensemble(path, allow_unverified=True).verified
    # a file that crashes the HDF5 library in the probe is refused, and this process lives
    monkeypatch.setattr(h5, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ValueError, match="crashes the HDF5 library"):
        sq.load_ensemble(path, allow_unverified=True)


@pytest.mark.parametrize(
    "key, value, msg",
    [
        ("relaxation", [1, 2], "'relaxation' must be a relaxation verdict"),
        ("relaxation", {"drifting": ["M"]}, "'relaxation' must be"),
        ("acceptance", 10**400, "'acceptance' must be a number in \\[0, 1\\]"),
        ("acceptance", float("-inf"), "'acceptance' must be a number in \\[0, 1\\]"),
        ("acceptance", 1.5, "'acceptance' must be"),
        ("acceptance", True, "'acceptance' must be"),
        ("acceptance_error", "x", "'acceptance_error' must be"),
        ("health", {"ok": "yes"}, "'health' must be"),
        ("sampler", [1], "'sampler' must be an object"),
        ("n_therm", -3, "'n_therm' must be an integer ≥ 0"),
        ("params", [1], "'params' must be an object"),
    ],
)
def test_metadata_of_a_wrong_form_is_refused_even_with_a_valid_checksum(
    tmp_path, capsys, key, value, msg
):
    """Issue 40 (11): metadata whose checksum was recomputed after an edit (so the checksum
    cannot catch it) but whose form is wrong is a one-line error, not exit 3 or a skipped check
    (an acceptance of −inf skipped the zero-acceptance flag)."""
    import io
    import zipfile

    from sqdiff.cli import main
    from sqdiff.io import _content_digest

    ens = _ens(tmp_path)
    with zipfile.ZipFile(ens) as z:
        arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
    meta = json.loads(str(arrays.pop("metadata")))
    meta[key] = value
    del meta["sha256"]
    meta["sha256"] = _content_digest(arrays, meta)
    edited = tmp_path / "edited.npz"
    with open(edited, "wb") as fh:
        np.savez(fh, metadata=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(ValueError, match=msg):
        sq.load_ensemble(str(edited))
    assert main(["measure", str(edited)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sqdiff: error:"), err
