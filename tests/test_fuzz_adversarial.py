"""The adversarial user's classes of input, as a seeded fuzz suite (issue 40): byte damage to
every file format sqdiff reads, metadata edits that keep a valid checksum, outputs and side
files pointed at every kind of existing path, and extreme values on every numeric option.

Each case runs one `sqdiff` command in a fresh copy of a small workspace. It passes when the
command ends with a correct result (exit 0, or exit 1 with a run marked unhealthy) or with one
line `sqdiff: error: …` (exit 2), and when every file that was in the workspace before is
byte-identical afterwards (the one exception: a sqdiff file of the command's own kind, at the
output path of a run that succeeded, which the command is allowed to replace). A byte-damaged
file must also read back as the intact file did, or be refused.

The full suite (`-m slow`, 2,000+ cases, ~10 minutes on 2 cores) prints the counts per class;
the default run takes a seeded subset of each class."""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import random
import shutil
import stat
import zipfile

import numpy as np
import pytest

from sqdiff.cli import main

#: cases per class in the full (slow) suite; the default run takes `SUBSET` of each
FULL = {"bytes": 640, "metadata": 640}
SUBSET = 12

PHI4 = ["phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.5"]
SU2 = ["sun", "--N", "2", "--d", "4", "--L", "2", "--beta", "2"]


_RUNS = itertools.count(1)
#: compiled programs are released every this many commands: each XLA:CPU executable holds
#: memory maps, and one process that compiles thousands passes `vm.max_map_count` (LLVM then
#: fails with "Cannot allocate memory"; see tests/conftest.py)
RELEASE_EVERY = 40


