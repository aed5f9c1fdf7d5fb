"""Predictor–corrector sampling with the exact two-Gaussian-mixture score (κ2…κ8 = 1.0625, −2,
16, −272), and its input checks."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

import sqdiff as sq

KAPPA = np.array([1.0625, -2.0, 16.0, -272.0])
MIX = sq.GaussianMixture.symmetric(1.0, 0.25)
VE = sq.VarianceExploding(25.0)


def score(t, x):
    return MIX.score(t, x, VE)


def test_pc_with_the_exact_score_reproduces_the_mixture_cumulants():
    # 20000 independent scalars drawn as one configuration: the SNR step rule uses norms over
    # the configuration, which are meaningful for many degrees of freedom
    x = jax.jit(
        lambda k: sq.predictor_corrector(k, VE, score, (20_000,), n_steps=1000, corrector_steps=1)
    )(jr.key(0))
    x = np.asarray(x, np.float64)
    moments = np.stack([x**k for k in range(1, 9)], -1)[None]
    for n, exact in zip((2, 4, 6, 8), KAPPA, strict=True):
        res = sq.stats.gamma_method(
            moments, lambda a, n=n: float(sq.stats.cumulants_from_moments(a)[n - 1])
        )
        assert abs(res.value - exact) < 4 * res.error, (n, res, exact)


def test_pc_corrector_moves_the_sample():
    k = jr.key(1)
    run = lambda m: sq.predictor_corrector(k, VE, score, (64,), n_steps=20, corrector_steps=m)  # noqa: E731
    assert not jnp.allclose(run(0), run(2))
    angles = sq.predictor_corrector(k, VE, lambda t, x: -jnp.sin(x), (8,), n_steps=5, group=sq.U1())
    assert jnp.all(jnp.abs(angles) <= jnp.pi)


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"n_steps": 0}, "n_steps"),
        ({"corrector_steps": -1}, "corrector_steps"),
        ({"snr": 0.0}, "snr"),
        ({"t_min": 1.0}, "t_min"),
        ({"t_min": 0.0}, "t_min"),
        ({"group": sq.SU(2)}, r"must end in \(2, 2\)"),  # shape (4,) is not SU(2) links
    ],
)
def test_pc_bad_input(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        sq.predictor_corrector(jr.key(0), VE, score, (4,), **kwargs)


def test_annealed_langevin_then_maala_is_exact():
    # annealed Langevin (not exact by itself) as the start of MAALA chains: κ2, κ4 within 4σ
    ts = VE.T * 0.05 ** jnp.linspace(0.0, 1.0, 50)
    eps = 0.5 * float(VE.marginal_std(0.05)) ** 2
    x0 = VE.prior_sample(jr.key(2), (1000,))
    start = sq.annealed_langevin(jr.key(3), VE, score, x0, ts, steps_per_level=5, step_size=eps)
    action = lambda x: -jnp.sum(MIX.log_prob(0.0, x))  # noqa: E731
    chains, _ = sq.run_chains(sq.MAALA(action, score, 0.05, eps), jr.key(4), start, 100)
    moments = np.stack([np.asarray(chains, np.float64) ** k for k in range(1, 9)], -1)
    for n, exact in zip((2, 4), KAPPA[:2], strict=True):
        res = sq.stats.gamma_method(
            moments, lambda a, n=n: float(sq.stats.cumulants_from_moments(a)[n - 1])
        )
        assert abs(res.value - exact) < 4 * res.error, (n, res, exact)
    with pytest.raises(ValueError, match="steps_per_level"):
        sq.annealed_langevin(jr.key(0), VE, score, x0, ts, steps_per_level=0, step_size=eps)
