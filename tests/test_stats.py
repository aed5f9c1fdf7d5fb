import math

import numpy as np
import pytest

import sqdiff as sq


def ar1(a, n, rng, replicas=1):
    e = rng.normal(size=(replicas, n))
    x = np.empty((replicas, n))
    x[:, 0] = e[:, 0] / math.sqrt(1 - a * a)
    for i in range(1, n):
        x[:, i] = a * x[:, i - 1] + e[:, i]
    return x


@pytest.mark.parametrize("a", [-0.5, 0.0, 0.7, 0.9])
def test_gamma_method_recovers_ar1_tau_and_error(a):
    rng = np.random.default_rng(1)
    n = 100_000
    x = ar1(a, n, rng)[0]
    r = sq.stats.gamma_method(x)
    tau_exact = 0.5 * (1 + a) / (1 - a)
    assert abs(r.tau_int - tau_exact) < 4 * r.tau_int_error + 1e-3
    var = 1 / (1 - a * a)
    err_exact = math.sqrt(2 * tau_exact * var / n)
    # relative error of the error estimate ≈ ½ δτ/τ
    assert abs(r.error / err_exact - 1) < 4 * 0.5 * r.tau_int_error / r.tau_int + 0.01
    assert abs(r.value) < 5 * err_exact
    np.testing.assert_allclose(r.ess, n / (2 * r.tau_int))


def test_autocorrelation_curves_of_ar1():
    """ρ(t) = a^t of an AR(1) series (Bartlett: var ρ̂(1) ≈ (1 − a²)/N), τ_int(W) reaches
    (1 + a)/(2(1 − a)) at the chosen window, the same τ_int that `gamma_method` reports."""
    a, n = 0.8, 200_000
    x = ar1(a, n, np.random.default_rng(3))[0]
    c = sq.stats.autocorrelation(x)
    r = sq.stats.gamma_method(x)
    assert c.rho[0] == 1 and c.rho.shape == c.tau_int.shape == (n // 2 + 1,)
    assert abs(c.rho[1] - a) < 4 * math.sqrt((1 - a * a) / n)
    assert c.window == r.window
    np.testing.assert_allclose(c.tau_int[c.window], r.tau_int, rtol=1e-12)
    np.testing.assert_allclose(c.tau_int_error[c.window], r.tau_int_error, rtol=1e-12)
    tau_exact = 0.5 * (1 + a) / (1 - a)
    assert abs(c.tau_int[c.window] - tau_exact) < 4 * c.tau_int_error[c.window]
    flat = sq.stats.autocorrelation(np.ones(50))  # a constant series
    assert flat.window == 0 and flat.tau_int[0] == 0.5


@pytest.mark.parametrize("a", [-0.6, 0.8])
def test_gamma_method_error_is_calibrated_over_replicas(a):
    # the spread of means over independent AR(1) runs matches the estimated error
    rng = np.random.default_rng(2)
    x = ar1(a, 4000, rng, replicas=200)
    means = x.mean(1)
    errs = np.array([sq.stats.gamma_method(xi).error for xi in x])
    ratio = means.std(ddof=1) / np.sqrt(np.mean(errs**2))
    assert abs(ratio - 1) < 4 / math.sqrt(2 * 200), ratio


@pytest.mark.parametrize("n", [8, 16])
def test_a_short_series_never_gets_an_error_of_zero(n):
    """On a few samples Γ(1) can look so negative that the anticorrelated branch's C_F (Geyer's
    sum) is ≤ 0. It used to be clamped to the smallest float: i.i.d. series of 8 got an error
    of 1e-155 in 6.5 % of draws. Now τ_int ≥ 1/(2 log10 N) (Stan's and ArviZ's ESS ≤ N log10 N):
    every draw's error is at least half the independent-sample one, and its ESS is finite."""
    x = np.random.default_rng(5).normal(size=(2000, n))
    res = [sq.stats.gamma_method(xi) for xi in x]
    ratio = np.array([r.error for r in res]) / (x.std(1) / math.sqrt(n))
    assert ratio.min() > 0.5, ratio.min()
    floor = 1 / (2 * math.log10(n))
    assert min(r.tau_int for r in res) == pytest.approx(floor)  # the floor is reached
    assert all(r.tau_int >= floor * (1 - 1e-12) and r.ess <= n * math.log10(n) + 1e-9 for r in res)


def test_gamma_method_derived_quantity_and_replicas():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 1.0, size=(4, 5000))
    y = rng.normal(4.0, 1.0, size=(4, 5000))
    data = np.stack([x, y], -1)
    r = sq.stats.gamma_method(data, lambda m: m[1] / m[0])
    est, err = sq.stats.jackknife(
        lambda d: d[:, 1].mean() / d[:, 0].mean(), data.reshape(-1, 2), 100
    )
    np.testing.assert_allclose(r.value, est, rtol=1e-10)
    assert abs(r.error / err - 1) < 0.2
    assert abs(r.value - 2.0) < 4 * r.error


