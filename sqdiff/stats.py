r"""Statistics: Γ-method autocorrelation analysis, binning and jackknife errors, cumulants.

Cumulants from raw moments `μ_n = E[x^n]` by the recursion
`κ_n = μ_n − Σ_{m=1}^{n−1} C(n−1, m−1) κ_m μ_{n−m}` (Kendall & Stuart, *The Advanced Theory of
Statistics*, Vol. 1, §3.14). Errors by the delete-one-block jackknife (Efron & Stein 1981).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from math import comb
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float
from scipy import special

__all__ = [
    "Autocorrelation",
    "GammaResult",
    "autocorrelation",
    "too_short",
    "chains_disagree",
    "MIN_REPLICA_Q",
    "MIN_RUN_PER_TAU",
    "binned",
    "cumulants",
    "cumulants_from_moments",
    "effective_sample_size",
    "gamma_method",
    "jackknife",
    "kish_ess",
    "pareto_khat",
    "replica_q_value",
    "PARETO_K_MAX",
    "log_z_estimate",
    "reweighted",
]


def cumulants_from_moments(moments: Float[ArrayLike, " n"]) -> Float[Array, " n"]:
    """`κ_1…κ_n` from raw moments `μ_1…μ_n` (last axis)."""
    mu = jnp.asarray(moments)
    n = mu.shape[-1]
    mom = [jnp.ones_like(mu[..., 0])] + [mu[..., i] for i in range(n)]
    kappa = [None]
    for k in range(1, n + 1):
        val = mom[k]
        for m in range(1, k):
            val = val - comb(k - 1, m - 1) * kappa[m] * mom[k - m]
        kappa.append(val)
    return jnp.stack(kappa[1:], axis=-1)


def cumulants(x: Float[ArrayLike, " n"], order: int = 8) -> Float[Array, " order"]:
    """Plug-in cumulants `κ_1…κ_order` of samples `x` (flattened)."""
    x = jnp.ravel(jnp.asarray(x))
    mu = jnp.stack([jnp.mean(x**k) for k in range(1, order + 1)])
    return cumulants_from_moments(mu)


def jackknife(
    estimator: Callable[[np.ndarray], ArrayLike],
    data: ArrayLike,
    n_blocks: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Delete-one-block jackknife of `estimator(data)` over the leading axis of `data`.

    Returns `(estimate, error)` with `error² = (B−1)/B Σ_b (θ_b − θ̄)²`. Blocks of consecutive
    samples absorb autocorrelation shorter than the block length.
    """
    data = np.asarray(data)
    n = data.shape[0]
    if n_blocks < 2 or n < n_blocks:
        raise ValueError(f"`n_blocks` must be in [2, len(data)={n}], got {n_blocks}.")
    usable = n - n % n_blocks
    blocks = np.array_split(np.arange(usable), n_blocks)
    full = np.asarray(estimator(data[:usable]), dtype=float)
    leave = np.stack(
        [np.asarray(estimator(np.delete(data[:usable], b, axis=0)), dtype=float) for b in blocks]
    )
    err = np.sqrt((n_blocks - 1) / n_blocks * np.sum((leave - leave.mean(0)) ** 2, axis=0))
    return full, err


class GammaResult(NamedTuple):
    """Result of the Γ-method: value, error (autocorrelation included), integrated
    autocorrelation time with its error, the summation window and the effective sample size."""

    value: float
    error: float
    tau_int: float
    tau_int_error: float
    window: int
    ess: float
    #: Pareto k̂ of the importance weights (reweighted estimates only; nan otherwise)
    pareto_k: float = math.nan
    #: Q-value of the replica means (`replica_q_value`; nan with one replica)
    replica_q: float = math.nan


def _gradient(f, abar, h):
    """Central-difference gradient of `f` at the primary means `abar` with steps `h`."""
    grad = np.empty(abar.shape[0])
    for a in range(abar.shape[0]):
        e = np.zeros(abar.shape[0])
        e[a] = h[a]
        grad[a] = (f(abar + e) - f(abar - e)) / (2 * h[a])
    return grad


class _Gamma(NamedTuple):
    """The Γ-method's intermediate results: the bias-corrected autocorrelation function of the
    projected fluctuations, the chosen window and the total sample count."""

    value: float
    gamma: np.ndarray  # Γ(t), t = 0 … n−1, bias-corrected (Wolff Eq. 49); all 0: constant
    window: int
    N: int
    replica_dev: np.ndarray  # (R,): each replica's mean projected fluctuation


