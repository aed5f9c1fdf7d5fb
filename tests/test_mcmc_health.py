"""A frozen, diverged or never-accepting chain never passes as data (sqdiff.mcmc.health)."""

import json

import numpy as np

import sqdiff as sq
from sqdiff.cli import main


def test_chain_health_names_each_problem():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(3, 50, 4))
    assert sq.mcmc.chain_health(good, np.array([0.5, 0.6, 0.7])).ok
    frozen = good.copy()
    frozen[1] = frozen[1, :1]
    h = sq.mcmc.chain_health(frozen, np.array([0.5, 0.0, 0.7]))
    assert not h.ok and any("never moved" in p for p in h.problems)
    assert any("acceptance" in p and "chains 1" in p for p in h.problems)
    bad = good.copy()
    bad[2, 10, 0] = np.nan
    assert "non-finite values in chains 2" in sq.mcmc.chain_health(bad).problems
    same = np.broadcast_to(good[:1, :1], (1, 50, 4))
    assert not sq.mcmc.chain_health(same, independent=True).ok
    assert sq.mcmc.chain_health(good[:1], independent=True).ok


def test_frozen_chain_is_flagged_and_measure_refuses_it(tmp_path, capsys):
    out = tmp_path / "frozen.npz"
    argv = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--n", "20"]
    rc = main(argv + ["--step-size", "50", "--therm", "0", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and out.exists()  # kept, but marked
    assert err.startswith("sqdiff: error: unhealthy") and len(err.splitlines()) == 1, err
    assert sq.load_ensemble(str(out)).metadata["health"]["ok"] is False
    assert main(["measure", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unhealthy" in err and "--force" in err
    assert main(["measure", str(out), "--json", "--force"]) == 0
    res = json.loads(capsys.readouterr().out)
    health = res["diagnostics"]["health"]
    assert health["ok"] is False and health["problems"]


def test_a_healthy_run_stays_quiet(tmp_path, capsys):
    out = tmp_path / "ok.npz"
    argv = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--n", "50"]
    assert main(argv + ["--therm", "20", "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert sq.load_ensemble(str(out)).metadata["health"] == {"ok": True, "problems": []}
    assert main(["measure", str(out)]) == 0
