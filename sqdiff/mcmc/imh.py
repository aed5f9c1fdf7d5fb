r"""Independence Metropolis–Hastings with a diffusion model as global proposal, and importance
weights (Tierney, Ann. Statist. 22 (1994) 1701; the flow-based-sampler literature).

Proposals `x` come from the probability-flow ODE started at the prior, with their exact model
log-density `log q(x) = log p_T(z) − Δ` (`sqdiff.ProbabilityFlow`, exact divergence; on U(1)
angles the flow lives on the torus and `p_T` is the wrapped-normal prior). With
`log w = −S(x) − log q(x)`, the chain accepts `x'` with `min{1, w(x')/w(x)}` — exact for any
model (up to the ODE tolerance of `log q`); the same weights give self-normalised importance
sampling with effective sample size `(Σw)²/Σw²`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, PRNGKeyArray

from .._batching import map_batched
from .._checks import integer
from ..dynamics import ProbabilityFlow
from ..solvers import solve
from ..stats import kish_ess
from .proposal import metropolis_accept

__all__ = [
    "Proposals",
    "flow_proposals",
    "imh_chain",
    "independence_mh",
    "importance_weights",
    "target_log_weights",
]


#: fixed flow steps of an SU(N)/U(N) proposal when none are given
GROUP_FLOW_STEPS = 100


class Proposals(NamedTuple):
    x: Array  # (n, *shape)
    log_q: Array  # (n,)


def flow_proposals(
    key: PRNGKeyArray,
    flow: ProbabilityFlow,
    shape: tuple[int, ...],
    n: int,
    t_min: float = 1e-3,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    batch: int = 256,
    progress: bool = False,
    steps: int | None = None,
) -> Proposals:
    """`n` probability-flow samples of `shape` with their log-density at `t_min`, solved
    `batch` at a time (vmap inside, `lax.map` across batches).

    Flat fields: adaptive Tsit5 at `rtol`, `atol` (exact up to that tolerance). SU(N)/U(N):
    `steps` fixed Lie-group RK3 steps on a geometric grid (default `GROUP_FLOW_STEPS`) with
    the exact log-Jacobian of every step (`LogDetSolver`), so `log q` is exact for the map
    applied.
    """
    if flow.divergence != "exact":
        raise ValueError("IMH needs the exact proposal density: use divergence='exact'.")
    sch = flow.schedule
    if flow.step_jacobian:
        steps = GROUP_FLOW_STEPS if steps is None else integer(steps, "steps")
        grid = {"n_steps": steps, "grid": "geometric"}
    elif steps is not None:
        raise ValueError(
            "`steps` is for SU(N)/U(N) flows (fixed steps with exact Jacobians); flat fields "
            "solve the flow adaptively (`rtol`, `atol`)."
        )
    else:
        grid = {"rtol": rtol, "atol": atol}

    def one(k):
        z = flow.prior_sample(k, shape)
        sol = solve(flow, z, sch.T, t_min, **grid)
        return flow.endpoint(sol.ys[0][-1]), flow.prior_logp(z) - sol.ys[1][-1]

    x, log_q = map_batched(one, jr.split(key, n), batch, progress, "flow proposals")
    return Proposals(x, log_q)


def target_log_weights(action: Callable, proposals: Proposals) -> Array:
    """`log w = −S(x) − log q(x)` of each proposal (up to the constant `log Z`)."""
    return -jax.vmap(action)(proposals.x) - proposals.log_q


def importance_weights(action: Callable, proposals: Proposals) -> tuple[Array, float]:
    """Normalised weights `w ∝ e^{−S(x)}/q(x)` and the effective sample size `(Σw)²/Σw²`."""
    log_w = target_log_weights(action, proposals)
    return jax.nn.softmax(log_w), kish_ess(log_w)


def independence_mh(
    key: PRNGKeyArray, action: Callable, proposals: Proposals
) -> tuple[Array, Array]:
    """Run the IMH chain through the proposals in order; returns `(chain, accepted)` where
    `chain[i]` is the state after proposal `i` (the first proposal starts the chain)."""
    return imh_chain(key, proposals.x, target_log_weights(action, proposals))


def imh_chain(key: PRNGKeyArray, x: Array, log_w: Array) -> tuple[Array, Array]:
    """The independence Metropolis–Hastings chain through proposals `x` with importance
    log-weights `log w = log π(x) − log q(x)` (up to one constant): proposal `i` replaces the
    state with probability `min(1, w_i / w_state)`. Exact for `π` whenever the weights are
    (also for path-space weights, e.g. optimal-SQ Girsanov weights, whose endpoint marginal
    is the target). Returns `(chain, accepted)`."""
    log_w = jnp.asarray(log_w)

    def step(carry, inp):
        i, lw_new, k = inp
        carry, _, accept = metropolis_accept(k, lw_new - carry[1], (i, lw_new), carry)
        return carry, (carry[0], accept)

    n = log_w.shape[0]
    keys = jr.split(key, n)
    _, (indices, accepted) = jax.lax.scan(step, (0, log_w[0]), (jnp.arange(n), log_w, keys))
    return jnp.asarray(x)[indices], accepted
