import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq

ACTIONS = [
    sq.Quartic0D(1.0, 0.4),
    sq.Quartic0D(-1.0, 0.4),
    sq.DoubleWell0D(),
    sq.Cosine0D(5.0),
    sq.Phi4(6, 0.21, 0.022, d=2),
    sq.Phi4(4, 0.19, 0.9, d=3),
    sq.Phi4(3, 0.1, 0.5, d=4),
    sq.U1Wilson2D(6, 2.0),
    sq.SUNWilson(2, 4, 2.0, d=2),
    sq.SUNWilson(2, 3, 2.0, d=3),
    sq.SUNWilson(3, 3, 5.0, d=4),
]


@pytest.mark.parametrize("action", ACTIONS, ids=lambda a: f"{type(a).__name__}{a.params}")
def test_analytic_force_matches_autodiff(action):
    phi = action.random_config(jr.key(0))
    analytic = action.force(phi)
    auto = action.group.grad(action, phi)
    assert analytic.shape == auto.shape == action.group.noise_shape(action.lattice_shape)
    scale = float(jnp.max(jnp.abs(auto)))
    np.testing.assert_allclose(analytic, auto, atol=1e-5 * max(scale, 1.0))


def test_phi4_free_field_action_is_quadratic_form():
    th = sq.Phi4(4, 0.2, 0.0)
    phi = jr.normal(jr.key(1), (4, 4))
    # S = ½ φ·∇S for a quadratic action
    np.testing.assert_allclose(th(phi), 0.5 * jnp.sum(phi * th.force(phi)), rtol=1e-5)


def test_u1_gauge_invariance_and_integer_charge():
    th = sq.U1Wilson2D(8, 3.0)
    theta = th.random_config(jr.key(2))
    alpha = jr.uniform(jr.key(3), (8, 8), minval=-np.pi, maxval=np.pi)
    gauged = jnp.stack(
        [theta[0] + alpha - jnp.roll(alpha, -1, 0), theta[1] + alpha - jnp.roll(alpha, -1, 1)]
    )
    np.testing.assert_allclose(th(gauged), th(theta), rtol=1e-4)
    Q = sq.theories.topological_charge(theta)
    np.testing.assert_allclose(Q, jnp.round(Q), atol=1e-4)
    np.testing.assert_allclose(
        sq.theories.wilson_loop(theta, 1),
        jnp.mean(jnp.cos(sq.theories.plaquette_angles(theta))),
        rtol=1e-5,
    )


@pytest.mark.parametrize("N,d", [(2, 2), (3, 3)])
def test_sun_gauge_invariance(N, d):
    th = sq.SUNWilson(N, 3, 2.0, d=d)
    U = th.random_config(jr.key(4))
    g = th.group.sample_haar(jr.key(5), (3,) * d)
    gd = jnp.conj(jnp.swapaxes(g, -1, -2))
    gauged = jnp.stack([g @ U[mu] @ jnp.roll(gd, -1, axis=mu) for mu in range(d)])
    np.testing.assert_allclose(th(gauged), th(U), rtol=1e-4)


def test_bad_theory_parameters():
    with pytest.raises(ValueError, match="L"):
        sq.Phi4(1, 0.2, 0.1)
    with pytest.raises(ValueError, match="lam"):
        sq.Phi4(8, 0.2, -0.1)
    with pytest.raises(ValueError, match="kappa < 1/"):
        sq.Phi4(8, 0.3, 0.0)
    with pytest.raises(ValueError, match="beta"):
        sq.U1Wilson2D(8, 0.0)
    with pytest.raises(ValueError, match="beta"):
        sq.SUNWilson(3, 4, -1.0)
    with pytest.raises(ValueError, match="d"):
        sq.Phi4(8, 0.1, 0.1, d=5)
    with pytest.raises(ValueError, match="expected"):
        sq.Phi4(8, 0.1, 0.1).check_config(jnp.zeros((4, 4)))


def test_measure_primaries_batched():
    th = sq.Phi4(4, 0.2, 0.1)
    samples = jax.random.normal(jr.key(6), (2, 5, 4, 4))
    prim = sq.observables.measure_primaries(th, samples, batch=3)
    np.testing.assert_allclose(prim["M"], samples.mean(axis=(-2, -1)), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="shape"):
        sq.observables.measure_primaries(th, jnp.zeros((2, 5, 3, 3)))
