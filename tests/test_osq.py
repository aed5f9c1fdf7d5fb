"""Optimal stochastic quantization: exact Girsanov bookkeeping, reference marginals, importance
weights, the Fokker–Planck / Fisher-information curve, the zero-residual optimum, input checks
and trained 0-dim samplers against quadrature."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import integrate

import sqdiff as sq
from sqdiff.osq import OptimalSQ, fisher_information, fokker_planck_1d, log_z_estimate

SQRT2 = float(np.sqrt(2.0))


def quadrature(action, fn=lambda p: 1.0, lim=8.0):
    f = lambda p: fn(p) * np.exp(-float(action(jnp.asarray(p))))  # noqa: E731
    return integrate.quad(f, -lim, lim, limit=400, points=[0.0])[0]


def ZERO(t, phi):
    return jnp.zeros_like(phi)


def random_mlp(key=0):
    return sq.nn.ScoreMLP(None, width=16, depth=2, key=jr.key(key))


def test_girsanov_terms_are_the_exact_discrete_log_likelihood_ratio():
    action = sq.DoubleWell0D()
    net = random_mlp()
    for ref in ("sq", "brownian", "ou"):
        osq = OptimalSQ(action, net, g=0.8, T=0.5, reference=ref, prior_std=0.7)
        n = 25
        ts = jnp.linspace(0.0, osq.T, n + 1)
        paths = osq.simulate(jr.key(1), n, ts=ts)
        phi, h, g2 = np.asarray(paths.phi, np.float64), osq.T / n, osq.g**2
        log_ratio = 0.0
        for k in range(n):
            u = float(osq.drift_and_control(ts[k], jnp.asarray(phi[k], jnp.float32))[0])
            f = float(osq.reference_drift(jnp.asarray(phi[k], jnp.float32)))
            d = phi[k + 1] - phi[k]
            log_ratio += (-((d - h * u) ** 2) + (d - h * f) ** 2) / (2 * g2 * h)
        total = float(paths.running_cost[-1] + paths.martingale[-1])
        assert abs(total - log_ratio) < 1e-3 * (1 + abs(log_ratio)), (ref, total, log_ratio)
        assert float(paths.running_cost[-1]) > 0


class _CancelToOU(eqx.Module):
    """v = f_OU + ∇S: the controlled process *is* the OU reference (zero running cost)."""

    osq_action: object
    a: float

    def __call__(self, t, phi):
        return -self.a * phi + self.osq_action.force(phi)


def test_reference_marginal_and_weights_are_exact_for_the_discrete_chain():
    # controlled drift = OU reference drift: C = M = 0, φ_T ~ q_T^ref of the discrete chain,
    # and the weights e^{−S}/q_T^ref are plain importance sampling of the quartic target
    action = sq.Quartic0D(1.0, 0.4)
    g, s_ou, n = SQRT2, 1.5, 10
    a = g**2 / (2 * s_ou**2)
    osq = OptimalSQ(
        action, _CancelToOU(action, a), g=g, T=1.0, reference="ou", prior_std=0.3, ou_std=s_ou
    )
    paths = jax.vmap(lambda k: osq.simulate(k, n))(jr.split(jr.key(2), 40_000))
    assert float(jnp.max(jnp.abs(paths.running_cost))) < 1e-5
    x = np.asarray(paths.phi, np.float64)
    h, r = 1.0 / n, (1 - a / n) ** 2
    var = r**n * 0.3**2 + g**2 * h * (1 - r**n) / (1 - r)
    err = var * np.sqrt(2 / x.size)
    assert abs(x.var() - var) < 4 * err
    lq = jax.vmap(lambda p: osq.reference_log_marginal(p, n))(paths.phi)
    np.testing.assert_allclose(lq, -0.5 * x**2 / var - 0.5 * np.log(2 * np.pi * var), rtol=1e-4)
    lz, lz_err = log_z_estimate(osq.log_weights(paths, n))
    assert abs(lz - 0.878008) < 4 * lz_err  # docs/references.md, μ² = 1, g = 0.4
    r = sq.stats.reweighted(x**2, osq.log_weights(paths, n))
    assert abs(r.value - 0.862097) < 4 * r.error


def test_sq_reference_marginal_on_a_grid_is_the_discrete_ou_law():
    # S = φ²: the discrete SQ chain is φ_{k+1} = (1 − 2h)φ_k + √(2h) ξ, Gaussian at every step
    osq = OptimalSQ(sq.Quartic0D(2.0, 0.0), ZERO, reference="sq", prior_mean=0.3, prior_std=1.5)
    for n in (1, 7, 100):
        h, m, v = 1.0 / n, 0.3, 1.5**2
        for _ in range(n):
            m, v = (1 - 2 * h) * m, (1 - 2 * h) ** 2 * v + 2 * h
        xs = jnp.linspace(-4.0, 4.0, 9)
        lq = jax.vmap(lambda p, n=n: osq.reference_log_marginal(p, n))(xs)
        exact = -0.5 * (xs - m) ** 2 / v - 0.5 * np.log(2 * np.pi * v)
        np.testing.assert_allclose(lq, exact, atol=1e-5)


def test_sq_reference_tables_follow_the_action_not_its_name():
    # two plain callables have the same name and (empty) params; each gets its own table,
    # equal to the discrete OU law for S = a φ², whichever was built first
    n = 20
    for first, second in ((1.0, 3.0), (3.0, 1.0)):
        for a in (first, second):
            S = sq.theories.as_action(lambda p, a=a: a * jnp.sum(p**2), example=jnp.zeros(()))
            osq = OptimalSQ(S, ZERO, reference="sq")
            h, m, v = 1.0 / n, 0.0, 1.0
            for _ in range(n):
                m, v = (1 - 2 * a * h) * m, (1 - 2 * a * h) ** 2 * v + 2 * h
            xs = jnp.linspace(-2.0, 2.0, 5)
            lq = jax.vmap(lambda p, osq=osq: osq.reference_log_marginal(p, n))(xs)
            np.testing.assert_allclose(
                lq, -0.5 * xs**2 / v - 0.5 * np.log(2 * np.pi * v), atol=1e-5
            )


def test_sq_reference_from_a_gaussian_gives_exact_weights_for_cos5phi():
    # v = 0: C = M = 0 and φ_T ~ q_T^ref, so the weights e^{−S}/q_T^ref (from the grid table)
    # are plain importance sampling of S = φ²/2 − cos 5φ, whose outer modes Langevin dynamics
    # does not fill in T = 1: log Z and ⟨φ²⟩ against quadrature, 4σ
    action = sq.Cosine0D(5.0)
    osq = OptimalSQ(action, ZERO, reference="sq", terminal="corrected", prior_std=1.0)
    assert osq.has_log_z
    n = 100
    paths = jax.vmap(lambda k: osq.simulate(k, n))(jr.split(jr.key(4), 20_000))
    lw = osq.log_weights(paths, n)
    f = lambda p: np.exp(-float(action(jnp.asarray(p))))  # noqa: E731
    Z = integrate.quad(f, -10, 10, limit=400)[0]
    m2 = integrate.quad(lambda p: p * p * f(p), -10, 10, limit=400)[0] / Z
    lz, lz_err = log_z_estimate(lw)
    assert abs(lz - np.log(Z)) < 4 * lz_err, (lz, lz_err, np.log(Z))
    r = sq.stats.reweighted(np.asarray(paths.phi, np.float64) ** 2, lw)
    assert abs(r.value - m2) < 4 * r.error, (r, m2)
    assert r.ess > 2000


def test_fokker_planck_grid_matches_the_ou_solution_and_its_fisher_information():
    # S = φ²/2, g² = 2, v = 0: q_t = N(0, 1 + (s² − 1) e^{−2t}), Fisher information 1/var
    action = sq.Quartic0D(1.0, 0.0)
    zero = lambda t, p: jnp.zeros_like(p)  # noqa: E731
    osq = OptimalSQ(action, zero, g=SQRT2, T=1.0, reference="sq", prior_std=2.0)
    ts = jnp.array([0.0, 0.25, 0.5, 1.0])
    var = 1 + 3 * np.exp(-2 * np.asarray(ts))
    x, q = fokker_planck_1d(osq, ts, x_max=10.0, n_grid=801)
    dx = x[1] - x[0]
    np.testing.assert_allclose((q * x**2).sum(1) * dx, var, rtol=2e-3)
    np.testing.assert_allclose(
        fisher_information(osq, ts, x_max=10.0, n_grid=801), 1 / var, rtol=5e-3
    )


def target_samples(action, n, key):
    """Exact draws from e^{−S} (0-dim) by inverse CDF on a fine grid."""
    grid = np.linspace(-4, 4, 40_001)
    p = np.exp(-np.asarray(jax.vmap(action)(jnp.asarray(grid))))
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    return jnp.asarray(np.interp(np.asarray(jr.uniform(key, (n,))), cdf, grid), jnp.float32)


def test_corrected_cost_from_the_target_learns_a_zero_residual(tmp_path):
    # SQ reference (g² = 2) started at the target stays at the target: the corrected terminal
    # cost is constant and the optimal residual is zero; training from a random network drives
    # it there
    action = sq.DoubleWell0D()
    spec = {
        "model": "mlp",
        "kwargs": {"width": 16, "depth": 2},
        "schedule": None,
        "config_shape": [],
        "group": "euclidean",
        "theory": {"name": "double_well", "params": {}},
        "objective": {
            "name": "osq",
            "T": 0.5,
            "g": SQRT2,
            "steps": 20,
            "reference": "sq",
            "terminal": "corrected",
            "prior": "target",
        },
    }
    data = target_samples(action, 4096, jr.key(3))
    model0 = sq.train.build_model(spec)
    cfg = sq.TrainConfig(steps=400, batch=128, lr=3e-3, warmup=20, steps_per_call=100, ema=0.9)
    res = sq.train.train(str(tmp_path / "z"), data, spec, cfg, progress=False)
    ts = jnp.linspace(0, 0.5, 11)

    def rms(m):
        return float(jnp.sqrt(jnp.mean(jax.vmap(lambda t: m(t, data[:512]) ** 2)(ts))))

    force_rms = float(jnp.sqrt(jnp.mean(action.force(data) ** 2)))
    assert rms(res.model) < 0.1 * rms(model0), (rms(model0), rms(res.model), force_rms)
    assert rms(res.model) < 0.01 * force_rms


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"reference": "x"}, "reference"),
        ({"terminal": "x"}, "terminal"),
        ({"prior": "x"}, "prior"),
        ({"g": 0.0}, "`g`"),
        ({"T": -1.0}, "`T`"),
        ({"prior_std": -1.0}, "prior_std"),
        ({"prior_std": 0.0}, "point prior"),
    ],
)
def test_osq_bad_input(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        OptimalSQ(sq.DoubleWell0D(), random_mlp(), **kwargs)
    with pytest.raises(ValueError, match="reference marginal"):  # SQ from π on a lattice
        OptimalSQ(sq.Phi4(4, 0.2, 0.02), ZERO, terminal="corrected")
    with pytest.raises(ValueError, match="scalar"):
        OptimalSQ(sq.U1Wilson2D(4, 1.0), random_mlp())


def test_training_data_must_match_the_prior(tmp_path):
    spec = {
        "model": "mlp",
        "kwargs": {"width": 8, "depth": 1},
        "schedule": None,
        "config_shape": [],
        "theory": {"name": "double_well", "params": {}},
        "objective": {"name": "osq", "steps": 5, "reference": "brownian", "prior_std": 0.0},
    }
    cfg = sq.TrainConfig(steps=1, batch=4)
    with pytest.raises(ValueError, match="takes no `data`"):
        sq.train.train(str(tmp_path / "a"), jnp.zeros(8), spec, cfg, progress=False)
    spec["objective"]["prior"] = "target"
    with pytest.raises(ValueError, match="needs `data`"):
        sq.train.train(str(tmp_path / "b"), None, spec, cfg, progress=False)


def test_weights_need_a_known_reference_marginal():
    osq = OptimalSQ(sq.Phi4(4, 0.2, 0.02), ZERO, reference="sq")
    paths = jax.vmap(lambda k: osq.simulate(k, 5))(jr.split(jr.key(0), 4))
    with pytest.raises(ValueError, match="reference marginal"):
        osq.log_weights(paths, 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "action, reference, prior_std, steps, iters, loss",
    [
        # (φ² − 1)², Brownian reference from 0, 100 steps, KL loss (~5 min on 2 cores)
        (sq.DoubleWell0D(), "brownian", 0.0, 100, 4000, "kl"),
        # φ²/2 − cos 5φ, SQ reference from N(0, 1) (q_T^ref by Chapman–Kolmogorov), 400 steps
        # (EM's O(h) error in the weights is Var(log w) ≈ 0.008 at 100 steps), log-variance
        # loss (~6 min)
        (sq.Cosine0D(5.0), "sq", 1.0, 400, 1000, "log_variance"),
    ],
    ids=["double_well", "cos5phi"],
)
def test_trained_zero_dim_sampler_matches_quadrature(
    tmp_path, action, reference, prior_std, steps, iters, loss
):
    # g = √2, T = 1; 10⁴ endpoints: KS against quadrature, reweighted ⟨φ²⟩ and log Z within 4σ
    from scipy import stats

    spec = {
        "model": "mlp",
        "kwargs": {"width": 64, "depth": 3},
        "schedule": None,
        "zero_init": True,
        "config_shape": [],
        "group": "euclidean",
        "theory": {"name": action.name, "params": action.params},
        "objective": {
            "name": "osq",
            "T": 1.0,
            "g": SQRT2,
            "steps": steps,
            "reference": reference,
            "terminal": "corrected",
            "loss": loss,
            "prior": "gaussian",
            "prior_mean": 0.0,
            "prior_std": prior_std,
        },
    }
    cfg = sq.TrainConfig(steps=iters, batch=256, lr=3e-3, warmup=50, steps_per_call=250, ema=0.99)
    res = sq.train.train(str(tmp_path / "m"), None, spec, cfg, progress=False)
    osq = sq.train.build_osq(spec, res.model)
    paths = jax.jit(jax.vmap(lambda k: osq.simulate(k, steps)))(jr.split(jr.key(5), 10_000))
    x = np.asarray(paths.phi, np.float64)
    z = quadrature(action)
    grid = np.linspace(-5, 5, 40_001)
    cdf = np.cumsum(np.exp(-np.asarray(jax.vmap(action)(jnp.asarray(grid)), np.float64)))
    cdf /= cdf[-1]
    assert stats.kstest(x, lambda v: np.interp(v, grid, cdf)).pvalue > 0.01
    lw = osq.log_weights(paths, steps)
    r = sq.stats.reweighted(x**2, lw)
    assert abs(r.value - quadrature(action, lambda p: p * p) / z) < 4 * r.error
    lz, lz_err = log_z_estimate(lw)
    assert abs(lz - np.log(z)) < 4 * lz_err
    assert r.ess > 0.5 * x.size


class _Linear(eqx.Module):
    a: jax.Array

    def __call__(self, t, phi):
        return self.a * phi


def test_log_variance_loss_is_the_log_weight_variance_and_vanishes_at_the_optimum():
    # OU reference f = −φ (g² = 2), n Euler steps of h: the discrete chain's stationary law is
    # N(0, s²), s² = 1/(1 − h/2). Target S = φ²/(2s²), π = N(0, s²): the control v = a*φ with
    # a* = 1/s² − 1 = −h/2 makes u = f, so C = M = 0 and Φ = S + log q_T^ref ≡ −log Z
    n = 20
    h = 1.0 / n
    s2 = 1 / (1 - h / 2)
    a_star = -h / 2
    action = sq.Quartic0D(1 / s2, 0.0)

    def make(a, loss="log_variance"):
        return OptimalSQ(
            action,
            _Linear(jnp.asarray(a)),
            reference="ou",
            terminal="corrected",
            prior_std=float(np.sqrt(s2)),
            ou_std=1.0,
            loss=loss,
        )

    key = jr.key(3)
    osq = make(0.4)
    paths = jax.vmap(lambda k: osq.simulate(k, n))(jr.split(key, 512))
    assert np.isclose(float(osq.loss(key, 512, n)), float(jnp.var(osq.log_weights(paths, n))))
    detached = jax.vmap(lambda k: osq.simulate(k, n, detach=True))(jr.split(key, 512))
    np.testing.assert_allclose(detached.phi, paths.phi, rtol=1e-6)
    assert (
        float(
            jnp.var(
                osq.log_weights(
                    jax.vmap(lambda k: make(a_star).simulate(k, n))(jr.split(key, 512)), n
                )
            )
        )
        < 1e-8
    )

    def grad(a):
        return float(jax.grad(lambda m: m.loss(key, 512, n))(make(a)).residual.a)

    assert abs(grad(a_star)) < 1e-4  # zero variance at the optimum, and zero gradient
    assert grad(0.4) > 0.1 and grad(-0.4) < -0.1
    a = 0.4  # gradient descent on the log-variance loss returns to the optimum
    for _ in range(100):
        a -= 0.2 * grad(a)
    assert abs(a - a_star) < 2e-3, a


@pytest.mark.slow
def test_broken_phase_phi4_reweighted_abs_magnetisation_matches_hmc(tmp_path):
    # κ = 0.5, λ = 0.022, L = 8: one ordered mode (⟨|M|⟩ is Z2-symmetric), π and OU reference
    # N(φ0, 0.35²) with φ0 = √((4κ − 1 + 2λ)/(2λ)), U-Net residual, log-variance loss
    # (~15 min on 2 cores). Reweighted ⟨|M|⟩ against Fourier-accelerated HMC, 4σ combined.
    L, kappa, lam = 8, 0.5, 0.022
    action = sq.Phi4(L, kappa, lam)
    hmc = sq.HMC(action, 0.05, 20, kernel=sq.FourierKernel.free_field((L, L), 0.05))
    samples, _ = sq.run_chains(hmc, jr.key(0), 4.0 * jnp.ones((8, L, L)), 256, n_therm=500)
    ref = sq.analyze(action, samples)["<|M|>"]
    phi0 = float(np.sqrt((4 * kappa - 1 + 2 * lam) / (2 * lam)))
    spec = {
        "model": "unet",
        "kwargs": {"d": 2, "channels": 16, "levels": 2},
        "schedule": None,
        "zero_init": True,
        "config_shape": [L, L],
        "group": "euclidean",
        "theory": {"name": "phi4", "params": action.params},
        "objective": {
            "name": "osq",
            "steps": 50,
            "reference": "ou",
            "terminal": "corrected",
            "loss": "log_variance",
            "prior_mean": phi0,
            "prior_std": 0.35,
            "ou_std": 0.35,
        },
    }
    cfg = sq.TrainConfig(steps=300, batch=32, lr=1e-3, warmup=50, steps_per_call=50, ema=0.99)
    res = sq.train.train(str(tmp_path / "m"), None, spec, cfg, progress=False)
    osq = sq.train.build_osq(spec, res.model)
    sim = jax.jit(jax.vmap(lambda k: osq.simulate(k, 50)))
    parts = [sim(k) for k in jr.split(jr.key(1), 4096).reshape(-1, 256)]
    paths = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
    absm = np.abs(np.asarray(paths.phi, np.float64).mean((1, 2)))
    r = sq.stats.reweighted(absm, osq.log_weights(paths, 50))
    assert r.ess > 100, r  # the untrained chain has ESS ≈ 9 of 2048
    assert abs(r.value - ref.value) < 4 * np.hypot(r.error, ref.error), (r, ref)
