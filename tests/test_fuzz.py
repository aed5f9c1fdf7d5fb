"""Corrupted and edited files never become different numbers or a traceback: 1000 seeded random
byte flips, truncations and JSON edits of an ensemble and of a model directory, each read back
through the command line. Every case either reads the unchanged content (same output as the
intact file) or exits 2 with one line on stderr."""

import io
import json
import os
import random
import shutil
import zipfile

import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.cli import main
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, train


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, case):
    assert rc == 2, (case, rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sqdiff: error:"), (case, err)


def edit_json_value(obj, rng):
    """One random edit somewhere in a JSON object: a changed number, a wrong type, a removed
    key."""
    path = []
    node = obj
    while isinstance(node, dict) and node:
        key = rng.choice(sorted(node))
        path.append(key)
        if not isinstance(node[key], dict) or rng.random() < 0.4:
            break
        node = node[key]
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    key = path[-1]
    kind = rng.randrange(3)
    if kind == 0 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = parent[key] * 1.5 + 1
    elif kind == 1:
        parent[key] = rng.choice([None, "x", [1, 2], {"a": 1}, -3, 1e300, True])
    else:
        del parent[key]


def mutate(raw: bytes, rng) -> bytes:
    b = bytearray(raw)
    if rng.random() < 0.75:
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return bytes(b)
    return bytes(b[: rng.randrange(len(b))])


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_ens")
    path = str(d / "ens.npz")
    meta = {"theory": "quartic", "params": {"mu2": 1.0, "g": 0.4}, "sampler": {"sampler": "x"},
            "seed": 0, "acceptance": 0.9}  # fmt: skip
    sq.save_ensemble(path, np.random.default_rng(0).normal(size=(2, 64)), meta)
    return path


def test_fuzzed_ensembles_read_unchanged_or_fail_in_one_line(ensemble, tmp_path, capsys):
    rc, reference, _ = run(["measure", ensemble, "--json"], capsys)
    assert rc == 0
    raw = open(ensemble, "rb").read()
    with zipfile.ZipFile(ensemble) as z:
        members = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(str(np.load(io.BytesIO(members["metadata.npy"]))))
    rng = random.Random(1)
    target = str(tmp_path / "case.npz")
    outcomes = {"same": 0, "refused": 0}
    for case in range(700):
        if case % 5 == 4:  # a JSON edit, written back as a well-formed .npz
            m = json.loads(json.dumps(meta))
            edit_json_value(m, rng)
            arrays = {n[:-4]: np.load(io.BytesIO(v)) for n, v in members.items()}
            arrays["metadata"] = np.array(json.dumps(m))
            with open(target, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            with open(target, "wb") as fh:
                fh.write(mutate(raw, rng))
        rc, out, err = run(["measure", target, "--json"], capsys)
        if rc == 0:
            assert out == reference, (case, "changed content was measured")
            outcomes["same"] += 1
        else:
            assert_one_line_error(rc, err, case)
            outcomes["refused"] += 1
    print("ensemble outcomes", outcomes)
    assert outcomes["refused"] > 500 and outcomes["same"] > 0, outcomes


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_model") / "m"
    spec = ModelSpec(
        network=NetworkSpec("mlp", {"width": 8, "depth": 1}),
        schedule=ScheduleSpec("ve", {"sigma": 10.0}),
        objective=ObjectiveSpec("dsm"),
        config_shape=(),
        theory=TheorySpec.of(sq.Quartic0D(1.0, 0.4)),
    )
    cfg = TrainConfig(steps=4, batch=8, steps_per_call=2, warmup=1)
    train(str(d), jr.normal(jr.key(0), (64,)), spec, cfg, progress=False)
    return d


def test_fuzzed_model_directories_load_unchanged_or_fail_in_one_line(model_dir, tmp_path, capsys):
    out = str(tmp_path / "s.npz")
    argv = ["--n", "2", "--steps", "2", "--out", out, "--quiet"]
    assert run(["sample", str(model_dir), *argv], capsys)[0] == 0
    reference = np.load(out)["samples"]
    files = {n: (model_dir / n).read_bytes() for n in os.listdir(model_dir) if n[0] != "."}
    config = json.loads(files["config.json"])
    rng = random.Random(2)
    outcomes = {"same": 0, "refused": 0}
    for case in range(300):
        d = tmp_path / f"case{case}"
        shutil.copytree(model_dir, d)
        name = rng.choice(sorted(files))
        if name == "config.json" and rng.random() < 0.5:
            c = json.loads(json.dumps(config))
            edit_json_value(c, rng)
            (d / name).write_text(json.dumps(c))
        else:
            (d / name).write_bytes(mutate(files[name], rng))
        if os.path.exists(out):
            os.remove(out)
        rc, _, err = run(["sample", str(d), *argv], capsys)
        if rc == 0:
            np.testing.assert_array_equal(np.load(out)["samples"], reference, err_msg=str(case))
            outcomes["same"] += 1
        else:
            assert_one_line_error(rc, err, case)
            outcomes["refused"] += 1
        shutil.rmtree(d)
    print("model outcomes", outcomes)
    assert outcomes["refused"] > 200, outcomes