class Autocorrelation(NamedTuple):
    """`stats.autocorrelation`: what the Γ-method saw, for plotting and checking by eye."""

    rho: np.ndarray
    """ρ(t) = Γ(t)/Γ(0), t = 0 … n/2."""
    tau_int: np.ndarray
    """τ_int(W) = ½ + Σ_{t=1}^{W} ρ(t), W = 0 … n/2."""
    tau_int_error: np.ndarray
    """The statistical error of τ_int(W), `2τ_int(W) √((W + ½ − τ_int(W))/N)` (Eq. 42)."""
    window: int
    """The window W the automatic windowing chose (the τ_int that `gamma_method` reports)."""


#: the shortest replica (chain) the Γ-method accepts
MIN_PER_REPLICA = 4


# long: Wolff's windowing in one piece (projection, Γ by FFT, window, bias correction)
def _gamma(data: ArrayLike, f: Callable[[np.ndarray], float] | None, S: float) -> _Gamma:
    """The projected autocorrelation function and its window (Γ(0) = 0, window 0: a constant
    series)."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :, None]
    elif x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"`data` must have shape (n,), (n, A) or (R, n, A); got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("`data` contains non-finite values.")
    R, n, A = x.shape
    N = R * n
    if n < MIN_PER_REPLICA:
        raise ValueError(f"need at least {MIN_PER_REPLICA} samples per replica, got {n}.")
    abar = x.reshape(N, A).mean(0)
    if f is None:
        if A != 1:
            raise ValueError("several primary observables need a function `f` of their means.")
        f = lambda a: a[0]  # noqa: E731
    value = float(f(abar))
    # gradient of f at the means by central differences with scale-aware steps
    spread = x.reshape(N, A).std(0)
    h = np.where(spread > 0, spread, np.abs(abar) + 1.0) / np.sqrt(N)
    grad = _gradient(f, abar, h)
    proj = (x - abar) @ grad  # (R, n)
    # Γ(t) summed over replicas, by FFT
    nfft = 1 << int(np.ceil(np.log2(2 * n)))
    ft = np.fft.rfft(proj, nfft, axis=1)
    acf = np.fft.irfft(np.abs(ft) ** 2, nfft, axis=1)[:, :n].sum(0)
    gamma = acf / (N - R * np.arange(n))
    dev = proj.mean(1)
    if gamma[0] <= 0:  # constant observable
        return _Gamma(value, np.zeros(n), 0, N, dev)
    W_max = n // 2
    W = W_max
    tau_sum = gamma[0] / 2
    for w in range(1, W_max + 1):
        tau_sum += gamma[w]
        tau_w = tau_sum / gamma[0]
        tau = S / np.log((2 * tau_w + 1) / (2 * tau_w - 1)) if tau_w > 0.5 else 1e-10
        g = np.exp(-w / tau) - tau / np.sqrt(w * N)
        if g < 0:
            W = w
            break
    cf = gamma[0] + 2 * gamma[1 : W + 1].sum()
    if cf < gamma[0]:
        # Anticorrelated series (τ_int < ½, common for HMC): Wolff's window stops at W = 1 and
        # can return C_F ≤ 0. Use Geyer's initial positive sequence instead (Statist. Sci. 7
        # (1992) 473): C_F = −Γ(0) + 2 Σ_k [Γ(2k) + Γ(2k+1)] over the leading positive pairs.
        pairs = gamma[: 2 * (n // 2)].reshape(-1, 2).sum(1)
        stop = int(np.argmax(pairs <= 0)) if np.any(pairs <= 0) else pairs.size
        W = max(2 * stop - 1, 1)
        cf = -gamma[0] + 2 * pairs[:stop].sum()
        if cf <= 0:  # too short to resolve it: the independent-sample C_F, window 0
            W, cf = 0, gamma[0]
    return _Gamma(value, gamma + cf / N, W, N, dev)  # bias correction (Wolff Eq. 49)


def gamma_method(
    data: ArrayLike,
    f: Callable[[np.ndarray], float] | None = None,
    S: float = 1.5,
) -> GammaResult:
    r"""Wolff's Γ-method with automatic windowing (U. Wolff, Comput. Phys. Commun. 156 (2004)
    143, "Monte Carlo errors with less errors").

    `data` has shape `(n,)` (one observable), `(n, A)` (A primary observables) or
    `(R, n, A)` (R independent replicas/chains of length n). `f` maps the vector of primary
    means to the derived quantity (default: the single primary itself). The projected
    fluctuations `Σ_α ∂f/∂a_α (a_α − ā_α)` are autocorrelated (Γ by FFT), the window `W` is
    the first with `g(W) = e^{−W/τ} − τ/√(W N) < 0` where `τ = S / ln((2τ_W+1)/(2τ_W−1))`
    (Eq. 52), Γ is bias-corrected by `C_F/N`, `σ² = C_F/N`, `τ_int = C_F/(2Γ(0))`,
    `δτ_int ≈ 2τ_int √((W + ½ − τ_int)/N)` (Eq. 42) and `ESS = N/(2τ_int)`. Anticorrelated
    series (τ_int < ½) fall back to Geyer's initial positive sequence for the window, and
    τ_int is kept ≥ 1/(2 log10 N) (ESS ≤ N log10 N, as in Stan and ArviZ). With R > 1
    replicas, `replica_q` is the Q-value of their means (`replica_q_value`).
    `autocorrelation` returns the whole curves ρ(t) and τ_int(W) behind these numbers.
    """
    res = _gamma(data, f, S)
    if res.gamma[0] <= 0:  # a constant series
        return GammaResult(res.value, 0.0, 0.5, 0.0, 0, float(res.N))
    gamma, W, N = res.gamma, res.window, res.N
    # τ_int ≥ 1/(2 log10 N), i.e. ESS ≤ N log10 N: the floor Stan and ArviZ put on antithetic
    # series (Vehtari et al. 2021, Bayesian Anal. 16, 667). Without it a short series whose
    # Γ(1) looks strongly negative got C_F ≤ 0 and an error of ~1e-155: i.i.d. series of 8 did
    # in 6.5 % of draws (tests/test_stats.py). Long anticorrelated chains are not touched
    # (N = 10⁵: τ_int ≥ 0.1; AR(1) with a = −0.5 has 1/6).
    cf = max(gamma[0] + 2 * gamma[1 : W + 1].sum(), gamma[0] / np.log10(N))
    tau_int = cf / (2 * gamma[0])
    error = np.sqrt(cf / N)
    tau_err = 2 * tau_int * np.sqrt(max(W + 0.5 - tau_int, 0.0) / N)
    return GammaResult(
        res.value, float(error), float(tau_int), float(tau_err), int(W), float(N / (2 * tau_int)),
        replica_q=_replica_q(res.replica_dev, cf, N),
    )  # fmt: skip


def _replica_q(dev: np.ndarray, cf: float, N: int) -> float:
    """`Q = Γ_inc((R−1)/2, χ²/2)`, `χ² = Σ_r n_r d_r² / C_F` for replica deviations `d_r`."""
    R = dev.shape[0]
    if R < 2:
        return math.nan
    chi2 = float(np.sum(dev**2) * (N / R) / cf)
    return float(special.gammaincc((R - 1) / 2, chi2 / 2))


def replica_q_value(
    data: ArrayLike, f: Callable[[np.ndarray], float] | None = None, S: float = 1.5
) -> float:
    r"""Whether R replicas (independent chains) agree: the Q-value of their means.

    The replica test of Wolff's UWerr program (the code of Comput. Phys. Commun. 156 (2004)
    143, its `Qval`): with `d_r` the deviation of replica r's (projected) mean from the overall one
    and `C_F = N σ²` the Γ-method's integrated autocorrelation, `χ² = Σ_r n_r d_r² / C_F`
    follows χ² with R − 1 degrees of freedom when the replicas sample the same distribution
    and `σ` is right; `Q = P(χ²_{R−1} ≥ χ²)`. A tiny Q means the chains sit in different
    places — topology frozen per chain, a chain not yet relaxed — and that the Γ-method error,
    built from fluctuations within chains, is too small. nan for one replica or a constant
    series. Same arguments as `gamma_method`, which returns it as `replica_q`."""
    return gamma_method(data, f, S).replica_q


def autocorrelation(
    data: ArrayLike,
    f: Callable[[np.ndarray], float] | None = None,
    S: float = 1.5,
) -> Autocorrelation:
    """The normalised autocorrelation function ρ(t) and the running τ_int(W) of the Γ-method
    (`gamma_method`, same arguments), with the window it chose: the curves to look at when
    judging an error bar (a τ_int(W) that has not reached a plateau at the window means the
    chain is too short). A constant series has ρ = [1] and τ_int = [½]."""
    res = _gamma(data, f, S)
    if res.gamma[0] <= 0:
        one = np.ones(1)
        return Autocorrelation(one, one / 2, np.zeros(1), 0)
    W_max = res.gamma.shape[0] // 2
    rho = res.gamma[: W_max + 1] / res.gamma[0]
    tau = 0.5 + np.concatenate([[0.0], np.cumsum(rho[1:])])
    w = np.arange(W_max + 1)
    err = 2 * tau * np.sqrt(np.maximum(w + 0.5 - tau, 0.0) / res.N)
    return Autocorrelation(rho, tau, err, res.window)


MIN_RUN_PER_TAU = 50.0
"""A replica shorter than this many τ_int gives an error bar that cannot be trusted: τ_int(W)
has not reached its plateau inside the run, so τ_int and the error are underestimated by an
unknown amount (Sokal, "Monte Carlo methods in statistical mechanics", 1997, Sec. 3: n ≫ τ;
Wolff 2004, Sec. 3.3). A frozen chain is the extreme case."""


MIN_REPLICA_Q = 1e-3
"""Below this replica Q-value (`replica_q_value`) `sqdiff measure` reports that the chains
disagree: a consistent set of chains falls below it once in a thousand observables."""


def chains_disagree(result: GammaResult) -> bool:
    """Whether the replica Q-value of `result` is below `MIN_REPLICA_Q` (False with one
    replica)."""
    return bool(result.replica_q < MIN_REPLICA_Q)


def too_short(result: GammaResult, n_per_replica: int) -> bool:
    """Whether a replica of `n_per_replica` samples is shorter than `MIN_RUN_PER_TAU` times
    the measured τ_int: then `sqdiff measure` marks the observable's error as unreliable."""
    return bool(math.isfinite(result.tau_int) and MIN_RUN_PER_TAU * result.tau_int > n_per_replica)


