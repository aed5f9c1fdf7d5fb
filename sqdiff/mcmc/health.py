"""Sampler health: a frozen, diverged or never-accepting chain must not pass as data.

`chain_health(samples, acceptance)` looks at what a run produced and names every problem:
non-finite values, chains that never moved (all kept configurations identical), and mean
acceptance below `MIN_ACCEPTANCE` in any chain. `sqdiff generate` and `sqdiff sample` record the
verdict in the ensemble metadata (`health`) and exit non-zero on a problem; `sqdiff measure`
refuses an unhealthy ensemble (and re-checks ensembles without a verdict) unless `--force`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import ArrayLike

__all__ = ["MIN_ACCEPTANCE", "ChainHealth", "chain_health"]

#: below this mean acceptance a chain is reported as stuck
MIN_ACCEPTANCE = 0.01


class ChainHealth(NamedTuple):
    ok: bool
    problems: tuple[str, ...]

    def to_json(self) -> dict:
        return {"ok": self.ok, "problems": list(self.problems)}

    @classmethod
    def from_json(cls, data) -> ChainHealth | None:
        if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
            return None
        problems = data.get("problems", [])
        return cls(
            data["ok"], tuple(str(p) for p in problems) if isinstance(problems, list) else ()
        )


def _chains(ids) -> str:
    ids = [int(i) for i in ids]
    return ", ".join(map(str, ids[:5])) + (f" … ({len(ids)} chains)" if len(ids) > 5 else "")


def chain_health(
    samples: ArrayLike, acceptance: ArrayLike | None = None, *, independent: bool = False
) -> ChainHealth:
    """The health of `samples (chains, n, *config)` with per-chain mean `acceptance`.

    `independent=True` (independent draws laid out as one row) checks that not all draws are
    the same instead of checking each chain for movement.
    """
    x = np.asarray(samples)
    problems = []
    if x.ndim < 2 or x.shape[0] < 1 or x.shape[1] < 1:
        return ChainHealth(False, (f"no samples (shape {x.shape})",))
    bad = ~np.all(np.isfinite(x.reshape(x.shape[0], -1)), axis=1)
    if np.any(bad):
        problems.append(f"non-finite values in chains {_chains(np.nonzero(bad)[0])}")
    if x.shape[1] > 1:
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        if independent:
            if np.all(flat == flat[:, :1]):
                problems.append("every sample is the same configuration")
        else:
            frozen = np.all(flat == flat[:, :1], axis=(1, 2))
            if np.any(frozen):
                problems.append(f"chains {_chains(np.nonzero(frozen)[0])} never moved")
    if acceptance is not None:
        acc = np.asarray(acceptance, dtype=float).reshape(-1)
        stuck = ~(acc >= MIN_ACCEPTANCE)
        if np.any(stuck):
            problems.append(
                f"acceptance {np.nanmin(acc):.3g} < {MIN_ACCEPTANCE} in chains "
                f"{_chains(np.nonzero(stuck)[0])}"
            )
    return ChainHealth(not problems, tuple(problems))
