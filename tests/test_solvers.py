"""Adaptive and ODE paths of `solve` against exactly known laws; canonical states from every
solver (the fixed-step paths are tested in test_dynamics)."""

import math

import diffrax
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy import special

import sqdiff as sq


def half_trace(U):
    return 0.5 * np.real(np.trace(np.asarray(U), axis1=-2, axis2=-1)).astype(np.float64)


def su2_brownian(n_links):
    zero = lambda t, y, a: jnp.zeros(y.shape[:-2] + (3,))  # noqa: E731
    return sq.SDE(zero, lambda t, y, a: 1.0, group=sq.SU(2), additive_noise=True)


def test_adaptive_brownian_motion_on_su2_has_the_heat_kernel_law():
    # dU = i T^a ∘dW^a U from 1: generator ½ Σ_a L_a², Casimir ¾ → E[½ tr U_t] = e^{−3t/8}.
    # The embedded Heun estimate is 0 for constant noise (3 steps, 11σ off at t = 1); the
    # step-doubling estimate sees the commutator of the noise.
    n = 4000
    bm = su2_brownian(n)
    U0 = sq.SU(2).identity((n,))
    steps = {}
    for t, rtol in ((1.0, 1e-2), (4.0, 1e-2)):
        sol = sq.solve(bm, U0, 0.0, t, key=jr.key(int(t)), adaptive=True, rtol=rtol, atol=rtol)
        a0 = half_trace(sol.ys[-1])
        exact = math.exp(-3 * t / 8)
        assert abs(a0.mean() - exact) < 4 * a0.std() / math.sqrt(n), (t, a0.mean(), exact)
        steps[t] = int(sol.stats["num_accepted_steps"])
    assert steps[1.0] > 20  # the estimate is not blind to the noise
    tight = sq.solve(bm, U0, 0.0, 1.0, key=jr.key(1), adaptive=True, rtol=1e-3, atol=1e-3)
    assert int(tight.stats["num_accepted_steps"]) > 3 * steps[1.0]  # and follows the tolerance


def test_adaptive_su2_langevin_single_link():
    beta, n = 3.0, 4000
    G = sq.SU(2)
    dyn = sq.Langevin(
        lambda U: -beta / 2 * jnp.sum(jnp.real(jnp.trace(U, axis1=-2, axis2=-1))), group=G
    )
    U0 = G.sample_haar(jr.key(12), (n,))
    sol = sq.solve(dyn, U0, 0.0, 6.0, key=jr.key(13), adaptive=True, rtol=1e-2, atol=1e-2)
    a0 = half_trace(sol.ys[-1])
    exact = special.iv(2, beta) / special.iv(1, beta)  # Haar weight √(1 − a0²)
    assert abs(a0.mean() - exact) < 4 * a0.std() / math.sqrt(n), (a0.mean(), exact)
    assert np.max(np.abs(np.linalg.det(np.asarray(sol.ys[-1])) - 1)) < 1e-5


def test_every_u1_path_returns_wrapped_angles():
    beta, n = 2.0, 4000
    dyn = sq.Langevin(lambda th: -beta * jnp.sum(jnp.cos(th)), group=sq.U1())
    theta0 = sq.U1().sample_haar(jr.key(10), (n,))
    for kw in ({"adaptive": True}, {"n_steps": 200}, {"adaptive": True, "noise": "fresh"}):
        sol = sq.solve(dyn, theta0, 0.0, 4.0, key=jr.key(11), **kw)
        th = np.asarray(sol.ys[-1])
        assert np.all(np.abs(th) <= np.pi + 1e-6), kw
        c = np.cos(th.astype(np.float64))
        exact = special.iv(1, beta) / special.iv(0, beta)
        # fixed steps of 0.02 carry an O(dt) bias well below 4σ at this n
        assert abs(c.mean() - exact) < 4 * c.std() / math.sqrt(n), (kw, c.mean(), exact)
    # the probability flow on the torus (ODE path, Tsit5) also comes back wrapped
    ve = sq.VarianceExploding(sigma=10.0)
    flow = sq.ProbabilityFlow(ve, lambda t, x: -3.0 * jnp.sin(x), group=sq.U1())
    z = ve.prior_sample(jr.key(3), (64,))
    sol = sq.solve(flow, z, 1.0, 1e-3, n_steps=50)
    assert np.all(np.abs(np.asarray(sol.ys[0][-1])) <= np.pi + 1e-6)
    assert np.any(np.abs(np.asarray(z)) > np.pi)  # there was something to wrap