def test_replica_q_value_is_uniform_for_consistent_replicas():
    # 16 iid replicas of the same law: Q ~ U(0, 1), so P(Q < 0.1) = 0.1 (binomial error)
    rng = np.random.default_rng(11)
    qs = np.array([sq.stats.replica_q_value(rng.normal(size=(16, 200, 1))) for _ in range(400)])
    for cut in (0.1, 0.5):
        frac = np.mean(qs < cut)
        assert abs(frac - cut) < 4 * math.sqrt(cut * (1 - cut) / qs.size), (cut, frac)
    assert math.isnan(sq.stats.gamma_method(rng.normal(size=(1, 200, 1))).replica_q)


def test_replica_q_value_flags_chains_that_sit_apart():
    # each chain's mean shifted by N(0, 0.3²), 6× the error of a chain's mean: the Γ-method
    # (fluctuations within chains) gives 1/4 of the true error; the replica test says so
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 400)) + 0.3 * rng.normal(size=(16, 1))
    res = sq.stats.gamma_method(x[..., None])
    true_error = np.std(x.mean(1), ddof=1) / 4
    assert res.error < true_error / 2
    assert res.replica_q < 1e-10 and sq.stats.chains_disagree(res)
    # a derived quantity sees it too, and consistent replicas are not flagged
    ratio = np.stack([x, np.ones_like(x)], -1)
    assert sq.stats.replica_q_value(ratio, lambda a: a[0] / a[1]) < 1e-10
    ok = sq.stats.gamma_method(rng.normal(size=(16, 400, 1)))
    assert not sq.stats.chains_disagree(ok)


def test_cumulants_and_jackknife():
    rng = np.random.default_rng(4)
    g = rng.normal(size=400_000)
    est, err = sq.stats.jackknife(lambda d: np.asarray(sq.stats.cumulants(d, 6)), g, 40)
    assert np.all(np.abs(est[2:]) < 4 * err[2:])
    assert abs(est[1] - 1) < 4 * err[1]
    # jackknife of a mean is the standard error
    m, e = sq.stats.jackknife(np.mean, g, 400)
    np.testing.assert_allclose(e, g.std() / math.sqrt(g.size), rtol=0.1)
    # ±1 coin: κ2 = 1, κ4 = −2, κ6 = 16
    coin = np.asarray(sq.stats.cumulants_from_moments(np.array([0, 1, 0, 1, 0, 1.0])))
    np.testing.assert_allclose(coin[[1, 3, 5]], [1, -2, 16])
    b = sq.stats.binned(np.arange(10.0), 3)
    np.testing.assert_allclose(b, [1, 4, 7])


