"""`sqdiff compare` / `sqdiff.compare`: two ensembles of the same law agree, a biased one is
called out, for scripts through the exit status (issue 39, "does my model work?")."""

import json

import pytest

import sqdiff as sq
from sqdiff.cli import main
from sqdiff.compare import compare


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    """Two independent exact U(1) ensembles (independent draws) and two φ⁴ ensembles of 4
    chains each (FA-HMC + Wolff: plain HMC's slow zero mode at these lengths leaves τ_int of
    ⟨φ²⟩ underestimated, and two such runs differed by 3.5σ)."""
    d = tmp_path_factory.mktemp("compare")
    u1 = ["generate", "u1", "--L", "6", "--beta", "2", "--sampler", "exact", "--n", "800"]
    phi4 = ["generate", "phi4", "--L", "6", "--kappa", "0.22", "--lam", "0.02", "--n", "400",
            "--chains", "4", "--therm", "100", "--sampler", "fahmc+wolff",
            "--mass2", "0.5"]  # fmt: skip
    for name, argv, seed in [("u1a", u1, 1), ("u1b", u1, 2), ("pa", phi4, 1), ("pb", phi4, 2)]:
        out = str(d / f"{name}.npz")
        assert main(argv + ["--seed", str(seed), "--quiet", "--out", out]) == 0
    return d


def _scaled(src, dst, factor):
    ens = sq.load_ensemble(str(src))
    meta = {k: v for k, v in ens.metadata.items() if k != "sha256"}
    sq.save_ensemble(str(dst), ens.samples * factor, meta)


def test_ensembles_of_one_law_agree_and_a_biased_one_does_not(ensembles, tmp_path, capsys):
    for a, b in [("u1a", "u1b"), ("pa", "pb")]:
        ea, eb = (sq.load_ensemble(str(ensembles / f"{n}.npz")) for n in (a, b))
        c = compare(ea, eb)
        assert c.agree, c
        assert len(c.pulls) >= 3 and c.histogram is not None
        # Bonferroni: each of the k tests at α/k, as a two-sided normal threshold
        from scipy.stats import norm

        assert c.threshold == pytest.approx(norm.isf(c.alpha / (2 * c.tests)))
    # exact independent draws: the effective sizes are the sizes
    c = compare(*(sq.load_ensemble(str(ensembles / f"{n}.npz")) for n in ("u1a", "u1b")))
    assert c.histogram[0] == "Q" and c.histogram[2] == pytest.approx(800, rel=0.2)
    # a field 5 % too large (what a model with a too-narrow prior gives) is called out
    _scaled(ensembles / "pa.npz", tmp_path / "biased.npz", 1.05)
    argv = ["compare", str(tmp_path / "biased.npz"), str(ensembles / "pb.npz")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "verdict: DISAGREE" in out and "<phi^2>" in out.split("differ:")[1]
    assert main(argv + ["--json"]) == 1
    res = json.loads(capsys.readouterr().out)
    assert not res["agree"] and res["pulls"]["<phi^2>"]["pull"] > res["threshold"]
    # and the agreeing pair exits 0 with the verdict line
    assert main(["compare", str(ensembles / "pa.npz"), str(ensembles / "pb.npz")]) == 0
    assert "verdict: AGREE" in capsys.readouterr().out


def test_compare_bad_input(ensembles, capsys):
    argv = ["compare", str(ensembles / "pa.npz"), str(ensembles / "u1a.npz")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "different theories" in err and err.count("\n") == 1
    assert main(["compare", str(ensembles / "pa.npz"), str(ensembles / "pb.npz"),
                 "--alpha", "1.5"]) == 2  # fmt: skip
    assert "--alpha" in capsys.readouterr().err
    with pytest.raises(ValueError, match="alpha"):
        compare(*(sq.load_ensemble(str(ensembles / f"{n}.npz")) for n in ("pa", "pb")), alpha=0)
