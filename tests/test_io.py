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
    with pytest.raises(ValueError, match="lacks"):
        sq.load_ensemble(str(bad))
    meta = _meta(n_chains=1, n_samples=3, config_shape=[4, 4], sqdiff_version="0")
    np.savez(bad, samples=np.zeros((1, 2, 4, 4)), metadata=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="metadata says"):
        sq.load_ensemble(str(bad))
    meta["theory"] = "nonsense"
    np.savez(bad, samples=np.zeros((1, 3, 4, 4)), metadata=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="unknown theory"):
        sq.load_ensemble(str(bad))
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
