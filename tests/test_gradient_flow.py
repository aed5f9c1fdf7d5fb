"""Wilson flow (Lüscher RK3 in diffrax) and the field-strength observables, against exact
results: a weak plane wave decays as e^{−p̂² t}; a constant abelian field with flux in two
planes is a classical solution with clover charge 2 (sin f / f)²; the integrator converges at
third order and keeps the links unitary."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.gradient_flow import (
    analyze_flow,
    flow_grid,
    flow_observables,
    flowed_primaries,
    scale_t0,
    scale_w0,
    wilson_flow,
)
from sqdiff.theories.field_strength import (
    clover_field_strength,
    energy_density_clover,
    energy_density_plaquette,
    topological_charge_clover,
)
from sqdiff.theories.sun import polyakov_loop


def abelian_flux(L, n01=1, n23=1, N=2):
    """SU(N) links diag(e^{iθ}, e^{−iθ}, 1…) with θ a U(1) field of n01 (n23) flux quanta
    spread evenly over the 01 (23) planes: every plaquette angle is 2π n / L²."""
    x = np.indices((L,) * 4)
    th = np.zeros((4,) + (L,) * 4)
    for a, b, n in ((0, 1, n01), (2, 3, n23)):
        th[a] += -2 * np.pi * n * x[b] / L**2
        th[b] += np.where(x[b] == L - 1, 2 * np.pi * n * x[a] / L, 0)
    U = np.zeros(th.shape + (N, N), complex)
    U[..., 0, 0], U[..., 1, 1] = np.exp(1j * th), np.exp(-1j * th)
    for k in range(2, N):
        U[..., k, k] = 1
    return jnp.asarray(U)


def test_clover_charge_and_energy_of_constant_abelian_field(x64):
    L = 6
    f = 2 * np.pi / L**2
    for n01, n23 in ((1, 1), (1, -1), (2, 1)):
        U = abelian_flux(L, n01, n23)
        f01, f23 = n01 * f, n23 * f
        # all four clover leaves equal diag(e^{if}, e^{−if}): G = i sin f σ3
        q = -2 * np.sin(f01) * np.sin(f23) * -(L**4) / (4 * np.pi**2)
        np.testing.assert_allclose(topological_charge_clover(U), q, rtol=1e-12)
        if abs(n01) == 1:  # one flux quantum per plane: within 0.05 of the integer ±2
            assert abs(abs(q) - 2) < 0.05
        e_clov = (2 * np.sin(f01) ** 2 + 2 * np.sin(f23) ** 2) / 1
        np.testing.assert_allclose(energy_density_clover(U), e_clov, rtol=1e-12)
        e_plaq = 2 * 2 * ((1 - np.cos(f01)) + (1 - np.cos(f23)))
        np.testing.assert_allclose(energy_density_plaquette(U), e_plaq, rtol=1e-12)
    G = clover_field_strength(abelian_flux(4))
    np.testing.assert_allclose(G, -jnp.swapaxes(G, 0, 1), atol=1e-15)
    np.testing.assert_allclose(G, -jnp.conj(jnp.swapaxes(G, -1, -2)), atol=1e-15)
    with pytest.raises(ValueError, match="d = 4"):
        topological_charge_clover(jnp.zeros((2, 4, 4, 2, 2), complex))


def test_field_strength_observables_are_gauge_invariant(x64):
    action = sq.SUNWilson(3, 4, 6.0, d=4)
    g = action.group
    U = g.exp(0.7 * g.sample_algebra(jr.key(0), action.lattice_shape, jnp.float64))
    omega = g.sample_haar(jr.key(1), (4,) * 4, jnp.float64)
    Uo = jnp.stack(
        [omega @ U[mu] @ jnp.conj(jnp.swapaxes(jnp.roll(omega, -1, mu), -1, -2)) for mu in range(4)]
    )
    for fn in (energy_density_clover, energy_density_plaquette, topological_charge_clover):
        np.testing.assert_allclose(fn(Uo), fn(U), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(polyakov_loop(Uo), polyakov_loop(U), atol=1e-12)


def test_polyakov_loop_of_constant_links():
    for action in (sq.SUNWilson(2, 4, 1.0, d=2), sq.UNWilson(2, 4, 1.0, d=2)):
        phases = jnp.asarray([0.3, -0.3])
        U = jnp.broadcast_to(
            jnp.diag(jnp.exp(1j * phases)).astype(jnp.complex64), action.config_shape
        )
        expected = jnp.mean(jnp.exp(1j * 4 * phases))  # (1/N) tr U^L
        np.testing.assert_allclose(polyakov_loop(U), expected, rtol=1e-5)
        m = action.measure(U)
        np.testing.assert_allclose(m["absP"], abs(expected), rtol=1e-5)


def test_plane_wave_decays_at_the_lattice_laplacian_rate(x64):
    """The flow velocity's normalisation: a weak transverse abelian wave A_1 ∝ cos(p x_0)
    decays as e^{−p̂² t}, so E(t) = E(0) e^{−2 p̂² t} (Lüscher 2010, Eq. 2.12 linearised)."""
    L, p, eps = 8, 2 * np.pi / 8, 1e-3
    x = np.indices((L,) * 4)
    th = np.zeros((4,) + (L,) * 4)
    th[1] = eps * np.cos(p * x[0])
    U = np.zeros(th.shape + (2, 2), complex)
    U[..., 0, 0], U[..., 1, 1] = np.exp(0.5j * th), np.exp(-0.5j * th)
    ts = np.array([0.0, 0.5, 1.0])
    obs = flow_observables(sq.SUNWilson(2, L, 2.0, d=4), U, ts, eps=0.02)
    rate = 2 * 4 * np.sin(p / 2) ** 2
    np.testing.assert_allclose(obs["E_plaq"] / obs["E_plaq"][0], np.exp(-rate * ts), rtol=1e-5)
    # the exact derivative dE/dt along the flow
    np.testing.assert_allclose(obs["dE_clov"], -rate * obs["E_clov"], rtol=1e-5)


def test_constant_field_is_a_classical_solution_and_flow_restores_the_charge(x64):
    """The constant flux field does not flow; with noise on top the flow smooths it back and
    the clover charge returns to within 0.05 of the integer 2 while E decreases."""
    L = 6
    action = sq.SUNWilson(2, L, 2.0, d=4)
    U = abelian_flux(L)
    ts = np.linspace(0, 2.0, 11)
    still = flow_observables(action, U, ts, eps=0.05)
    for k in ("E_plaq", "E_clov", "Q"):
        np.testing.assert_allclose(still[k], still[k][0], rtol=1e-12)
    np.testing.assert_allclose(still["dE_clov"], 0, atol=1e-12)
    g = action.group
    noisy = g.apply(U, g.algebra(0.25 * g.sample_algebra(jr.key(2), action.lattice_shape)))
    obs = flow_observables(action, noisy, ts, eps=0.05)
    assert abs(float(topological_charge_clover(noisy)) - 2) > 0.1  # the noise spoils it
    assert abs(float(obs["Q"][-1]) - 2) < 0.05
    assert np.all(np.diff(obs["E_plaq"]) < 0) and np.all(np.diff(obs["E_clov"]) < 0)
    assert np.all(obs["dE_clov"] < 0)


def test_rk3_converges_at_third_order_and_stays_unitary(x64):
    action = sq.SUNWilson(2, 4, 2.0, d=4)
    g = action.group
    U = g.exp(0.8 * g.sample_algebra(jr.key(0), action.lattice_shape, jnp.float64))
    ref = wilson_flow(action, U, 1.0, n_steps=320).ys[-1]
    errors = [float(jnp.max(jnp.abs(wilson_flow(action, U, 1.0, n_steps=n).ys[-1] - ref)))
              for n in (10, 20, 40)]  # fmt: skip
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 2.7) & (orders < 3.4)), orders
    unitarity = jnp.max(jnp.abs(jnp.conj(jnp.swapaxes(ref, -1, -2)) @ ref - jnp.eye(2)))
    assert unitarity < 1e-13 and jnp.max(jnp.abs(jnp.linalg.det(ref) - 1)) < 1e-13
    # adaptive steps from the embedded second-order estimate reach the tolerance
    sol = wilson_flow(action, U, 1.0, adaptive=True, rtol=1e-7, atol=1e-7)
    assert float(jnp.max(jnp.abs(sol.ys[-1] - ref))) < 1e-6
    assert 0 < int(sol.stats["num_accepted_steps"]) < 320


def test_flow_keeps_float32_links_unitary():
    action = sq.SUNWilson(3, 4, 6.0, d=4)
    g = action.group
    U = g.sample_haar(jr.key(3), action.lattice_shape)
    V = wilson_flow(action, U, 3.0, n_steps=150).ys[-1]
    assert V.dtype == jnp.complex64
    assert jnp.max(jnp.abs(jnp.conj(jnp.swapaxes(V, -1, -2)) @ V - jnp.eye(3))) < 2e-6
    assert jnp.max(jnp.abs(jnp.linalg.det(V) - 1)) < 2e-6


def test_scales_from_exact_curves():
    """t0 and w0 by interpolation: E = c/t (t²E = c t, W = c t) crosses 0.3 at t = 0.3/c."""
    ts = np.linspace(0.1, 3, 59)
    c = 0.2
    assert abs(scale_t0(ts, c / ts) - 1.5) < 1e-12
    assert abs(scale_w0(ts, c / ts, -c / ts**2) - np.sqrt(1.5)) < 1e-12
    assert np.isnan(scale_t0(ts, 0.01 / ts))
    ts, n = flow_grid(1.0, 0.01)
    assert n == 100 and ts[-1] == 1.0 and len(ts) == 51 and np.allclose(np.diff(ts), 0.02)


def test_analyze_flow_in_2d_un_gives_the_integer_charge():
    action = sq.UNWilson(1, 6, 2.0, d=2)
    samples = sq.UN(1).sample_haar(jr.key(0), (2, 4) + action.lattice_shape)
    res = analyze_flow(action, samples, 0.5, eps=0.05)
    ts, prim = flowed_primaries(action, samples, 0.5, eps=0.05)  # the same compiled flow
    Q = prim["Q"]
    np.testing.assert_allclose(Q, np.round(Q), atol=1e-4)  # arg det: integers along the flow
    np.testing.assert_allclose(res["Q(t=0.5)"].value, Q[..., -1].mean(), rtol=1e-6)
    np.testing.assert_allclose(res["chi_t(t=0.5)"].value, (Q[..., -1] ** 2).mean() / 36, rtol=1e-6)
    assert np.all(np.diff(prim["E_plaq"], axis=-1) <= 1e-6)


def test_flow_rejects_bad_input():
    action = sq.SUNWilson(2, 4, 2.0, d=4)
    U = action.group.identity(action.lattice_shape)
    with pytest.raises(TypeError, match="gauge theory"):
        wilson_flow(sq.Phi4(4, 0.2, 0.1), U, 1.0, n_steps=2)
    with pytest.raises(ValueError, match="n_steps"):
        wilson_flow(action, U, 1.0)
    with pytest.raises(ValueError, match="t_max"):
        wilson_flow(action, U, -1.0, n_steps=2)
    with pytest.raises(ValueError, match="shape"):
        wilson_flow(action, U[:, :2], 1.0, n_steps=2)
    with pytest.raises(ValueError, match="not in SU"):
        wilson_flow(action, 2 * U, 1.0, n_steps=2)
    # a flow that would not end (issue 40, 11: `measure --flow 1e6 --flow-eps 1e-6`) is refused
    with pytest.raises(ValueError, match="1e\\+12 RK3 steps"):
        flow_grid(1e6, 1e-6)
    with pytest.raises(ValueError, match="inf RK3 steps"):
        flow_grid(1e300, 1e-300)
    with pytest.raises(ValueError, match="RK3 steps"):
        wilson_flow(action, U, 1.0, n_steps=10**7)
    with pytest.raises(ValueError, match="increasing"):
        flow_observables(action, U, [1.0, 0.5])
