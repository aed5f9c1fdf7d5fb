"""Samplers against exact values (fixed seeds, 4σ with Γ-method errors)."""

import math

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import integrate, special

import sqdiff as sq


def chains(action, sampler, n, n_chains=4, therm=200, seed=0, thin=1):
    init = jax.vmap(action.random_config)(jr.split(jr.key(seed), n_chains))
    return sq.run_chains(sampler, jr.key(seed + 1), init, n, n_therm=therm, thin=thin)


def assert_4sigma(result, exact):
    assert abs(result.value - exact) < 4 * result.error, (result, exact)


# --- integrators --------------------------------------------------------------------------
@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize(
    "action",
    [sq.Phi4(8, 0.21, 0.022), sq.SUNWilson(2, 4, 2.0, d=2), sq.U1Wilson2D(6, 3.0)],
    ids=["phi4", "su2", "u1"],
)
def test_integrators_are_reversible(action, integrator):
    hmc = sq.HMC(action, 0.05, 20, integrator)
    pos = action.random_config(jr.key(0))
    P = hmc.sample_momentum(jr.key(1), pos)
    pos1, P1, _ = hmc.integrate(pos, P)
    back, Pb, _ = hmc.integrate(pos1, -P1)
    assert float(jnp.max(jnp.abs(pos1 - pos))) > 1e-2  # it moved
    np.testing.assert_allclose(back, pos, atol=2e-4)
    np.testing.assert_allclose(-Pb, P, atol=2e-3)


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
def test_energy_violation_is_second_order(integrator):
    jax.config.update("jax_enable_x64", True)
    try:
        action = sq.Phi4(6, 0.21, 0.022)
        pos = jr.normal(jr.key(2), (6, 6), jnp.float64)

        def mean_dH(eps, n):
            hmc = sq.HMC(action, eps, n, integrator)

            def dH(k):
                P = hmc.sample_momentum(k, pos)
                new, P1, _ = hmc.integrate(pos, P)
                return action(new) + hmc.kinetic(P1) - action(pos) - hmc.kinetic(P)

            return float(jnp.mean(jnp.abs(jax.vmap(dH)(jr.split(jr.key(3), 32)))))

        ratio = mean_dH(0.1, 10) / mean_dH(0.05, 20)
        assert 3.0 < ratio < 5.0, ratio  # |ΔH| ∝ ε²
    finally:
        jax.config.update("jax_enable_x64", False)


# --- 0-dim toys --------------------------------------------------------------------------
NUMPY_ACTIONS = {  # the toys' actions in double precision, independent of sqdiff
    "quartic": lambda x, p: p["mu2"] / 2 * x**2 + p["g"] / 24 * x**4,
    "double_well": lambda x, p: (x**2 - 1) ** 2,
    "cosine": lambda x, p: x**2 / 2 - math.cos(p["k"] * x),
}


def _moments(action):
    w = lambda x: math.exp(-NUMPY_ACTIONS[action.name](x, action.params))  # noqa: E731
    z = integrate.quad(w, -np.inf, np.inf, limit=200)[0]
    return [
        integrate.quad(lambda x, k=k: x**k * w(x), -np.inf, np.inf, limit=200)[0] / z
        for k in (2, 4)
    ]


TOYS = [sq.Quartic0D(1.0, 0.4), sq.Quartic0D(-1.0, 0.4), sq.DoubleWell0D(), sq.Cosine0D(5.0)]


@pytest.mark.parametrize("action", TOYS, ids=lambda a: f"{a.name}{a.params}")
@pytest.mark.parametrize("kind", ["hmc", "mala"])
def test_samplers_reproduce_zero_dim_moments(action, kind):
    exact = _moments(action)
    if isinstance(action, sq.Quartic0D) and action.mu2 == 1.0:
        np.testing.assert_allclose(exact, [0.862097, 2.068551], rtol=1e-5)  # docs/references.md
    sampler = sq.HMC(action, 0.25, 8) if kind == "hmc" else sq.MALA(action, 0.1)
    samples, acc = chains(action, sampler, 3000, n_chains=16, thin=2 if kind == "mala" else 1)
    assert np.all(acc > 0.5)
    res = sq.analyze(action, samples)
    assert_4sigma(res["<phi^2>"], exact[0])
    assert_4sigma(res["<phi^4>"], exact[1])