def test_geometric_heun_error_is_wrapped_on_u1():
    solver = sq.GeometricHeun(sq.U1())
    assert abs(float(sq.U1().difference(jnp.asarray(3.1), jnp.asarray(-3.1)))) < 0.1
    assert solver.group.is_flat and not sq.SU(2).is_flat


def test_divergence_is_an_error_not_a_nan():
    action = sq.Phi4(8, 0.2, 0.1)
    with pytest.raises(ValueError, match=r"non-finite state .* t1=10.0 \(10 fixed steps\)"):
        sq.solve(sq.Langevin(action), jnp.ones((8, 8)), 0.0, 10.0, key=jr.key(0), n_steps=10)
    run = jax.jit(lambda y: sq.solve(sq.Langevin(action), y, 0.0, 10.0, key=jr.key(0), n_steps=10))
    with pytest.raises(RuntimeError, match="non-finite state"):
        jax.block_until_ready(run(jnp.ones((8, 8))))
    ok = sq.solve(sq.Langevin(action), jnp.ones((8, 8)), 0.0, 1.0, key=jr.key(0), n_steps=100)
    assert np.all(np.isfinite(np.asarray(ok.ys)))


def test_states_of_the_wrong_shape_or_off_the_group_are_refused():
    with pytest.raises(ValueError, match=r"configurations have shape \(8, 8\)"):
        sq.solve(
            sq.Langevin(sq.Phi4(8, 0.2, 0.1)), jnp.zeros(64), 0.0, 1.0, key=jr.key(0), n_steps=2
        )
    # a batch of configurations is fine
    sq.solve(
        sq.Langevin(sq.Phi4(4, 0.2, 0.1)), jnp.zeros((3, 4, 4)), 0.0, 0.1, key=jr.key(0), n_steps=2
    )
    G = sq.SU(2)
    su2 = sq.Langevin(lambda U: 0.0, group=G)
    with pytest.raises(ValueError, match="must be complex"):
        sq.solve(su2, jnp.eye(2), 0.0, 1.0, key=jr.key(0), n_steps=2)
    with pytest.raises(ValueError, match=r"not in SU\(2\).*‖U†U − 1‖ = 3"):
        sq.solve(su2, 2 * jnp.eye(2, dtype=complex), 0.0, 1.0, key=jr.key(0), n_steps=2)
    action = sq.SUNWilson(2, 4, 1.0, d=2)
    off = 2 * G.identity(action.lattice_shape)[None]
    with pytest.raises(ValueError, match="not in SU"):
        sq.run_chains(sq.HMC(action, 0.1, 3), jr.key(0), off, 2)
    meta = {"theory": "sun", "params": action.params, "sampler": {}, "seed": 0, "acceptance": 1.0}
    with pytest.raises(ValueError, match="not in SU"):
        sq.save_ensemble("/nonexistent/never-written.npz", np.asarray(off)[None], meta)


# --- LogDetSolver: exact Jacobians of Lie-group steps -----------------------------------
@pytest.mark.parametrize("group", [sq.SU(2), sq.U(2)], ids=str)
def test_logdet_solver_carries_the_exact_step_jacobian(group, x64):
    """One `LuscherRK3` step of a gauge-covariant drift on a 2×2 lattice: the accumulated
    `log|det J|` equals the log-determinant of the finite-difference Jacobian of
    `X ↦ log(Φ(exp(iXT)U) Φ(U)†)` (central differences, principal logarithm)."""
    from sqdiff.groups import _dagger, _matmul

    action = sq.UNWilson(2, 2, 1.5) if group.name == "un" else sq.SUNWilson(group.N, 2, 1.5, d=2)
    g = action.group
    U0 = action.random_config(jr.key(1))
    term = diffrax.ODETerm(lambda t, y, args: (g.algebra(-0.7 * action.force(y[0])), 0.0 * y[1]))
    solver = sq.LogDetSolver(sq.LuscherRK3(g), g)
    (U1, logdet), *_ = solver.step(term, 0.0, 0.3, (U0, jnp.zeros(())), None, None, False)
    phi = lambda U: solver.step(term, 0.0, 0.3, (U, jnp.zeros(())), None, None, False)[0][0]  # noqa: E731
    X0 = np.zeros(g.noise_shape(g.lattice_shape(U0)))
    coords = jax.jit(lambda X: g.log(_matmul(phi(g.retract(U0, X)), _dagger(U1))).ravel())
    h, n = 1e-6, X0.size
    cols = []
    for i in range(n):
        e = np.zeros(n)
        e[i] = h
        cols.append((coords(e.reshape(X0.shape)) - coords(-e.reshape(X0.shape))) / (2 * h))
    sign, fd = np.linalg.slogdet(np.stack(cols, 1))
    assert sign > 0 and abs(fd) > 1e-3  # a non-trivial, orientation-preserving step
    np.testing.assert_allclose(float(logdet), fd, atol=1e-6)
    # the same step without the Jacobian leaves ℓ alone
    (U1b, ell), *_ = sq.LogDetSolver(sq.LuscherRK3(g), g, jacobian=False).step(
        term, 0.0, 0.3, (U0, jnp.zeros(())), None, None, False
    )
    np.testing.assert_allclose(np.asarray(U1b), np.asarray(U1), atol=1e-12)
    assert float(ell) == 0.0


