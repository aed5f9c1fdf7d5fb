"""Figures where people look rather than read: the Γ-method's autocorrelation curves, histograms
of the order parameter, the propagator (`sqdiff measure --plot`), and the training-loss curve
that `sqdiff train` and `sqdiff osq` write beside a model.

matplotlib is optional (`pip install -e ".[plot]"`); without it these functions raise an
`ImportError` that says so. Figures are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .stats import GammaResult, autocorrelation
from .theories.base import AbstractAction

__all__ = ["measurement_figure", "training_loss_figure", "HISTOGRAMMED"]

#: primaries shown as a histogram by `measurement_figure`, first found wins: the magnetisation
#: (φ⁴), the field of a 0-dim toy, the topological charge (U(1), U(N)), the plaquette (SU(N))
HISTOGRAMMED = ("M", "phi1", "Q", "plaquette")
#: at most this many observables get autocorrelation curves (the first in the table)
MAX_CURVES = 6


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install matplotlib (or the 'plot' extra)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: the creator every sqdiff figure carries (`sqdiff.io.is_sqdiff_figure` reads it back)
CREATOR = "sqdiff figure"
_METADATA = {"png": {"Software": CREATOR}, "pdf": {"Creator": CREATOR}, "svg": {"Title": CREATOR}}
#: the names a figure may have (`sqdiff measure --plot` checks them before any compute)
FIGURE_SUFFIXES = tuple(f".{fmt}" for fmt in _METADATA)


def _save(fig, path: str) -> str:
    """`fig` to `path` (`.png`, `.pdf` or `.svg`) through `sqdiff.io.atomic_write`, marked as a
    sqdiff figure so that a later run may replace it (and nothing else)."""
    from .io import atomic_write

    fmt = os.path.splitext(path)[1][1:].lower()
    if fmt not in _METADATA:
        raise ValueError(f"a figure's name ends in {', '.join(FIGURE_SUFFIXES)}, got {path!r}.")
    atomic_write(path, lambda fh: fig.savefig(fh, dpi=100, format=fmt, metadata=_METADATA[fmt]))
    return path


def training_loss_figure(
    path: str, losses: Sequence[float], title: str = "training", bands: Sequence | None = None
) -> str:
    """The loss per optimiser step (light) and its running mean over 1 % of the run (dark);
    with `bands`, a second panel: the held-out loss per noise band against the Gaussian bound
    on its irreducible part (`sqdiff.validation.Band`), reducible bands marked.

    Args:
        path: the image to write (`.png`, `.pdf`, `.svg`).
        losses: one loss per optimiser step, as `TrainResult.losses` or a model directory's
            `config.json` keeps them.
        title: the figure's title.
        bands: `validation.band_losses` of the trained model, or None.

    Returns:
        `path`.
    """
    loss = np.asarray(losses, dtype=float)
    if loss.ndim != 1 or loss.size == 0:
        raise ValueError(f"`losses` must be a non-empty list of numbers, got shape {loss.shape}.")
    plt = _pyplot()
    if bands:
        fig, (ax, ax_b) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
        _band_panel(ax_b, bands)
    else:
        fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    steps = np.arange(1, loss.size + 1)
    ax.plot(steps, loss, lw=0.5, alpha=0.35, color="C0", label="per step")
    w = max(1, loss.size // 100)
    if w > 1:
        smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="C0", lw=1.5, label=f"mean of {w} steps")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("loss")
    finite = loss[np.isfinite(loss)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_title(f"{title}: final mean loss {np.mean(loss[-w:]):.4g}")
    ax.legend(loc="upper right")
    out = _save(fig, path)
    plt.close(fig)
    return out


def _band_panel(ax, bands) -> None:
    """Held-out loss per noise band (error bars) and the Gaussian bound (line), over Σ."""
    mid = np.array([np.sqrt(b.sigma_lo * b.sigma_hi) for b in bands])
    loss = np.array([b.loss for b in bands])
    err = np.array([b.error for b in bands])
    ax.errorbar(mid, loss, yerr=err, fmt="o", color="C0", capsize=3, label="held-out loss")
    ax.plot(mid, [b.bound for b in bands], "k--", lw=1, label="Gaussian bound (irreducible ≤)")
    bad = [i for i, b in enumerate(bands) if b.reducible]
    if bad:
        ax.plot(mid[bad], loss[bad], "x", color="C3", ms=10, mew=2, label="reducible")
    ax.set_xscale("log")
    ax.set(xlabel="noise level Σ(t)", ylabel="DSM loss per site", title="held-out, per band")
    ax.legend(loc="upper right", fontsize=8)


def _curves(action: AbstractAction, primaries: Mapping[str, np.ndarray], names, S: float):
    """ρ(t) and τ_int(W) of each named observable, from the primaries `(chains, n)`."""
    observables = action.observables()
    out = {}
    for name in names:
        keys, f = observables[name]
        data = np.stack([primaries[k] for k in keys], axis=-1)
        out[name] = autocorrelation(data, f, S=S)
    return out


def _propagator(results: Mapping[str, GammaResult]):
    """`(k, G, δG)` from the `G(p=2pi*k/L)` observables, or None."""
    rows = []
    for name, r in results.items():
        if name.startswith("G(p=2pi*") and name.endswith("/L)"):
            rows.append((int(name[len("G(p=2pi*") : -len("/L)")]), r.value, r.error))
    return np.array(sorted(rows)) if rows else None


def measurement_figure(
    path: str,
    action: AbstractAction,
    primaries: Mapping[str, np.ndarray],
    results: Mapping[str, GammaResult],
    log_weights: np.ndarray | None = None,
    S: float = 1.5,
) -> str:
    """`sqdiff measure --plot`: the figure behind a measurement table.

    Panels: the normalised autocorrelation ρ(t) of up to six observables (Wolff's Γ-method,
    Comput. Phys. Commun. 156 (2004) 143, Eqs. 31–35) with the chosen window marked; the
    running τ_int(W) with its error band (Eq. 42) — it should have reached a plateau at the
    window; a histogram of the order parameter (M, or the topological charge Q, or the
    plaquette; `HISTOGRAMMED`); and the propagator G(p) where the theory measures it. An
    importance-weighted ensemble (independent samples) shows the distribution of its
    normalised weights instead of the autocorrelations.

    Args:
        path: the image to write.
        action: the ensemble's theory (its `observables()` define the curves).
        primaries: `measure_primaries(action, samples)`, arrays of shape `(chains, n)`.
        results: the measured table (`observables.analyze`), in order.
        log_weights: `(chains, n)` log importance weights, or None.
        S: the Γ-method's windowing parameter.

    Returns:
        `path`.
    """
    plt = _pyplot()
    fig, ((ax_rho, ax_tau), (ax_hist, ax_g)) = plt.subplots(
        2, 2, figsize=(11, 7.5), layout="constrained"
    )
    w = None if log_weights is None else _normalised_weights(log_weights)
    if w is None:
        _autocorrelation_panels(ax_rho, ax_tau, action, primaries, results, S)
    else:
        _weight_panels(ax_rho, ax_tau, w)
    _histogram_panel(ax_hist, primaries, w)
    _propagator_panel(ax_g, action, results)
    params = ", ".join(f"{k}={v}" for k, v in action.params.items())
    fig.suptitle(f"{action.name} ({params})")
    out = _save(fig, path)
    plt.close(fig)
    return out


def _normalised_weights(log_weights) -> np.ndarray:
    """`N w_i / Σ w` of the flattened log-weights (mean 1)."""
    lw = np.asarray(log_weights, dtype=float).reshape(-1)
    w = np.exp(lw - lw.max())
    return w * (w.size / w.sum())


def _autocorrelation_panels(ax_rho, ax_tau, action, primaries, results, S):
    """ρ(t) and τ_int(W) with its error band of up to `MAX_CURVES` observables that vary."""
    observables = action.observables()
    varying = [n for n in results if n in observables and results[n].error > 0]
    names = [n for n in varying if not n.startswith(("G(p", "kappa"))] or varying
    names = names[:MAX_CURVES]
    for i, (name, c) in enumerate(_curves(action, primaries, names, S).items()):
        t = np.arange(c.rho.size)
        tmax = min(c.rho.size, max(4 * c.window + 1, 10))
        color = f"C{i}"
        ax_rho.plot(t[:tmax], c.rho[:tmax], color=color, label=name)
        ax_rho.axvline(c.window, color=color, ls=":", lw=0.8)
        ax_tau.plot(t[:tmax], c.tau_int[:tmax], color=color, label=name)
        ax_tau.fill_between(
            t[:tmax],
            (c.tau_int - c.tau_int_error)[:tmax],
            (c.tau_int + c.tau_int_error)[:tmax],
            color=color,
            alpha=0.2,
        )
        w = min(c.window, c.tau_int.size - 1)  # a short series' window can pass its end
        ax_tau.plot([w], [c.tau_int[w]], "o", color=color)
    ax_rho.axhline(0, color="k", lw=0.5)
    ax_rho.set(xlabel="t (saved configurations)", ylabel="ρ(t)", title="autocorrelation")
    ax_tau.set(xlabel="window W", ylabel="τ_int(W)", title="τ_int(W); dot: chosen window")
    if names:
        ax_rho.legend(fontsize=8)


def _weight_panels(ax_hist, ax_rank, w):
    """The normalised importance weights: their histogram and their values by rank."""
    ax_hist.hist(w, bins=50, color="C0")
    ax_hist.set(xlabel="N w_i / Σw", ylabel="count", title="normalised importance weights")
    srt = np.sort(w)[::-1]
    ax_rank.loglog(np.arange(1, srt.size + 1), srt, color="C0")
    ax_rank.set(xlabel="rank", ylabel="N w / Σw", title="weights by rank (heavy tail: few)")


def _histogram_panel(ax, primaries, w):
    """A histogram of the first `HISTOGRAMMED` primary (integer bins for a charge),
    reweighted when `w` is given and finite."""
    key = next((k for k in HISTOGRAMMED if k in primaries), None)
    if key is None:
        ax.set_axis_off()
        return
    x = np.asarray(primaries[key]).reshape(-1)
    weights = w if w is not None and np.all(np.isfinite(w)) else None
    if key == "Q" and np.allclose(x, np.round(x), atol=1e-3):
        x = np.round(x).astype(int)
        bins = np.arange(x.min(), x.max() + 2) - 0.5
    else:
        bins = 60
    ax.hist(x, bins=bins, color="C1", weights=weights)
    ax.set(xlabel=key, ylabel="count", title=f"histogram of {key}")


def _propagator_panel(ax, action, results):
    """G(p̂²) from the `G(p=2pi*k/L)` observables, or an empty panel."""
    prop = _propagator(results)
    if prop is None:
        ax.set_axis_off()
        return
    k, g, dg = prop.T
    L = action.lattice_shape[0]
    p_hat2 = 4 * np.sin(np.pi * k / L) ** 2
    ax.errorbar(p_hat2, g, yerr=dg, fmt="o", capsize=3, color="C2")
    ax.set_yscale("log")
    ax.set(xlabel="p̂² = 4 sin²(πk/L)", ylabel="G(p)", title="propagator, p = (2πk/L, 0, …)")