def run(argv: list[str]) -> tuple[int, str, str]:
    if next(_RUNS) % RELEASE_EVERY == 0:
        import gc

        import jax

        jax.clear_caches()
        gc.collect()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def fingerprint(root: str) -> dict[str, object]:
    """Every entry under `root`, without following links: the bytes' SHA-256 of a file, the
    target of a link, the kind of anything else."""
    seen: dict[str, object] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                seen[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as fh:
                    seen[rel] = hashlib.sha256(fh.read()).hexdigest()
            else:
                seen[rel] = ("kind", stat.S_IFMT(st.st_mode))
    return seen


def judge(rc: int, err: str, case) -> str:
    """'result' or 'refused'; anything else (a traceback, exit 3, two lines) fails the case."""
    if rc in (0, 1):
        assert rc == 0 or err.strip().count("\n") == 0, (case, err)
        return "result"
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("sqdiff: error:"), (case, rc, err)
    return "refused"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A workspace: φ⁴ ensembles (.npz, .h5), a 4D SU(2) ensemble (.lime), a trained toy model,
    and a user's own files (text, a figure, a directory, links)."""
    root = tmp_path_factory.mktemp("fuzz_adversarial")
    base = ["--n", "16", "--chains", "2", "--therm", "8", "--quiet"]
    for name in ("e.npz", "e.h5"):
        assert run(["generate", *PHI4, *base, "--out", str(root / name)])[0] == 0
    assert run(["generate", *SU2, "--n", "4", "--therm", "4", "--quiet", "--out",
                str(root / "s.lime")])[0] == 0  # fmt: skip
    assert run(["generate", "quartic", "--n", "64", "--therm", "8", "--quiet", "--out",
                str(root / "q.npz")])[0] == 0  # fmt: skip
    train = ["train", str(root / "q.npz"), "--out", str(root / "m"), "--model", "mlp"]
    assert run(train + ["--width", "8", "--depth", "1", "--iters", "4", "--batch", "8",
                        "--warmup", "1", "--quiet"])[0] == 0  # fmt: skip
    (root / "notes.txt").write_text("a user's notes\n")
    (root / "fig.png").write_bytes(b"\x89PNG\r\n\x1a\n a user's own figure")
    (root / "dir").mkdir()
    (root / "dir" / "keep.txt").write_text("keep\n")
    os.symlink("notes.txt", root / "link.txt")
    os.symlink("nowhere.npz", root / "dangling.npz")
    return root


@pytest.fixture
def workspace(template, tmp_path, monkeypatch):
    """A fresh copy of the template per call (with a FIFO, which cannot be copied), as cwd."""
    counter = itertools.count()

    def fresh():
        d = tmp_path / f"w{next(counter)}"
        shutil.copytree(template, d, symlinks=True)
        os.mkfifo(d / "fifo.npz")
        monkeypatch.chdir(d)
        return d

    return fresh


def in_workspace(fresh, argv, case, *, may_replace: str | None = None):
    """Run `argv` in a fresh workspace; the verdict, with every pre-existing file unchanged."""
    d = fresh()
    before = fingerprint(str(d))
    rc, out, err = run(argv)
    verdict = judge(rc, err, case)
    after = fingerprint(str(d))
    changed = sorted(k for k in before if after.get(k) != before[k])
    if verdict == "result" and may_replace is not None:
        # the replaced output and the resolved configuration sqdiff wrote beside it
        changed = [k for k in changed if k not in (may_replace, may_replace + ".config.toml")]
    assert not changed, (case, "pre-existing files changed or removed", changed)
    shutil.rmtree(d)
    return verdict, out


# --- 1. byte damage --------------------------------------------------------------------------


def _damage(raw: bytes, rng: random.Random) -> bytes:
    b = bytearray(raw)
    kind = rng.random()
    if kind < 0.6:  # bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind < 0.8:  # a zeroed block, as a bad disk sector
        i = rng.randrange(len(b))
        b[i : i + 256] = bytes(len(b[i : i + 256]))
    else:  # truncation
        b = b[: rng.randrange(len(b))]
    return bytes(b)


def _byte_cases(n: int, seed: int):
    rng = random.Random(seed)
    targets = ["e.npz", "e.h5", "s.lime", "m"]
    for case in range(n):
        yield case, targets[case % len(targets)], random.Random(rng.random())


def _reference(template, name: str) -> str:
    if name == "m":
        return ""
    rc, out, _ = run(["measure", str(template / name), "--json"])
    assert rc == 0
    return out


def _model_files(template) -> list[str]:
    return sorted(n for n in os.listdir(template / "m") if not n.startswith("."))


def _byte_damage(template, workspace, cases, counts):
    refs = {n: _reference(template, n) for n in ("e.npz", "e.h5", "s.lime")}
    model_out = None
    for case, target, rng in cases:
        d = workspace()
        if target == "m":
            name = rng.choice(_model_files(template))
            path = d / "m" / name
        else:
            path = d / target
        path.write_bytes(_damage(path.read_bytes(), rng))
        before = fingerprint(str(d))
        if target == "m":
            rc, _, err = run(["sample", "m", "--n", "2", "--steps", "2", "--quiet", "--out",
                              "new.npz"])  # fmt: skip
            verdict = judge(rc, err, (case, target, name))
            if verdict == "result":
                got = np.load(d / "new.npz")["samples"]
                if model_out is None:
                    model_out = _intact_model_sample(template, workspace)
                np.testing.assert_array_equal(got, model_out, err_msg=str((case, name)))
        else:
            rc, out, err = run(["measure", target, "--json"])
            verdict = judge(rc, err, (case, target))
            assert verdict == "refused" or out == refs[target], (case, target, "changed content")
        after = fingerprint(str(d))
        assert all(after.get(k) == v for k, v in before.items()), (case, target)
        shutil.rmtree(d)
        counts[f"bytes {target} {verdict}"] += 1


def _intact_model_sample(template, workspace):
    d = workspace()
    assert run(["sample", "m", "--n", "2", "--steps", "2", "--quiet", "--out", "new.npz"])[0] == 0
    out = np.load(d / "new.npz")["samples"]
    shutil.rmtree(d)
    return out


# --- 2. metadata edits with a recomputed checksum --------------------------------------------

#: values an edit may put anywhere in the metadata
ODD_VALUES = [None, "x", "", [1, 2], {"a": 1}, -3, 0, 1e300, -1e300, 10**400, True,
              float("nan"), float("inf"), float("-inf"), [], {}, 2**63, -0.0]  # fmt: skip


def _edit(meta: dict, rng: random.Random) -> dict:
    """One random edit: a key's value replaced (at any depth), a key removed, or a structure
    such as `relaxation` or `health` added in a wrong form."""
    m = json.loads(json.dumps(meta))
    kind = rng.random()
    if kind < 0.15:
        m[rng.choice(["relaxation", "health", "acceptance_error", "log_z", "nfe"])] = rng.choice(
            ODD_VALUES
        )
        return m
    node, key = m, None
    while True:
        key = rng.choice(sorted(node))
        if not isinstance(node[key], dict) or not node[key] or rng.random() < 0.5:
            break
        node = node[key]
    if kind < 0.3:
        del node[key]
    elif kind < 0.45 and isinstance(node[key], (int, float)) and not isinstance(node[key], bool):
        node[key] = node[key] * rng.choice([-1, 3, 1e-300, 1e300]) + rng.choice([0, 1])
    else:
        node[key] = rng.choice(ODD_VALUES)
    return m


def _rewrite_with_checksum(path, meta: dict) -> None:
    """Write the ensemble at `path` again with `meta` and a checksum recomputed for it (what an
    editor who knows the format does)."""
    from sqdiff.io import _content_digest, _format

    fmt = _format(str(path))
    if fmt == "npz":
        with zipfile.ZipFile(path) as z:
            arrays = {n[:-4]: np.load(io.BytesIO(z.read(n))) for n in z.namelist()}
        arrays.pop("metadata")
        meta = {k: v for k, v in meta.items() if k != "sha256"}
        meta["sha256"] = _content_digest(arrays, meta)
        with open(path, "wb") as fh:
            np.savez(fh, metadata=np.array(json.dumps(meta)), **arrays)
    elif fmt == "hdf5":
        from sqdiff.hdf5 import read_hdf5, write_hdf5

        arrays, _ = read_hdf5(str(path))
        meta = {k: v for k, v in meta.items() if k != "sha256"}
        meta["sha256"] = _content_digest(arrays, meta)
        with open(path, "wb") as fh:
            write_hdf5(fh, arrays, meta)
    else:
        from sqdiff.ildg import read_ildg, write_ildg

        f = read_ildg(str(path))
        arrays = {"samples": f.configs.reshape((1, -1) + f.configs.shape[1:])}
        meta = {k: v for k, v in meta.items() if k != "sha256"}
        meta["sha256"] = _content_digest(arrays, meta)
        with open(path, "wb") as fh:
            write_ildg(fh, f.configs, metadata=meta)


def _metadata_of(path) -> dict:
    from sqdiff.io import load_ensemble

    return load_ensemble(str(path)).metadata


def _model_config_edit(d, rng):
    from sqdiff.checkpoint import _config_digest

    cfg = json.loads((d / "m" / "config.json").read_text())
    cfg = _edit(cfg, rng)
    if isinstance(cfg, dict):
        cfg.pop("config_sha256", None)
        cfg["config_sha256"] = _config_digest(cfg)
    (d / "m" / "config.json").write_text(json.dumps(cfg))


def _metadata_edits(template, workspace, n, seed, counts):
    metas = {name: _metadata_of(template / name) for name in ("e.npz", "e.h5", "s.lime")}
    rng = random.Random(seed)
    targets = ["e.npz", "e.h5", "s.lime", "m"]
    for case in range(n):
        target = targets[case % len(targets)]
        crng = random.Random(rng.random())
        d = workspace()
        if target == "m":
            _model_config_edit(d, crng)
            argv = ["sample", "m", "--n", "2", "--steps", "2", "--quiet", "--out", "new.npz"]
        else:
            _rewrite_with_checksum(d / target, _edit(metas[target], crng))
            argv = ["measure", target, "--json"]
        before = fingerprint(str(d))
        rc, _, err = run(argv)
        verdict = judge(rc, err, (case, target))
        after = fingerprint(str(d))
        assert all(after.get(k) == v for k, v in before.items()), (case, target)
        shutil.rmtree(d)
        counts[f"metadata {target} {verdict}"] += 1


# --- 3. outputs and side files at every kind of existing path ---------------------------------

#: existing things an output may be pointed at (name in the workspace → may a successful run
#: replace it: only a sqdiff file of the command's own kind)
PATH_KINDS = ["notes.txt", "fig.png", "dir", "link.txt", "dangling.npz", "fifo.npz", "e.npz",
              "e.h5", "s.lime", "m", "m/config.json", "/dev/null", "dir/keep.txt"]  # fmt: skip


def _output_commands(target: str) -> list[tuple[list[str], str | None]]:
    """`(argv, what a success may replace)` for each command that writes its output at
    `target` (the side file `OUT.config.toml` at each kind of path: `_prepare_side`)."""
    gen = ["generate", *PHI4, "--n", "4", "--therm", "2", "--quiet"]
    smp = ["sample", "m", "--n", "2", "--steps", "2", "--quiet"]
    trn = ["train", "q.npz", "--model", "mlp", "--width", "4", "--depth", "1", "--iters", "2",
           "--batch", "4", "--warmup", "1", "--quiet"]  # fmt: skip
    ens = target if target.endswith((".npz", ".h5", ".lime")) else None
    cases = [
        (gen + ["--out", target], ens),
        (smp + ["--out", target], ens),
        (["measure", "e.npz", "--plot", target], None),
        (trn + ["--out", target], None),
    ]
    return cases


def _path_cases():
    for target in PATH_KINDS:
        for argv, may in _output_commands(target):
            yield target, argv, may
    # side files: OUT.config.toml is each of the kinds (made in the workspace before the run)
    for kind in ("file", "dir", "link", "fifo"):
        yield f"side:{kind}", None, None


def _prepare_side(d, kind: str) -> None:
    p = d / "out.npz.config.toml"
    if kind == "file":
        p.write_text("# a user's own settings\n")
    elif kind == "dir":
        p.mkdir()
    elif kind == "link":
        os.symlink("notes.txt", p)
    else:
        os.mkfifo(p)


def _paths(workspace, cases, counts):
    for target, argv, may in cases:
        if argv is None:  # a side file of kind X at OUT.config.toml
            kind = target.split(":")[1]
            d = workspace()
            _prepare_side(d, kind)
            before = fingerprint(str(d))
            conf = d / "c.toml"
            conf.write_text("n = 4\ntherm = 2\n")
            before = fingerprint(str(d))
            rc, _, err = run(["generate", *PHI4, "--config", "c.toml", "--quiet", "--out",
                              "out.npz"])  # fmt: skip
            verdict = judge(rc, err, target)
            after = fingerprint(str(d))
            assert all(after.get(k) == v for k, v in before.items()), (target, "changed")
            if verdict == "refused":
                assert "out.npz" not in after, (target, "wrote the output, then refused")
            shutil.rmtree(d)
        else:
            verdict, _ = in_workspace(workspace, argv, (target, argv[0]), may_replace=may)
        counts[f"paths {argv[0] if argv else 'side'} {verdict}"] += 1


# --- 4. extreme values on every numeric option --------------------------------------------------

EXTREMES = ["0", "-1", "1", "2", "0.5", "nan", "inf", "-inf", "1e308", "-1e308", "1e-308",
            "2147483648", "9223372036854775808", "1180591620717411303424", "x", ""]  # fmt: skip

#: (base command, options it takes a number for)
VALUE_COMMANDS = [
    (["generate", *PHI4, "--n", "4", "--therm", "2", "--quiet", "--out", "o.npz"],
     ["--L", "--d", "--kappa", "--lam", "--n", "--chains", "--therm", "--thin", "--step-size",
      "--n-md", "--seed"]),
    (["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.5", "--n", "4", "--therm",
      "20", "--quiet", "--out", "o.npz", "--target-acceptance"], [""]),
    (["generate", *PHI4, "--n", "4", "--therm", "2", "--quiet", "--out", "o.npz", "--sampler",
      "fahmc+wolff"], ["--mass2", "--n-wolff"]),
    (["generate", "u1", "--L", "4", "--n", "4", "--therm", "2", "--quiet", "--out", "o.npz",
      "--sampler", "hmc+instanton"], ["--beta", "--n-instanton"]),
    (["generate", "quartic", "--n", "4", "--therm", "2", "--quiet", "--out", "o.npz"],
     ["--mu2", "--g"]),
    (["measure", "s.lime", "--flow", "0.1"], ["--flow-eps", "--flow-every", "--flow-ref"]),
    (["measure", "s.lime"], ["--flow"]),
    (["sample", "m", "--n", "2", "--quiet", "--out", "o.npz"], ["--n", "--steps", "--seed",
      "--beta"]),
    (["sample", "m", "--n", "2", "--quiet", "--out", "o.npz", "--adaptive"], ["--rtol",
      "--atol"]),
    (["sample", "m", "--n", "2", "--steps", "4", "--quiet", "--out", "o.npz", "--method",
      "maala", "--chains", "2"], ["--t-mh", "--c", "--thin", "--therm"]),
    (["sample", "m", "--n", "2", "--steps", "4", "--quiet", "--out", "o.npz", "--method",
      "maala"], ["--chains"]),
    (["sample", "m", "--n", "2", "--steps", "4", "--quiet", "--out", "o.npz", "--method", "pc"],
     ["--snr", "--corrector-steps"]),
    (["train", "q.npz", "--out", "mo", "--model", "mlp", "--width", "4", "--depth", "1",
      "--iters", "2", "--batch", "4", "--warmup", "1", "--quiet"],
     ["--iters", "--batch", "--lr", "--warmup", "--ema", "--steps-per-call", "--sigma", "--T",
      "--width", "--depth", "--seed"]),
    (["train", "q.npz", "--out", "mo", "--model", "mlp", "--width", "4", "--depth", "1",
      "--iters", "2", "--batch", "4", "--warmup", "1", "--quiet", "--schedule", "vp"],
     ["--beta-min", "--beta-max"]),
]  # fmt: skip


def _value_cases():
    for base, options in VALUE_COMMANDS:
        for option, value in itertools.product(options, EXTREMES):
            argv = list(base)
            if option:
                if option in argv:  # replace the base value
                    i = argv.index(option)
                    argv = argv[:i] + argv[i + 2 :]
                argv += [option, value]
            else:
                argv += [value]
            yield argv


def _values(workspace, cases, counts):
    for argv in cases:
        verdict, _ = in_workspace(workspace, argv, argv)
        counts[f"values {argv[0]} {verdict}"] += 1


# --- the tests -----------------------------------------------------------------------------------


def _subset(cases, k, seed):
    cases = list(cases)
    return random.Random(seed).sample(cases, min(k, len(cases)))


def _report(counts):
    total = sum(counts.values())
    print(f"\nfuzz cases: {total}")
    for k in sorted(counts):
        print(f"  {k}: {counts[k]}")


@pytest.fixture
def counts():
    from collections import Counter

    c: Counter = Counter()
    yield c
    _report(c)


def test_byte_damage_subset(template, workspace, counts):
    _byte_damage(template, workspace, _subset(_byte_cases(200, 11), SUBSET, 0), counts)


def test_metadata_edits_subset(template, workspace, counts):
    _metadata_edits(template, workspace, SUBSET, 12, counts)


def test_output_paths_subset(workspace, counts):
    _paths(workspace, _subset(_path_cases(), SUBSET, 1), counts)


def test_extreme_values_subset(workspace, counts):
    _values(workspace, _subset(_value_cases(), 2 * SUBSET, 2), counts)


@pytest.mark.slow
def test_the_full_adversarial_fuzz_suite(template, workspace, counts):
    """2,000+ seeded cases; the closing note of issue 40 reports these counts."""
    _byte_damage(template, workspace, _byte_cases(FULL["bytes"], 11), counts)
    _metadata_edits(template, workspace, FULL["metadata"], 12, counts)
    _paths(workspace, _path_cases(), counts)
    _values(workspace, _value_cases(), counts)
    assert sum(counts.values()) >= 2000, counts