def test_group_probability_flow_needs_a_fixed_grid():
    action = sq.UNWilson(2, 2, 1.0)
    flow = sq.ProbabilityFlow(sq.VarianceExploding(5.0), lambda t, U: -action.force(U),
                              group=action.group)  # fmt: skip
    U0 = action.random_config(jr.key(0))
    with pytest.raises(ValueError, match="fixed time grid"):
        sq.solve(flow, U0, 1.0, 1e-3)
    with pytest.raises(ValueError, match="fixed-step grid"):
        sq.solve(flow, U0, 1.0, 1e-3, adaptive=True, grid="geometric")
    with pytest.raises(ValueError, match="t0, t1 > 0"):
        sq.solve(flow, U0, 1.0, 0.0, n_steps=4, grid="geometric")
    with pytest.raises(ValueError, match="one of"):
        sq.ProbabilityFlow(sq.VarianceExploding(5.0), lambda t, U: U, "hutchinson", action.group)
    sol = sq.solve(flow, U0, 1.0, 1e-3, n_steps=8, grid="geometric", ts=[1.0, 0.1, 1e-3])
    # the geometric grid passes through 0.1 = 1 × (10⁻³)^(1/3) only approximately; saved times
    # are the requested ones
    np.testing.assert_allclose(np.asarray(sol.ts), [1.0, 0.1, 1e-3], rtol=1e-6)
    U, delta = sol.ys
    assert U.shape == (3,) + U0.shape and delta.shape == (3,)
    assert float(delta[0]) == 0.0 and np.all(np.isfinite(np.asarray(delta)))
    # divergence="none" (sample_ode) applies the same map and leaves Δ = 0
    plain = sq.ProbabilityFlow(flow.schedule, flow.score, "none", action.group)
    sol0 = sq.solve(plain, U0, 1.0, 1e-3, n_steps=8, grid="geometric", ts=[1.0, 0.1, 1e-3])
    np.testing.assert_allclose(np.asarray(sol0.ys[0]), np.asarray(U), atol=1e-6)
    assert np.all(np.asarray(sol0.ys[1]) == 0.0)


def _mixture_cumulant_pulls(x, exact):
    est, err = sq.stats.jackknife(
        lambda d: np.asarray(sq.stats.cumulants(d, 4))[1::2], np.asarray(x, np.float64), 50
    )
    return (np.asarray(est) - exact) / np.asarray(err)


@pytest.mark.parametrize(
    "schedule", [sq.VarianceExploding(25.0), sq.VariancePreserving(0.1, 20.0)], ids=["VE", "VP"]
)
def test_fresh_noise_adaptive_reverse_sde_samples_the_mixture(schedule):
    # Gotta Go Fast's error estimate, fresh noise, no rejection (PredictableSteps), one step
    # size per sample (vmap): κ2, κ4 of ½[N(±1, 0.25²)] = 1.0625, −2 within 4σ (jackknife).
    mix = sq.GaussianMixture.symmetric(1.0, 0.25)
    rev = sq.Reverse(schedule, lambda t, x: mix.score(t, x, schedule))

    def one(k):
        k0, k1 = jr.split(k)
        x = schedule.prior_sample(k0, ())
        sol = sq.solve(
            rev, x, schedule.T, 0.0, key=k1, adaptive=True, noise="fresh", rtol=0.01, atol=0.005
        )
        return sol.ys[-1], sol.stats["num_evaluations"], sol.stats["num_rejected_steps"]

    x, nfe, rejected = jax.jit(jax.vmap(one))(jr.split(jr.key(5), 40_000))
    pulls = _mixture_cumulant_pulls(x, np.array([1.0625, -2.0]))
    assert np.all(np.abs(pulls) < 4), pulls
    assert int(np.max(rejected)) == 0  # PredictableSteps keeps every step
    nfe = np.asarray(nfe)
    assert 40 < nfe.mean() < 400 and np.ptp(nfe) > 0  # adaptive, and per sample


