"""The figures of `sqdiff.plots`: written, valid PNGs, for every kind of ensemble; without
matplotlib a clear ImportError."""

import sys

import jax
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.observables import analyze, measure_primaries
from sqdiff.plots import _propagator, measurement_figure, training_loss_figure

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == PNG and len(data) > 5000


def _chains(action, n=64, chains=2):
    hmc = sq.HMC(action, 0.15, 8)
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), chains))
    x, _ = sq.run_chains(hmc, jr.key(1), init, n, n_therm=20)
    return x


@pytest.mark.parametrize(
    "action",
    [sq.Phi4(4, 0.2, 0.02), sq.U1Wilson2D(4, 2.0), sq.Quartic0D(1.0, 0.4)],
    ids=["phi4", "u1", "quartic"],
)
def test_measurement_figure_for_each_kind_of_theory(action, tmp_path):
    x = _chains(action)
    results = analyze(action, x)
    path = tmp_path / "m.png"
    assert measurement_figure(str(path), action, measure_primaries(action, x), results) == str(path)
    assert _is_png(path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_measurement_figure_of_a_weighted_ensemble(tmp_path):
    action = sq.Quartic0D(1.0, 0.4)
    x = jr.normal(jr.key(0), (1, 500))
    log_w = -np.asarray(jax.vmap(action)(x[0]))[None] + 0.5 * np.asarray(x) ** 2
    results = analyze(action, x, log_weights=log_w)
    path = tmp_path / "w.png"
    measurement_figure(str(path), action, measure_primaries(action, x), results, log_weights=log_w)
    assert _is_png(path)


def test_propagator_points_come_in_momentum_order():
    r = sq.stats.GammaResult(1.0, 0.1, 0.5, 0.0, 1, 10.0)
    res = {"G(p=2pi*2/L)": r._replace(value=0.5), "chi2": r, "G(p=2pi*0/L)": r._replace(value=3)}
    np.testing.assert_array_equal(_propagator(res)[:, :2], [[0, 3.0], [2, 0.5]])
    assert _propagator({"chi2": r}) is None


def test_training_loss_figure(tmp_path):
    losses = list(np.exp(-np.arange(500) / 100) + 0.01 * np.random.default_rng(0).random(500))
    assert training_loss_figure(str(tmp_path / "l.png"), losses) == str(tmp_path / "l.png")
    assert _is_png(tmp_path / "l.png")
    with pytest.raises(ValueError, match="losses"):
        training_loss_figure(str(tmp_path / "e.png"), [])


def test_without_matplotlib_the_error_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        training_loss_figure(str(tmp_path / "l.png"), [1.0, 0.5])


def test_measure_plot_of_a_very_short_ensemble(tmp_path, capsys):
    """Issue 40: `measure --plot` on a 1×5 ensemble was an internal error (IndexError: the
    Γ-method's window passed the end of τ_int(W))."""
    from sqdiff.cli import main

    ens = str(tmp_path / "short.npz")
    gen = ["generate", "phi4", "--L", "4", "--kappa", "0.2", "--lam", "0.1", "--n", "5"]
    assert main([*gen, "--chains", "1", "--out", ens, "--quiet"]) == 0
    assert main(["measure", ens, "--plot", str(tmp_path / "s.png"), "--force"]) == 0
    assert (tmp_path / "s.png").exists()