def binned(data: ArrayLike, bin_size: int) -> np.ndarray:
    """Means of consecutive bins of `bin_size` samples along the leading axis (remainder
    dropped); binning by ≫ τ_int makes bins independent for jackknife errors."""
    x = np.asarray(data)
    nb = x.shape[0] // bin_size
    if nb < 2:
        raise ValueError(f"`bin_size` {bin_size} leaves fewer than 2 bins of {x.shape[0]}.")
    return x[: nb * bin_size].reshape((nb, bin_size) + x.shape[1:]).mean(1)


def effective_sample_size(data: ArrayLike) -> float:
    """`N / (2 τ_int)` of a scalar series by the Γ-method."""
    return gamma_method(data).ess


MIN_ESS = 10.0


def kish_ess(log_weights: ArrayLike) -> float:
    """Kish's effective sample size `(Σw)²/Σw²` of importance log-weights (any constant
    offset cancels)."""
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    w = np.exp(lw - lw.max())
    return float(w.sum() ** 2 / np.sum(w**2))


#: above this k̂ importance-sampling estimates are unreliable (Vehtari et al., Sec. 3)
PARETO_K_MAX = 0.7


def _gpd_shape(x: np.ndarray) -> float:
    r"""Shape `k` of a generalized Pareto distribution fitted to the sorted exceedances `x > 0`
    by the empirical-Bayes estimate of Zhang & Stephens (Technometrics 51 (2009) 316): on a grid
    of `m = 30 + ⌊√n⌋` values of `θ = −k/σ`, `k(θ) = mean log(1 − θx)` and the profile
    log-likelihood `ℓ(θ) = n[log(−θ/k(θ)) − k(θ) − 1]`; `θ̂` is the posterior mean under
    weights `∝ e^{ℓ}`, `k̂ = k(θ̂)`, then the weakly informative prior of Vehtari et al. (2024),
    `k̂ ← (n k̂ + 10·½)/(n + 10)`."""
    n = x.shape[0]
    m = 30 + int(np.sqrt(n))
    j = np.arange(1, m + 1, dtype=float)
    theta = 1 / x[-1] + (1 - np.sqrt(m / (j - 0.5))) / (3 * x[int(n / 4 + 0.5) - 1])
    k = np.mean(np.log1p(-theta[:, None] * x), axis=1)
    loglik = n * (np.log(-theta / k) - k - 1)
    post = np.exp(loglik - loglik.max())
    post /= post.sum()
    theta_hat = np.sum(theta * post)
    k_hat = float(np.mean(np.log1p(-theta_hat * x)))
    return (n * k_hat + 10 * 0.5) / (n + 10)


