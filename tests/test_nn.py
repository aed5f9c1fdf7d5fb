import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.nn import LocalCNN, MultiscaleCNN, ScoreMLP, U1LinkNet, UNet, zero_output
from sqdiff.nn.multiscale import prolong, restrict

VE = sq.VarianceExploding(25.0)


class _Jitted(eqx.Module):
    """A network called through `eqx.filter_jit` (one compilation per input shape instead of
    op-by-op dispatch; the tests check the network, not the eager path)."""

    net: eqx.Module

    def __call__(self, t, x, symmetrize=False):
        if symmetrize:  # a Python loop over the sublattice shifts: cheaper op by op
            return self.net(t, x, symmetrize=True)
        return _call(self.net, t, x)

    def __getattr__(self, name):
        return getattr(self.net, name)


@eqx.filter_jit
def _call(net, t, x):
    return net(t, x)


@pytest.fixture(scope="module")
def unet():
    return _Jitted(UNet(VE, d=2, channels=16, levels=3, antisymmetric=True, key=jr.key(0)))


def test_unet_runs_same_weights_on_many_sizes(unet):
    for L in (4, 8, 16, 32, 64):
        phi = jr.normal(jr.key(L), (L, L))
        out = unet(0.3, phi)
        assert out.shape == (L, L) and bool(jnp.all(jnp.isfinite(out)))
    assert unet.usable_levels(8) == 3 and unet.usable_levels(4) == 2
    with pytest.raises(ValueError, match="even"):
        unet(0.3, jnp.zeros((7, 7)))
    with pytest.raises(ValueError, match="shape"):
        unet(0.3, jnp.zeros((8, 4)))


def test_unet_translation_covariance(unet):
    phi = jr.normal(jr.key(1), (16, 16))
    out = unet(0.3, phi)
    # exact for shifts by multiples of 2^levels = 8 (the stride-2 sublattice)
    for shift in [(8, 0), (0, 8), (8, 8)]:
        np.testing.assert_allclose(
            unet(0.3, jnp.roll(phi, shift, (0, 1))), jnp.roll(out, shift, (0, 1)), atol=1e-5
        )
    # exact for every shift with the sublattice average (2 levels: 16 shifts, 8×8)
    small = UNet(VE, d=2, channels=8, levels=2, key=jr.key(9))
    phi = phi[:8, :8]
    sym = small(0.3, phi, symmetrize=True)
    np.testing.assert_allclose(
        small(0.3, jnp.roll(phi, (1, 3), (0, 1)), symmetrize=True),
        jnp.roll(sym, (1, 3), (0, 1)),
        atol=1e-5,
    )
    assert not np.allclose(  # without the average, an odd shift is not covariant
        small(0.3, jnp.roll(phi, (1, 3), (0, 1))), jnp.roll(small(0.3, phi), (1, 3), (0, 1))
    )


def test_unet_antisymmetry_and_3d(unet):
    phi = jr.normal(jr.key(2), (8, 8))
    np.testing.assert_allclose(unet(0.5, -phi), -unet(0.5, phi), atol=1e-6)
    net3 = _Jitted(UNet(VE, d=3, channels=8, levels=2, key=jr.key(3)))
    phi3 = jr.normal(jr.key(4), (8, 8, 8))
    out = net3(0.2, phi3)
    assert out.shape == (8, 8, 8)
    np.testing.assert_allclose(net3(0.2, jnp.roll(phi3, 4, 1)), jnp.roll(out, 4, 1), atol=1e-5)


def test_unet_channels_must_fit_its_group_norm():
    for bad in (0, 12, 20):
        with pytest.raises(ValueError, match="multiple of 8"):
            UNet(VE, d=2, channels=bad, levels=2, key=jr.key(0))


