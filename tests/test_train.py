import json
import os
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.checkpoint import ModelDir
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec
from sqdiff.train import TrainConfig, load_model, train


def schedule_spec(d):
    d = dict(d)
    return ScheduleSpec(d.pop("name"), d)


def mlp_spec(schedule, importance=False, **kw):
    return ModelSpec(
        network=NetworkSpec("mlp", {"width": 32, "depth": 2, **kw}),
        schedule=schedule_spec(schedule),
        objective=ObjectiveSpec("dsm", {"importance": importance}),
        config_shape=(),
    )


def leaves_equal(a, b):
    la = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    lb = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return len(la) == len(lb) and all(
        bool(jnp.array_equal(x, y)) for x, y in zip(la, lb, strict=True)
    )


def test_checkpoint_round_trip_and_atomic_layout(tmp_path):
    data = jr.normal(jr.key(0), (256,))
    spec = mlp_spec({"name": "ve", "sigma": 10.0})
    cfg = TrainConfig(steps=30, batch=16, steps_per_call=10, checkpoint_every=10)
    res = train(str(tmp_path / "m"), data, spec, cfg, progress=False)
    files = sorted(os.listdir(tmp_path / "m"))
    # old weights removed, no temp files; .lock is the writers' lock file
    assert files == [".lock", "config.json", "weights-30.eqx"]
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (
        meta["step"] == 30
        and ModelSpec.from_json(meta["spec"]) == spec
        and meta["train"]["batch"] == 16
    )
    assert len(meta["losses"]) == 30
    loaded = load_model(str(tmp_path / "m"))
    assert leaves_equal(loaded, res.model)
    np.testing.assert_array_equal(loaded(0.5, data[:4]), res.model(0.5, data[:4]))


def test_resume_is_bit_for_bit(tmp_path):
    data = jr.normal(jr.key(1), (512,))
    spec = mlp_spec({"name": "vp"})
    full = train(
        str(tmp_path / "a"),
        data,
        spec,
        TrainConfig(steps=40, batch=32, steps_per_call=10),
        progress=False,
    )
    train(
        str(tmp_path / "b"),
        data,
        spec,
        TrainConfig(steps=20, batch=32, steps_per_call=10),
        progress=False,
    )
    resumed = train(
        str(tmp_path / "b"),
        data,
        spec,
        TrainConfig(steps=40, batch=32, steps_per_call=10),
        resume=True,
        progress=False,
    )
    assert resumed.step == 40
    assert leaves_equal(resumed.raw_model, full.raw_model)
    assert leaves_equal(resumed.model, full.model)
    assert resumed.losses == full.losses


def test_nan_guard_keeps_last_good_checkpoint(tmp_path):
    data = jr.normal(jr.key(2), (256,))
    spec = mlp_spec({"name": "ve", "sigma": 10.0})
    d = str(tmp_path / "m")
    train(d, data, spec, TrainConfig(steps=20, batch=16, steps_per_call=10), progress=False)
    before = load_model(d)
    bad = data.at[3].set(1e30)  # overflows the loss once drawn
    with pytest.raises(ValueError, match="non-finite"):
        train(
            d,
            data.at[3].set(jnp.inf),
            spec,
            TrainConfig(steps=40, batch=16, steps_per_call=10),
            resume=True,
            progress=False,
        )
    res = train(
        d,
        bad,
        spec,
        TrainConfig(steps=200, batch=16, steps_per_call=10),
        resume=True,
        progress=False,
    )
    assert res.status == "nan" and res.step < 200
    ck = ModelDir(d).load()
    step, losses = ck.step, ck.losses
    assert step == res.step and np.all(np.isfinite(losses))
    after = load_model(d)
    assert all(
        bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(eqx.filter(after, eqx.is_array))
    )
    assert step == 20 or not leaves_equal(before, after)


