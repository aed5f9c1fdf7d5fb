"""Does the score network still have something to learn? The denoising-score-matching loss on
held-out configurations, per band of noise levels, against a bound on its irreducible part
(issue 39; `sqdiff train` prints it).

The Σ²-weighted DSM loss per site, `ℓ(t) = E‖Σ s(t, x_t) + η‖²/D` with `x_t = m x_0 + Σ η`, is
smallest for the true score `s* = ∇ log p_t`, where it equals `1 − (Σ²/D) tr J_t`, `J_t` the
Fisher information of `p_t`. For any law, `J_t ≥ C_t⁻¹` (the Cramér–Rao bound; `C_t = m² C +
Σ² 1` with `C` the data's covariance), with equality for Gaussian data. So

    ℓ_min(t) ≤ B(t) = 1 − (Σ²/D) Σ_k 1/(m² c_k + Σ²) = (1/D) Σ_k m² c_k / (m² c_k + Σ²),

with `c_k` the eigenvalues of `C`: the irreducible loss of Gaussian data with the data's
covariance. A held-out loss **above** `B(t)` by more than its noise is certainly reducible (a
better network or more training lowers it); one at or below `B` may still be (non-Gaussian
data carry more Fisher information), so the flag is one-sided: it never cries wolf.

`c_k` come from the full covariance matrix up to `MAX_DENSE` coordinates, and above that from
the power spectrum `E|φ̃(p)|²` of the centred configurations (FFT), exact for translation-
invariant laws such as lattice field theories.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from .schedules import AbstractSchedule

__all__ = ["Band", "band_losses", "data_spectrum", "gaussian_bound"]

#: the covariance is diagonalised densely up to this many coordinates, by FFT above
MAX_DENSE = 1024
#: a band is flagged when its held-out loss exceeds the bound by this many standard errors
REDUCIBLE_SE = 3.0


class Band(NamedTuple):
    """One band of noise levels `Σ ∈ [sigma_lo, sigma_hi]`: the held-out loss, the Gaussian
    bound `B` on its irreducible part at the same times, and the standard error of their
    difference (configurations and noise draws taken as independent)."""

    sigma_lo: float
    sigma_hi: float
    loss: float
    error: float
    bound: float

    @property
    def excess(self) -> float:
        """The loss above the bound, in standard errors."""
        return (self.loss - self.bound) / self.error if self.error > 0 else math.inf

    @property
    def reducible(self) -> bool:
        return self.excess > REDUCIBLE_SE


def data_spectrum(data) -> np.ndarray:
    """The eigenvalues `c_k` of the covariance of `data` `(n, *config)` (float64): dense up to
    `MAX_DENSE` coordinates, else the power spectrum of the centred fields (translation-
    invariant laws)."""
    x = np.asarray(data, np.float64)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"`data` must hold at least 2 configurations, got shape {x.shape}.")
    x = x - x.mean(0)
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] <= MAX_DENSE:
        return np.clip(np.linalg.eigvalsh(flat.T @ flat / (flat.shape[0] - 1)), 0, None)
    axes = tuple(range(1, x.ndim))
    power = np.abs(np.fft.fftn(x, axes=axes, norm="ortho")) ** 2
    return (power.sum(0) / (x.shape[0] - 1)).ravel()


def gaussian_bound(spectrum, mean_coeff, std):
    """`B = (1/D) Σ_k m² c_k / (m² c_k + Σ²)` at noise levels `(m, Σ)` (arrays broadcast)."""
    c = jnp.asarray(spectrum, jnp.float32)
    m2c = jnp.asarray(mean_coeff)[..., None] ** 2 * c
    return jnp.mean(m2c / (m2c + jnp.asarray(std)[..., None] ** 2), axis=-1)


def _band_edges(schedule: AbstractSchedule, t_min: float, bands: int) -> np.ndarray:
    """Times whose `Σ(t)` are spaced evenly in log between `Σ(t_min)` and `Σ(T)`."""
    grid = np.linspace(t_min, schedule.T, 4097)
    log_s = np.log(np.asarray(schedule.marginal_std(jnp.asarray(grid)), np.float64))
    return np.interp(np.linspace(log_s[0], log_s[-1], bands + 1), log_s, grid)


def band_losses(
    model,
    schedule: AbstractSchedule,
    data,
    key,
    *,
    spectrum=None,
    bands: int = 8,
    t_min: float = 1e-3,
    draws: int = 4,
) -> list[Band]:
    """The DSM loss of `model` on the held-out configurations `data` `(n, *config)`, per band of
    noise levels (even in log Σ from `Σ(t_min)` to `Σ(T)`), each against `gaussian_bound`.

    Args:
        model: the score network `s(t, x)`.
        schedule: its noise schedule.
        data: held-out configurations (not trained on).
        key: the PRNG key of the noise and the times.
        spectrum: the covariance eigenvalues for the bound (default: `data_spectrum(data)`;
            pass the training data's for a tighter estimate).
        bands: how many bands.
        t_min: the smallest time (the training objective's).
        draws: noise draws per configuration and band.
    """
    x = jnp.asarray(data)
    spectrum = data_spectrum(x) if spectrum is None else spectrum
    edges = _band_edges(schedule, t_min, bands)
    n = x.shape[0]
    shape = (-1,) + (1,) * (x.ndim - 1)

    @jax.jit
    def losses(k, lo, hi):
        kt, ke = jr.split(k)
        t = jr.uniform(kt, (draws * n,), minval=lo, maxval=hi)
        x0 = jnp.tile(x, (draws,) + (1,) * (x.ndim - 1))
        eta = jr.normal(ke, x0.shape, x0.dtype)
        m, s = schedule.mean_coeff(t), schedule.marginal_std(t)
        pred = jax.vmap(model)(t, m.reshape(shape) * x0 + s.reshape(shape) * eta)
        per = jnp.mean(((s.reshape(shape) * pred + eta) ** 2).reshape(t.shape[0], -1), axis=1)
        return per, gaussian_bound(spectrum, m, s)

    out = []
    for i, k in enumerate(jr.split(key, bands)):
        per, bound = losses(k, edges[i], edges[i + 1])
        per, bound = np.asarray(per, np.float64), np.asarray(bound, np.float64)
        lo, hi = (float(schedule.marginal_std(edges[j])) for j in (i, i + 1))
        # paired: loss and bound at the same times, so the error is that of their difference
        error = float(np.std(per - bound, ddof=1) / math.sqrt(per.size))
        out.append(Band(lo, hi, float(per.mean()), error, float(bound.mean())))
    return out