def pareto_khat(log_weights: ArrayLike) -> float:
    r"""The Pareto-k̂ diagnostic of importance weights (Vehtari, Simpson, Gelman, Yao, Gabry,
    "Pareto smoothed importance sampling", JMLR 25 (2024) 72): the shape of a generalized
    Pareto fit to the `M = ⌈min(S/5, 3√S)⌉` largest weights above the next one. `k̂ < 0.5`:
    finite variance, the usual errors hold; `0.5 ≤ k̂ < 0.7`: usable; `k̂ ≥ 0.7`
    (`PARETO_K_MAX`): the estimate and its error bar can be far off (the weight distribution
    has too heavy a tail for the sample size). `inf` (flagged) when it cannot be estimated:
    fewer than 10 weights, or a tail that is not finite; `−inf` (the best case, not flagged)
    when the `M + 1` largest weights are all equal: there is no tail, as for a perfect
    proposal (equal weights)."""
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    S = lw.shape[0]
    M = int(np.ceil(min(0.2 * S, 3 * np.sqrt(S))))
    if S < 10 or M < 5:
        return math.inf
    srt = np.sort(lw - lw.max())
    cutoff = srt[-M - 1]
    tail = np.exp(srt[-M:]) - np.exp(cutoff)
    if not np.all(np.isfinite(tail)):
        return math.inf
    if tail[-1] <= 0:  # the largest weights equal the cutoff: no tail at all
        return -math.inf
    if tail[0] == tail[-1]:
        return math.inf
    tail = np.maximum(tail, np.finfo(float).tiny)
    return _gpd_shape(tail)


