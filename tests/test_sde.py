import math

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import integrate

import sqdiff as sq


def _numeric_marginal(a, g, t):
    """m(t) and Σ(t) by quadrature of the moment equations (independent of sqdiff)."""
    m = lambda s: math.exp(integrate.quad(a, 0, s)[0])  # noqa: E731
    var = integrate.quad(lambda s: g(s) ** 2 / m(s) ** 2, 0, t)[0] * m(t) ** 2
    return m(t), math.sqrt(var)


SCHEDULES = [
    sq.VarianceExploding(sigma=25.0),
    sq.VarianceExploding(sigma=3.0, T=2.0),
    sq.VariancePreserving(beta_min=0.1, beta_max=20.0),
    sq.SubVariancePreserving(beta_min=0.1, beta_max=20.0),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("frac", [0.05, 0.3, 1.0])
def test_marginals_match_quadrature(schedule, frac):
    t = frac * schedule.T
    a = lambda s: float(schedule.drift_coeff(s))  # noqa: E731
    g = lambda s: float(schedule.diffusion(s))  # noqa: E731
    m, std = _numeric_marginal(a, g, t)
    np.testing.assert_allclose(schedule.mean_coeff(t), m, rtol=1e-5)
    np.testing.assert_allclose(schedule.marginal_std(t), std, rtol=1e-4)


def test_ve_closed_form():
    ve = sq.VarianceExploding(sigma=25.0)
    np.testing.assert_allclose(
        ve.marginal_std(1.0) ** 2, (25.0**2 - 1) / (2 * math.log(25.0)), rtol=1e-6
    )
    np.testing.assert_allclose(ve.prior_std, float(ve.marginal_std(1.0)), rtol=1e-6)


def test_custom_schedule_reproduces_vp():
    vp = sq.VariancePreserving()
    custom = sq.CustomSchedule(vp.drift_coeff, vp.diffusion)
    for t in [0.01, 0.4, 1.0]:
        np.testing.assert_allclose(custom.mean_coeff(t), vp.mean_coeff(t), rtol=1e-4)
        np.testing.assert_allclose(custom.marginal_std(t), vp.marginal_std(t), rtol=1e-4)
    ou = sq.CustomSchedule(lambda t: -1.0, lambda t: jnp.sqrt(2.0), T=3.0)
    np.testing.assert_allclose(ou.marginal_std(3.0), math.sqrt(1 - math.exp(-6)), rtol=1e-5)
    np.testing.assert_allclose(ou.prior_std, math.sqrt(1 - math.exp(-6)), rtol=1e-5)


def test_sample_marginal_and_prior():
    vp = sq.VariancePreserving()
    x0 = jnp.full((200_000,), 2.0)
    xt, eta = vp.sample_marginal(jr.key(0), 0.5, x0)
    m, s = vp.mean_coeff(0.5), vp.marginal_std(0.5)
    n = x0.size
    assert abs(xt.mean() - 2 * m) < 4 * s / math.sqrt(n)
    assert abs(xt.std() / s - 1) < 4 / math.sqrt(2 * n)
    np.testing.assert_allclose(xt, m * x0 + s * eta, rtol=1e-6)
    ve = sq.VarianceExploding(10.0)
    x = jnp.array([0.3, -1.0])
    expected = sum(
        -0.5 * v**2 / ve.prior_std**2 - math.log(ve.prior_std * math.sqrt(2 * math.pi))
        for v in [0.3, -1.0]
    )
    np.testing.assert_allclose(ve.prior_logp(x), expected, rtol=1e-6)


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="sigma"):
        sq.VarianceExploding(sigma=1.0)
    with pytest.raises(ValueError, match="sigma"):
        sq.VarianceExploding(sigma=-2.0)
    with pytest.raises(ValueError, match="T"):
        sq.VariancePreserving(T=0.0)
    with pytest.raises(ValueError, match="beta_min"):
        sq.VariancePreserving(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        sq.VarianceExploding(5.0).marginal(1.5, jnp.ones(3))
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        sq.VariancePreserving().marginal(-0.1, jnp.ones(3))
    with pytest.raises(TypeError, match="callables"):
        sq.CustomSchedule(1.0, 2.0)


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # quad near t = 0
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_noise_level_grid_spaces_log_sigma_equally(schedule):
    # ς(t_i) = ς(t0) (ς(t1)/ς(t0))^{i/n} for the noise-to-signal ratio ς = Σ/m, checked
    # against the quadrature m, Σ (independent of sqdiff's closed forms) at every time of the
    # grid, in both directions
    T, n = schedule.T, 12
    a, g = schedule.drift_coeff, schedule.diffusion
    for t0, t1 in ((T, 1e-3 * T), (0.01 * T, 0.7 * T)):
        ts = np.asarray(schedule.noise_level_grid(t0, t1, n), np.float64)
        assert ts.shape == (n + 1,) and ts[0] == np.float32(t0) and ts[-1] == np.float32(t1)
        assert np.all(np.sign(t1 - t0) * np.diff(ts) > 0)
        m, sigma = np.array(
            [_numeric_marginal(lambda s: float(a(s)), lambda s: float(g(s)), t) for t in ts]
        ).T
        ratio = sigma / m
        want = ratio[0] * (ratio[-1] / ratio[0]) ** (np.arange(n + 1) / n)
        np.testing.assert_allclose(ratio, want, rtol=2e-4)


def test_noise_level_grid_bad_input():
    ve = sq.VarianceExploding(25.0)
    with pytest.raises(ValueError, match="t1.*> 0"):
        ve.noise_level_grid(1.0, 0.0, 10)
    with pytest.raises(ValueError, match=r"t0.*\[0, T\]"):
        ve.noise_level_grid(1.5, 0.1, 10)
    with pytest.raises(ValueError, match="differ"):
        ve.noise_level_grid(0.5, 0.5, 10)
    with pytest.raises(ValueError, match="n_steps"):
        ve.noise_level_grid(1.0, 0.1, 0)