def test_local_cnn_is_local_and_the_same_operator_on_every_volume():
    net = LocalCNN(VE, d=3, channels=4, depth=2, antisymmetric=True, key=jr.key(3))
    call = eqx.filter_jit(lambda t, x: net(t, x))
    phi = jr.normal(jr.key(4), (12, 12, 12))
    # the receptive field is exactly the cube of half-width radius = depth + 1 (periodic)
    grad = np.asarray(jax.grad(lambda p: net(0.3, p)[0, 0, 0])(phi))
    idx = np.argwhere(np.abs(grad) > 0)
    dist = np.minimum(idx, 12 - idx).max(1)
    assert net.radius == 3 and dist.max() == 3 and len(idx) == 7**3
    # no lattice-wide statistics: a configuration tiled twice gives the tiled output, so the
    # weights are the same local operator at L = 6 and at L = 12
    small = jr.normal(jr.key(5), (6, 6, 6))
    tiled = jnp.tile(small, (2, 2, 2))
    np.testing.assert_allclose(call(0.3, tiled), jnp.tile(call(0.3, small), (2, 2, 2)), atol=1e-6)
    # translation covariance for every shift, and s(−φ) = −s(φ)
    out = call(0.3, phi)
    shifted = call(0.3, jnp.roll(phi, (1, 2, 3), (0, 1, 2)))
    np.testing.assert_allclose(shifted, jnp.roll(out, (1, 2, 3), (0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(call(0.3, -phi), -out, atol=1e-6)
    # the documented scalings: input × 1/√(1 + Σ²) (VE, σ_d = 1), output ÷ Σ(t)
    for t in (0.01, 0.5, 1.0):
        sig = VE.marginal_std(t)
        emb = net.emb_mlp(net.embed(0.25 * jnp.log(sig)))
        x = phi / jnp.sqrt(1 + sig**2)
        expect = 0.5 * (net._raw(emb, x) - net._raw(emb, -x)) / sig
        np.testing.assert_allclose(net(t, phi), expect, rtol=1e-5, atol=1e-6)


def test_local_cnn_bad_input():
    with pytest.raises(ValueError, match="d = 1, 2, 3"):
        LocalCNN(VE, d=4, key=jr.key(0))
    with pytest.raises(ValueError, match="depth"):
        LocalCNN(VE, d=2, depth=-1, key=jr.key(0))
    net = LocalCNN(VE, d=2, channels=4, depth=1, key=jr.key(0))
    with pytest.raises(ValueError, match=r"shape \(L,\)\*2"):
        net(0.5, jnp.zeros((4, 6)))


def test_block_restriction_is_orthonormal_and_prolongation_its_adjoint():
    x, y = jr.normal(jr.key(0), (8, 8, 8)), jr.normal(jr.key(1), (4, 4, 4))
    np.testing.assert_allclose(jnp.vdot(restrict(x), y), jnp.vdot(x, prolong(y)), rtol=1e-5)
    np.testing.assert_allclose(restrict(prolong(y)), y, atol=1e-6)  # R Rᵀ = 1
    # the block sum over 2^d sites, times 2^{-d/2}: white noise keeps its variance
    np.testing.assert_allclose(restrict(jnp.ones((4, 4))), 2 * jnp.ones((2, 2)), rtol=1e-6)
    noise = restrict(restrict(jr.normal(jr.key(2), (64, 64, 64))))
    assert abs(float(jnp.var(noise)) - 1) < 4 * np.sqrt(2 / noise.size)


def _with_coarse_output(net, w=0.3):
    """`net` with every coarse level's output layer set to `w` (they start at zero)."""
    get = lambda n: [s.conv_out.weight for s in n.stacks[1:]]  # noqa: E731
    return eqx.tree_at(get, net, replace_fn=lambda a: jnp.full_like(a, w))


def test_multiscale_cnn_range_grows_with_the_levels():
    net = MultiscaleCNN(VE, d=3, channels=4, depth=1, levels=4, antisymmetric=True, key=jr.key(2))
    assert [net.usable_levels(L) for L in (3, 4, 6, 8, 16, 32, 64)] == [1, 2, 2, 3, 4, 4, 4]
    phi = jr.normal(jr.key(3), (16, 16, 16))
    # at initialisation the coarse levels add nothing: level 0 alone, a 5³ stencil, ...
    for t in (0.01, 0.5):
        sig = VE.marginal_std(t)
        emb, x = net.emb_mlp(net.embed(0.25 * jnp.log(sig))), phi / jnp.sqrt(1 + sig**2)
        expect = 0.5 * (net.stacks[0](emb, x) - net.stacks[0](emb, -x)) / sig
        np.testing.assert_allclose(net(t, phi), expect, rtol=1e-5, atol=1e-6)
    grad = np.asarray(jax.grad(lambda p: net(0.3, p)[0, 0, 0])(phi))
    assert np.count_nonzero(grad) == 5**3
    # ... and once they are trained, level 3 (8³ blocks on a 2³ lattice) sees the whole lattice
    net = _with_coarse_output(net)
    grad = np.asarray(jax.grad(lambda p: net(0.3, p)[0, 0, 0])(phi))
    assert np.count_nonzero(grad) == 16**3
    # `zero_output` zeroes every level's output layer, not only level 0's
    np.testing.assert_array_equal(zero_output(net)(0.3, phi), jnp.zeros_like(phi))
    # translation covariance for shifts by multiples of the coarsest block (8), Z2, and the
    # coarse levels enter: a shift by one site is not a symmetry of the block pyramid
    out = net(0.3, phi)
    np.testing.assert_allclose(net(0.3, jnp.roll(phi, 8, 1)), jnp.roll(out, 8, 1), atol=1e-6)
    np.testing.assert_allclose(net(0.3, -phi), -out, atol=1e-6)
    assert np.abs(net(0.3, jnp.roll(phi, 1, 1)) - jnp.roll(out, 1, 1)).max() > 1e-3
    # a level is the same operator on every volume (no lattice-wide statistics): with one
    # level it is local, so a tiled configuration gives the tiled output
    one = MultiscaleCNN(VE, d=2, channels=4, depth=1, levels=1, key=jr.key(4))
    small = jr.normal(jr.key(5), (6, 6))
    np.testing.assert_allclose(
        one(0.3, jnp.tile(small, (2, 2))), jnp.tile(one(0.3, small), (2, 2)), atol=1e-6
    )


def test_multiscale_cnn_learns_the_long_range_gaussian_score_a_stencil_cannot():
    """The exactly known score of a noised massless-ish free field, `−ỹ(p)/(G(p) + Σ²)` with
    `G = 1/(p̂² + m²)`, is a kernel of range ~Σ. Fitted by regression on exact targets at Σ = 4
    (same steps, data and width), the multiscale network gets the lowest non-zero mode 5×
    better than a local 5² stencil, and within 1 %."""
    import optax

    L, m2, t = 16, 0.01, 0.72
    sig = float(VE.marginal_std(t))
    p = 2 * np.pi * np.fft.fftfreq(L)
    G = 1 / (sum(np.meshgrid(*[4 * np.sin(p / 2) ** 2] * 2, indexing="ij")) + m2)
    fft, ifft = (lambda y: jnp.fft.fftn(y, axes=(1, 2))), (lambda y: jnp.fft.ifftn(y, axes=(1, 2)))

    def draw(key, n):  # the noised law: G(p) + Σ² in every mode
        return ifft(fft(jr.normal(key, (n, L, L))) * jnp.sqrt(G + sig**2)).real

    def exact(y):
        return ifft(-fft(y) / (G + sig**2)).real

    def fit(net):
        opt = optax.adam(3e-3)

        @eqx.filter_jit
        def step(net, state, key):
            y = draw(key, 16)
            loss = lambda n: jnp.mean((jax.vmap(lambda a: n(t, a))(y) - exact(y)) ** 2)  # noqa: E731
            g = eqx.filter_grad(loss)(net)
            updates, state = opt.update(g, state, net)
            return eqx.apply_updates(net, updates), state

        state = opt.init(eqx.filter(net, eqx.is_array))
        for i in range(300):
            net, state = step(net, state, jr.key(i))
        y = draw(jr.key(10**6), 64)
        err = fft(eqx.filter_jit(jax.vmap(lambda a: net(t, a)))(y) - exact(y))
        # relative error of the lowest non-zero modes, p = (2π/L, 0) and (0, 2π/L)
        low = lambda a: jnp.mean(jnp.abs(a[:, 1, 0]) ** 2 + jnp.abs(a[:, 0, 1]) ** 2)  # noqa: E731
        return float(low(err) / low(fft(exact(y))))

    local = fit(LocalCNN(VE, d=2, channels=8, depth=1, key=jr.key(0)))
    multi = fit(MultiscaleCNN(VE, d=2, channels=8, depth=1, levels=4, key=jr.key(0)))
    assert multi < 0.01 and multi < local / 5, (multi, local)


def test_multiscale_cnn_bad_input():
    with pytest.raises(ValueError, match="d = 1, 2, 3"):
        MultiscaleCNN(VE, d=4, key=jr.key(0))
    with pytest.raises(ValueError, match="levels"):
        MultiscaleCNN(VE, d=2, levels=0, key=jr.key(0))
    net = MultiscaleCNN(VE, d=2, channels=4, depth=1, key=jr.key(0))
    with pytest.raises(ValueError, match=r"shape \(L,\)\*2"):
        net(0.5, jnp.zeros((4, 6)))


@pytest.mark.parametrize("cls", [LocalCNN, MultiscaleCNN])
def test_local_force_skip_is_the_langevin_drift_at_t_to_0(cls):
    """`force_skip = (κ, λ)` adds `−∇S(φ) exp(−e^a Σ(t)²)`: with a zero output layer the network
    is exactly that on every lattice (the training L and larger ones); with any weights the
    learned part is scaled by `Σ²/(1 + Σ³)`, so the network tends to `−∇S` as `t → 0`, and to
    the plain network (`out/Σ`) at large Σ; `a` is a trained parameter."""
    kappa, lam, d = 0.19, 0.9, 3
    sch = sq.VarianceExploding(200.0)
    kw = {"d": d, "channels": 4, "depth": 1, "antisymmetric": True}
    net = zero_output(cls(sch, force_skip=(kappa, lam), key=jr.key(0), **kw))
    net = eqx.tree_at(lambda n: n.skip_log_curvature, net, jnp.asarray(0.7))
    assert eqx.is_array(net.skip_log_curvature)  # trained with the other weights
    for L in (4, 8):
        action = sq.Phi4(L, kappa, lam, d=d)
        phi = jr.normal(jr.key(L), action.lattice_shape)
        F = np.asarray(action.force(phi))
        for t in (1e-7, 0.3):
            w = np.exp(-np.exp(0.7) * float(sch.marginal_std(t)) ** 2)
            np.testing.assert_allclose(net(t, phi), -w * F, atol=2e-5 * np.abs(F).max())
    full = cls(sch, force_skip=(kappa, lam), key=jr.key(0), **kw)
    action = sq.Phi4(8, kappa, lam, d=d)
    phi = jr.normal(jr.key(9), action.lattice_shape)
    F = np.asarray(action.force(phi))
    np.testing.assert_allclose(full(1e-7, phi), -F, atol=2e-5 * np.abs(F).max())
    plain = cls(sch, key=jr.key(0), **kw)
    for t in (0.3, 1.0):
        sig = float(sch.marginal_std(t))
        want = np.asarray(full(t, phi)) + F * np.exp(-(sig**2))  # the learned part (a = 0) ...
        want *= (1 + sig**3) / sig**2  # ... unscaled
        got = np.asarray(plain(t, phi)) * sig
        np.testing.assert_allclose(want, got, atol=2e-4 * np.abs(got).max())
    # at the prior's Σ(T) = 61 the skip is off: the plain network within 2 %
    np.testing.assert_allclose(full(1.0, phi), plain(1.0, phi), rtol=0.02, atol=1e-6)
    assert plain.skip_log_curvature is None  # plain checkpoints keep their leaves
    with pytest.raises(ValueError, match="no force skip"):
        plain.skip_action(4)
    for bad in (0.19, (0.19,), ("0.19", 0.9), (True, 0.9)):
        with pytest.raises(ValueError, match="force_skip"):
            cls(sch, force_skip=bad, key=jr.key(0), **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"force_skip.*lam"):
        cls(sch, force_skip=(0.2, -0.1), key=jr.key(0), **kw)
    with pytest.raises(ValueError, match="variance-exploding"):
        cls(sq.VariancePreserving(), force_skip=(kappa, lam), key=jr.key(0), **kw)
    with pytest.raises(ValueError, match="not both"):
        cls(sch, force_skip=(kappa, lam), data_std=1.0, key=jr.key(0), **kw)


def test_u1_link_net_is_gauge_invariant():
    net = U1LinkNet(VE, channels=8, depth=2, key=jr.key(5))
    theta = jr.uniform(jr.key(6), (2, 8, 8), minval=-np.pi, maxval=np.pi)
    alpha = jr.uniform(jr.key(7), (8, 8), minval=-np.pi, maxval=np.pi)
    gauged = jnp.stack(
        [theta[0] + alpha - jnp.roll(alpha, -1, 0), theta[1] + alpha - jnp.roll(alpha, -1, 1)]
    )
    out = net(0.4, theta)
    assert out.shape == (2, 8, 8)
    np.testing.assert_allclose(net(0.4, gauged), out, atol=2e-5)
    with pytest.raises(ValueError, match=r"\(2, L, L\)"):
        net(0.4, jnp.zeros((8, 8)))


def test_mlp_is_per_site_and_scaled_by_marginal_width():
    net = ScoreMLP(VE, width=16, depth=2, key=jr.key(8))
    x = jnp.array([0.3, -1.0, 2.0])
    out = net(0.5, x)
    np.testing.assert_allclose(out[1], net(0.5, x[1]), rtol=1e-6)
    raw = jax.vmap(lambda v: net._raw(0.5, v))(x)
    np.testing.assert_allclose(out, raw / VE.marginal_std(0.5), rtol=1e-5)
    skip = ScoreMLP(VE, width=16, depth=2, data_std=2.0, key=jr.key(8))
    np.testing.assert_allclose(
        skip(0.5, x) - out, -x / (4.0 + VE.marginal_std(0.5) ** 2), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("stride,kernel", [(1, 3), (2, 3), (1, 1)])
def test_periodic_conv_matches_equinox_conv_and_loads_its_weights(d, stride, kernel, tmp_path):
    import equinox as eqx

    from sqdiff.nn import PeriodicConv

    ref = eqx.nn.Conv(
        d, 3, 5, kernel, stride=stride, padding=kernel // 2, padding_mode="CIRCULAR", key=jr.key(7)
    )
    conv = PeriodicConv(d, 3, 5, kernel, stride=stride, key=jr.key(7))
    x = jr.normal(jr.key(1), (3,) + (8,) * d)
    np.testing.assert_allclose(conv(x), ref(x), atol=1e-5)
    # same leaves: checkpoints written with eqx.nn.Conv load into PeriodicConv
    eqx.tree_serialise_leaves(tmp_path / "c.eqx", ref)
    other = PeriodicConv(d, 3, 5, kernel, stride=stride, key=jr.key(8))
    loaded = eqx.tree_deserialise_leaves(tmp_path / "c.eqx", other)
    np.testing.assert_array_equal(loaded.weight, ref.weight)
    with pytest.raises(ValueError, match="expects"):
        conv(jnp.zeros((4,) + (8,) * d))
    with pytest.raises(ValueError, match="odd"):
        PeriodicConv(d, 3, 5, 2, key=jr.key(0))


@pytest.mark.parametrize("shape,groups", [((6, 5, 8), 4), ((4, 4, 3, 6), 3), ((7, 8), 8)])
def test_channels_last_group_norm_matches_equinox(shape, groups):
    from sqdiff.nn.unet import group_norm

    norm = eqx.nn.GroupNorm(groups, shape[-1])
    affine = (jr.normal(jr.key(1), (shape[-1],)), jr.normal(jr.key(2), (shape[-1],)))
    norm = eqx.tree_at(lambda n: (n.weight, n.bias), norm, affine)
    x = 3 * jr.normal(jr.key(0), shape) + 2
    ref = jnp.moveaxis(norm(jnp.moveaxis(x, -1, 0)), 0, -1)
    np.testing.assert_allclose(group_norm(norm, x), ref, rtol=1e-5, atol=1e-5)
