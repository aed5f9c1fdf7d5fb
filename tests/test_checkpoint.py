"""Model directories: one writer at a time, no file deleted that sqdiff did not write, readers
never see a config pointing at deleted weights, output checked before the compute."""

import os

import jax.random as jr
import pytest

from sqdiff.checkpoint import ModelDir
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec
from sqdiff.train import TrainConfig, load_model, train

SPEC = ModelSpec(
    network=NetworkSpec("mlp", {"width": 8, "depth": 1}),
    schedule=ScheduleSpec("ve", {"sigma": 10.0}),
    objective=ObjectiveSpec("dsm"),
    config_shape=(),
)
CFG = TrainConfig(steps=4, batch=8, steps_per_call=2, warmup=1)


def test_a_second_writer_fails_while_the_first_holds_the_lock(tmp_path):
    d = str(tmp_path / "m")
    data = jr.normal(jr.key(0), (64,))
    with ModelDir(d).lock():  # another trainer is writing here
        with pytest.raises(ValueError, match="being written by another sqdiff process"):
            train(d, data, SPEC, CFG, progress=False)
    res = train(d, data, SPEC, CFG, progress=False)  # free again
    assert res.step == 4


def test_a_refused_or_resumed_run_deletes_no_file_it_did_not_write(tmp_path):
    # issue 40: a refused `train --out MODEL` deleted weights-*.eqx files, a user's backup too
    d = tmp_path / "m"
    data = jr.normal(jr.key(0), (64,))
    train(str(d), data, SPEC, CFG, progress=False)
    (d / ".tmp-abc123").write_bytes(b"half a file")  # a killed write: left alone
    (d / "weights-backup.eqx").write_bytes(b"the user's own copy")
    (d / "weights-2.eqx").write_bytes(b"an orphan")
    before = {n: (d / n).read_bytes() for n in os.listdir(d) if n != ".lock"}
    with pytest.raises(ValueError, match="already holds a model"):  # no resume: refused
        train(str(d), data, SPEC, CFG, progress=False)
    other = TrainConfig(steps=6, batch=16, steps_per_call=2, warmup=1)
    with pytest.raises(ValueError, match="other settings"):  # mismatched: refused
        train(str(d), data, SPEC, other, resume=True, progress=False)
    config = d / "config.json"
    config.write_text(config.read_text().replace('"step": 4', '"step": 3'))  # corrupted
    with pytest.raises(ValueError, match="changed after sqdiff wrote it"):
        train(str(d), data, SPEC, CFG, resume=True, progress=False)
    after = {n: (d / n).read_bytes() for n in os.listdir(d) if n != ".lock"}
    assert after == {**before, "config.json": after["config.json"]}
    config.write_text(before["config.json"].decode())
    train(str(d), data, SPEC, TrainConfig(steps=6, batch=8, steps_per_call=2, warmup=1),
          resume=True, progress=False)  # fmt: skip
    names = sorted(os.listdir(d))  # the run replaced only the checkpoint it had written
    assert names == [".lock", ".tmp-abc123", "config.json", "weights-2.eqx", "weights-6.eqx",
                     "weights-backup.eqx"]  # fmt: skip
    assert (d / "weights-backup.eqx").read_bytes() == b"the user's own copy"
    load_model(str(d))


def test_a_model_without_its_config_checksum_is_refused(tmp_path):
    import json

    d = tmp_path / "m"
    train(str(d), jr.normal(jr.key(0), (64,)), SPEC, CFG, progress=False)
    meta = json.loads((d / "config.json").read_text())
    del meta["config_sha256"]
    meta["spec"]["schedule"]["params"]["sigma"] = 30.0  # an edit the checksum would catch
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="no config_sha256 checksum"):
        load_model(str(d))
    model = ModelDir(str(d), allow_unverified=True).load()
    assert model.spec.schedule.build().sigma == 30.0  # read, on request only


def test_output_is_checked_before_the_compute(tmp_path):
    data = jr.normal(jr.key(0), (64,))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ValueError, match="other files and no model"):
        train(str(tmp_path / "notes"), data, SPEC, CFG, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        train(str(tmp_path / "file"), data, SPEC, CFG, progress=False)
    with pytest.raises(ValueError, match="missing or read-only"):
        train(str(tmp_path / "no" / "such" / "m"), data, SPEC, CFG, progress=False)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