def test_stats_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        sq.stats.gamma_method(np.array([1.0, np.nan, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="function"):
        sq.stats.gamma_method(np.ones((10, 2)))
    with pytest.raises(ValueError, match="n_blocks"):
        sq.stats.jackknife(np.mean, np.ones(5), 10)


def test_reweighted_estimates_and_errors():
    x = np.random.default_rng(0).normal(size=50_000)
    # equal weights: the plain mean and its standard error
    r = sq.stats.reweighted(x**2, np.zeros_like(x))
    assert abs(r.value - np.mean(x**2)) < 1e-9
    assert abs(r.error / (np.std(x**2) / np.sqrt(x.size)) - 1) < 1e-3
    assert abs(r.ess - x.size) < 1e-6
    # N(0, 1) samples reweighted to N(0, 1.5²): ⟨x²⟩ = 2.25, a ratio ⟨x⁴⟩/⟨x²⟩ = 3·2.25
    lw = x**2 / 2 - x**2 / (2 * 1.5**2)
    r = sq.stats.reweighted(x**2, lw)
    assert abs(r.value - 2.25) < 4 * r.error and r.ess < 0.9 * x.size
    r = sq.stats.reweighted(np.stack([x**2, x**4], -1), lw, lambda a: a[1] / a[0])
    assert abs(r.value - 6.75) < 4 * r.error
    with pytest.raises(ValueError, match="log_weights"):
        sq.stats.reweighted(x[:10], lw[:5])


def test_reweighted_gives_no_error_below_ten_effective_samples():
    x = np.linspace(0, 1, 100)
    lw = np.zeros(100)
    lw[3] = 50.0  # one weight dominates: ESS ≈ 1
    r = sq.stats.reweighted(x, lw)
    assert r.ess < 1.01 and math.isinf(r.error) and abs(r.value - x[3]) < 1e-12


# --- Pareto k̂ (Vehtari et al., PSIS) -------------------------------------------------------
def test_pareto_khat_recovers_the_tail_index():
    # weights w = U^(−1/α) are Pareto with tail index α: k = 1/α. The GPD shape estimate from
    # the M = 3√S largest weights has standard error ≈ (1 + k)/√M
    rng = np.random.default_rng(1)
    S = 20_000
    M = int(np.ceil(3 * np.sqrt(S)))
    for k in (0.5, 1.0):
        lw = np.log(rng.uniform(size=S)) * (-k)
        khat = sq.stats.pareto_khat(lw)
        assert abs(khat - k) < 4 * (1 + k) / np.sqrt(M), (k, khat)
    assert sq.stats.pareto_khat(rng.normal(size=S)) < 0.5  # log-normal σ = 1: light tail


def test_equal_weights_are_not_flagged_and_degenerate_ones_are():
    import warnings

    # issue 40: a perfect proposal (equal weights) printed "Pareto k̂ inf … UNRELIABLE"
    k = sq.stats.pareto_khat(np.zeros(1000))
    assert k == -np.inf and k <= sq.stats.PARETO_K_MAX
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sq.stats.warn_pareto_k(k, "equal weights")
    for degenerate in (
        np.zeros(5),
        np.array([0.0] * 999 + [np.inf]),
        np.r_[np.zeros(1), -np.inf * np.ones(999)],
    ):
        with pytest.warns(UserWarning, match="Pareto k"):
            sq.stats.warn_pareto_k(sq.stats.pareto_khat(degenerate), "degenerate")
    one = np.r_[0.0, np.full(999, -50.0)]  # one weight carries everything
    assert sq.stats.pareto_khat(one) > sq.stats.PARETO_K_MAX


def test_reweighted_warns_when_the_weights_are_too_heavy_tailed():
    rng = np.random.default_rng(2)
    x = rng.normal(size=4000)
    with pytest.warns(UserWarning, match="Pareto k"):
        r = sq.stats.reweighted(x, 4.0 * rng.normal(size=4000))
    assert r.pareto_k > 0.7
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = sq.stats.reweighted(x, 0.3 * rng.normal(size=4000))
    assert r.pareto_k < 0.5
