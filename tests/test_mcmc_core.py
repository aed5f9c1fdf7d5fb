"""The BlackJAX-shaped core: cached states evaluate each expensive function once per step
(counted at run time with `jax.debug.callback`), one Metropolis accept, integrators."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq
from sqdiff.mcmc import metropolis_accept


class Counter:
    def __init__(self):
        self.n = 0

    def tick(self):
        self.n += 1


def counted(fn, counter):
    def wrapped(*args):
        jax.debug.callback(counter.tick)
        return fn(*args)

    return wrapped


class CountedPhi4(sq.theories.AbstractAction):
    """Phi4 whose action and force evaluations are counted."""

    inner: sq.Phi4
    counts: dict

    name = "counted_phi4"

    @property
    def group(self):
        return self.inner.group

    @property
    def lattice_shape(self):
        return self.inner.lattice_shape

    @property
    def params(self):
        return self.inner.params

    def __call__(self, phi):
        return counted(self.inner, self.counts["action"])(phi)

    def force(self, phi):
        return counted(self.inner.force, self.counts["force"])(phi)


def run_steps(sampler, x0, n):
    @jax.jit
    def go(state, keys):
        return jax.lax.scan(lambda s, k: sampler.step(k, s), state, keys)

    state = sampler.init(x0)
    out = go(state, jr.split(jr.key(1), n))
    jax.block_until_ready(out)
    return out


def fresh_counts():
    return {"action": Counter(), "force": Counter()}


@pytest.mark.parametrize("integrator,forces", [("leapfrog", 1), ("omelyan", 2)])
def test_hmc_force_evaluations_per_md_step(integrator, forces):
    counts = fresh_counts()
    action = CountedPhi4(sq.Phi4(4, 0.2, 0.1), counts)
    n_md, n_traj = 7, 5
    hmc = sq.HMC(action, 0.05, n_md, integrator)
    run_steps(hmc, jnp.zeros((4, 4)) + 0.1, n_traj)
    # init: 1 action + 1 force; each trajectory: forces·n_md forces, 1 action
    assert counts["force"].n == 1 + forces * n_md * n_traj
    assert counts["action"].n == 1 + n_traj


def test_mala_and_maala_evaluate_drift_and_action_once_per_step():
    counts = fresh_counts()
    action = CountedPhi4(sq.Phi4(4, 0.2, 0.1), counts)
    n = 9
    run_steps(sq.MALA(action, 0.01), jnp.zeros((4, 4)) + 0.1, n)
    assert counts["force"].n == 1 + n and counts["action"].n == 1 + n

    counts = fresh_counts()
    action = CountedPhi4(sq.Phi4(4, 0.2, 0.1), counts)
    net = Counter()
    score = counted(lambda t, x: -sq.Phi4(4, 0.2, 0.1).force(x), net)
    run_steps(sq.MAALA(action, score, 0.05, 0.01), jnp.zeros((4, 4)) + 0.1, n)
    assert net.n == 1 + n and counts["action"].n == 1 + n and counts["force"].n == 0


def test_cached_state_matches_recomputed_values():
    action = sq.Phi4(4, 0.2, 0.1)
    hmc = sq.HMC(action, 0.6, 5, "omelyan")
    state, _ = run_steps(hmc, jr.normal(jr.key(0), (4, 4)), 20)
    np.testing.assert_allclose(state.action, action(state.position), rtol=1e-5)
    np.testing.assert_allclose(state.force, action.force(state.position), rtol=1e-5, atol=1e-6)
    mala = sq.MALA(action, 0.3)  # large enough to reject: caches must survive rejections
    state, info = run_steps(mala, jr.normal(jr.key(0), (4, 4)), 20)
    np.testing.assert_allclose(state.drift, -action.force(state.position), rtol=1e-5, atol=1e-6)
    assert 0 < float(jnp.mean(info.accepted)) < 1


def test_metropolis_accept_rejects_non_finite_and_selects_pytrees():
    new, old = {"a": jnp.ones(3)}, {"a": jnp.zeros(3)}
    for bad in (jnp.nan, jnp.inf, -jnp.inf):
        state, p, acc = metropolis_accept(jr.key(0), jnp.asarray(bad), new, old)
        assert float(p) == 0.0 and not bool(acc) and float(state["a"][0]) == 0.0
    state, p, acc = metropolis_accept(jr.key(0), jnp.asarray(0.0), new, old)
    assert float(p) == 1.0 and bool(acc) and float(state["a"][0]) == 1.0
    # acceptance frequency = e^{log a}
    keys = jr.split(jr.key(1), 20000)
    acc = jax.vmap(lambda k: metropolis_accept(k, jnp.log(0.3), 1.0, 0.0)[2])(keys)
    assert abs(float(jnp.mean(acc)) - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 20000)


def test_custom_callable_action_samples_like_the_class():
    # a plain callable S(φ) works in every sampler: Gaussian ⟨φ²⟩ = 1
    S = lambda phi: 0.5 * jnp.sum(phi**2)  # noqa: E731
    init = jr.normal(jr.key(0), (8, 3))
    for sampler in (sq.HMC(S, 0.3, 5), sq.MALA(S, 0.2)):
        samples, _ = sq.run_chains(sampler, jr.key(1), init, 1000, n_therm=50)
        r = sq.stats.gamma_method(samples.reshape(8, 1000, 3)[..., :1] ** 2)
        assert abs(r.value - 1.0) < 4 * r.error, r
        r = sq.analyze(S, samples)["action"]  # analyze takes the callable too: ⟨S⟩ = 3/2
        assert abs(r.value - 1.5) < 4 * r.error, r