def test_model_dir_errors(tmp_path):
    data = jr.normal(jr.key(3), (64,))
    spec = mlp_spec({"name": "ve", "sigma": 10.0})
    d = str(tmp_path / "m")
    train(d, data, spec, TrainConfig(steps=10, batch=8, steps_per_call=10), progress=False)
    with pytest.raises(ValueError, match="already holds a model"):
        train(d, data, spec, TrainConfig(steps=10, batch=8), progress=False)
    other = mlp_spec({"name": "vp"})
    with pytest.raises(ValueError, match="different model"):
        train(
            d,
            data,
            other,
            TrainConfig(steps=20, batch=8, steps_per_call=10),
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="shape"):
        train(
            str(tmp_path / "n"), jnp.zeros((10, 4, 4)), spec, TrainConfig(steps=5), progress=False
        )
    with pytest.raises(ValueError, match="not a sqdiff model"):
        load_model(str(tmp_path))
    (weights,) = (tmp_path / "m").glob("weights-*.eqx")
    weights.write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="checksum"):
        load_model(d)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["spec"]["schedule"]["params"]["sigma"] = 11.0  # an edited setting, weights intact
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="config.json' was changed after sqdiff wrote it"):
        load_model(d)
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model(d)


@pytest.mark.parametrize(
    "schedule", [{"name": "ve", "sigma": 10.0}, {"name": "vp"}], ids=["VE", "VP"]
)
def test_learned_score_of_gaussian_data_is_exact(tmp_path, schedule):
    s_data = 2.0
    data = s_data * jr.normal(jr.key(4), (8192,))
    spec = mlp_spec(schedule, True, data_std=float(jnp.std(data)), width=64, depth=3)
    cfg = TrainConfig(steps=3000, batch=512, lr=3e-3, steps_per_call=500)
    model = train(str(tmp_path / "m"), data, spec, cfg, progress=False).model
    sch = spec.build_schedule()
    for t in [0.1, 0.2, 0.4, 0.7, 1.0]:
        std = jnp.sqrt(sch.mean_coeff(t) ** 2 * s_data**2 + sch.marginal_std(t) ** 2)
        x = std * jr.normal(jr.key(5), (4000,))
        exact = -x / std**2
        rel = jnp.sqrt(jnp.mean((model(t, x) - exact) ** 2) / jnp.mean(exact**2))
        assert rel < 0.05, (t, float(rel))


def test_version_1_model_directory_still_loads():
    # written by sqdiff 0.1.0 (tests/data/v1_mlp_model: MLP width 8, VE σ = 10, 4 steps)
    d = os.path.join(os.path.dirname(__file__), "data", "v1_mlp_model")
    with pytest.raises(ValueError, match="no config_sha256 checksum"):
        ModelDir(d).load()  # no checksum: only on request
    ck = ModelDir(d, allow_unverified=True).load()
    assert ck.spec.network == NetworkSpec("mlp", {"width": 8, "depth": 2})
    assert ck.spec.objective == ObjectiveSpec("dsm", {"t_min": 1e-3, "importance": False})
    assert ck.spec.theory is not None and ck.spec.theory.build() == sq.Quartic0D(1.0, 0.4)
    out = ck.network()(0.5, jnp.linspace(-1.0, 1.0, 5))
    # the output sqdiff 0.1.0 printed for these weights
    expected = [0.10583354532718658, 0.10566061735153198, 0.10552222281694412,
                0.10541914403438568, 0.10535223037004471]  # fmt: skip
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_spec_json_round_trip_and_hashable():
    spec = mlp_spec({"name": "ve", "sigma": 10.0}, True, width=16)
    again = ModelSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec and hash(again) == hash(spec)
    assert spec.to_json()["version"] == 2
    with pytest.raises(ValueError, match="newer"):
        ModelSpec.from_json({**spec.to_json(), "version": 99})
    with pytest.raises(ValueError, match="unknown network"):
        ModelSpec.from_json({**spec.to_json(), "network": {"name": "nope"}}).build_network()


def test_group_dsm_trains_u1_link_net(tmp_path):
    action = sq.U1Wilson2D(4, 2.0)
    init = jax.vmap(action.random_config)(jr.split(jr.key(6), 4))
    samples, _ = sq.run_chains(sq.HMC(action, 0.1, 10), jr.key(7), init, 32, n_therm=20)
    data = jnp.asarray(samples.reshape(-1, 2, 4, 4))
    spec = {
        "model": "u1",
        "kwargs": {"channels": 8, "depth": 1},
        "schedule": {"name": "ve", "sigma": 5.0},
        "config_shape": [2, 4, 4],
        "group": "u1",
        "theory": {"name": action.name, "params": action.params},
    }
    res = train(
        str(tmp_path / "u"),
        data,
        spec,
        TrainConfig(steps=60, batch=16, steps_per_call=20),
        progress=False,
    )
    assert res.status == "done" and np.mean(res.losses[-20:]) < np.mean(res.losses[:20])
    out = load_model(str(tmp_path / "u"))(0.3, data[0])
    assert out.shape == (2, 4, 4)
    # the probability flow runs on the torus: ODE samples and IMH with their exact density
    from sqdiff.sampling import sample_model

    for method in ("ode", "imh"):
        x, meta, *_ = sample_model(
            str(tmp_path / "u"), 8, method, **({"steps": 20} if method == "ode" else {})
        )
        assert x.shape == (1, 8, 2, 4, 4) and np.all(np.abs(x) <= np.pi)
        assert 0 < meta["acceptance"] <= 1


