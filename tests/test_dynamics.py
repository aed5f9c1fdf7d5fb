"""Physics checks of the dynamics against exact values (fixed seeds, 4σ tolerances)."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import integrate, special

import sqdiff as sq

KAPPA_EXACT = np.array([1.0625, -2.0, 16.0, -272.0])  # κ2, κ4, κ6, κ8 of ½[N(±1, 0.25²)]


def even_cumulants(x, n_blocks=50):
    x = np.asarray(x, np.float64).ravel()
    return sq.stats.jackknife(lambda d: np.asarray(sq.stats.cumulants(d, 8))[1::2], x, n_blocks)


def assert_within(est, err, exact, nsigma=4.0):
    est, err, exact = map(np.asarray, (est, err, exact))
    assert np.all(np.abs(est - exact) < nsigma * err), (est, err, exact)


@pytest.mark.parametrize(
    "schedule", [sq.VarianceExploding(25.0), sq.VariancePreserving(0.1, 20.0)], ids=["VE", "VP"]
)
def test_reverse_sde_with_exact_score_reproduces_mixture_cumulants(schedule):
    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    reverse = sq.Reverse(schedule, lambda t, x: mix.score(t, x, schedule))
    y0 = schedule.prior_sample(jr.key(0), (100_000,))
    sol = sq.solve(reverse, y0, schedule.T, 0.0, key=jr.key(1), n_steps=500)
    np.testing.assert_allclose(sol.ts, [0.0], atol=1e-6)
    est, err = even_cumulants(sol.ys[-1])
    assert_within(est, err, KAPPA_EXACT)


@pytest.mark.parametrize(
    "schedule", [sq.VarianceExploding(25.0), sq.VariancePreserving(0.1, 20.0)], ids=["VE", "VP"]
)
def test_reverse_sde_steps_on_the_given_grid(schedule):
    # Gaussian data N(0, v), exact score −x/(m²v + Σ²): each Euler–Maruyama step of the reverse
    # SDE from t to t − h is linear, x ← A x + g√h z with A = 1 + h(−a(t) − g(t)²/(m²v + Σ²)),
    # so the variance after the grid is an exact recursion. The samples' variance matches it
    # within 4σ on each grid, and the grids give distinguishable laws (the grid is used).
    v, n_steps, n = 0.05, 16, 200_000
    score = lambda t, x: -x / (v * schedule.mean_coeff(t) ** 2 + schedule.marginal_std(t) ** 2)  # noqa: E731
    rev = sq.Reverse(schedule, score)
    t_end = 0.01 * schedule.T
    grids = {
        "uniform": np.linspace(schedule.T, t_end, n_steps + 1),
        "sigma": np.asarray(schedule.noise_level_grid(schedule.T, t_end, n_steps), np.float64),
    }
    predicted = {}
    for name, ts in grids.items():
        var = schedule.prior_std**2
        for t, h in zip(ts[:-1], -np.diff(ts), strict=True):
            coeffs = (schedule.mean_coeff, schedule.marginal_std, schedule.drift_coeff)
            m, s, a = (float(f(t)) for f in coeffs)
            g = float(schedule.diffusion(t))
            var = (1 + h * (-a - g**2 / (m**2 * v + s**2))) ** 2 * var + g**2 * h
        predicted[name] = var

        def one(k, grid="uniform" if name == "uniform" else ts):
            k0, k1 = jr.split(k)
            x = schedule.prior_sample(k0, ())
            return sq.solve(rev, x, schedule.T, t_end, key=k1, n_steps=n_steps, grid=grid).ys[-1]

        x = np.asarray(jax.jit(jax.vmap(one))(jr.split(jr.key(7), n)), np.float64)
        assert abs(np.var(x) - var) < 4 * var * np.sqrt(2 / n), (name, np.var(x), var)
    pred = np.array(list(predicted.values()))
    assert abs(pred[0] - pred[1]) > 20 * pred.max() * np.sqrt(2 / n), predicted
    # data finer than the uniform grid's last steps (√v ≈ 0.22 against Σ² falling 0.09 → 0.01
    # in its last step on VE): the sigma grid's law is the closer to the exact N(0, m²v + Σ²)
    exact = v * float(schedule.mean_coeff(t_end)) ** 2 + float(schedule.marginal_std(t_end)) ** 2
    error = np.abs(pred / exact - 1)
    assert error[1] < 0.5 * error[0], error


def test_a_given_grid_is_checked():
    rev = sq.Reverse(sq.VarianceExploding(25.0), lambda t, x: -x)
    x = jnp.zeros(3)
    with pytest.raises(ValueError, match="5 step times"):
        sq.solve(rev, x, 1.0, 0.1, key=jr.key(0), n_steps=4, grid=np.linspace(1, 0.1, 4))
    with pytest.raises(ValueError, match="t0=1.0 to t1=0.1"):
        sq.solve(rev, x, 1.0, 0.1, key=jr.key(0), n_steps=4, grid=np.linspace(1, 0.2, 5))
    with pytest.raises(ValueError, match="monotone"):
        sq.solve(rev, x, 1.0, 0.1, key=jr.key(0), n_steps=4, grid=[1.0, 0.5, 0.7, 0.3, 0.1])
    with pytest.raises(ValueError, match="fixed-step grid"):
        sq.solve(rev, x, 1.0, 0.1, key=jr.key(0), adaptive=True, grid=np.linspace(1, 0.1, 5))


def test_forward_ve_conserves_higher_cumulants():
    ve = sq.VarianceExploding(25.0)
    mix = sq.GaussianMixture.symmetric()
    x0 = mix.sample(jr.key(2), (100_000,))
    t = 0.2
    sol = sq.solve(sq.Forward(ve), x0, 0.0, t, key=jr.key(3), n_steps=1000)
    est, err = even_cumulants(sol.ys[-1])
    expected = KAPPA_EXACT + np.array([float(ve.marginal_std(t)) ** 2, 0, 0, 0])
    assert_within(est, err, expected)


def test_forward_vp_scales_cumulants():
    vp = sq.VariancePreserving()
    mix = sq.GaussianMixture.symmetric()
    x0 = mix.sample(jr.key(4), (100_000,))
    t = 0.3
    sol = sq.solve(sq.Forward(vp), x0, 0.0, t, key=jr.key(5), n_steps=1000)
    est, err = even_cumulants(sol.ys[-1])
    m = float(vp.mean_coeff(t))
    expected = KAPPA_EXACT * m ** np.array([2, 4, 6, 8])
    expected[0] += 1 - m**2
    assert_within(est, err, expected)


def _quartic_moments(mu2, g):
    w = lambda x: math.exp(-(mu2 / 2 * x**2 + g / 24 * x**4))  # noqa: E731
    z = integrate.quad(w, -np.inf, np.inf)[0]
    moment = lambda k: integrate.quad(lambda x: x**k * w(x), -np.inf, np.inf)[0] / z  # noqa: E731
    return [moment(2), moment(4)]


@pytest.mark.parametrize("mu2", [1.0, -1.0], ids=["single-well", "double-well"])
def test_langevin_samples_zero_dim_quartic(mu2):
    g = 0.4
    exact = _quartic_moments(mu2, g)
    np.testing.assert_allclose(
        exact, {1.0: [0.862097, 2.068551], -1.0: [13.67303, 220.0955]}[mu2], rtol=1e-5
    )  # docs/references.md

    def action(phi):
        return jnp.sum(mu2 / 2 * phi**2 + g / 24 * phi**4)

    n = 20_000
    y0 = jnp.sqrt(abs(exact[0])) * jr.normal(jr.key(6), (n,))  # independent chains
    sol = sq.solve(sq.Langevin(action), y0, 0.0, 10.0, key=jr.key(7), n_steps=5000)
    phi = np.asarray(sol.ys[-1], np.float64)
    for k, ex in zip((2, 4), exact, strict=True):
        obs = phi**k
        assert abs(obs.mean() - ex) < 4 * obs.std() / math.sqrt(n), (k, obs.mean(), ex)


def test_langevin_with_fourier_kernel_gives_free_propagator():
    L, kappa = 8, 0.2

    def action(phi):  # free field, λ = 0 (docs/references.md)
        hop = sum(phi * jnp.roll(phi, -1, axis=a) for a in (-2, -1))
        return jnp.sum(-2 * kappa * hop + phi**2)

    kernel = sq.FourierKernel.free_field((L, L), mass2=(2 - 8 * kappa) / (2 * kappa))
    dyn = sq.Langevin(action, kernel=kernel)
    n = 2000
    sol = sq.solve(dyn, jnp.zeros((n, L, L)), 0.0, 2.0, key=jr.key(8), n_steps=1000)
    phi = np.asarray(sol.ys[-1], np.float64)
    G = np.abs(np.fft.fft2(phi)) ** 2 / L**2
    p = 2 * np.pi * np.fft.fftfreq(L)
    exact = 1 / (2 - 4 * kappa * (np.cos(p)[:, None] + np.cos(p)[None, :]))
    err = G.std(0) / math.sqrt(n)
    assert np.all(np.abs(G.mean(0) - exact) < 4 * err)


def test_fourier_kernel_is_symmetric_positive():
    k = sq.FourierKernel.free_field((6, 4), mass2=0.5)
    x, y = jr.normal(jr.key(9), (2, 6, 4))
    np.testing.assert_allclose(jnp.sum(x * k(y)), jnp.sum(k(x) * y), rtol=1e-5)
    np.testing.assert_allclose(k.sqrt(k.sqrt(x)), k(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        sq.FourierKernel(np.arange(1.0, 5.0))


def test_u1_single_plaquette_langevin():
    beta, n = 2.0, 20_000
    dyn = sq.Langevin(lambda th: -beta * jnp.sum(jnp.cos(th)), group=sq.U1())
    theta0 = sq.U1().sample_haar(jr.key(10), (n,))
    sol = sq.solve(dyn, theta0, 0.0, 8.0, key=jr.key(11), n_steps=4000)
    c = np.cos(np.asarray(sol.ys[-1], np.float64))
    assert np.all(np.abs(np.asarray(sol.ys[-1])) <= np.pi + 1e-6)
    exact = special.iv(1, beta) / special.iv(0, beta)
    assert abs(c.mean() - exact) < 4 * c.std() / math.sqrt(n)


def test_su2_single_link_langevin():
    beta, n = 3.0, 20_000
    G = sq.SU(2)
    dyn = sq.Langevin(
        lambda U: -beta / 2 * jnp.sum(jnp.real(jnp.trace(U, axis1=-2, axis2=-1))), group=G
    )
    sol = sq.solve(dyn, G.sample_haar(jr.key(12), (n,)), 0.0, 8.0, key=jr.key(13), n_steps=4000)
    U = sol.ys[-1]
    obs = 0.5 * np.real(np.trace(np.asarray(U), axis1=-2, axis2=-1)).astype(np.float64)
    # Haar measure in a0 = ½ tr U is ∝ √(1 − a0²): ⟨a0⟩ = I2(β)/I1(β)
    exact = special.iv(2, beta) / special.iv(1, beta)
    assert abs(obs.mean() - exact) < 4 * obs.std() / math.sqrt(n)
    assert np.max(np.abs(np.linalg.det(np.asarray(U)) - 1)) < 1e-5


def test_su3_single_link_langevin_matches_weyl_integral():
    beta, n = 3.0, 10_000
    G = sq.SU(3)

    def re_tr(U):
        return jnp.real(jnp.trace(U, axis1=-2, axis2=-1))

    def exact_mean():  # Weyl integration formula over eigenphases (θ1, θ2, −θ1−θ2)
        def weight(t1, t2, power):
            z = np.exp(1j * np.array([t1, t2, -t1 - t2]))
            vdm = np.prod([abs(z[i] - z[j]) ** 2 for i in range(3) for j in range(i)])
            tr = np.real(z.sum())
            return vdm * np.exp(beta / 3 * tr) * (tr / 3) ** power

        lim = (-np.pi, np.pi)
        num = integrate.dblquad(lambda a, b: weight(a, b, 1), *lim, *lim, epsabs=1e-10)[0]
        den = integrate.dblquad(lambda a, b: weight(a, b, 0), *lim, *lim, epsabs=1e-10)[0]
        return num / den

    dyn = sq.Langevin(lambda U: -beta / 3 * jnp.sum(re_tr(U)), group=G)
    sol = sq.solve(dyn, G.sample_haar(jr.key(14), (n,)), 0.0, 8.0, key=jr.key(15), n_steps=4000)
    obs = np.asarray(re_tr(sol.ys[-1]), np.float64) / 3
    assert abs(obs.mean() - exact_mean()) < 4 * obs.std() / math.sqrt(n)


def test_probability_flow_log_likelihood_of_gaussian():
    vp = sq.VariancePreserving()
    s = jnp.array([0.5, 1.0, 2.0])

    def score(t, x):
        return -x / (vp.mean_coeff(t) ** 2 * s**2 + vp.marginal_std(t) ** 2)

    x = jnp.array([0.3, -1.2, 2.5])
    exact = np.sum(-0.5 * (x / s) ** 2 - np.log(s * np.sqrt(2 * np.pi)))
    flow = sq.ProbabilityFlow(vp, score)
    # tolerance: prior N(0,1) vs exact p_T differs by O(m(T)² s²) ≈ 2e-4, plus the ODE tolerance
    np.testing.assert_allclose(sq.log_likelihood(flow, x, t_min=0.0), exact, atol=2e-3)

    hutch = sq.ProbabilityFlow(vp, score, divergence="hutchinson")
    estimates = jax.vmap(lambda k: sq.log_likelihood(hutch, x, t_min=0.0, probe_key=k))(
        jr.split(jr.key(16), 256)
    )
    est = np.asarray(estimates, np.float64)
    assert abs(est.mean() - exact) < 4 * est.std() / math.sqrt(est.size) + 2e-3


def test_probability_flow_sampling_direction_and_density():
    vp = sq.VariancePreserving()
    mix = sq.GaussianMixture.symmetric()
    flow = sq.ProbabilityFlow(vp, lambda t, x: mix.score(t, x, vp))
    z = vp.prior_sample(jr.key(17), (4,))
    sol = sq.solve(flow, z, 1.0, 1e-3, rtol=1e-6, atol=1e-6)
    x, delta = sol.ys[0][-1], sol.ys[1][-1]
    logp = vp.prior_logp(z) - delta
    np.testing.assert_allclose(logp, jnp.sum(mix.log_prob(1e-3, x, vp)), atol=5e-3)


def test_adaptive_solves():
    # OU process from 0: Var(φ_t) = 1 − e^{−2t}; ShARK on a VirtualBrownianTree
    ou = sq.SDE(lambda t, y, a: -y, lambda t, y, a: jnp.sqrt(2.0), additive_noise=True)
    n, t = 20_000, 0.7
    sol = sq.solve(ou, jnp.zeros(n), 0.0, t, key=jr.key(18), adaptive=True, rtol=1e-3, atol=1e-3)
    var = np.asarray(sol.ys[-1], np.float64) ** 2
    assert abs(var.mean() - (1 - math.exp(-2 * t))) < 4 * var.std() / math.sqrt(n)
    assert sol.stats["num_accepted_steps"] > 1
    # GeometricHeun keeps SU(3) in the group under adaptive steps
    G = sq.SU(3)
    dyn = sq.Langevin(lambda U: -jnp.sum(jnp.real(jnp.trace(U, axis1=-2, axis2=-1))), group=G)
    sol = sq.solve(dyn, G.sample_haar(jr.key(19), (8,)), 0.0, 1.0, key=jr.key(20), adaptive=True)
    U = np.asarray(sol.ys[-1])
    assert np.max(np.abs(np.linalg.det(U) - 1)) < 1e-5


def test_batching_with_vmap_and_jit_and_saveat():
    action = lambda phi: jnp.sum(0.5 * phi**2)  # noqa: E731
    dyn = sq.Langevin(action)

    @jax.jit
    def run(key, y0):
        return sq.solve(dyn, y0, 0.0, 1.0, key=key, n_steps=100, ts=jnp.array([0.5, 1.0])).ys

    keys = jr.split(jr.key(21), 7)
    ys = jax.vmap(run)(keys, jnp.zeros((7, 4, 4)))
    assert ys.shape == (7, 2, 4, 4)
    assert not np.allclose(ys[0], ys[1])
    one = run(keys[3], jnp.zeros((4, 4)))
    np.testing.assert_allclose(ys[3], one, rtol=1e-6)


def test_custom_sde_in_a_few_lines():
    # geometric Brownian motion dX = μX dt + s X dW: E[X_t] = X_0 e^{μt}
    gbm = sq.SDE(lambda t, x, a: 0.5 * x, lambda t, x, a: 0.2 * x)
    n = 20_000
    sol = sq.solve(gbm, jnp.ones(n), 0.0, 1.0, key=jr.key(22), n_steps=400)
    x = np.asarray(sol.ys[-1], np.float64)
    assert abs(x.mean() - math.exp(0.5)) < 4 * x.std() / math.sqrt(n) + 2e-3


def test_bad_input_errors():
    ve = sq.VarianceExploding(5.0)
    rev = sq.Reverse(ve, lambda t, x: -x)
    y = jnp.zeros(3)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        sq.solve(rev, y, 1.5, 0.0, key=jr.key(0), n_steps=10)
    with pytest.raises(ValueError, match="t0 > t1"):
        sq.solve(rev, y, 0.0, 1.0, key=jr.key(0), n_steps=10)
    with pytest.raises(ValueError, match="key"):
        sq.solve(rev, y, 1.0, 0.0, n_steps=10)
    with pytest.raises(ValueError, match="non-finite"):
        sq.solve(rev, jnp.array([1.0, jnp.inf]), 1.0, 0.0, key=jr.key(0), n_steps=10)
    with pytest.raises(ValueError, match="must end in"):
        sq.solve(
            sq.Langevin(lambda U: 0.0, group=sq.SU(3)),
            jnp.zeros((4, 2, 2), jnp.complex64),
            0.0,
            1.0,
            key=jr.key(0),
            n_steps=10,
        )
    with pytest.raises(ValueError, match="n_steps"):
        sq.solve(sq.Langevin(lambda p: jnp.sum(p**2)), y, 0.0, 1.0, key=jr.key(0), n_steps=0)
    with pytest.raises(ValueError, match="Euclidean"):
        sq.Forward(sq.VariancePreserving(), group=sq.SU(2))
    with pytest.raises(ValueError, match="Euclidean"):
        sq.Langevin(lambda p: 0.0, group=sq.U1(), kernel=sq.FourierKernel.free_field((4,), 1.0))
    with pytest.raises(ValueError, match="action"):
        sq.Langevin()
    with pytest.raises(ValueError, match="positive"):
        sq.Langevin(lambda p: 0.0, kernel=-1.0)


def test_wrapped_normal_prior_on_the_circle():
    from scipy import stats

    from sqdiff.dynamics import wrapped_normal_logp

    for std in (1.0, 2.5):
        dens = lambda z, s=std: float(jnp.exp(wrapped_normal_logp(jnp.array([z]), s)))  # noqa: E731
        assert abs(integrate.quad(dens, -np.pi, np.pi)[0] - 1) < 1e-6
        # against the direct sum over images
        z = 0.7
        direct = sum(stats.norm.pdf(z + 2 * np.pi * k, scale=std) for k in range(-20, 21))
        np.testing.assert_allclose(dens(z), direct, rtol=1e-5)
    with pytest.raises(ValueError, match="prior std"):
        wrapped_normal_logp(jnp.zeros(3), 0.5)


def test_probability_flow_groups():
    score = lambda t, x: -x  # noqa: E731
    flow = sq.ProbabilityFlow(sq.VarianceExploding(10.0), score, group=sq.U1())
    np.testing.assert_allclose(flow.endpoint(jnp.array([4.0])), [4.0 - 2 * np.pi], rtol=1e-6)
    with pytest.raises(ValueError, match="VarianceExploding"):
        sq.ProbabilityFlow(sq.VariancePreserving(), score, group=sq.U1())
    with pytest.raises(ValueError, match="hutchinson"):
        sq.ProbabilityFlow(sq.VarianceExploding(10.0), score, "hutchinson", group=sq.SU(2))
