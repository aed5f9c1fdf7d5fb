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


def test_a_slow_chain_gets_its_errors_marked_unreliable(tmp_path, capsys):
    """A chain that moves (healthy) but decorrelates over a good part of the run: the Γ-method's
    τ_int(W) has no plateau, so `measure` marks those errors (n < 50 τ_int per chain) instead of
    printing them with confidence; the fast observable of the same run stays unmarked."""
    rng = np.random.default_rng(0)
    n, a = 400, 0.995  # AR(1): τ_int = (1 + a)/(2(1 − a)) ≈ 200 > n/50
    slow = np.empty((2, n))
    slow[:, 0] = rng.normal(size=2) / np.sqrt(1 - a * a)
    for i in range(1, n):
        slow[:, i] = a * slow[:, i - 1] + rng.normal(size=2)
    meta = {"theory": "quartic", "params": {"mu2": 1.0, "g": 0.4}, "sampler": {"sampler": "x"},
            "acceptance": 0.9, "seed": 0}  # fmt: skip
    sq.save_ensemble(str(tmp_path / "slow.npz"), slow, meta)
    assert main(["measure", str(tmp_path / "slow.npz"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "kappa2" in res["diagnostics"]["too_short"]
    assert main(["measure", str(tmp_path / "slow.npz")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("diagnostics: acceptance") and "RUN TOO SHORT for" in last
    # independent draws of the same law: nothing marked
    fast = rng.normal(size=(2, n)) * np.sqrt(0.86)
    sq.save_ensemble(str(tmp_path / "fast.npz"), fast, meta)
    assert main(["measure", str(tmp_path / "fast.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"]["too_short"] == []


def test_chains_that_sit_apart_get_their_errors_marked(tmp_path, capsys):
    """Chains that each sample well but around different means (a charge frozen per chain):
    the Γ-method error, built from fluctuations within chains, is too small, and the replica
    Q-value says so; chains of one law are not marked."""
    rng = np.random.default_rng(1)
    apart = rng.normal(size=(16, 400)) + 0.3 * rng.normal(size=(16, 1))
    meta = {"theory": "quartic", "params": {"mu2": 1.0, "g": 0.4}, "sampler": {"sampler": "x"},
            "acceptance": 0.9, "seed": 0}  # fmt: skip
    sq.save_ensemble(str(tmp_path / "apart.npz"), apart, meta)
    assert main(["measure", str(tmp_path / "apart.npz"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert "<phi>" in res["diagnostics"]["chains_disagree"]
    assert res["observables"]["<phi>"]["replica_q"] < 1e-10
    assert main(["measure", str(tmp_path / "apart.npz")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "CHAINS DISAGREE for <phi>" in last
    same = rng.normal(size=(16, 400))
    sq.save_ensemble(str(tmp_path / "same.npz"), same, meta)
    assert main(["measure", str(tmp_path / "same.npz"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"]["chains_disagree"] == []