@pytest.mark.parametrize(
    "mu2",
    # the single well takes the same code path as the (harder) double well: slow only
    [pytest.param(1.0, marks=pytest.mark.slow), -1.0],
    ids=["single-well", "double-well"],
)
def test_zero_dim_diffusion_model_reproduces_moments_and_action(tmp_path, mu2):
    from scipy import integrate

    exact = {1.0: (0.862097, 2.068551), -1.0: (13.67303, 220.0955)}[mu2]  # docs/references.md
    action = sq.Quartic0D(mu2, 0.4)
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), 16)) * (4 if mu2 < 0 else 1)
    samples, _ = sq.run_chains(
        sq.HMC(action, 0.25, 8), jr.key(1), init, 320, n_therm=200, thin=4
    )  # 5120 configurations, as in the paper
    data = jnp.asarray(samples.reshape(-1))
    sigma = 10.0 if mu2 > 0 else 25.0
    spec = mlp_spec({"name": "ve", "sigma": sigma}, True, width=64, depth=3)
    cfg = TrainConfig(steps=8000, batch=512, lr=3e-3, steps_per_call=500)
    model = train(str(tmp_path / "m"), data, spec, cfg, progress=False).model
    sch = model.schedule
    x = sq.solve(
        sq.Reverse(sch, model),
        sch.prior_sample(jr.key(2), (40_000,)),
        sch.T,
        0.0,
        key=jr.key(3),
        n_steps=1000,
    ).ys[-1]
    x = np.asarray(x, np.float64)
    assert abs(np.mean(x**2) / exact[0] - 1) < 0.03
    assert abs(np.mean(x**4) / exact[1] - 1) < 0.03

    # MAALA with the trained score is exact: ⟨φ²⟩, ⟨φ⁴⟩ within 4σ (Γ-method over the chains)
    t_mh = 0.05 * sch.T
    x_mh = sq.solve(
        sq.Reverse(sch, model),
        sch.prior_sample(jr.key(4), (1000,)),
        sch.T,
        t_mh,
        key=jr.key(5),
        n_steps=500,
    ).ys[-1]
    maala = sq.MAALA(action, model, t_mh, 0.5 * float(sch.marginal_std(t_mh)) ** 2)
    chains, acc = sq.run_chains(maala, jr.key(6), x_mh, 100, n_therm=20)
    assert 0.3 < float(np.mean(acc)) <= 1
    for k, value in zip((2, 4), exact, strict=True):
        res = sq.stats.gamma_method(np.asarray(chains, np.float64).reshape(1000, 100, 1) ** k)
        assert abs(res.value - value) < 4 * res.error, (k, res, value)

    # S_DM(φ, t) = −∫ s_θ dφ against the exact S_t = −log(e^{−S} ⊛ N(0, Σ(t)²)) and S itself,
    # up to a constant, within ±w of each minimum. Tolerance 0.2: the log-density of 5120
    # samples smeared over Σ(t) is resolved to ≈ 0.06 per point (≈ 300 samples per window).
    t = 0.05
    sig = float(sch.marginal_std(t))

    def S(p):
        return mu2 / 2 * p**2 + 0.4 / 24 * p**4

    def S_t(p):
        w = integrate.quad(
            lambda y: np.exp(-S(y) - (p - y) ** 2 / (2 * sig**2)), -30, 30, points=[p]
        )[0]
        return -np.log(w)

    for pmin, w in [(0.0, 1.0)] if mu2 > 0 else [(-np.sqrt(15), 0.7), (np.sqrt(15), 0.7)]:
        grid = np.linspace(pmin - w, pmin + w, 21)
        s_dm = np.asarray(sq.effective_action(model, t, jnp.asarray(grid)))
        s_t = np.array([S_t(p) for p in grid])
        assert np.max(np.abs((s_dm - s_dm[10]) - (s_t - s_t[10]))) < 0.2
        assert np.max(np.abs((s_dm - s_dm[10]) - (S(grid) - S(grid[10])))) < 0.25


