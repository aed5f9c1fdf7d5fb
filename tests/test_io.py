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
