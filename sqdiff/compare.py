"""Does my model work? A generated ensemble against a reference ensemble of the same theory
(issue 39): a pull per observable, a two-sample test on the histogram of the order parameter,
and one verdict (`sqdiff compare`).

Every observable of the theory (`action.observables()`: ⟨M⟩, ⟨|M|⟩, χ2, U_L, G(p) for φ⁴; the
plaquette, Wilson loops, Q and χ_t for gauge theories) is estimated in both ensembles with the
Γ-method (autocorrelation included; importance-weighted ensembles reweighted), and its pull is
`(a − b)/√(σ_a² + σ_b²)`. The histogram of the first of `plots.HISTOGRAMMED` (M, a 0-dim
toy's φ, Q, the plaquette) is compared by the two-sample Kolmogorov–Smirnov statistic `D`,
with the effective sizes `n_eff = N/(2τ_int)` of each ensemble in its asymptotic law
(`P(√(n m/(n + m)) D > x)`, Kolmogorov's distribution), so that autocorrelated chains do not
pass for more data than they hold.

The verdict controls the family-wise false-alarm rate: with `k` observables and one histogram
test, each is judged at `α/(k + 1)` (Bonferroni), so two correct ensembles are called
different with probability at most `α` (default 1 %).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special, stats

from .io import Ensemble
from .observables import analyze_primaries, measure_primaries
from .plots import HISTOGRAMMED  # the primaries `measure --plot` histograms (no matplotlib)
from .stats import gamma_method

__all__ = ["Comparison", "Pull", "compare", "compare_samples"]


class Pull(NamedTuple):
    name: str
    value: float
    error: float
    reference: float
    reference_error: float
    pull: float  # (value − reference)/√(error² + reference_error²)


class Comparison(NamedTuple):
    pulls: tuple[Pull, ...]
    #: the compared primary, the KS statistic D, the effective sizes and the p-value (None
    #: for importance-weighted ensembles, whose draws are not the law)
    histogram: tuple[str, float, float, float, float] | None
    alpha: float
    #: the |pull| beyond which an observable disagrees, `Φ⁻¹(1 − α/(2(k+1)))`
    threshold: float

    @property
    def disagreeing(self) -> list[str]:
        bad = [p.name for p in self.pulls if not abs(p.pull) <= self.threshold]
        if self.histogram is not None and not self.histogram[4] >= self.alpha / self.tests:
            bad.append(f"histogram of {self.histogram[0]}")
        return bad

    @property
    def tests(self) -> int:
        return len(self.pulls) + (self.histogram is not None)

    @property
    def agree(self) -> bool:
        return not self.disagreeing

    def verdict(self) -> str:
        """One line: AGREE or DISAGREE, the largest pull, the histogram test."""
        worst = max(self.pulls, key=lambda p: abs(p.pull), default=None)
        line = "AGREE" if self.agree else "DISAGREE"
        if worst is not None:
            line += f": max |pull| {abs(worst.pull):.2f} ({worst.name})"
        if self.histogram is not None:
            line += f", KS p = {self.histogram[4]:.2g} ({self.histogram[0]})"
        line += f"; threshold {self.threshold:.2f} (family-wise α = {self.alpha:g})"
        return line + ("" if self.agree else f"; differ: {', '.join(self.disagreeing)}")


def _check_same_theory(ens: Ensemble, ref: Ensemble) -> None:
    a, b = ens.metadata, ref.metadata
    if (a["theory"], a["params"]) != (b["theory"], b["params"]):
        raise ValueError(
            f"the ensembles are of different theories: {a['theory']} {a['params']} against the "
            f"reference's {b['theory']} {b['params']}; compare like with like."
        )


def _ks(x: np.ndarray, y: np.ndarray, n_x: float, n_y: float) -> tuple[float, float]:
    """Two-sample KS statistic and its asymptotic p-value for effective sizes `n_x, n_y`."""
    D = float(stats.ks_2samp(x, y).statistic)
    scale = math.sqrt(n_x * n_y / (n_x + n_y))
    return D, float(special.kolmogorov(scale * D)) if D > 0 else 1.0


def compare(ens: Ensemble, ref: Ensemble, alpha: float = 0.01) -> Comparison:
    """Compare `ens` (e.g. a model's samples) with `ref` (e.g. HMC) of the same theory.

    Args:
        ens: the ensemble under test (`io.load_ensemble`).
        ref: the reference ensemble, the same theory and parameters.
        alpha: the family-wise false-alarm rate of the verdict (0 < α < 1).
    """
    _check_same_theory(ens, ref)
    return compare_samples(
        ens.action, ens.samples, ref.samples, alpha, ens.log_weights, ref.log_weights
    )


def compare_samples(
    action, samples, reference, alpha: float = 0.01, log_weights=None, reference_log_weights=None
) -> Comparison:
    """`compare` on arrays `(chains, n, *config)` of one `action` (e.g. inside `sqdiff demo`),
    with optional importance log-weights `(chains, n)` for either."""
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha!r}.")
    prim = measure_primaries(action, samples)
    prim_ref = measure_primaries(action, reference)
    res = analyze_primaries(action, prim, log_weights=log_weights)
    res_ref = analyze_primaries(action, prim_ref, log_weights=reference_log_weights)
    pulls = []
    for name, r in res.items():
        q = res_ref[name]
        sigma = math.hypot(r.error, q.error)
        if not (math.isfinite(r.value) and math.isfinite(q.value) and sigma > 0):
            continue  # undefined here (e.g. a constant observable): nothing to compare
        pulls.append(Pull(name, r.value, r.error, q.value, q.error, (r.value - q.value) / sigma))
    histogram = None
    key = next((k for k in HISTOGRAMMED if k in prim), None)
    if key is not None and log_weights is None and reference_log_weights is None:
        x, y = np.asarray(prim[key]), np.asarray(prim_ref[key])
        n_x = x.size / (2 * max(gamma_method(x[..., None]).tau_int, 0.5))
        n_y = y.size / (2 * max(gamma_method(y[..., None]).tau_int, 0.5))
        D, p = _ks(x.ravel(), y.ravel(), n_x, n_y)
        histogram = (key, D, n_x, n_y, p)
    k = len(pulls) + (histogram is not None)
    threshold = float(stats.norm.isf(alpha / (2 * max(k, 1))))
    return Comparison(tuple(pulls), histogram, alpha, threshold)