def dsm_spec(L, network, sigma=10.0):
    """A DSM model spec on an L×L lattice under VE σ."""
    return ModelSpec(
        network=network,
        schedule=ScheduleSpec("ve", {"sigma": sigma}),
        objective=ObjectiveSpec("dsm", {}),
        config_shape=(L, L),
    )


def unet_spec(L, levels=1):
    return dsm_spec(L, NetworkSpec("unet", {"channels": 8, "levels": levels}))


def test_training_on_several_volumes_at_once(tmp_path):
    # "train small, generate large": one translation-equivariant network, minibatches of every
    # volume in each step (the mean of their per-site losses)
    x4 = jr.normal(jr.key(0), (64, 4, 4))
    x8 = jr.normal(jr.key(1), (64, 8, 8))
    cfg = TrainConfig(steps=20, batch=8, steps_per_call=10)
    both = train(str(tmp_path / "both"), [x4, x8], unet_spec(8), cfg, progress=False)
    assert both.status == "done" and np.all(np.isfinite(both.losses))
    assert both.model(0.5, jnp.zeros((16, 16))).shape == (16, 16)  # generate larger
    # (one volume as a list is the single-array run bit for bit: the test below)
    plain = train(str(tmp_path / "plain"), x8, unet_spec(8), cfg, progress=False)
    assert both.losses != plain.losses  # the small volume is in the loss


def local_spec(L, sigma=10.0):
    return dsm_spec(L, NetworkSpec("local", {"d": 2, "channels": 4, "depth": 1}), sigma)


def test_volume_batch_sites_draws_equal_sites_per_volume(tmp_path):
    x4 = jr.normal(jr.key(0), (16, 4, 4))
    x8 = jr.normal(jr.key(1), (16, 8, 8))
    x16 = jr.normal(jr.key(2), (4, 16, 16))
    sites = TrainConfig(steps=20, batch=8, steps_per_call=10, volume_batch="sites")
    configs = TrainConfig(steps=20, batch=8, steps_per_call=10)
    assert sq.train.volume_batches(configs, (x4, x8, x16)) == (8, 8, 8)
    # 8·16 = 128 sites of each: 8, 2 and max(1, 0.5 → 0) = 1 configurations
    assert sq.train.volume_batches(sites, (x4, x8, x16)) == (8, 2, 1)
    res = train(str(tmp_path / "s"), [x4, x8, x16], local_spec(4), sites, progress=False)
    ref = train(str(tmp_path / "c"), [x4, x8, x16], local_spec(4), configs, progress=False)
    assert res.status == "done" and np.all(np.isfinite(res.losses))
    assert res.losses[0] != ref.losses[0]  # other minibatches of the larger volumes
    # one volume (given as a list of one, batched by sites) is the plain single-array run,
    # bit for bit (same keys)
    one = train(str(tmp_path / "o"), [x4], local_spec(4), sites, progress=False)
    plain = train(str(tmp_path / "p"), x4, local_spec(4), configs, progress=False)
    assert one.losses == plain.losses and leaves_equal(one.model, plain.model)
    # recorded with the model: the resumed or reloaded settings are the same
    assert sq.ModelDir(str(tmp_path / "s")).load().config == sites
    with pytest.raises(ValueError, match="`volume_batch` must be 'configs' or 'sites'"):
        TrainConfig(volume_batch="volumes")


