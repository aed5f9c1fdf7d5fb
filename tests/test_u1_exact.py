"""The exact 2D U(1) sampler (plaquette variables) against the character expansion."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import stats
from test_mcmc import assert_4sigma, u1_exact

import sqdiff as sq
from sqdiff.groups import wrap_angle
from sqdiff.theories import links_from_plaquettes, plaquette_angles, topological_charge, von_mises


@pytest.mark.parametrize("kappa", [0.05, 0.3, 7.0])
def test_von_mises_matches_scipy(kappa):
    x = np.asarray(von_mises(jr.key(0), kappa, (40000,)))
    assert np.all(np.abs(x) <= np.pi)
    assert stats.kstest(x, stats.vonmises(kappa).cdf).pvalue > 1e-3


def test_links_reproduce_any_admissible_plaquettes():
    L = 6
    p = jr.uniform(jr.key(1), (L, L), minval=-3.0, maxval=3.0)
    p = p.at[-1, -1].add(2 * jnp.pi - jnp.sum(p))  # total flux 2π: charge 1
    theta = links_from_plaquettes(jr.key(2), p)
    assert theta.shape == (2, L, L)
    assert float(jnp.max(jnp.abs(wrap_angle(plaquette_angles(theta) - p)))) < 1e-5
    assert (
        abs(float(topological_charge(theta)) - round(float(jnp.sum(wrap_angle(p))) / (2 * np.pi)))
        < 1e-5
    )


@pytest.mark.parametrize("beta, L", [(1.0, 8), (7.0, 8)])
def test_exact_samples_reproduce_plaquette_and_chi_t(beta, L):
    """Independent draws: plain errors, 4σ against the finite-volume exact values. β = 7 is
    where HMC freezes (docs/references.md)."""
    x = sq.u1_exact_samples(jr.key(3), L, beta, 16000)
    assert x.shape == (16000, 2, L, L)
    res = sq.analyze(sq.U1Wilson2D(L, beta), np.asarray(x)[None])
    plaq, chi = u1_exact(beta, L)
    assert_4sigma(res["plaquette"], plaq)
    assert_4sigma(res["chi_t"], chi)
    assert res["chi_t"].tau_int < 1.0  # no autocorrelation


def test_exact_sampler_bad_input():
    with pytest.raises(ValueError, match="beta"):
        sq.u1_exact_samples(jr.key(0), 8, -1.0, 10)
    with pytest.raises(ValueError, match="`n`"):
        sq.u1_exact_samples(jr.key(0), 8, 1.0, 0)
    with pytest.raises(ValueError, match="L"):
        sq.u1_exact_samples(jr.key(0), 1, 1.0, 10)