# --- U(1) gauge theory in 2D ---------------------------------------------------------------
def u1_exact(beta, L):
    """Finite-volume plaquette and χ_t from the character expansion (docs/references.md)."""
    V = L * L
    n = np.arange(-30, 31)
    I0 = special.iv(0, beta)  # normalise to avoid overflow of I_n^V
    In = special.iv(n, beta) / I0
    dIn = 0.5 * (special.iv(n - 1, beta) + special.iv(n + 1, beta)) / I0
    plaq = np.sum(In ** (V - 1) * dIn) / np.sum(In**V)

    def c(nu, power):  # (1/2π) ∫ φ^power e^{β cos φ} (cos|sin)(νφ) with the right derivative
        f = {
            0: lambda p: np.cos(nu * p),
            1: lambda p: -p * np.sin(nu * p),
            2: lambda p: -p * p * np.cos(nu * p),
        }[power]
        return integrate.quad(lambda p: f(p) * np.exp(beta * np.cos(p)), -np.pi, np.pi, limit=200)[
            0
        ] / (2 * np.pi)

    Z = Z2 = 0.0
    norm = c(0, 0)
    for m in range(-6, 7):
        c0, c1, c2 = c(m, 0) / norm, c(m, 1) / norm, c(m, 2) / norm
        Z += c0**V
        Z2 += V * (V - 1) * c0 ** (V - 2) * c1**2 + V * c0 ** (V - 1) * c2
    Q2 = -Z2 / (2 * np.pi) ** 2 / Z
    return plaq, Q2 / V


def test_u1_exact_values_match_reference():
    for beta, L, plaq, chi in [
        (1, 8, 0.446390, 0.040636),
        (3, 8, 0.809986, 0.011060),
        (7, 16, 0.925532, 0.003931),
    ]:
        p, c = u1_exact(beta, L)
        np.testing.assert_allclose([p, c], [plaq, chi], rtol=0, atol=6e-7)  # 6 decimals quoted


def test_u1_hmc_plaquette_and_topological_susceptibility():
    beta, L = 3.0, 8
    action = sq.U1Wilson2D(L, beta)
    samples, acc = chains(action, sq.HMC(action, 0.1, 10), 1000, n_chains=8)
    assert np.all(acc > 0.8)
    res = sq.analyze(action, samples)
    plaq, chi = u1_exact(beta, L)
    assert_4sigma(res["plaquette"], plaq)
    assert_4sigma(res["chi_t"], chi)


def test_u1_mala_plaquette_and_topological_susceptibility():
    # MALA on U(1) angles: wrapped proposals with the wrapped Gaussian density
    beta, L = 1.0, 4
    action = sq.U1Wilson2D(L, beta)
    samples, acc = chains(action, sq.MALA(action, 0.05), 2000, n_chains=8, thin=2)
    assert np.all(acc > 0.5)
    res = sq.analyze(action, samples)
    plaq, chi = u1_exact(beta, L)
    assert_4sigma(res["plaquette"], plaq)
    assert_4sigma(res["chi_t"], chi)


# --- free field ---------------------------------------------------------------------------
def _free_propagator(L, kappa):
    p = 2 * np.pi * np.fft.fftfreq(L)
    return 1 / (2 - 4 * kappa * (np.cos(p)[:, None] + np.cos(p)[None, :]))


