"""MAALA and IMH are exact whatever the score: checked with a deliberately wrong score (0.8×)
on the two-Gaussian mixture (κ2…κ8 = 1.0625, −2, 16, −272)."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq

KAPPA = np.array([1.0625, -2.0, 16.0, -272.0])
MIX = sq.GaussianMixture.symmetric(1.0, 0.25)


def mixture_action(x):
    return -jnp.sum(MIX.log_prob(x))


def cumulant_results(samples):
    """Γ-method values/errors of κ2..κ8 from raw moments; samples (chains, n) or (n,)."""
    x = np.asarray(samples, np.float64)
    x = x[None] if x.ndim == 1 else x
    moments = np.stack([x**k for k in range(1, 9)], -1)
    out = []
    for n in (2, 4, 6, 8):
        out.append(
            sq.stats.gamma_method(
                moments, lambda a, n=n: float(sq.stats.cumulants_from_moments(a)[n - 1])
            )
        )
    return out


@pytest.mark.parametrize("factor", [1.0, 0.8], ids=["exact-score", "score-x0.8"])
def test_maala_is_exact_for_a_perturbed_score(factor):
    ve = sq.VarianceExploding(25.0)
    score = lambda t, x: factor * MIX.score(t, x, ve)  # noqa: E731
    t_mh, n_chains = 0.05, 1000
    x_T = ve.prior_sample(jr.key(0), (n_chains,))
    x_mh = sq.solve(sq.Reverse(ve, score), x_T, ve.T, t_mh, key=jr.key(1), n_steps=500).ys[-1]
    eps = 0.5 * float(ve.marginal_std(t_mh)) ** 2
    sampler = sq.MAALA(mixture_action, score, t_mh, eps)
    samples, acc = sq.run_chains(sampler, jr.key(2), x_mh, 200, n_therm=50)
    assert 0.3 < acc.mean() < 1.0
    for res, exact in zip(cumulant_results(samples), KAPPA, strict=True):
        assert abs(res.value - exact) < 4 * res.error, (res, exact)


def test_imh_with_flow_proposals_is_exact_for_a_perturbed_score():
    vp = sq.VariancePreserving()
    flow = sq.ProbabilityFlow(vp, lambda t, x: 0.8 * MIX.score(t, x, vp))
    props = sq.mcmc.flow_proposals(flow, jr.key(3), (), 20_000, t_min=1e-3, batch=2000)
    # the raw proposals are wrong (κ2 far off) …
    raw = cumulant_results(props.x)[0]
    assert abs(raw.value - KAPPA[0]) > 10 * raw.error
    # … the IMH chain and the reweighted estimates are right
    chain, accepted = sq.mcmc.independence_mh(mixture_action, props, jr.key(4))
    assert 0.05 < float(jnp.mean(accepted)) < 1.0
    for res, exact in zip(cumulant_results(chain), KAPPA, strict=True):
        assert abs(res.value - exact) < 4 * res.error, (res, exact)
    w, ess = sq.mcmc.importance_weights(mixture_action, props)
    assert 100 < float(ess) <= 20_000
    m2 = float(jnp.sum(w * props.x**2))
    # self-normalised IS: error from the effective sample size
    var = float(jnp.sum(w * (props.x**2 - m2) ** 2))
    assert abs(m2 - KAPPA[0]) < 4 * np.sqrt(var / float(ess))


def test_maala_bad_input():
    with pytest.raises(ValueError, match="step_size"):
        sq.MAALA(mixture_action, lambda t, x: x, 0.1, 0.0)
    with pytest.raises(ValueError, match="t_mh"):
        sq.MAALA(mixture_action, lambda t, x: x, 0.0, 0.1)
    with pytest.raises(ValueError, match="Euclidean and U"):
        sq.MAALA(sq.SUNWilson(2, 4, 1.0, d=2), lambda t, x: x, 0.1, 0.1)
    flow = sq.ProbabilityFlow(sq.VariancePreserving(), lambda t, x: -x, divergence="hutchinson")
    with pytest.raises(ValueError, match="exact"):
        sq.mcmc.flow_proposals(flow, jr.key(0), (), 4)
