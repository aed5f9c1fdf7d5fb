"""MAALA and IMH are exact whatever the score: checked with a deliberately wrong score (0.8×)
on the two-Gaussian mixture (κ2…κ8 = 1.0625, −2, 16, −272)."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import special

import sqdiff as sq

KAPPA = np.array([1.0625, -2.0, 16.0, -272.0])
MIX = sq.GaussianMixture.symmetric(1.0, 0.25)


def mixture_action(x):
    return -jnp.sum(MIX.log_prob(0.0, x))


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
    props = sq.mcmc.flow_proposals(jr.key(3), flow, (), 20_000, t_min=1e-3, batch=2000)
    # the raw proposals are wrong (κ2 far off) …
    raw = cumulant_results(props.x)[0]
    assert abs(raw.value - KAPPA[0]) > 10 * raw.error
    # … the IMH chain and the reweighted estimates are right
    chain, accepted = sq.mcmc.independence_mh(jr.key(4), mixture_action, props)
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
    flow = sq.ProbabilityFlow(sq.VariancePreserving(), lambda t, x: -x, divergence="hutchinson")
    with pytest.raises(ValueError, match="exact"):
        sq.mcmc.flow_proposals(jr.key(0), flow, (), 4)


# --- U(1): the probability flow on the torus ---------------------------------------------
def wilson_flow(L, beta):
    """A periodic stand-in for a trained U(1) score: the Wilson force at the noise-softened
    coupling `β/(1 + 8βΣ(t)²)` (8 bounds the spectrum of the lattice curl-curl operator, so no
    mode is over-contracted). Not the score of p_t, so the proposals are imperfect."""
    action = sq.U1Wilson2D(L, beta)
    ve = sq.VarianceExploding(10.0)

    def score(t, theta):
        b = beta / (1.0 + 8.0 * beta * ve.marginal_std(t) ** 2)
        return -(b / beta) * jax.grad(action)(theta)

    return action, sq.ProbabilityFlow(ve, score, group=sq.U1())


def u1_log_z(L, beta):
    """`log ∫_{(−π,π]^{2V}} dθ e^{−S}` with `S = β Σ_P (1 − cos θ_P)`: `(2π)^{2V} Σ_n
    (e^{−β} I_n(β))^V` (character expansion, docs/references.md)."""
    V = L * L
    n = np.arange(-30, 31)
    return (
        2 * V * np.log(2 * np.pi)
        + V * np.log(special.ive(0, beta))
        + np.log(np.sum((special.ive(n, beta) / special.ive(0, beta)) ** V))
    )


def test_u1_flow_density_is_normalised_on_the_torus():
    """`E_q[e^{−S}/q] = Z`: the importance estimate of log Z from torus-flow proposals (wrapped
    prior + exact divergence) matches the character expansion. Omitting the wrapping of the
    prior, or a wrong divergence, shifts it by many σ."""
    L, beta, n = 2, 1.5, 4000
    action, flow = wilson_flow(L, beta)
    props = sq.mcmc.flow_proposals(jr.key(0), flow, (2, L, L), n, batch=1000)
    assert float(jnp.max(jnp.abs(props.x))) <= np.pi  # endpoints wrapped onto the torus
    log_w = np.asarray(-jax.vmap(action)(props.x) - props.log_q, np.float64)
    w = np.exp(log_w - log_w.max())
    log_z = np.log(w.mean()) + log_w.max()
    err = w.std() / w.mean() / np.sqrt(n)  # delta method for log of the mean
    assert abs(log_z - u1_log_z(L, beta)) < 4 * err, (log_z, u1_log_z(L, beta), err)
    assert err < 0.05  # sharp enough to see a wrong prior or divergence (shifts of O(1))
    assert w.std() / w.mean() > 0.05


def test_imh_on_u1_is_exact():
    """IMH with torus-flow proposals reproduces the exact plaquette and χ_t (Γ-method errors)."""
    from test_mcmc import u1_exact

    L, beta, n = 3, 3.0, 6000
    action, flow = wilson_flow(L, beta)
    props = sq.mcmc.flow_proposals(jr.key(1), flow, (2, L, L), n, batch=1000)
    chain, accepted = sq.mcmc.independence_mh(jr.key(2), action, props)
    assert 0.1 < float(jnp.mean(accepted)) < 0.95
    res = sq.analyze(action, np.asarray(chain)[None])
    plaq, chi = u1_exact(beta, L)
    assert abs(res["plaquette"].value - plaq) < 4 * res["plaquette"].error
    assert abs(res["chi_t"].value - chi) < 4 * res["chi_t"].error
    # the raw flow proposals are off: the correction is doing the work
    raw = sq.analyze(action, np.asarray(props.x)[None])["plaquette"]
    assert abs(raw.value - plaq) > 4 * raw.error


# --- SU(N)/U(N): the probability flow with exact step Jacobians ---------------------------
def gauge_flow(action):
    """A stand-in for a trained SU(N)/U(N) score: the Wilson force at the noise-softened
    coupling `β/(1 + 8βΣ(t)²)` (as `wilson_flow` on U(1)). Not the score of p_t."""
    ve = sq.VarianceExploding(5.0)
    beta = action.beta

    def score(t, U):
        return -action.force(U) / (1.0 + 8.0 * beta * ve.marginal_std(t) ** 2)

    return sq.ProbabilityFlow(ve, score, group=action.group)


@pytest.mark.parametrize(
    "action",
    [pytest.param(sq.SUNWilson(2, 2, 2.0, d=2), marks=pytest.mark.slow), sq.UNWilson(2, 2, 2.0)],
    ids=["SU2", "U2"],
)
def test_group_flow_density_is_normalised(action):
    """`E_q[1/q] = ∫ dU = 1` (normalised Haar measure) for the flow's proposals with their
    log-density from the exact step Jacobians. A missing Jacobian or a wrong sign shifts the
    estimate far outside its error."""
    n = 2000
    props = sq.mcmc.flow_proposals(jr.key(0), gauge_flow(action), action.config_shape, n,
                                   batch=1000, steps=12)  # fmt: skip
    inv_q = np.exp(-np.asarray(props.log_q, np.float64))
    err = inv_q.std() / np.sqrt(n)
    assert abs(inv_q.mean() - 1.0) < 4 * err, (inv_q.mean(), err)
    assert err < 0.05  # sharp enough to see a dropped Jacobian (E[1] ≠ E[1/q] by O(1))
    assert np.std(np.asarray(props.log_q)) > 0.5  # the map is far from the identity


def test_imh_on_2d_u2_is_exact():
    """IMH with U(2) flow proposals reproduces the exact plaquette and χ_t on the 2×2 torus
    (character expansion, `gauge_reference.u2_torus`); the raw proposals are far off."""
    from gauge_reference import u2_torus

    action = sq.UNWilson(2, 2, 2.0)
    exact = u2_torus(2.0, 2)
    props = sq.mcmc.flow_proposals(jr.key(1), gauge_flow(action), action.config_shape, 3000,
                                   batch=1000, steps=12)  # fmt: skip
    chain, accepted = sq.mcmc.independence_mh(jr.key(2), action, props)
    assert 0.2 < float(jnp.mean(accepted)) < 0.95
    res = sq.analyze(action, np.asarray(chain)[None])
    for name in ("plaquette", "chi_t"):
        assert abs(res[name].value - exact[name]) < 4 * res[name].error, (name, res[name])
    raw = sq.analyze(action, np.asarray(props.x)[None])["plaquette"]
    assert abs(raw.value - exact["plaquette"]) > 4 * raw.error
