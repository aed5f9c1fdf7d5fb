"""`sq.mcmc.relaxation`, the paired drift test of independent chains: its false-alarm rate on
relaxed chains, its power on drifting ones, and `sample_maala`'s final-state design on an
exactly known law (flagged exactly when its samples are wrong)."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import stats
from test_sampling import GaussianScore, V

import sqdiff as sq
from sqdiff.mcmc import DRIFT_FALSE_ALARM, Relaxation, relaxation
from sqdiff.sampling import sample_maala


def paired(rng, n_chains, k, drift=0.0, rho=0.95):
    """`k` primaries of `n_chains` stationary chains at two times (correlation `rho` in time,
    0.5 between primaries), the later ones shifted by `drift`."""
    mix = np.linalg.cholesky(0.5 * np.eye(k) + 0.5)
    a = rng.standard_normal((n_chains, k)) @ mix.T
    b = rho * a + np.sqrt(1 - rho**2) * rng.standard_normal((n_chains, k)) @ mix.T + drift
    names = [f"O{i}" for i in range(k)]
    return dict(zip(names, a.T, strict=True)), dict(zip(names, b.T, strict=True))


def test_relaxed_chains_are_flagged_at_most_at_the_stated_rate():
    # 20000 relaxed runs of 32 chains, 4 correlated primaries: Bonferroni keeps the family's
    # false alarms ≤ DRIFT_FALSE_ALARM, so ≤ 20 expected (14 here); 20 + 4√20 ≈ 38 is the bound.
    # This seed gives 68 without the correction (4 tests at 1e-3 each) and 64 with the normal
    # quantile in place of Student's t. Each t follows t with 31 degrees of freedom (KS test).
    rng = np.random.default_rng(0)
    runs = 20_000
    verdicts = [relaxation(*paired(rng, 32, 4), (20, 40)) for _ in range(runs)]
    flagged = sum(bool(r.drifting) for r in verdicts)
    assert flagged <= 38 and DRIFT_FALSE_ALARM * runs == 20, flagged
    t0 = [r.t["O0"] for r in verdicts]
    assert stats.kstest(t0, stats.t(31).cdf).pvalue > 1e-3


def test_a_drift_of_a_fraction_of_the_spread_is_found_by_pairing():
    # a drift of 0.16 of the ensemble spread (1): 1.8 standard errors of the difference of the
    # two ensemble means (√(2/256) ≈ 0.088), but 8 paired ones (sd(d) = √(2(1 − ρ)) ≈ 0.32)
    rng = np.random.default_rng(1)
    hits = [relaxation(*paired(rng, 256, 3, drift=0.16), (20, 40)) for _ in range(200)]
    assert sum(bool(h.drifting) for h in hits) >= 198
    assert all(abs(h.t["O0"]) > h.threshold for h in hits[:10])


def test_verdict_edge_cases_and_json():
    rng = np.random.default_rng(2)
    few = relaxation(*paired(rng, 5, 2, drift=10.0), (1, 2))
    assert not few.checked and few.drifting == ()  # too few chains: not judged
    a = {"x": np.zeros(16), "y": np.arange(16.0)}
    b = {"x": np.zeros(16), "y": np.arange(16.0) + 1.0}  # every chain moved by exactly 1
    r = relaxation(a, b, (5, 10))
    assert r.drifting == ("y",) and r.t["x"] == 0.0 and r.t["y"] == np.inf
    data = r.to_json()
    assert data["t"]["y"] is None and data["steps"] == [5, 10]
    back = Relaxation.from_json(data)
    assert back.drifting == ("y",) and np.isnan(back.t["y"])
    assert "NOT RELAXED: y" in back.message() and "step 5 and 10" in back.message()
    assert Relaxation.from_json(relaxation(a, a, (5, 10)).to_json()).message() == ""
    with pytest.raises(ValueError, match="same primaries"):
        relaxation(a, {"x": np.zeros(16)}, (5, 10))


@pytest.mark.parametrize(
    "thin, c, relaxed",
    [(4, 0.05, False), (400, 0.05, True), (100, 0.5, False)],
    ids=["4-steps", "400-steps", "100-large-steps"],
)
def test_maala_final_states_flagged_exactly_when_wrong(thin, c, relaxed):
    # N(0, V) on 8 sites with the exact score: the chains start at t_mh, from the law noised
    # by Σ(t_mh)² ≈ 6V, and each keeps its final MAALA state. The variance of those states is
    # the target's (within 4σ) exactly when the drift test stays silent.
    ve = sq.VarianceExploding(25.0)
    action = sq.FunctionAction(lambda x: 0.5 * jnp.sum(x**2) / V, config_shape=(8,))
    res = sample_maala(
        jr.key(0), GaussianScore(ve), action, 256, steps=50, c=c, chains=256, thin=thin
    )
    x = np.asarray(res.samples, np.float64).reshape(-1)
    rel = res.metadata["relaxation"]
    assert rel["steps"] == [thin - thin // 2, thin] and rel["checked"]
    correct = abs(np.var(x) / V - 1) < 4 * np.sqrt(2 / x.size)
    assert correct == relaxed and (not rel["drifting"]) == relaxed, (np.var(x) / V, rel)
    # the same MAALA steps as without the check: evaluations per sample are unchanged
    assert res.metadata["nfe"]["mean"] == 50 + 1 + thin
