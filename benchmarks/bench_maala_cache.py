"""Exact DM sampling (MAALA): the cached-state sampler against the uncached step it replaced.

Both run the same Metropolis-adjusted Langevin chain with a U-Net score (random weights: the
cost, not the quality, is measured) on 2D φ⁴, `vmap` over chains, `lax.scan` over steps:

- *uncached* (sqdiff 0.1's MAALA step, reproduced here as the baseline): the drift at the
  current point and at the proposal, and the action at both, every step (2 network + 2 action
  evaluations);
- *cached* (`sq.MAALA`, `MALAState`): the drift and action of the current point come from the
  state (1 network + 1 action evaluation per step).

Reported: seconds per chain step of each and the ratio uncached / cached (same run,
interleaved, minimum of repeats). Run: `python benchmarks/bench_maala_cache.py [--L 16]`.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import jax.random as jr
from bench_langevin import best_times

import sqdiff as sq
from sqdiff.mcmc import metropolis_accept


def uncached_step(action, score, t_mh, eps):
    """The 0.1 step: everything recomputed at both points."""

    def drift(x):
        return score(t_mh, x)

    def step(x, key):
        k_noise, k_acc = jr.split(key)
        d0 = drift(x)
        new = x + eps * d0 + jnp.sqrt(2 * eps) * jr.normal(k_noise, x.shape, x.dtype)
        d1 = drift(new)
        log_q_fwd = -jnp.sum((new - x - eps * d0) ** 2) / (4 * eps)
        log_q_bwd = -jnp.sum((x - new - eps * d1) ** 2) / (4 * eps)
        log_a = action(x) - action(new) + log_q_bwd - log_q_fwd
        x, p, _ = metropolis_accept(k_acc, log_a, new, x)
        return x, p

    return step


def make_runs(action, score, t_mh, eps, steps):
    old = uncached_step(action, score, t_mh, eps)
    new = sq.MAALA(action, score, t_mh, eps)

    @jax.jit
    def run_old(x0, key):
        def chain(x, k):
            return jax.lax.scan(old, x, jr.split(k, steps))

        return jax.vmap(chain)(x0, jr.split(key, x0.shape[0]))

    @jax.jit
    def run_new(x0, key):
        def chain(x, k):
            state = new.init(x)
            state, info = jax.lax.scan(lambda s, kk: new.step(kk, s), state, jr.split(k, steps))
            return state.position, info.accept_prob

        return jax.vmap(chain)(x0, jr.split(key, x0.shape[0]))

    return run_old, run_new


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=16)
    p.add_argument("--chains", type=int, default=16)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    action = sq.Phi4(a.L, 0.21, 0.022)
    sch = sq.VarianceExploding(25.0)
    score = sq.nn.UNet(sch, d=2, channels=a.channels, levels=2, key=jr.key(0))
    t_mh = 0.05
    eps = 0.5 * float(sch.marginal_std(t_mh)) ** 2
    x0 = jr.normal(jr.key(1), (a.chains, a.L, a.L))
    run_old, run_new = make_runs(action, score, t_mh, eps, a.steps)
    t_old, t_new = best_times([run_old, run_new], x0, jr.key(2), repeats=a.repeats)
    per = a.chains * a.steps
    print(
        json.dumps(
            {
                "L": a.L,
                "chains": a.chains,
                "steps": a.steps,
                "channels": a.channels,
                "uncached_s_per_step": t_old / a.steps,
                "cached_s_per_step": t_new / a.steps,
                "uncached_chain_steps_per_s": per / t_old,
                "cached_chain_steps_per_s": per / t_new,
                "ratio_uncached_over_cached": t_old / t_new,
                "device": str(jax.devices()[0]),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