def warn_pareto_k(k: float, what: str) -> None:
    """A `UserWarning` when `k̂ > PARETO_K_MAX`."""
    if not k <= PARETO_K_MAX:
        why = (
            f"Pareto k̂ = {k:.2f} > {PARETO_K_MAX}: the importance weights have too heavy a tail"
            if math.isfinite(k)
            else "Pareto k̂ cannot be estimated (fewer than 10 weights or a degenerate tail)"
        )
        warnings.warn(
            f"{what}: {why}; the estimate and its error bar are not reliable.", stacklevel=3
        )


def log_z_estimate(log_w: ArrayLike) -> tuple[float, float]:
    """`log Z ≈ log mean(w)` from importance log-weights `log w = log π̃(x) − log q(x)`, with
    its delta-method error `std(w)/(√n mean(w))`."""
    lw = np.asarray(log_w, np.float64).reshape(-1)
    w = np.exp(lw - lw.max())
    n = lw.shape[0]
    return float(np.log(w.mean()) + lw.max()), float(w.std(ddof=1) / (np.sqrt(n) * w.mean()))


def reweighted(
    data: ArrayLike,
    log_weights: ArrayLike,
    f: Callable[[np.ndarray], float] | None = None,
) -> GammaResult:
    r"""Self-normalised importance-sampling estimate `f(Σ w a / Σ w)` from independent samples
    with log-weights `log w`, and its delta-method error
    `σ² = Σ_i w_i² ψ_i² / (Σ w)²`, `ψ_i = Σ_α ∂f/∂a_α (a_iα − ā_α)` (Owen, *Monte Carlo theory,
    methods and examples*, 2013, Ch. 9.2). `ess` is Kish's `(Σw)²/Σw²`; `tau_int` is ½
    (independent samples). Below `MIN_ESS` effective samples the error is `inf`: the estimate
    is then not to be trusted at all."""
    x = np.asarray(data, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    if x.ndim != 2 or x.shape[0] != lw.shape[0]:
        raise ValueError(
            f"`data` must be (n,) or (n, A) with n = len(log_weights) = {lw.shape[0]}, "
            f"got {x.shape}."
        )
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(lw)):
        raise ValueError("`data` and `log_weights` must be finite.")
    w = np.exp(lw - lw.max())
    w /= w.sum()
    abar = w @ x
    if f is None:
        if x.shape[1] != 1:
            raise ValueError("several primary observables need a function `f` of their means.")
        f = lambda a: a[0]  # noqa: E731
    value = float(f(abar))
    spread = np.sqrt(w @ (x - abar) ** 2)
    h = np.where(spread > 0, spread, np.abs(abar) + 1.0) * 1e-3
    psi = (x - abar) @ _gradient(f, abar, h)
    ess = kish_ess(lw)
    k = pareto_khat(lw)
    warn_pareto_k(k, "reweighted estimate")
    # with a handful of dominant weights the delta-method error collapses towards zero
    # (one weight: exactly zero); below MIN_ESS there is no error estimate
    error = float(np.sqrt(np.sum(w**2 * psi**2))) if ess >= MIN_ESS else math.inf
    return GammaResult(value, error, 0.5, 0.0, 0, ess, k)
