"""Instanton-insertion moves for 2D U(1) (`mcmc.InstantonU1`): the instanton's charge and
field, and exact topology at β = 7 with a deliberately wrong local drift, where local moves
alone freeze."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from test_mcmc import assert_4sigma, u1_exact

import sqdiff as sq
from sqdiff.groups import wrap_angle
from sqdiff.theories import plaquette_angles, topological_charge


@pytest.mark.parametrize("L, q", [(4, 1), (8, -2), (16, 3)])
def test_instanton_has_charge_q_and_a_uniform_field(L, q):
    inst = sq.mcmc.u1_instanton(L, q)
    assert inst.shape == (2, L, L)
    assert abs(float(topological_charge(inst)) - q) < 1e-4
    P = np.asarray(wrap_angle(plaquette_angles(inst)))
    np.testing.assert_allclose(P, 2 * np.pi * q / L**2, atol=1e-5)


def test_instanton_move_changes_the_charge_by_one():
    action = sq.U1Wilson2D(8, 7.0)
    moves = sq.mcmc.InstantonU1(action, 1)
    theta = jnp.zeros((2, 8, 8))  # Q = 0, S = 0: any charge costs, so some moves are refused
    charges = set()
    for i in range(40):
        new, p, accepted = moves._move(jr.key(i), theta)
        dq = float(topological_charge(new) - topological_charge(theta))
        charges.add(round(dq) if bool(accepted) else 0)
        assert abs(dq - (round(dq) if bool(accepted) else 0)) < 1e-4
    assert charges == {-1, 0, 1}


def wrong_drift_score(action, scale):
    """A "learned" score that is `scale` times the true one at t_mh: deliberately wrong."""
    grad = jax.grad(action)
    return lambda t, theta: -scale * grad(theta)


@pytest.mark.parametrize("instanton", [0, 4], ids=["local-only", "with-instantons"])
def test_maala_with_instanton_moves_is_exact_for_a_wrong_model_at_beta_7(instanton):
    # L = 16, β = 7: exact χ_t = 0.003931, plaquette 0.925532 (docs/references.md). Cold starts
    # put every chain in Q = 0 and the drift is 0.6× the true one. MAALA alone stays at Q = 0
    # (the negative control); with instanton moves both observables are exact within 4σ.
    L, beta = 16, 7.0
    action = sq.U1Wilson2D(L, beta)
    mala = sq.mcmc.MAALA(action, wrong_drift_score(action, 0.6), 0.05, 0.001)
    sampler = mala if not instanton else sq.mcmc.Composed(mala, sq.mcmc.InstantonU1(action, 4))
    n, n_therm = (1000, 300) if instanton else (200, 100)
    start = jnp.zeros((16, 2, L, L))
    samples, acc = sq.mcmc.run_chains(sampler, jr.key(1), start, n, n_therm=n_therm, thin=2)
    assert 0.2 < float(np.mean(acc)) < 0.8  # the wrong local drift still moves the links
    res = sq.analyze(action, samples)
    plaq, chi = u1_exact(beta, L)
    if instanton:
        assert_4sigma(res["plaquette"], plaq)
        assert_4sigma(res["chi_t"], chi)
    else:
        assert res["chi_t"].value < 1e-6  # frozen in the starts' sector (Q = 0 up to rounding)


def test_instanton_moves_refuse_other_theories():
    with pytest.raises(ValueError, match="theory 'u1'"):
        sq.mcmc.InstantonU1(sq.Phi4(8, 0.2, 0.02))
    with pytest.raises(ValueError, match="n_moves"):
        sq.mcmc.InstantonU1(sq.U1Wilson2D(8, 1.0), 0)
