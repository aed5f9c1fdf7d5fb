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
    u1 = sq.U1Wilson2D(4, 1.0)  # links: noised on the group (VE); no wrapped target on U(1)
    with pytest.raises(ValueError, match="variance-exploding"):
        sq.objectives.TargetScoreMatching(SCHEDULES["VP"], u1, 1.0, 1e-3, False)
    with pytest.raises(ValueError, match="'wrapped' for SU"):
        sq.objectives.TargetScoreMatching(SCHEDULES["VE"], u1, 1.0, 1e-3, False, "wrapped")
    su2 = sq.SUNWilson(2, 4, 2.0, d=2)  # the wrapped target's image shifts come with it
    with pytest.raises(ValueError, match="needs `shifts"):
        sq.objectives.TargetScoreMatching(SCHEDULES["VE"], su2, 1.0, 1e-3, False, "wrapped")
    with pytest.raises(ValueError, match="E‖∇S‖²"):
        crossover_scale(sq.Phi4(4, 0.2, 0.1), np.full((2, 4, 4), np.nan))


def _links(group, key, n, links, beta, C):
    """Exact samples of independent links `p_0(U) ∝ exp((β/N) Re tr(U C))` (U(1):
    `exp(β cos(θ + c))`), by rejection from Haar, and the action S of one configuration."""
    if group.is_flat:
        action = lambda U: -beta * jnp.sum(jnp.cos(U + C))  # noqa: E731
    else:
        N = group.params["N"]
        action = lambda U: -beta / N * jnp.sum(jnp.real(jnp.trace(U @ C, axis1=-2, axis2=-1)))  # noqa: E731
    out, k = [], key
    while sum(len(o) for o in out) < n * links:
        k, k1, k2 = jr.split(k, 3)
        U = group.sample_haar(k1, (4 * n * links,))
        # one link per draw: accept with exp(−S_link − max(−S_link))
        s = jax.vmap(lambda u: action(u[None]))(U)
        keep = jr.uniform(k2, s.shape) < jnp.exp(-s - beta)
        out.append(np.asarray(U[keep]))
    U0 = np.concatenate(out)[: n * links].reshape((n, links) + group.element_shape)
    return jnp.asarray(U0), action


@pytest.mark.parametrize(
    "group_name, target, crossover",
    [
        ("u1", "gaussian", 1.0),
        ("su2", "wrapped", 1.0),
        ("su2", "gaussian", 1e3),
        ("su3", "gaussian", 1e3),
    ],  # fmt: skip
)
def test_group_tsm_target_is_unbiased_by_steins_identity(group_name, target, crossover):
    # on a group the exact noised score s_t is unknown in closed form, but any unbiased target M
    # (E[M | U_t] = s_t) satisfies Stein's identity E[ω h·M] = −E[ω D·h] for a test field h and
    # any weight ω(t) (integration by parts on the group: the D^a are divergence-free under
    # Haar). The loss's slope along h at a zero model is −2E[ω h·M]/n with ω = w(ς² + σ²), so
    # slope − 2E[ω D·h]/n must vanish within 4σ over 40 batches. Targets: U(1) with −η/σ
    # (exact: the wrapped images sum up); SU(2) with the wrapped law's exact score; SU(2) and
    # SU(3) with −∇S(U_0) alone (ς → ∞, a = 1: the target score identity by itself). A force
    # scaled by 1.2 must fail (measured pulls 12–25; unbiased |pull| ≤ 0.72).
    from sqdiff.objectives import group_tsm_loss
    from sqdiff.objectives.dsm import group_noise_batch, wrapped_shifts

    group = {"u1": sq.groups.U1(), "su2": sq.groups.SUN(2), "su3": sq.groups.SUN(3)}[group_name]
    sch = sq.VarianceExploding(2.0)
    links, beta = (16 if group.is_flat else 4), 2.0
    C = 0.7 if group.is_flat else group.exp(jr.normal(jr.key(5), group.coord_shape))
    shifts = wrapped_shifts(group, sch, target)
    shifts = None if shifts is None else np.asarray(shifts, np.float64)
    Bmat = None if group.is_flat else jr.normal(jr.key(6), (2,) + group.element_shape)
    Bmat = None if Bmat is None else (Bmat[0] + 1j * Bmat[1]).astype(group.state_dtype())

    def h(t, U):  # a smooth test field in algebra coordinates, correlated with ∇S
        if group.is_flat:
            return jnp.sin(U + C) + 0.5 * jnp.cos(2 * U)
        T = group.basis()
        return jnp.imag(jnp.einsum("aij,ljk,ki->la", T, U, C + 0.5 * Bmat))

    def div(t, U):
        X0 = jnp.zeros(group.noise_shape(group.lattice_shape(U)))
        J = jax.jacfwd(lambda X: h(t, group.first_order_retract(U, X)))(X0)
        return jnp.sum(jnp.diagonal(J.reshape(X0.size, X0.size)))

    U0, action = _links(group, jr.key(7), 40 * 512, links, beta, C)

    @jax.jit
    def pull_term(key, U0, scale):
        force = lambda U: scale * group.grad(action, U)  # noqa: E731  (∇S along exp(iεT)U)

        def loss(c):  # quadratic in c: the central difference is the exact slope
            model = lambda t, U: c * h(t, U)  # noqa: E731
            return group_tsm_loss(key, model, sch, group, force, U0, crossover, 1e-3, False, shifts)

        slope = (loss(1.0) - loss(-1.0)) / 2
        t, w, Ut, std, _ = group_noise_batch(key, sch, group, U0, 1e-3, False, shifts)
        s2 = std.reshape(-1) ** 2
        n = np.prod(group.noise_shape((links,)))
        stein = 2 * jnp.mean(w * (crossover**2 + s2) * jax.vmap(div)(t, Ut)) / n
        return slope - stein

    batches = U0.reshape((40, 512) + U0.shape[1:])
    for scale, unbiased in [(1.0, True), (1.2, False)]:
        b = np.array(
            [pull_term(k, u, scale) for k, u in zip(jr.split(jr.key(2), 40), batches, strict=True)]
        )
        pull = b.mean() / (b.std(ddof=1) / np.sqrt(b.size))
        assert (abs(pull) < 4) if unbiased else (abs(pull) > 10), (scale, pull)
