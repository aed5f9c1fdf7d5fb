"""Training objectives against exactly known laws: target score matching (`objectives/tsm.py`)
has the DSM minimiser (an unbiased target), no variance at all for a Gaussian at the
crossover, and learns the small-noise score of the free field far better than DSM."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.objectives import crossover_scale, dsm_loss, tsm_loss
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, train

SCHEDULES = {"VE": sq.VarianceExploding(10.0), "VP": sq.VariancePreserving()}


@pytest.mark.parametrize("name", ["VE", "VP"])
def test_tsm_target_is_exact_for_a_gaussian_at_the_crossover(name):
    # p0 = N(0, v) per site: s_t(x) = −x/(m² v + Σ²); with ς² = v the mixed target has no
    # variance, so the loss of the exact score vanishes sample by sample (DSM's does not)
    sch, v = SCHEDULES[name], 0.3
    x0 = np.sqrt(v) * jr.normal(jr.key(0), (512, 4, 4))

    def exact(t, x):
        return -x / (sch.mean_coeff(t) ** 2 * v + sch.marginal_std(t) ** 2)

    force = lambda x: x / v  # noqa: E731
    at = tsm_loss(jr.key(1), exact, sch, force, x0, crossover=np.sqrt(v), importance=True)
    off = tsm_loss(jr.key(1), exact, sch, force, x0, crossover=3 * np.sqrt(v), importance=True)
    dsm = dsm_loss(jr.key(1), exact, sch, x0, importance=True)
    assert float(at) < 1e-10, float(at)
    assert float(off) > 1e-3 and float(dsm) > 1e-2


@pytest.mark.parametrize("name", ["VE", "VP"])
def test_tsm_has_the_dsm_minimiser_on_a_mixture(name):
    # the exact noised score of a two-Gaussian mixture is the minimiser of every unbiased
    # objective: the loss's slope along a perturbation h vanishes there (within 4σ over 40
    # independent batches); a wrong target score (∇S scaled by 1.2) gives a nonzero slope
    sch = SCHEDULES[name]
    mix = sq.GaussianMixture.symmetric(1.0, 0.3)
    exact = lambda t, x: mix.score(t, x, sch)  # noqa: E731
    force = lambda x: -mix.score(0.0, x)  # noqa: E731
    h = lambda t, x: jnp.tanh(x) / sch.marginal_std(t)  # noqa: E731
    delta = 0.05

    @jax.jit
    def slope(key, scale):
        x0 = mix.sample(jr.fold_in(key, 0), (4096,))
        target = lambda x: scale * force(x)  # noqa: E731
        losses = [
            tsm_loss(key, lambda t, x, c=c: exact(t, x) + c * h(t, x), sch, target, x0, 0.5)
            for c in (delta, -delta)
        ]
        return (losses[0] - losses[1]) / (4 * delta)

    for scale, unbiased in [(1.0, True), (1.2, False)]:
        b = np.array([slope(k, scale) for k in jr.split(jr.key(2), 40)])
        pull = b.mean() / (b.std(ddof=1) / np.sqrt(b.size))
        assert (abs(pull) < 4) if unbiased else (abs(pull) > 10), (scale, pull)


def free_field(L, kappa):
    """Exact samples and the exact noised score of the 2D free field (φ⁴ at λ = 0):
    `S = ½ φᵀKφ`, `K(p) = 2 − 4κ Σ_μ cos p_μ`, `s_t(y) = −F⁻¹[ỹ(p)/(m²/K(p) + Σ²)]`."""
    p = 2 * np.pi * np.fft.fftfreq(L)
    K = 2 - 4 * kappa * (np.cos(p)[:, None] + np.cos(p)[None, :])

    def sample(key, n):
        z = np.asarray(jr.normal(key, (n, L, L)))
        return np.real(np.fft.ifft2(np.fft.fft2(z) / np.sqrt(K))).astype(np.float32)

    def score(sch, t, y):
        m, s = float(sch.mean_coeff(t)), float(sch.marginal_std(t))
        return -np.real(np.fft.ifft2(np.fft.fft2(y) / (m**2 / K + s**2)))

    return sample, score


def test_tsm_learns_the_small_noise_score_of_the_free_field_better_than_dsm(tmp_path):
    # the same local network, steps and batches; the error of the learned score against the
    # exact free-field score at Σ ≈ 0.05 (near MAALA's Σ(t_mh)) and at Σ ≈ 0.6
    L, kappa = 8, 0.2
    sample, score = free_field(L, kappa)
    data = sample(jr.key(0), 1024)
    action = sq.Phi4(L, kappa, 0.0)
    crossover = crossover_scale(action, data)
    # the Gaussian's ς: one over the root mean curvature, (mean_p K(p))^{-1/2} = 1/√2
    assert crossover == pytest.approx(1 / np.sqrt(2), rel=0.05)
    errors = {}
    for name, settings in [("dsm", {}), ("tsm", {"crossover": crossover})]:
        spec = ModelSpec(
            network=NetworkSpec("local", {"d": 2, "channels": 8, "depth": 2}),
            schedule=ScheduleSpec("ve", {"sigma": 10.0}),
            objective=ObjectiveSpec(name, {"importance": True, **settings}),
            config_shape=(L, L),
            theory=TheorySpec.of(action),
        )
        cfg = TrainConfig(steps=400, batch=32, lr=3e-3, steps_per_call=400)
        net = train(str(tmp_path / name), data, spec, cfg, progress=False).model
        sch = spec.build_schedule()
        y0 = sample(jr.key(9), 64)
        errors[name] = []
        for t in (0.0025, 0.2):
            y = y0 + float(sch.marginal_std(t)) * np.asarray(jr.normal(jr.key(3), y0.shape))
            exact = score(sch, t, y)
            got = np.asarray(jax.vmap(net, in_axes=(None, 0))(t, jnp.asarray(y, jnp.float32)))
            errors[name].append(float(np.sqrt(np.mean((got - exact) ** 2) / np.mean(exact**2))))
    (dsm_small, dsm_mid), (tsm_small, tsm_mid) = errors["dsm"], errors["tsm"]
    # measured: Σ = 0.05: 0.36 against 4.3; Σ = 0.6: 0.067 against 0.081
    assert tsm_small < 0.5 and tsm_small < dsm_small / 4, errors
    assert tsm_mid < 0.1 and tsm_mid < 1.2 * dsm_mid, errors


def test_tsm_bad_input():
    spec = ModelSpec(
        network=NetworkSpec("local", {"d": 2}),
        schedule=ScheduleSpec("ve", {"sigma": 10.0}),
        objective=ObjectiveSpec("tsm", {"crossover": -1.0}),
        config_shape=(4, 4),
        theory=TheorySpec.of(sq.Phi4(4, 0.2, 0.1)),
    )
    with pytest.raises(ValueError, match="crossover"):
        spec.build_objective()
    u1 = sq.U1Wilson2D(4, 1.0)
    with pytest.raises(ValueError, match="flat fields"):
        sq.objectives.TargetScoreMatching(SCHEDULES["VE"], u1, 1.0, 1e-3, False)
    with pytest.raises(ValueError, match="E‖∇S‖²"):
        crossover_scale(sq.Phi4(4, 0.2, 0.1), np.full((2, 4, 4), np.nan))