def test_a_prior_narrower_than_the_data_is_flagged(tmp_path):
    # E[x xᵀ] = v vᵀ for data {v, −v}: the widest variance is |v|², exactly
    v = jnp.arange(16.0).reshape(4, 4) / 10
    assert sq.train.widest_variance(jnp.stack([v, -v] * 3)) == pytest.approx(
        float(jnp.sum(v**2)), rel=1e-6
    )
    # white noise has variance 1 in every direction; 8 configurations of 256 sites have an
    # in-sample top eigenvalue near (1 + √32)² ≈ 43, which the held-out estimate does not share
    noise = jr.normal(jr.key(7), (8, 16, 16))
    assert sq.train.widest_variance(noise) < 3
    # a field with a wide zero mode (V⟨M²⟩ = 16·3² = 144) under VE σ = 10 (Σ(T)² ≈ 21.5)
    zero_mode = 3.0 * jr.normal(jr.key(0), (64, 1, 1)) * jnp.ones((64, 4, 4))
    data = zero_mode + 0.1 * jr.normal(jr.key(1), (64, 4, 4))
    ve10 = sq.VarianceExploding(10.0)
    r = sq.train.prior_coverage(ve10, [data])
    lam = float(jnp.mean(jnp.sum(data, (1, 2)) ** 2) / 16)  # the zero mode's variance
    assert r == pytest.approx(lam / float(ve10.marginal_std(1.0)) ** 2, rel=0.05) and r > 5
    cfg = TrainConfig(steps=2, batch=4, steps_per_call=2)
    with pytest.warns(UserWarning, match="prior N\\(0, Σ\\(T\\)²\\).*narrower than the data"):
        train(str(tmp_path / "narrow"), data, local_spec(4), cfg, progress=False)
    # the warning names the σ to use: the data-derived default
    with pytest.warns(UserWarning, match=f"sigma ≥ {sq.train.data_sigma([data]):.4g}"):
        train(str(tmp_path / "narrow2"), data, local_spec(4), cfg, progress=False)
    # the same data under VE σ = 100 (Σ(T)² ≈ 1086) is covered: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(str(tmp_path / "wide"), data, local_spec(4, sigma=100.0), cfg, progress=False)


def test_the_default_ve_sigma_comes_from_the_data():
    """Issue 39: the VE prior covers the data's widest direction, Σ(T)² = 9 λ_max, and is
    never narrower than σ = 25; `ve_sigma_for` inverts Σ(T)²(σ) exactly."""
    for target, T in [(97.0, 1.0), (5.4e4, 1.0), (2.0, 0.5), (1e6, 2.0)]:
        s = sq.train.ve_sigma_for(target, T)
        assert float(sq.VarianceExploding(s, T).marginal_std(T)) ** 2 == pytest.approx(
            target, rel=1e-6
        )
    with pytest.raises(ValueError, match="must exceed T"):
        sq.train.ve_sigma_for(0.5)
    # a zero mode of variance 16·20² = 6400 (the 2D φ⁴ broken phase at L = 16 has ≈ 6000)
    zero_mode = 20.0 * jr.normal(jr.key(0), (400, 1, 1)) * jnp.ones((400, 4, 4))
    data = zero_mode + 0.1 * jr.normal(jr.key(1), (400, 4, 4))
    lam = sq.train.widest_variance(data)
    assert lam == pytest.approx(6400, rel=4 * np.sqrt(2 / 200))  # 200 held-out configurations
    ve = sq.VarianceExploding(sq.train.data_sigma([data]))
    assert float(ve.marginal_std(1.0)) ** 2 == pytest.approx(9 * lam, rel=1e-6)
    assert sq.train.prior_coverage(ve, [data]) == pytest.approx(1 / 9, rel=1e-6)
    # unit-variance data keeps the schedule of before (σ = 25, Σ(T)² = 97 ≥ 9 λ_max)
    assert sq.train.data_sigma([jr.normal(jr.key(2), (64, 4, 4))]) == 25.0
    with pytest.raises(ValueError, match="not finite"):
        sq.train.data_sigma([jnp.full((8, 4, 4), jnp.inf)])


def test_several_volumes_bad_input(tmp_path):
    cfg = TrainConfig(steps=2, batch=4, steps_per_call=2)
    x8 = jr.normal(jr.key(1), (16, 8, 8))
    with pytest.raises(ValueError, match="empty list"):
        train(str(tmp_path / "a"), [], unet_spec(8), cfg, progress=False)
    with pytest.raises(ValueError, match=r"data\[1\] must have shape"):
        train(str(tmp_path / "b"), [x8, jnp.zeros((16, 8))], unet_spec(8), cfg, progress=False)
    # a network with a fixed input size (not translation-equivariant) is refused up front
    fixed_size = lambda t, x: jnp.reshape(x, (4,))  # noqa: E731
    with pytest.raises(ValueError, match=r"cannot take training configurations of shape \(8,\)"):
        sq.train._check_model_takes(fixed_size, (jnp.ones((2, 4)), jnp.ones((2, 8))))
    with pytest.raises(ValueError, match=r"data must have shape \(n, \*\(8, 8\)\)"):
        train(str(tmp_path / "d"), jnp.zeros((16, 4, 4)), unet_spec(8), cfg, progress=False)
