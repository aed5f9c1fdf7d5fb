import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import sqdiff as sq
from sqdiff.cli import main


def test_generate_and_measure_json(tmp_path, capsys):
    out = tmp_path / "toy.npz"
    rc = main(
        [
            "generate",
            "toy",
            "--action",
            "quartic",
            "--mu2",
            "1",
            "--g",
            "0.4",
            "--n",
            "400",
            "--chains",
            "4",
            "--therm",
            "50",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert rc == 0 and out.exists()
    capsys.readouterr()
    assert main(["measure", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"theory", "params", "observables", "diagnostics", "definitions"}
    phi2 = res["observables"]["<phi^2>"]
    assert set(phi2) == {"value", "error", "tau_int", "replica_q"}  # 4 chains: their Q-value
    assert 0 < phi2["replica_q"] <= 1 and res["diagnostics"]["chains_disagree"] == []
    assert abs(phi2["value"] - 0.862097) < 5 * phi2["error"]  # docs/references.md, loose: tiny run
    # sampler diagnostics apart from the physics, and the definitions of derived quantities
    assert 0 < res["diagnostics"]["acceptance"] <= 1 and res["diagnostics"]["health"]["ok"]
    assert "acceptance" not in res["observables"] and "kappa2" in res["definitions"]


def test_measure_table_for_u1(tmp_path, capsys):
    out = tmp_path / "u1.npz"
    assert (
        main(
            [
                "generate",
                "u1",
                "--L",
                "4",
                "--beta",
                "1.0",
                "--n",
                "50",
                "--therm",
                "10",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    figure = tmp_path / "u1.png"
    assert main(["measure", str(out), "--plot", str(figure)]) == 0
    captured = capsys.readouterr()
    text = captured.out
    for name in ("plaquette", "chi_t", "tau_int"):
        assert name in text
    assert figure.read_bytes()[:4] == b"\x89PNG" and f"figure: {figure}" in captured.err
    # the definitions follow the table; the sampler's diagnostics come last, apart
    assert "chi_t: χ_t = ⟨Q²⟩/V" in text
    lines = text.strip().splitlines()
    assert lines[-1].startswith("diagnostics: acceptance")
    assert not any(line.startswith("acceptance") for line in lines)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "phi4", "--L", "8", "--kappa", "0.2", "--lam", "-1", "--n", "2"], "lam"),
        (["generate", "phi4", "--L", "1", "--kappa", "0.2", "--lam", "0.1", "--n", "2"], "`L`"),
        (["generate", "phi4", "--L", "8", "--lam", "0.1", "--n", "2"], "--kappa"),
        (["generate", "u1", "--L", "8", "--beta", "0", "--n", "2"], "beta"),
        (["generate", "quantum-gravity", "--n", "2"], "unknown theory"),
        (
            ["generate", "u1", "--L", "8", "--beta", "1", "--n", "2", "--sampler", "hmc+wolff"],
            "Wolff",
        ),
        (["generate", "toy", "--n", "0"], "--n"),
        (["measure", "/nonexistent/file.npz"], "no ensemble"),
        (["frobnicate"], "invalid choice"),
        (["generate", "toy", "--n", "2", "--seed", "9223372036854775808"], "--seed"),
        (
            ["generate", "phi4", "--L", "50000", "--kappa", "0.1", "--lam", "0.1", "--n", "2"],
            "sites",
        ),
        (["generate", "toy", "--n", "2", "--step-size", "nan"], "--step-size: must be finite"),
        (["train", "x.npz", "--out", "m", "--channels", "0"], "--channels: must be ≥ 1"),
        (
            ["osq", "phi4", "--param", "L=1e300", "--kappa", "0.1", "--lam", "0.1", "--out", "m"],
            "sites",
        ),  # fmt: skip
        (["demo", "--steps", "0"], "--steps"),
        (["demo", "--sde-steps", "10"], "demo --sde-steps is now --steps"),
        (["train", "x.npz", "--out", "m", "--steps", "10"], "train --steps is now --iters"),
        (
            ["osq", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--g", "1", "--out", "m"],
            "takes no --g (the OSQ noise strength is --noise)",
        ),  # fmt: skip
        (["sample", "m", "--n", "2", "--out", "x.npz", "--t-mh", "1.5"], "--t-mh: must be < 1"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, tmp_path, capsys):
    if argv[0] == "generate":
        argv = argv + ["--out", str(tmp_path / "x.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sqdiff: error:") and "\n" not in err and message in err, err


def test_negative_numbers_are_values_and_internal_errors_are_one_line(tmp_path, capsys):
    out = str(tmp_path / "neg.npz")
    argv = ["generate", "phi4", "--L", "4", "--kappa", "-1e-3", "--lam", "0.1", "--n", "5"]
    assert main(argv + ["--therm", "5", "--out", out, "--quiet"]) == 0
    assert sq.load_ensemble(out).action.kappa == -1e-3
    capsys.readouterr()
    import sqdiff.cli as cli

    def broken(args):
        raise KeyError("a bug")

    real = cli.cmd_measure
    cli.cmd_measure = broken
    try:
        assert main(["measure", out]) == 3
        err = capsys.readouterr().err.strip()
        assert err.startswith("sqdiff: internal error: KeyError") and "--debug" in err
        with pytest.raises(KeyError):
            main(["--debug", "measure", out])
    finally:
        cli.cmd_measure = real


def test_console_entry_point_runs():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqdiff",
            "generate",
            "phi4",
            "--L",
            "4",
            "--kappa",
            "0.1",
            "--lam",
            "-2",
            "--n",
            "1",
            "--out",
            "x.npz",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "lam" in r.stderr


def test_train_command_and_load_model(tmp_path, capsys):
    import jax.numpy as jnp

    import sqdiff as sq

    ens, model_dir = tmp_path / "p.npz", tmp_path / "model"
    assert (
        main(
            [
                "generate",
                "phi4",
                "--L",
                "8",
                "--kappa",
                "0.21",
                "--lam",
                "0.022",
                "--n",
                "16",
                "--therm",
                "10",
                "--out",
                str(ens),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(ens),
                "--out",
                str(model_dir),
                "--iters",
                "20",
                "--batch",
                "4",
                "--channels",
                "8",
                "--levels",
                "2",
                "--steps-per-call",
                "10",
                "--quiet",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "trained unet for 20 steps" in captured.out
    # the VE σ comes from the data (issue 39) and is recorded in the spec
    data = sq.load_ensemble(str(ens)).samples.reshape(-1, 8, 8)
    sigma = sq.train.data_sigma([data])
    assert f"schedule: VE σ = {sigma:.4g} from the data" in captured.out
    assert dict(sq.ModelDir(str(model_dir)).load().spec.schedule.params)["sigma"] == sigma
    # the training-loss curve beside the model, named on stderr
    assert (model_dir / "loss.png").read_bytes()[:4] == b"\x89PNG" and "loss.png" in captured.err
    model = sq.load_model(str(model_dir))
    assert model(0.5, jnp.zeros((16, 16))).shape == (16, 16)  # same weights, larger lattice
    # the directory now holds a model: refuse to overwrite, resume works
    assert main(["train", str(ens), "--out", str(model_dir), "--iters", "20", "--quiet"]) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                str(ens),
                "--out",
                str(model_dir),
                "--iters",
                "30",
                "--batch",
                "4",
                "--channels",
                "8",
                "--levels",
                "2",
                "--steps-per-call",
                "10",
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    # another model on the same directory is refused, and so are bad ensembles
    assert (
        main(
            [
                "train",
                str(ens),
                "--out",
                str(model_dir),
                "--iters",
                "40",
                "--batch",
                "4",
                "--channels",
                "16",
                "--levels",
                "2",
                "--resume",
                "--quiet",
            ]
        )
        == 2
    )
    assert "different model" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"nope")
    assert main(["train", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "m2")]) == 2
    assert main(["train", str(ens), "--out", str(tmp_path / "m3"), "--model", "u1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert all(line.startswith("sqdiff: error:") for line in err)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("toy")
    assert (
        main(
            [
                "generate",
                "toy",
                "--action",
                "quartic",
                "--n",
                "500",
                "--chains",
                "4",
                "--therm",
                "50",
                "--out",
                str(d / "toy.npz"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                str(d / "toy.npz"),
                "--out",
                str(d / "model"),
                "--iters",
                "300",
                "--batch",
                "128",
                "--sigma",
                "10",
                "--importance",
                "--steps-per-call",
                "100",
                "--quiet",
            ]
        )
        == 0
    )
    return d


#: network evaluations per sample at --steps 50 (maala: 64 chains of one sample, --thin 5)
NFE = {
    "sde": 50, "sde-sigma": 50, "ode": 1 + 6 * 50, "pc": 50 * 2, "maala": 50 + 1 + 5,
    "maala-sigma": 50 + 1 + 5, "maala-annealed": 250 + 6,
}  # fmt: skip


@pytest.mark.parametrize(
    "method",
    ["sde", "sde-adaptive", "sde-sigma", "ode", "pc", "maala", "maala-annealed", "maala-sigma",
     "imh"],
)  # fmt: skip
def test_sample_command_writes_measurable_ensembles(toy_model, method, capsys):
    out = toy_model / f"{method}.npz"
    extra = {
        "maala-annealed": ["--anneal", "langevin"],
        "sde-adaptive": ["--adaptive", "--rtol", "0.05"],
        "sde-sigma": ["--steps", "50", "--grid", "sigma"],
        "maala-sigma": ["--steps", "50", "--grid", "sigma"],
        "imh": [],  # an MLP's flow is solved adaptively: --steps is refused (see below)
    }.get(method, ["--steps", "50"])
    argv = ["sample", str(toy_model / "model"), "--n", "64", "--method", method.split("-")[0]]
    argv += ["--chains", "64", "--thin", "5", "--out", str(out), "--quiet", *extra]
    if method == "maala-annealed":
        argv += ["--steps", "50"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    if method in NFE:
        assert f"network evaluations per sample: {NFE[method]:.1f}" in printed, printed
    elif method == "sde-adaptive":
        nfe = sq.io.load_ensemble(out).metadata["nfe"]
        assert 4 <= nfe["mean"] < nfe["max"] < 2000, nfe  # two per step, steps per sample
        assert f"per sample: {nfe['mean']:.1f}" in printed
    if method in ("sde", "maala", "sde-sigma", "maala-sigma"):  # the reverse SDE's grid
        grid = sq.io.load_ensemble(out).metadata["sampler"]["grid"]
        assert grid == ("sigma" if method.endswith("sigma") else "uniform")
    assert main(["measure", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    obs = res["observables"]
    assert obs["<phi^2>"]["value"] > 0 and 0 < res["diagnostics"]["acceptance"] <= 1
    if method.startswith("maala"):  # the error of the mean acceptance over the 64 chains
        assert 0 < res["diagnostics"]["acceptance_error"] < 0.1


def test_maala_step_tuned_to_a_target_acceptance(toy_model, capsys):
    out = toy_model / "tuned.npz"
    argv = ["sample", str(toy_model / "model"), "--n", "256", "--method", "maala", "--c", "1e-3"]
    argv += ["--chains", "32", "--steps", "20", "--therm", "100", "--target-acceptance", "0.7"]
    assert main(argv + ["--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    meta = sq.io.load_ensemble(out).metadata
    s = meta["sampler"]
    assert s["target_acceptance"] == 0.7 and s["tuning_steps"] == s["n_therm"] == 100
    assert s["step_size"] == s["tuned_step_size"] > 10 * s["initial_step_size"]
    # 32 chains × 8 steps: the kept steps accept near the target
    assert abs(meta["acceptance"] - 0.7) < 4 * meta["acceptance_error"] + 0.05, meta


def test_generate_with_a_target_acceptance(tmp_path, capsys):
    out = tmp_path / "su2.npz"
    argv = ["generate", "sun", "--N", "2", "--L", "4", "--d", "2", "--beta", "2", "--n", "100"]
    argv += ["--chains", "4", "--quiet", "--seed", "3"]
    assert main(argv + ["--sampler", "mala", "--step-size", "1e-3", "--therm", "100",
                        "--target-acceptance", "0.574", "--out", str(out)]) == 0  # fmt: skip
    capsys.readouterr()
    meta = sq.io.load_ensemble(out).metadata
    assert meta["sampler"]["sampler"] == "mala" and meta["n_therm"] == 100
    assert meta["sampler"]["step_size"] == meta["sampler"]["tuned_step_size"] > 0.01
    assert abs(meta["acceptance"] - 0.574) < 0.08, meta
    u1 = ["generate", "u1", "--L", "4", "--beta", "2", "--n", "10"]
    for base, extra, msg in [
        (u1, ["--sampler", "exact", "--target-acceptance", "0.8"], "--sampler exact"),
        (argv, ["--target-acceptance", "0.8", "--therm", "10"], "--therm ≥ 20"),
        (argv, ["--target-acceptance", "0"], "--target-acceptance"),
    ]:
        assert main(base + extra + ["--out", str(tmp_path / "x.npz")]) == 2
        assert msg in capsys.readouterr().err


def test_generate_refuses_options_that_do_not_apply(tmp_path, capsys):
    """Issue 40 (8): an option the chosen theory or sampler does not take is a one-line error,
    not silently ignored; nothing is written."""
    phi4 = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.5", "--n", "4"]
    u1 = ["generate", "u1", "--L", "4", "--beta", "2", "--n", "4"]
    for argv, msg in [
        (phi4 + ["--n-wolff", "3"], "--n-wolff does not apply to --sampler hmc"),
        (phi4 + ["--sampler", "fahmc", "--n-wolff", "3"], "--n-wolff does not apply"),
        (phi4 + ["--mass2", "2"], "--mass2 does not apply to --sampler hmc"),
        (phi4 + ["--sampler", "mala", "--n-md", "5"], "--n-md does not apply to --sampler mala"),
        (u1 + ["--sampler", "exact", "--n-md", "5"], "--n-md does not apply to --sampler exact"),
        (u1 + ["--sampler", "exact", "--step-size", "0.1"], "--step-size does not apply"),
        (u1 + ["--n-instanton", "2"], "--n-instanton does not apply to --sampler hmc"),
        (phi4 + ["--action", "cosine"], "--action picks the action of theory toy"),
        (phi4 + ["--param", "L=5"], "--param L=… repeats --L"),
        (phi4 + ["--param", "d=2", "--param", "d=3"], "--param d is given twice"),
    ]:
        assert main(argv + ["--quiet", "--out", str(tmp_path / "x.npz")]) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert list(tmp_path.iterdir()) == []
    # the toy theory still defaults to the quartic action, and --action still picks one
    out = tmp_path / "toy.npz"
    assert main(["generate", "toy", "--action", "cosine", "--n", "4", "--therm", "0", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    assert sq.io.load_ensemble(out).metadata["theory"] == "cosine"


def test_sample_command_bad_input(toy_model, tmp_path, capsys):
    model = str(toy_model / "model")
    maala = ["sample", model, "--n", "8", "--method", "maala"]
    for argv, msg in [
        (["sample", model, "--n", "8", "--method", "maala", "--t-mh", "1.5"], "--t-mh"),
        (["sample", model, "--n", "8", "--L", "16"], "no lattice size"),
        (["sample", str(tmp_path), "--n", "8"], "not a sqdiff model"),
        (["sample", model, "--n", "8", "--beta", "2"], "no coupling β"),
        (["sample", model, "--n", "8", "--method", "pc", "--snr", "0"], "snr"),
        (["sample", model, "--n", "8", "--method", "ode", "--adaptive"], "--method sde"),
        (["sample", model, "--n", "8", "--adaptive", "--steps", "9"], "not both"),
        (["sample", model, "--n", "8", "--method", "ode", "--grid", "sigma"], "--method sde or"),
        (["sample", model, "--n", "8", "--adaptive", "--grid", "sigma"], "fixed reverse-SDE"),
        ([*maala, "--anneal", "langevin", "--grid", "sigma"], "--anneal langevin"),
        (["sample", model, "--n", "8", "--target-acceptance", "0.6"], "--method maala"),
        (
            [
                "sample",
                model,
                "--n",
                "8",
                "--method",
                "maala",
                "--target-acceptance",
                "0.6",
                "--therm",
                "5",
            ],
            "--therm ≥ 20",
        ),
        (
            ["sample", model, "--n", "8", "--method", "maala", "--target-acceptance", "1"],
            "--target-acceptance",
        ),
        (["sample", model, "--n", "8", "--adaptive", "--rtol", "0"], "--rtol"),
        (["sample", model, "--n", "8", "--instanton", "2"], "--method maala"),
        (["sample", model, "--n", "8", "--method", "maala", "--instanton", "2"], "theory 'u1'"),
    ]:
        assert main(argv + ["--out", str(tmp_path / "x.npz"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("sqdiff: error:") and msg in err, err


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_sample_command_shows_progress_on_a_terminal_only(toy_model, capsys, monkeypatch):
    argv = ["sample", str(toy_model / "model"), "--n", "40", "--steps", "10", "--out"]
    assert main(argv + [str(toy_model / "p1.npz")]) == 0  # stderr is no terminal here: no bar
    assert "dm-sde" not in capsys.readouterr().err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv + [str(toy_model / "p2.npz")]) == 0
    assert "dm-sde" in terminal.getvalue() and "40/40" in terminal.getvalue()
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv + [str(toy_model / "p3.npz"), "--quiet"]) == 0
    assert "dm-sde" not in terminal.getvalue()


def test_sample_command_verifies_the_checkpoint_once(toy_model, tmp_path, monkeypatch):
    from sqdiff.checkpoint import ModelDir

    loads = []
    real = ModelDir.load

    def counting(self):
        loads.append(self.path)
        return real(self)

    monkeypatch.setattr(ModelDir, "load", counting)
    for method in ("sde", "maala"):
        loads.clear()
        argv = ["sample", str(toy_model / "model"), "--n", "8", "--steps", "5", "--method", method]
        assert main(argv + ["--out", str(tmp_path / f"{method}.npz"), "--quiet"]) == 0
        assert len(loads) == 1, loads


def test_stuck_maala_is_flagged(toy_model, tmp_path, capsys):
    out = tmp_path / "stuck.npz"
    argv = ["sample", str(toy_model / "model"), "--n", "32", "--method", "maala", "--c", "1e6"]
    assert main(argv + ["--chains", "4", "--steps", "10", "--out", str(out), "--quiet"]) == 1
    assert "unhealthy" in capsys.readouterr().err
    assert main(["measure", str(out)]) == 2


def test_unrelaxed_maala_is_flagged_by_sample_and_measure(toy_model, tmp_path, capsys):
    # chains started at t_mh = 0.3 T (far wider than the target) keep their state after 4 small
    # MAALA steps: φ² still falls between step 2 and 4. A warning, not a failure (a statistical
    # test); `measure` marks the observables built on φ².
    out = tmp_path / "unrelaxed.npz"
    argv = ["sample", str(toy_model / "model"), "--n", "256", "--chains", "256", "--method"]
    argv += ["maala", "--t-mh", "0.3", "--c", "0.1", "--thin", "4", "--steps", "50"]
    assert main(argv + ["--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "! NOT RELAXED: phi2" in printed and "between step 2 and 4" in printed, printed
    assert main(["measure", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "! NOT RELAXED" in printed and "(flagged: <phi^2>, " in printed
    assert [ln for ln in printed.splitlines() if ln.startswith("<phi^2>")][0].endswith(" !")
    assert main(["measure", str(out), "--json"]) == 0
    diagnostics = json.loads(capsys.readouterr().out)["diagnostics"]
    assert "<phi^2>" in diagnostics["not_relaxed"] and diagnostics["relaxation"]["drifting"]


def test_demo_runs_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--L",
                "4",
                "--n",
                "256",
                "--iters",
                "20",
                "--channels",
                "8",
                "--steps",
                "20",
                "--mh-steps",
                "4",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    for word in ("HMC", "DM+MAALA", "chi2_abs", "U_L"):
        assert word in text
    # 20 training steps and 4 MAALA steps: the DM+MAALA numbers are wrong, and the demo says so
    assert "! DM+MAALA: NOT RELAXED" in text, text
    files = sorted(p.name for p in out.iterdir())
    assert {"hmc.npz", "sde.npz", "maala.npz", "model", "results.json", "results.txt"} <= set(files)
    results = json.loads((out / "results.json").read_text())
    assert set(results["table"]) == {"HMC", "DM", "DM+MAALA"}
    # a verdict per sampler against HMC on every observable (issue 39): 20 training steps and
    # 4 MAALA steps are far from enough, and the verdict says so
    assert "DM against HMC: DISAGREE" in text and "DM+MAALA against HMC:" in text
    verdicts = results["verdicts against HMC"]
    assert set(verdicts) == {"DM", "DM+MAALA"} and not verdicts["DM"]["agree"]
    assert "<phi^2>" in verdicts["DM"]["pulls"]
    assert main(["demo", "--out", str(out), "--quiet"]) == 2  # never overwrites


@pytest.fixture(scope="module")
def osq_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("osq")
    argv = ["osq", "double_well", "--out", str(d / "m"), "--iters", "40", "--steps", "100"]
    assert main(argv + ["--batch", "64", "--steps-per-call", "20", "--quiet"]) == 0
    return d


def test_osq_command_trains_and_sample_writes_a_weighted_ensemble(osq_model, capsys):
    out = osq_model / "w.npz"
    argv = ["sample", str(osq_model / "m"), "--n", "300", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "ESS" in capsys.readouterr().out
    ens = sq.load_ensemble(str(out))
    assert ens.log_weights.shape == (1, 300) and ens.metadata["weighted"]
    assert main(["measure", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    diag = res["diagnostics"]
    assert 1 < diag["ess"] <= 300 == diag["n"] and res["observables"]["<phi^2>"]["error"] > 0
    assert np.isfinite(diag["pareto_k"])
    # score matching on weighted paths would learn the proposal: refused
    assert main(["train", str(out), "--out", str(osq_model / "dm"), "--quiet"]) == 2
    assert "importance-weighted" in capsys.readouterr().err
    imh = osq_model / "imh.npz"
    argv = ["sample", str(osq_model / "m"), "--n", "300", "--method", "imh", "--out", str(imh)]
    assert main(argv + ["--quiet"]) == 0
    assert 0 < sq.load_ensemble(str(imh)).metadata["acceptance"] < 1


def test_osq_sq_reference_log_variance_on_one_site(tmp_path, capsys):
    # SQ reference from N(0, 1): q_T^ref on a grid, so the ensemble is weighted; cos 5φ's
    # reweighted ⟨φ²⟩ against quadrature (0.999917), 4σ
    argv = ["osq", "cosine", "--k", "5", "--reference", "sq", "--loss", "log_variance"]
    argv += ["--steps", "50", "--iters", "10", "--batch", "64", "--out", str(tmp_path / "m")]
    assert main(argv + ["--quiet"]) == 0
    out = str(tmp_path / "s.npz")
    assert main(["sample", str(tmp_path / "m"), "--n", "2000", "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["measure", out, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["diagnostics"]["ess"] > 1000
    phi2 = res["observables"]["<phi^2>"]
    assert abs(phi2["value"] - 0.999917) < 4 * phi2["error"]


def test_osq_command_bad_input(osq_model, tmp_path, capsys):
    model = str(osq_model / "m")
    for argv, msg in [
        (["osq", "u1", "--L", "4"], "scalar theories"),
        (["osq", "phi4", "--param", "L"], "NAME=VALUE"),
        (["osq", "phi4", "--L", "8", "--param", "kappa=x"], "not a number"),
        (["osq", "quartic", "--param", "q=1"], "takes no --q"),
        (["osq", "quartic", "--kappa", "0.1"], "takes no --kappa"),
        (["osq", "phi4", "--L", "4", "--kappa", "0.2"], "needs --lam"),
        (
            ["osq", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.02", "--reference", "sq"],
            "reference marginal",
        ),
        (["osq", "double_well", "--noise", "0"], "`g`"),
        (["osq", "double_well", "--out", model], "already holds a model"),
        (["sample", model, "--n", "8", "--method", "maala"], "optimal-SQ model samples"),
        (["sample", model, "--n", "8", "--L", "8"], "no lattice size"),
    ]:
        if "--out" not in argv:
            argv = argv + ["--out", str(tmp_path / "o")]
        assert main(argv + ["--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("sqdiff: error:") and msg in err, err


def test_generate_exact_u1(tmp_path, capsys):
    out = tmp_path / "u1.npz"
    assert (
        main(
            [
                "generate",
                "u1",
                "--L",
                "8",
                "--beta",
                "7",
                "--sampler",
                "exact",
                "--n",
                "2000",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["measure", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    chi = res["observables"]["chi_t"]
    assert res["definitions"]["chi_t"] == "χ_t = ⟨Q²⟩/V"
    assert abs(chi["value"] - 0.003392) < 4 * chi["error"]  # docs/references.md, β = 7, L = 8
    assert (
        main(
            [
                "generate",
                "phi4",
                "--L",
                "8",
                "--kappa",
                "0.2",
                "--lam",
                "0.02",
                "--sampler",
                "exact",
                "--n",
                "10",
                "--out",
                str(tmp_path / "p.npz"),
            ]
        )
        == 2
    )
    assert "u1" in capsys.readouterr().err


def test_every_help_shows_every_default():
    """Walk every subcommand's `--help`: each option with a default shows it."""
    import argparse

    from sqdiff.cli import _parser

    parser = _parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) >= {"generate", "train", "sample", "osq", "demo", "measure"}
    for name, p in sub.choices.items():
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if not action.option_strings or action.required:
                continue
            if action.default is None or action.default is False:
                continue
            if action.default is argparse.SUPPRESS:  # --help
                continue
            want = f"default: {action.default}"
            assert want in text, (name, action.option_strings, want)


def test_4d_gauge_files_and_flowed_measurements(tmp_path, capsys):
    """`generate sun --d 4` writes ILDG (.lime) and HDF5 (.h5) ensembles; `measure` reads both,
    reports Wilson and Polyakov loops, and with `--flow` the flowed energy, scales and the
    clover charge; a foreign ILDG file is measured with `--beta`."""
    import numpy as np

    import sqdiff as sq
    from sqdiff.ildg import write_ildg

    base = ["sun", "--N", "2", "--L", "3", "--d", "4", "--beta", "2.3", "--n", "8"]
    for ext in ("lime", "h5"):
        out = str(tmp_path / f"g.{ext}")
        assert main(["generate", *base, "--chains", "2", "--therm", "5", "--out", out,
                     "--quiet"]) == 0  # fmt: skip
        capsys.readouterr()
        assert main(["measure", out, "--json", "--flow", "0.4", "--flow-eps", "0.05"]) == 0
        res = json.loads(capsys.readouterr().out)
        obs = res["observables"]
        flowed = ("t2E_clov(t=0.4)", "t2E_plaq(t=0.4)", "Q(t=0.4)", "chi_t(t=0.4)")
        for key in ("plaquette", "|P|", *flowed):
            assert np.isfinite(obs[key]["value"]), key
        assert np.isnan(obs["t0/a^2"]["value"])  # t²E = 0.3 is not reached by t = 0.4
        assert "t0/a^2" in res["definitions"] and "Q(t=0.4)" in res["definitions"]
    # --flow-every K flows every K-th configuration of each chain: the flowed observables
    # are those of the thinned chains, the unflowed ones still use every configuration
    from sqdiff.gradient_flow import analyze_flow

    ens = sq.load_ensemble(out)
    flow = ["--json", "--flow", "0.4", "--flow-eps", "0.05"]
    assert main(["measure", out, *flow, "--flow-every", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["diagnostics"]["flow_every"] == 2
    assert res["observables"]["plaquette"] == obs["plaquette"]
    thin = analyze_flow(ens.action, ens.samples[:, ::2], 0.4, eps=0.05)["t2E_clov(t=0.4)"]
    assert res["observables"]["t2E_clov(t=0.4)"]["value"] == pytest.approx(thin.value, rel=1e-6)
    assert res["observables"]["t2E_clov(t=0.4)"]["value"] != obs["t2E_clov(t=0.4)"]["value"]
    assert main(["measure", out, "--flow", "0.4", "--flow-every", "3"]) == 2  # 3 of 8 left
    assert "--flow-every 3 leaves 3 of the 8" in capsys.readouterr().err
    assert main(["measure", out, "--flow", "0.4", "--flow-every", "0"]) == 2
    capsys.readouterr()
    ens = sq.load_ensemble(str(tmp_path / "g.lime"))
    foreign = tmp_path / "foreign.lime"
    with open(foreign, "wb") as fh:  # configurations only, as other programs write them
        write_ildg(fh, ens.samples.reshape((-1,) + ens.samples.shape[2:]))
    assert main(["measure", str(foreign)]) == 2
    assert "--beta" in capsys.readouterr().err
    assert main(["measure", str(foreign), "--beta", "2.3"]) == 0
    text = capsys.readouterr().out
    assert "imported (ILDG)" in text and "1×16 configurations" in text and "acceptance nan" in text
    # --flow needs a gauge theory
    phi = str(tmp_path / "p.npz")
    gen = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--n", "8"]
    main([*gen, "--out", phi, "--quiet"])
    assert main(["measure", phi, "--flow", "1"]) == 2
    assert "gauge theory" in capsys.readouterr().err


def test_config_file_resolved_config_and_rerun(tmp_path, monkeypatch, capsys):
    """`--config` supplies options (positionals too), the command line overrides them, and
    the resolved `OUT.config.toml` reruns the command bit for bit."""
    import tomllib

    from sqdiff.io import load_ensemble

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(
        'L = 4\nkappa = 0.2\nstep-size = 0.2\nquiet = true\nchains = 3\nlr = 1e-3\n'
        '[generate]\ntheory = "phi4"\nlam = 0.02\nn = 12\ntherm = 10\nout = "a.npz"\n'
        '[train]\niters = 7\n'  # another command's table is ignored here
    )  # fmt: skip
    assert main(["generate", "--config", "c.toml", "--chains", "2"]) == 0
    resolved = tomllib.loads((tmp_path / "a.npz.config.toml").read_text())["generate"]
    assert resolved["chains"] == 2 and resolved["L"] == 4 and resolved["step-size"] == 0.2
    assert resolved["theory"] == "phi4" and "config" not in resolved
    assert "iters" not in resolved and "lr" not in resolved  # train's options
    assert main(["generate", "--config", "a.npz.config.toml", "--out", "b.npz"]) == 0
    a, b = load_ensemble("a.npz"), load_ensemble("b.npz")
    assert a.samples.shape == (2, 12, 4, 4)
    np.testing.assert_array_equal(a.samples, b.samples)
    capsys.readouterr()


@pytest.mark.parametrize(
    "text,message",
    [
        ("bogus = 1\n", "no sqdiff command has an option 'bogus'"),
        ("[generate]\nsteps = 3\n", "generate has no option 'steps' (known: L, N, action"),
        ("[genrate]\nn = 3\n", "[genrate] is not a sqdiff command"),
        ("n = 0\n", "n: must be ≥ 1, got 0"),
        ("quiet = 1\n", "quiet is a switch"),
        ('sampler = "nope"\n', "sampler must be one of hmc"),
        ("param = 3\n", "param is repeatable: give a list"),
        ("n = [", "is not valid TOML"),
        ("[generate]\nn = {a = 1}\n", "must be a single number or string"),
    ],
)
def test_bad_config_files_are_one_line_errors(text, message, tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    argv = ["generate", "phi4", "--L", "4", "--kappa", "0.1", "--lam", "0.1", "--n", "2"]
    assert main(argv + ["--out", str(tmp_path / "x.npz"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()
    assert main(["measure", str(tmp_path / "x.npz"), "--config", str(tmp_path / "no.toml")]) == 2
    assert "no file" in capsys.readouterr().err


def test_a_renamed_option_in_a_config_file_is_an_error(tmp_path, capsys):
    path = tmp_path / "old.toml"
    path.write_text("[train]\nsteps = 3\n")  # train's optimiser steps are --iters now
    assert main(["train", "x.npz", "--out", str(tmp_path / "m"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "train has no option 'steps'" in err and "iters" in err


def test_demo_refuses_an_unhealthy_training_ensemble(tmp_path, capsys):
    # deep in the broken phase the demo's HMC settings never accept: no table from frozen data
    argv = ["demo", "--out", str(tmp_path / "d"), "--L", "4", "--kappa", "1.0", "--n", "8"]
    assert main(argv + ["--iters", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "HMC ensemble is unhealthy" in err and "--step-size" in err


def test_generate_hmc_with_instanton_moves_unfreezes_u1(tmp_path, capsys):
    # β = 7, L = 8: plain HMC from random starts keeps its sectors; with instanton moves the
    # charge moves every trajectory and χ_t is exact (docs/references.md: 0.003392). The HMC
    # step is tuned during the burn-in (HMC alone), the moves join the kept steps.
    out = tmp_path / "hi.npz"
    argv = ["generate", "u1", "--L", "8", "--beta", "7", "--sampler", "hmc+instanton"]
    argv += ["--n", "1000", "--chains", "4", "--therm", "100", "--step-size", "0.02"]
    argv += ["--target-acceptance", "0.8", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["measure", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    chi = res["observables"]["chi_t"]
    assert chi["tau_int"] < 5 and abs(chi["value"] - 0.003392) < 4 * chi["error"]
    meta = sq.io.load_ensemble(out).metadata
    s = meta["sampler"]
    assert s["sampler"] == "hmc+instanton" and s["tuning_steps"] == 100
    assert s["parts"][0]["step_size"] == s["tuned_step_size"] > 2 * s["initial_step_size"]
    # the acceptance recorded is HMC's (instanton moves record theirs in the parts' infos);
    # 4 chains × 100 tuning steps land above the target (mcmc.adaptation), never below
    assert 0.77 < meta["acceptance"] < 0.97, meta


def test_train_on_several_volumes_with_also(tmp_path, capsys):
    def generate(L, kappa, name):
        argv = ["generate", "phi4", "--L", str(L), "--kappa", str(kappa), "--lam", "0.022"]
        argv += ["--n", "40", "--therm", "10", "--out", str(tmp_path / name), "--quiet"]
        assert main(argv) == 0

    generate(8, 0.21, "l8.npz")
    generate(4, 0.21, "l4.npz")
    generate(4, 0.25, "k4.npz")
    argv = ["train", str(tmp_path / "l8.npz"), "--also", str(tmp_path / "l4.npz"), "--iters", "10"]
    argv += ["--channels", "8", "--levels", "1", "--batch", "8", "--out", str(tmp_path / "m")]
    assert main(argv + ["--quiet"]) == 0
    assert "on 40 + 40 configurations" in capsys.readouterr().out
    # the local network (any L) with equal sites per volume: 8 configurations at L = 8, 32 at 4
    local = argv[:6] + ["--model", "local", "--channels", "4", "--depth", "1", "--batch", "8"]
    local += ["--volume-batch", "sites", "--out", str(tmp_path / "loc"), "--quiet"]
    assert main(local) == 0
    ck = sq.ModelDir(str(tmp_path / "loc")).load()
    assert ck.spec.network.name == "local" and ck.config.volume_batch == "sites"
    assert ck.network()(0.5, np.zeros((12, 12), np.float32)).shape == (12, 12)
    # the multiscale network: block levels 0–2 at L = 8, all three used at L = 16; trained by
    # target score matching with the crossover (N/E‖∇S‖²)^1/2 of the main ensemble
    ms = [*local[:-3], "--model", "multiscale", "--levels", "3", "--out", str(tmp_path / "ms")]
    assert main(ms + ["--objective", "tsm", "--quiet"]) == 0
    ck = sq.ModelDir(str(tmp_path / "ms")).load()
    ens = sq.load_ensemble(str(tmp_path / "l8.npz"))
    crossover = sq.objectives.crossover_scale(ens.action, ens.samples.reshape(-1, 8, 8))
    assert ck.spec.objective.name == "tsm"
    assert ck.spec.objective.kwargs["crossover"] == pytest.approx(crossover, rel=1e-6)
    net = ck.network()
    assert type(net).__name__ == "MultiscaleCNN" and net.usable_levels(16) == 3
    assert net(0.5, np.zeros((16, 16), np.float32)).shape == (16, 16)
    capsys.readouterr()
    argv[3] = str(tmp_path / "k4.npz")  # another κ is not the same theory at another L
    argv[-1] = str(tmp_path / "m2")
    assert main(argv + ["--quiet"]) == 2
    assert "not phi4" in capsys.readouterr().err


def test_train_lcnn_with_the_force_skip(tmp_path, capsys):
    """`train --model lcnn --force-skip` records `force_skip = β` of the ensemble and a zero
    output layer: the saved model is the Wilson drift at t → 0 (on a larger lattice too). The
    option is refused for other networks."""
    import jax.random as jr

    ens, out = str(tmp_path / "g.npz"), str(tmp_path / "m")
    gen = ["generate", "sun", "--N", "2", "--L", "4", "--d", "2", "--beta", "1.5", "--n", "8"]
    assert main([*gen, "--therm", "5", "--out", ens, "--quiet"]) == 0
    argv = ["train", ens, "--out", out, "--model", "lcnn", "--channels", "4", "--depth", "1"]
    assert main([*argv, "--iters", "4", "--batch", "4", "--force-skip", "--quiet"]) == 0
    ck = sq.ModelDir(out).load()
    assert ck.spec.network.kwargs["force_skip"] == 1.5 and ck.spec.zero_init
    action = sq.SUNWilson(2, 6, 1.5, d=2)
    U = action.group.sample_haar(jr.key(0), action.lattice_shape)
    F = np.asarray(action.force(U))
    np.testing.assert_allclose(ck.network()(1e-7, U), -F, atol=2e-5 * np.abs(F).max())
    capsys.readouterr()
    phi = str(tmp_path / "p.npz")
    gen = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--n", "8"]
    assert main([*gen, "--out", phi, "--quiet"]) == 0
    assert main(["train", phi, "--out", str(tmp_path / "m2"), "--force-skip", "--quiet"]) == 2
    assert "--force-skip is an option of --model lcnn" in capsys.readouterr().err
    # on φ⁴ the local networks take it: the drift −∇S of the ensemble's (κ, λ), on any L
    local = ["--model", "local", "--channels", "2", "--depth", "1", "--iters", "2", "--batch", "4"]
    assert main(["train", phi, "--out", out + "l", *local, "--force-skip", "--quiet"]) == 0
    ck = sq.ModelDir(out + "l").load()
    assert ck.spec.network.kwargs["force_skip"] == [0.2, 0.1] and ck.spec.zero_init
    phi6 = jr.normal(jr.key(1), (6, 6))
    F = np.asarray(sq.Phi4(6, 0.2, 0.1).force(phi6))
    np.testing.assert_allclose(ck.network()(1e-7, phi6), -F, atol=2e-5 * np.abs(F).max())
    capsys.readouterr()
    assert main(["train", phi, "--out", out + "v", *local, "--force-skip", "--schedule", "vp"]) == 2
    assert "--force-skip needs --schedule ve" in capsys.readouterr().err
    # target score matching on links, with the wrapped DSM target: the crossover from the
    # ensemble's force (per algebra coordinate); --crossover belongs to it
    m4 = [*argv[:3], str(tmp_path / "m4"), *argv[4:], "--iters", "4", "--batch", "4"]
    tsm = ["--objective", "tsm", "--dsm-target", "wrapped", "--quiet"]
    assert main([*m4, *tsm]) == 0
    spec = sq.ModelDir(str(tmp_path / "m4")).load().spec
    e = sq.load_ensemble(ens)
    crossover = sq.objectives.crossover_scale(
        e.action, e.samples.reshape((-1, *e.action.config_shape))
    )
    assert spec.objective.name == "tsm" and spec.objective.kwargs["target"] == "wrapped"
    assert spec.objective.kwargs["crossover"] == pytest.approx(crossover, rel=1e-6)
    assert main(["train", phi, "--out", str(tmp_path / "m3"), "--crossover", "0.5"]) == 2
    assert "--crossover is a setting of --objective tsm" in capsys.readouterr().err


def test_train_fconv_by_reverse_kl_and_sample_imh_beyond_the_old_cap(tmp_path, capsys):
    """`--model fconv --objective reverse-kl` trains with no data (the ensemble gives the theory
    and σ_d), reports the ESS, and `sample --method imh` runs at 18² = 324 sites (the
    Jacobian path's cap is 256) with the map's own step count; `--init` fine-tunes."""
    ens, m, m2, out = (str(tmp_path / n) for n in ("e.npz", "m", "m2", "s.npz"))
    gen = ["generate", "phi4", "--L", "18", "--kappa", "0.2", "--lam", "0.1", "--n", "8"]
    assert main([*gen, "--out", ens, "--quiet"]) == 0
    tr = ["train", ens, "--model", "fconv", "--objective", "reverse-kl", "--iters", "40",
          "--batch", "16", "--flow-steps", "4", "--features", "4", "--quiet"]  # fmt: skip
    assert main([*tr, "--out", m]) == 0
    text = capsys.readouterr().out
    assert "ESS per draw of the split-step map" in text and "by reverse KL" in text
    spec = sq.ModelDir(m).load().spec
    assert spec.objective.name == "reverse_kl" and spec.objective.kwargs["steps"] == 4
    assert 0.2 < spec.network.kwargs["data_std"] < 2.0  # measured on the ensemble
    assert main([*tr, "--out", m2, "--init", m]) == 0  # fine-tunes from m's weights
    capsys.readouterr()
    assert main(["sample", m, "--method", "imh", "--n", "32", "--out", out, "--quiet"]) == 0
    ens_out = sq.load_ensemble(out)
    assert ens_out.samples.shape == (1, 32, 18, 18)
    assert ens_out.metadata["sampler"]["sampler"] == "dm-imh-split-step"
    assert ens_out.metadata["sampler"]["steps"] == 4 and "pareto_k" in ens_out.metadata
    assert main([*tr, "--out", str(tmp_path / "m3"), "--model", "local"]) == 2
    assert "needs --model fconv" in capsys.readouterr().err


def test_counts_beyond_the_machine_fail_at_once_in_one_line(tmp_path, capsys):
    """Issue 40: `generate --n 2**70` hung and `--chains 2**70` gave a 4-line MLIR error."""
    gen = ["generate", "phi4", "--L", "8", "--kappa", "0.2", "--lam", "0.1"]
    out = ["--out", str(tmp_path / "x.npz")]
    cases = [
        ([*gen, "--n", str(2**70), *out], "--n: must be < 2147483648"),
        ([*gen, "--n", "3", "--chains", str(2**70), *out], "--chains: must be < 2147483648"),
        ([*gen, "--n", "1000000000", "--chains", "100", *out], "more than half of this machine"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert os.listdir(tmp_path) == []


def test_a_check_inside_compiled_code_prints_one_line(toy_model, tmp_path):
    """Issue 40: `sample --method pc --snr 1e308` printed a 20-line `jax.pure_callback failed`
    traceback (JAX's logger) before the one-line error. In a child process: pytest captures log
    records itself, so only a real process shows what a user sees."""
    argv = ["sample", str(toy_model / "model"), "--method", "pc", "--snr", "1e308", "--n", "4",
            "--quiet", "--out", str(tmp_path / "p.npz")]  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "sqdiff", *argv], capture_output=True, text=True)
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sqdiff: error: non-finite state"), run.stderr


def test_steps_that_do_not_apply_to_imh_are_refused(toy_model, tmp_path, capsys):
    """Issue 40: `--steps` with `--method imh` on a model whose flow is solved adaptively was
    silently ignored."""
    argv = ["sample", str(toy_model / "model"), "--method", "imh", "--steps", "5", "--n", "4",
            "--quiet", "--out", str(tmp_path / "q.npz")]  # fmt: skip
    assert main(argv) == 2
    assert "--steps does not apply to --method imh" in capsys.readouterr().err
    assert not (tmp_path / "q.npz").exists()


def test_xla_out_of_memory_is_one_line(monkeypatch, tmp_path, capsys):
    """Issue 40: `train --batch 1000000000` ended as an internal error (exit 3). XLA reports a
    failed allocation as RESOURCE_EXHAUSTED; the handler turns it into one line, exit 2."""
    import sqdiff.cli as cli

    def exhausted(args):
        raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 4000000000 bytes.")

    monkeypatch.setattr(cli, "cmd_generate", exhausted)
    argv = ["generate", "toy", "--n", "4", "--out", str(tmp_path / "x.npz"), "--quiet"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "out of memory" in err


def test_the_score_is_odd_by_default_where_the_action_is_z2_symmetric(tmp_path, capsys):
    """Issue 39: φ⁴ and the 0-dim toys are Z2-symmetric, so `train` imposes s(−φ) = −s(φ)
    unless told `--no-antisymmetric`; asking for it on an action without the symmetry, or on a
    network without the option, is a one-line error naming it."""
    import jax.numpy as jnp

    import sqdiff as sq

    ens = tmp_path / "q.npz"
    assert main(["generate", "quartic", "--n", "64", "--therm", "8", "--quiet", "--out",
                 str(ens)]) == 0  # fmt: skip
    base = ["train", str(ens), "--model", "mlp", "--width", "8", "--depth", "1", "--iters",
            "2", "--batch", "8", "--warmup", "1", "--quiet"]  # fmt: skip
    assert main(base + ["--out", str(tmp_path / "odd")]) == 0
    assert main(base + ["--out", str(tmp_path / "free"), "--no-antisymmetric"]) == 0
    phi = jnp.array(0.7)
    odd = sq.load_model(str(tmp_path / "odd"))
    assert float(odd(0.3, phi)) == pytest.approx(-float(odd(0.3, -phi)), abs=1e-6)
    free = sq.load_model(str(tmp_path / "free"))
    assert abs(float(free(0.3, phi)) + float(free(0.3, -phi))) > 1e-6
    u1 = tmp_path / "u1.npz"
    assert main(["generate", "u1", "--L", "4", "--beta", "2", "--n", "8", "--sampler", "exact",
                 "--out", str(u1)]) == 0  # fmt: skip
    capsys.readouterr()
    for argv, msg in [
        (["train", str(u1), "--antisymmetric"], "the action u1 {'L': 4, 'beta': 2.0} is not Z2"),
        (base + ["--model", "fconv", "--antisymmetric"], "not fconv"),
    ]:
        assert main(argv + ["--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err


def test_train_reports_the_held_out_loss_per_noise_band(tmp_path, capsys):
    """Issue 39: `train` holds out the end of the ensemble (10 % from 80 configurations on) and
    prints the DSM loss per noise band against the Gaussian bound on its irreducible part; a
    barely trained network is flagged REDUCIBLE. Too small a split is a one-line error."""
    ens = tmp_path / "p.npz"
    assert main(["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.5", "--n", "100",
                 "--therm", "20", "--quiet", "--out", str(ens)]) == 0  # fmt: skip
    capsys.readouterr()
    base = ["train", str(ens), "--model", "mlp", "--width", "4", "--depth", "1", "--batch", "8",
            "--warmup", "1", "--quiet"]  # fmt: skip
    assert main(base + ["--iters", "2", "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    assert "held-out DSM loss per noise band (10 configurations" in out
    assert "steps on 90 configurations" in out
    assert out.count("  Σ ") == 8 and "! REDUCIBLE" in out
    for extra, msg in [
        (["--validation", "0.05"], "--validation 0.05 of 100 configurations holds out 5"),
        (["--validation", "0.95"], "≥ 8 to train on"),
        (["--objective", "tsm", "--validation", "0.2"], "needs --objective dsm"),
    ]:
        assert main(base + ["--iters", "2", "--out", str(tmp_path / "x")] + extra) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