def test_fresh_noise_adaptive_sde_converges_on_a_stiff_ou_process():
    # dX = −θX dt + dW from 0 to 1, θ = 50: Var X_1 = (1 − e^{−2θ})/(2θ). Without rejection
    # the step-size rule alone must keep the stiff drift stable and converge with the tolerance.
    theta, n = 50.0, 20_000
    ou = sq.SDE(lambda t, y, a: -theta * y, lambda t, y, a: 1.0, additive_noise=True)
    exact = (1 - math.exp(-2 * theta)) / (2 * theta)

    def var(tol):
        run = jax.vmap(
            lambda k: sq.solve(
                ou, jnp.zeros(()), 0.0, 1.0, key=k, adaptive=True, noise="fresh", rtol=tol,
                atol=tol,
            ).ys[-1]
        )  # fmt: skip
        return float(np.var(np.asarray(run(jr.split(jr.key(7), n)), np.float64)))

    assert abs(var(1e-3) - exact) < 4 * exact * math.sqrt(2 / n)
    assert abs(var(1e-1) - exact) > 20 * exact * math.sqrt(2 / n)  # loose: visibly biased


def test_fresh_noise_is_refused_on_non_abelian_groups():
    # the embedded Euler/Heun estimate is zero for Brownian motion on SU(2): without rejection
    # the steps would double until the law is wrong (E[½ tr U_4] 6σ low when it ran)
    zero = lambda t, y, a: jnp.zeros(y.shape[:-2] + (3,))  # noqa: E731
    bm = sq.SDE(zero, lambda t, y, a: 1.0, group=sq.SU(2), additive_noise=True)
    U0 = sq.SU(2).identity((4,))
    with pytest.raises(ValueError, match="noise='fresh' needs an abelian state"):
        sq.solve(bm, U0, 0.0, 4.0, key=jr.key(0), adaptive=True, noise="fresh")


def _counting(vf):
    """`vf` that also counts its executions on the host."""
    calls = []

    def counted(t, y, args):
        jax.debug.callback(lambda: calls.append(1))
        return vf(t, y, args)

    return counted, calls


@pytest.mark.parametrize(
    "options",
    [
        {"n_steps": 17},
        {"adaptive": True},
        {"adaptive": True, "noise": "fresh"},
        {"adaptive": True, "solver": sq.GeometricHeun(step_doubling=True)},
    ],
    ids=["euler-maruyama", "shark-tree", "fresh", "heun-doubling"],
)
def test_num_evaluations_counts_every_drift_evaluation(options):
    drift, calls = _counting(lambda t, y, a: -3.0 * y)
    ou = sq.SDE(drift, lambda t, y, a: 1.0, additive_noise=True)
    sol = sq.solve(ou, jnp.ones(4), 0.0, 1.0, key=jr.key(0), rtol=1e-2, atol=1e-2, **options)
    jax.block_until_ready(sol.ys)
    jax.effects_barrier()
    assert int(sol.stats["num_evaluations"]) == len(calls) > 0
    if options.get("adaptive"):
        assert int(sol.stats["num_steps"]) > 3


@pytest.mark.parametrize("n_steps", [None, 12])
def test_num_evaluations_of_ode_solves(n_steps):
    drift, calls = _counting(lambda t, y, a: -y)
    ode = sq.SDE(drift, None)
    sol = sq.solve(ode, jnp.ones(3), 0.0, 2.0, n_steps=n_steps, rtol=1e-6, atol=1e-6)
    jax.block_until_ready(sol.ys)
    jax.effects_barrier()
    assert int(sol.stats["num_evaluations"]) == len(calls) == 1 + 6 * int(sol.stats["num_steps"])
