"""`sqdiff.validation`: the held-out DSM loss per noise band against the Gaussian bound on its
irreducible part. On Gaussian data the bound is the irreducible loss itself: the exact score
reaches it in every band (within 4σ), and a score that has learned nothing is flagged."""

import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.validation import band_losses, data_spectrum, gaussian_bound


def _gaussian_lattice(n, L, key):
    """`n` configurations of a Gaussian field on `L × L` with power spectrum
    `c(p) = 1/(0.3 + p̂²)` (a free field), and that spectrum."""
    p = 2 * np.pi * np.fft.fftfreq(L)
    p2 = 4 * np.sin(p[:, None] / 2) ** 2 + 4 * np.sin(p[None, :] / 2) ** 2
    c = 1 / (0.3 + p2)
    z = np.asarray(jr.normal(key, (n, L, L)), np.float64)
    x = np.real(np.fft.ifftn(np.fft.fftn(z, axes=(1, 2), norm="ortho") * np.sqrt(c), axes=(1, 2),
                             norm="ortho"))  # fmt: skip
    return x.astype(np.float32), c


def _exact_score(schedule, c):
    def score(t, x):  # the score of N(0, m²C + Σ²): −(m²C + Σ²)⁻¹ x, diagonal in momenta
        m, s = schedule.mean_coeff(t), schedule.marginal_std(t)
        xt = jnp.fft.fftn(x, norm="ortho")
        return jnp.real(jnp.fft.ifftn(-xt / (m**2 * c + s**2), norm="ortho"))

    return score


@pytest.mark.parametrize("L", [8, 40])  # dense covariance (64 sites) and FFT (1600 sites)
def test_the_exact_score_of_gaussian_data_reaches_the_bound_and_a_blank_one_is_flagged(L):
    x, c = _gaussian_lattice(400, L, jr.key(0))
    spectrum = data_spectrum(x)
    # the estimated spectrum is the true one (sorted: the dense path does not keep p)
    np.testing.assert_allclose(np.sort(spectrum), np.sort(c.ravel()), rtol=0.25, atol=0.05)
    schedule = sq.VarianceExploding(25.0)
    bands = band_losses(_exact_score(schedule, jnp.asarray(c)), schedule, x, jr.key(1),
                        spectrum=c.ravel())  # fmt: skip
    assert len(bands) == 8 and bands[0].sigma_lo < 0.05 and bands[-1].sigma_hi > 9
    for b in bands:
        assert abs(b.loss - b.bound) < 4 * b.error, b
        assert not b.reducible
    # a network that has learned nothing (s = 0) has loss E η² = 1 everywhere: near the bound
    # at small Σ (where the noise cannot be told from the data), far above it at large Σ
    blank = band_losses(lambda t, x: jnp.zeros_like(x), schedule, x, jr.key(2), spectrum=c.ravel())
    assert all(abs(b.loss - 1) < 0.05 for b in blank)
    assert all(b.reducible for b in blank[3:]) and blank[-1].bound < 0.1
    # the bound: (1/D) Σ_k m²c_k/(m²c_k + Σ²), from 1 (Σ → 0) to 0 (Σ → ∞)
    assert float(gaussian_bound(c.ravel(), 1.0, 1e-4)) == pytest.approx(1.0, abs=1e-3)
    assert float(gaussian_bound(c.ravel(), 1.0, 1e4)) == pytest.approx(0.0, abs=1e-3)


def test_data_spectrum_bad_input():
    with pytest.raises(ValueError, match="at least 2 configurations"):
        data_spectrum(np.zeros((1, 4, 4)))
