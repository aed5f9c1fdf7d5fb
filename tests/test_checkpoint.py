"""Model directories: one writer at a time, stale files cleaned, readers never see a config
pointing at deleted weights, output checked before the compute."""

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


def test_stale_temporary_files_and_orphan_weights_are_cleaned(tmp_path):
    d = tmp_path / "m"
    data = jr.normal(jr.key(0), (64,))
    train(str(d), data, SPEC, CFG, progress=False)
    (d / ".tmp-abc123").write_bytes(b"half a file")  # a killed write
    (d / "weights-2.eqx").write_bytes(b"an orphan")  # weights no checkpoint points at
    train(str(d), data, SPEC, TrainConfig(steps=6, batch=8, steps_per_call=2, warmup=1),
          resume=True, progress=False)  # fmt: skip
    assert sorted(os.listdir(d)) == [".lock", "config.json", "weights-6.eqx"]
    load_model(str(d))


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