@pytest.mark.parametrize("kind", ["fahmc", "hmc+wolff"])
def test_free_field_two_point_function_at_every_momentum(kind):
    L, kappa = 8, 0.2
    action = sq.Phi4(L, kappa, 0.0)
    if kind == "fahmc":
        kernel = sq.FourierKernel.free_field((L, L), (2 - 8 * kappa) / (2 * kappa))
        sampler = sq.HMC(action, 0.25, 10, kernel=kernel)
    else:
        sampler = sq.Composed(sq.HMC(action, 0.2, 10), sq.WolffPhi4(action))
    samples, acc = chains(action, sampler, 1000, n_chains=4)
    G = np.asarray(jax.vmap(jax.vmap(action.two_point))(jnp.asarray(samples)))
    exact = _free_propagator(L, kappa)
    for i in range(L):
        for j in range(L):
            r = sq.stats.gamma_method(G[:, :, i, j][..., None])
            assert abs(r.value - exact[i, j]) < 4 * r.error, (i, j, r, exact[i, j])


def test_wolff_flips_one_cluster_and_keeps_magnitudes():
    action = sq.Phi4(8, 0.3, 0.022)
    phi = jr.normal(jr.key(5), (8, 8))
    wolff = sq.WolffPhi4(action)
    state, info = wolff.step(jr.key(6), wolff.init(phi))
    new = state.position
    np.testing.assert_allclose(jnp.abs(new), jnp.abs(phi))
    flipped = int(jnp.sum(jnp.sign(new) != jnp.sign(phi)))
    assert flipped == int(info.cluster_size) >= 1
    with pytest.raises(ValueError, match="kappa > 0"):
        sq.WolffPhi4(sq.Phi4(8, -0.1, 0.1))


# --- SU(2) gauge theory in 2D ---------------------------------------------------------------
def test_su2_2d_hmc_plaquette():
    beta = 2.0
    action = sq.SUNWilson(2, 6, beta, d=2)
    samples, acc = chains(action, sq.HMC(action, 0.1, 10, "omelyan"), 400, n_chains=4, therm=100)
    assert np.all(acc > 0.8)
    res = sq.analyze(action, samples)
    # 2D: plaquettes are independent, ⟨½ tr U_P⟩ = I2(β)/I1(β) (finite-V corrections ≪ errors)
    assert_4sigma(res["plaquette"], special.iv(2, beta) / special.iv(1, beta))
    U = np.asarray(samples[:, -1])
    assert np.max(np.abs(np.linalg.det(U) - 1)) < 1e-5


def test_sampler_bad_input():
    action = sq.Phi4(4, 0.2, 0.1)
    with pytest.raises(ValueError, match="step_size"):
        sq.HMC(action, 0.0, 10)
    with pytest.raises(ValueError, match="n_steps"):
        sq.HMC(action, 0.1, 0)
    with pytest.raises(ValueError, match="integrator"):
        sq.HMC(action, 0.1, 10, "rk4")
    with pytest.raises(ValueError, match="shape"):
        sq.run_chains(sq.HMC(action, 0.1, 3), jr.key(0), jnp.zeros((2, 5, 5)), 10)
    with pytest.raises(ValueError, match="non-finite"):
        sq.run_chains(sq.HMC(action, 0.1, 3), jr.key(0), jnp.full((2, 4, 4), jnp.nan), 10)
    with pytest.raises(ValueError, match="n_samples"):
        sq.run_chains(sq.HMC(action, 0.1, 3), jr.key(0), jnp.zeros((2, 4, 4)), 0)


def test_phi4_symmetric_phase_chi2_matches_independent_run():
    # docs/references.md: 2D φ⁴, λ = 0.022, L = 32, κ = 0.21: χ2 = 2.577 ± 0.013 (256k sweeps)
    action = sq.Phi4(32, 0.21, 0.022)
    fa = sq.HMC(action, 0.1, 10, kernel=sq.FourierKernel.free_field((32, 32), 0.05))
    samples, acc = chains(action, fa, 2000, n_chains=8, therm=300)
    res = sq.analyze(action, samples)["chi2"]
    assert abs(res.value - 2.577) < 4 * np.hypot(res.error, 0.013), res
    assert res.tau_int < 2.0  # Fourier acceleration decorrelates χ2 within ~1 trajectory
