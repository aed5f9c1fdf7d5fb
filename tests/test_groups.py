import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq


@pytest.mark.parametrize("N", [2, 3, 4])
def test_generators_are_normalised(N):
    T = np.asarray(sq.SU(N).basis())
    assert T.shape == (N * N - 1, N, N)
    np.testing.assert_allclose(T, np.conj(np.swapaxes(T, -1, -2)), atol=1e-7)
    np.testing.assert_allclose(np.trace(T, axis1=1, axis2=2), 0, atol=1e-7)
    gram = np.einsum("aij,bji->ab", T, T)
    np.testing.assert_allclose(gram, 0.5 * np.eye(N * N - 1), atol=1e-6)


@pytest.mark.parametrize("N", [2, 3])
def test_exp_log_and_coordinates_round_trip(N):
    G = sq.SU(N)
    X = 0.8 * jr.normal(jr.key(0), (6, N * N - 1))
    np.testing.assert_allclose(G.coordinates(G.algebra(X)), X, atol=1e-6)
    U = G.exp(X)
    # float32 eigenvectors limit the principal log to ~1e-4 absolute at |X| ~ 2
    np.testing.assert_allclose(G.log(U), X, atol=1e-4)
    # exp agrees with the matrix exponential of i X^a T^a
    np.testing.assert_allclose(U, jax.scipy.linalg.expm(G.algebra(X)), atol=2e-6)
    # retract(U, X) = exp(i X T) U
    V = G.sample_haar(jr.key(1), (6,))
    np.testing.assert_allclose(G.retract(V, X), U @ V, atol=2e-6)


def test_log_handles_eigenphase_wrap():
    G = sq.SU(3)
    # eigenphases (2.5, 2.5, -5) wrap to (2.5, 2.5, 1.28): the log must still be traceless
    X = jnp.array([0, 0, 0, 0, 0, 0, 0, 0.0]).at[7].set(2.5 * 2 * np.sqrt(3) / 3 * 1.0)
    U = G.exp(X)
    Y = G.log(U)
    np.testing.assert_allclose(G.exp(Y), U, atol=1e-5)


@pytest.mark.parametrize("N", [2, 3])
def test_su_n_stays_in_group_after_1e4_retractions(N):
    G = sq.SU(N)
    assert jnp.zeros(()).dtype == jnp.float32
    keys = jr.split(jr.key(2), 10_000)

    def step(U, k):
        return G.retract(U, 0.5 * jr.normal(k, (16, N * N - 1))), None

    U, _ = jax.lax.scan(step, G.identity((16,)), keys)
    assert U.dtype == jnp.complex64
    eye = jnp.eye(N)
    unitarity = jnp.max(jnp.linalg.norm(jnp.conj(jnp.swapaxes(U, -1, -2)) @ U - eye, axis=(-2, -1)))
    det_err = jnp.max(jnp.abs(jnp.linalg.det(U) - 1))
    assert unitarity < 1e-5 and det_err < 1e-5, (unitarity, det_err)


@pytest.mark.parametrize("N", [2, 3])
def test_haar_sampling_moments(N):
    G = sq.SU(N)
    n = 20_000
    U = G.sample_haar(jr.key(3), (n,))
    np.testing.assert_allclose(jnp.linalg.det(U), 1, atol=1e-5)
    tr = np.asarray(jnp.trace(U, axis1=-2, axis2=-1), np.complex128)
    # Haar: E[tr U] = 0 and E[|tr U|^2] = 1 (one irreducible representation)
    abs2 = np.abs(tr) ** 2
    assert abs(abs2.mean() - 1) < 4 * abs2.std() / np.sqrt(n)
    assert abs(tr.mean()) < 4 * np.sqrt(1 / n)


def test_project_returns_nearest_group_element():
    G = sq.SU(3)
    U = G.sample_haar(jr.key(4), (5,))
    noisy = U + 1e-2 * jr.normal(jr.key(5), U.shape)
    P = G.project(noisy)
    np.testing.assert_allclose(jnp.linalg.det(P), 1, atol=1e-5)
    assert jnp.max(jnp.abs(P - U)) < 3e-2


@pytest.mark.parametrize("N", [2, 3])
def test_lie_derivative_matches_finite_differences(N):
    G = sq.SU(N)
    W = G.sample_haar(jr.key(6), ())
    U = G.sample_haar(jr.key(7), ())

    def f(U):
        return jnp.real(jnp.trace(W @ U @ U))

    g = G.grad(f, U)
    eps = 1e-3
    for a in range(N * N - 1):
        e = jnp.zeros(N * N - 1).at[a].set(eps)
        fd = (f(G.retract(U, e)) - f(G.retract(U, -e))) / (2 * eps)
        np.testing.assert_allclose(g[a], fd, rtol=2e-2, atol=2e-3)


def test_inner_product_is_trace_form():
    G = sq.SU(3)
    X, Y = jr.normal(jr.key(8), (2, 4, 8))
    A, B = G.algebra(X), G.algebra(Y)
    a_dag = jnp.conj(jnp.swapaxes(A, -1, -2))
    trace_form = 2 * jnp.sum(jnp.real(jnp.einsum("...ij,...ji->...", a_dag, B)))
    np.testing.assert_allclose(G.inner(X, Y), trace_form, rtol=1e-5)


def test_u1_wraps_and_flat_groups():
    G = sq.U1()
    theta = G.retract(jnp.array([3.0]), jnp.array([0.5]))
    np.testing.assert_allclose(theta, 3.5 - 2 * np.pi, atol=1e-6)
    assert jnp.all(jnp.abs(G.sample_haar(jr.key(0), (100,))) <= np.pi)
    E = sq.Euclidean()
    np.testing.assert_allclose(E.retract(jnp.ones(3), jnp.ones(3)), 2.0)
    with pytest.raises(ValueError, match="Haar"):
        E.sample_haar(jr.key(0), (3,))


def test_bad_states_are_rejected():
    with pytest.raises(ValueError, match=r"must end in \(3, 3\)"):
        sq.SU(3).check_state(jnp.zeros((4, 2, 2), jnp.complex64))
    with pytest.raises(ValueError, match="non-finite"):
        sq.Euclidean().check_state(jnp.array([1.0, jnp.nan]))
    with pytest.raises(ValueError, match="must be real"):
        sq.U1().check_state(jnp.ones(3, jnp.complex64))
    with pytest.raises(ValueError, match="N ≥ 2"):
        sq.SU(1)
