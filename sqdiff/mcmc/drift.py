"""Have independent chains relaxed? A paired test of each chain at two points of its run.

Designs that keep only the final state of many short, independent chains (DM + MAALA: the
model's samples at `t_mh`, then `thin` MAALA steps) have no time series for the Γ-method to
judge: if the chains have not forgotten their start, the final states are biased, yet their
spread gives a small error bar (a 6.5σ-low ⟨|M|⟩ at L = 32 went unflagged this way).

The test: each chain `i` is measured at an earlier step `h` and at its final step `n`, and
`d_i = O_i(n) − O_i(h)` for every primary observable `O`. Once the chains sample the target
(at step `h` already), the law at `h` and at `n` is the same, so `E[d] = 0` exactly. The chains
are independent, so `t = mean(d) / (sd(d)/√N)` follows Student's t with `N − 1` degrees of
freedom (for N not too small, whatever the law of `d`). Pairing makes it sensitive: the two
states of one chain are strongly correlated, so `sd(d)` is far below the ensemble spread, and
a slow drift that moves the mean by a fraction of its error bar is still seen.

A primary is flagged when `|t|` exceeds the two-sided quantile of `DRIFT_FALSE_ALARM / k` for
`k` primaries (Bonferroni): a relaxed run is flagged in at most 0.1 % of runs. The test is one
sided in what it proves: a flag means "not relaxed at step h" (and the final states are
suspect); no flag does not prove relaxation (a chain stuck far from the target does not drift).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike
from scipy import stats

__all__ = ["DRIFT_FALSE_ALARM", "Relaxation", "drift_message", "relaxation"]

#: the probability that a relaxed run is flagged (all primaries together)
DRIFT_FALSE_ALARM = 1e-3
#: fewer chains than this: the t-test is not run
MIN_CHAINS = 8


class Relaxation(NamedTuple):
    """The verdict of `relaxation`: the two steps compared, `t` of every primary, the flagged
    primaries (`drifting`), and the |t| threshold. `checked` is False when there were too few
    chains."""

    steps: tuple[int, int]
    t: dict[str, float]
    drifting: tuple[str, ...]
    threshold: float
    checked: bool = True

    def to_json(self) -> dict:
        return {
            "steps": list(self.steps),
            "t": {k: v if np.isfinite(v) else None for k, v in self.t.items()},
            "drifting": list(self.drifting),
            "threshold": self.threshold,
            "checked": self.checked,
        }

    @classmethod
    def from_json(cls, data: dict) -> Relaxation:
        """The verdict as `to_json` wrote it (non-finite `t` come back as nan)."""
        t = {k: float("nan") if v is None else float(v) for k, v in data["t"].items()}
        steps = (int(data["steps"][0]), int(data["steps"][1]))
        drifting = tuple(data["drifting"])
        return cls(steps, t, drifting, float(data["threshold"]), bool(data["checked"]))

    def message(self) -> str:
        """One line for a flagged run (empty when nothing drifts)."""
        if not self.drifting:
            return ""
        worst = max(self.drifting, key=lambda k: abs(np.nan_to_num(self.t[k], nan=np.inf)))
        h, n = self.steps
        return (
            f"NOT RELAXED: {', '.join(self.drifting)} still "
            f"{'drifts' if len(self.drifting) == 1 else 'drift'} between step {h} and {n} of "
            f"the chains (paired t = {self.t[worst]:+.1f} for {worst}, |t| > "
            f"{self.threshold:.1f}), so the final states are not yet the target's and their "
            "error bars hide a bias: run more steps (`thin`), or improve the model"
        )


def relaxation(
    earlier: dict[str, ArrayLike], later: dict[str, ArrayLike], steps: tuple[int, int]
) -> Relaxation:
    """The paired drift test of independent chains (module docstring).

    Args:
        earlier: primary observables of each chain at step `steps[0]`, arrays `(chains,)`.
        later: the same primaries of the same chains at step `steps[1]`.
        steps: the two step numbers, for the report.
    """
    if set(earlier) != set(later):
        raise ValueError(
            f"`earlier` and `later` must measure the same primaries, got {sorted(earlier)} "
            f"and {sorted(later)}."
        )
    d = {k: np.ravel(np.asarray(later[k], float) - np.asarray(earlier[k], float)) for k in later}
    n = min((v.size for v in d.values()), default=0)
    threshold = float(stats.t.isf(DRIFT_FALSE_ALARM / (2 * max(len(d), 1)), max(n - 1, 1)))
    if n < MIN_CHAINS:
        return Relaxation(tuple(steps), {}, (), threshold, checked=False)
    t = {}
    for k, v in d.items():
        mean, sd = float(np.mean(v)), float(np.std(v, ddof=1))
        # every chain moved by the same amount: an exact drift unless that amount is 0
        t[k] = mean / (sd / np.sqrt(v.size)) if sd > 0 else (0.0 if mean == 0 else np.inf)
    drifting = tuple(k for k, tk in t.items() if not abs(tk) <= threshold)  # nan: flagged
    return Relaxation(tuple(steps), t, drifting, threshold)


def drift_message(metadata: dict) -> str:
    """The `NOT RELAXED` line of an ensemble's recorded verdict (`metadata["relaxation"]`, as
    `sample_maala` writes it); empty when there is none or nothing drifts."""
    verdict = metadata.get("relaxation")
    return Relaxation.from_json(verdict).message() if verdict else ""
