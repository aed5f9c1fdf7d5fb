r"""Training objectives for score networks.

Denoising score matching with `λ(t) = Σ(t)²` weighting (Vincent, Neural Comput. 23 (2011)
1661; Song et al., ICLR 2021, Eq. 7):

    L(θ) = E_t E_{φ0} E_η ‖Σ(t) s_θ(t, m(t)φ0 + Σ(t)η) + η‖²  (per site),

and its group version for forward noise `U_t = exp(i σ(t) η^a T^a) U_0` on U(1)/SU(N) links:
`E ‖σ(t) s_θ^a(t, U_t) + η^a‖²` (i.e. `Σ_{x,μ,a} (s^a + η^a/σ)²` times σ²), valid as the
conditional score for small σ (the talks' group diffusion).

Times are drawn uniformly on `[t_min, T]` or by importance sampling from
`q(t) ∝ g(t)²/Σ(t)²` (the likelihood weighting), with weights `1/((T − t_min) q(t))` that keep
the objective equal to the uniform-t one.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..groups import AbstractGroup, _dagger, _matmul
from ..schedules import AbstractSchedule, VarianceExploding
from .base import AbstractObjective
from .wrapped import image_shifts, wrapped_normal_score

__all__ = ["DenoisingScoreMatching", "GroupDSM", "sample_times", "dsm_loss", "group_dsm_loss"]


def sample_times(
    key: PRNGKeyArray, n: int, schedule: AbstractSchedule, t_min: float, importance: bool = False
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """`n` times in `[t_min, T]` and their weights (1 for uniform sampling)."""
    T = schedule.T
    if not importance:
        return jr.uniform(key, (n,), minval=t_min, maxval=T), jnp.ones((n,))
    grid = jnp.linspace(t_min, T, 2049)
    dens = schedule.diffusion(grid) ** 2 / schedule.marginal_std(grid) ** 2
    cdf = jnp.concatenate([jnp.zeros(1), jnp.cumsum(0.5 * (dens[1:] + dens[:-1]) * jnp.diff(grid))])
    norm = cdf[-1]
    t = jnp.interp(jr.uniform(key, (n,)) * norm, cdf, grid)
    q = jnp.interp(t, grid, dens) / norm
    return t, 1.0 / ((T - t_min) * q)


def dsm_loss(
    key: PRNGKeyArray,
    model: Callable,
    schedule: AbstractSchedule,
    x0: Float[Array, "batch ..."],
    t_min: float = 1e-3,
    importance: bool = False,
) -> Float[Array, ""]:
    """Σ²-weighted denoising score matching for a batch `x0` of flat configurations."""
    t, w, eta, mean, std = noise_batch(key, schedule, x0, t_min, importance)
    pred = jax.vmap(model)(t, mean * x0 + std * eta)
    per_sample = jnp.mean(((std * pred + eta) ** 2).reshape(x0.shape[0], -1), axis=1)
    return jnp.mean(w * per_sample)


def noise_batch(key, schedule, x0, t_min, importance):
    """Times `t` and weights `w` (`sample_times`), the noise `η` and `m(t)`, `Σ(t)` shaped to
    broadcast against the batch `x0`: the noised batch is `m x0 + Σ η`."""
    kt, ke = jr.split(key)
    t, w = sample_times(kt, x0.shape[0], schedule, t_min, importance)
    eta = jr.normal(ke, x0.shape, x0.dtype)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    return t, w, eta, schedule.mean_coeff(t).reshape(shape), schedule.marginal_std(t).reshape(shape)


def group_dsm_loss(
    key: PRNGKeyArray,
    model: Callable,
    schedule: VarianceExploding,
    group: AbstractGroup,
    U0: Array,
    t_min: float = 1e-3,
    importance: bool = False,
    shifts: np.ndarray | None = None,
) -> Float[Array, ""]:
    """Group DSM: `U_t = exp(iσ(t)η^aT^a) U_0`, loss `‖σ s^a(t, U_t) + η^a‖²` per link (the
    published target), or with `shifts` (`wrapped.image_shifts`) `‖σ s^a − σ s_exact^a‖²`
    with the exact conditional score of the wrapped law (`wrapped.wrapped_normal_score`)."""
    if group.is_vector_space:
        return dsm_loss(key, model, schedule, U0, t_min, importance)
    t, w, Ut, std, target = group_noise_batch(key, schedule, group, U0, t_min, importance, shifts)
    res = std * jax.vmap(model)(t, Ut) - target
    return jnp.mean(w * jnp.mean(res.reshape(U0.shape[0], -1) ** 2, axis=1))


def group_noise_batch(key, schedule, group, U0, t_min, importance, shifts):
    """Times `t` and weights `w` (`sample_times`), the noised links
    `U_t = exp(iσ(t)η^aT^a) U_0`, `σ(t)` shaped to broadcast against the algebra coordinates,
    and DSM's regression target times σ: `−η` (`shifts=None`) or `σ` times the exact
    conditional score of the wrapped law."""
    kt, ke = jr.split(key)
    t, w = sample_times(kt, U0.shape[0], schedule, t_min, importance)
    lattice = group.lattice_shape(U0[0])
    eta = jax.vmap(lambda k: group.sample_algebra(k, lattice))(jr.split(ke, U0.shape[0]))
    std = schedule.marginal_std(t)
    Ut = jax.vmap(lambda u, s, e: group.retract(u, s * e))(U0, std, eta)
    if shifts is None:
        target = -eta
    else:
        W = _matmul(Ut, _dagger(U0))  # U_t U_0†, per link
        target = jax.vmap(lambda w_, s: s * wrapped_normal_score(group, w_, s, shifts))(W, std)
    return t, w, Ut, std.reshape((-1,) + (1,) * (eta.ndim - 1)), target


def wrapped_shifts(group: AbstractGroup, schedule: AbstractSchedule, target: str):
    """The preimage shifts of the `"wrapped"` target (hashable: objectives are static jit
    arguments of the trainer), `None` for `"gaussian"`."""
    _check_target(target, group)
    if target == "gaussian":
        return None
    sigma_max = float(schedule.marginal_std(schedule.T))
    ks = image_shifts(group.params["N"], group.name == "su", sigma_max)
    return tuple(tuple(int(k) for k in row) for row in ks)


def _check_target(target, group):
    """The DSM target's name, valid for `group`."""
    if target not in ("gaussian", "wrapped") or (target == "wrapped" and group.is_flat):
        raise ValueError(
            f"`target` must be 'gaussian', or 'wrapped' for SU(N)/U(N) links; got {target!r} "
            f"for {group}."
        )


def _check_shifts(target, group, shifts):
    """A valid target (`_check_target`) with `shifts` given exactly when it is `"wrapped"`."""
    _check_target(target, group)
    if target == "wrapped" and shifts is None:
        raise ValueError(
            "`target='wrapped'` needs `shifts=dsm.wrapped_shifts(group, schedule, 'wrapped')` "
            "(`from_spec` sets them)."
        )
    if target != "wrapped" and shifts is not None:
        raise ValueError(f"`target={target!r}` takes no `shifts`.")


def _shifts_array(shifts):
    return None if shifts is None else np.asarray(shifts, np.float64)


def _dsm_settings(spec, t_min=1e-3, importance=False):
    schedule = spec.build_schedule()
    if schedule is None:
        raise ValueError("score matching needs a noise schedule in the model spec.")
    if not 0 < float(t_min) < 1:
        raise ValueError(f"`t_min` must lie in (0, 1) (a fraction of T), got {t_min!r}.")
    return schedule, float(t_min) * schedule.T, bool(importance)


class DenoisingScoreMatching(AbstractObjective):
    """Σ²-weighted denoising score matching on flat fields (`dsm_loss`).

    Args:
        schedule: the forward noising schedule.
        t_min: the smallest time drawn (absolute).
        importance: draw t from `q(t) ∝ g²/Σ²` with compensating weights.
    """

    schedule: AbstractSchedule
    t_min: float
    importance: bool

    name = "dsm"

    def loss(self, model, key, batch):
        return dsm_loss(key, model, self.schedule, batch, self.t_min, self.importance)

    @classmethod
    def from_spec(cls, spec, action, **params):
        return cls(*_dsm_settings(spec, **params))


class GroupDSM(AbstractObjective):
    """Denoising score matching for group-valued links, `U_t = exp(iσ(t)η^aT^a) U_0`
    (`group_dsm_loss`).

    Args:
        schedule: the (variance-exploding) noise schedule.
        group: the links' group.
        t_min: the smallest time drawn (absolute).
        importance: draw t from `q(t) ∝ g²/Σ²` with compensating weights.
        target: `"gaussian"` — the published target `−η/σ` (the conditional score of the
            Gaussian in algebra coordinates, exact as σ → 0); `"wrapped"` — the exact
            conditional score of the law of `exp(iσηT)` on the group, preimages and the
            Jacobian of `exp` included (SU(N)/U(N) only). The model spec records which.
    """

    schedule: AbstractSchedule
    group: AbstractGroup
    t_min: float
    importance: bool
    target: str = eqx.field(static=True, default="gaussian")
    #: the preimage shifts of the wrapped target (hashable: the objective is a static jit
    #: argument of the trainer)
    shifts: tuple[tuple[int, ...], ...] | None = eqx.field(static=True, default=None)

    name = "group_dsm"

    def __check_init__(self):
        _check_shifts(self.target, self.group, self.shifts)

    def loss(self, model, key, batch):
        return group_dsm_loss(
            key, model, self.schedule, self.group, batch, self.t_min, self.importance,
            _shifts_array(self.shifts),
        )  # fmt: skip

    @classmethod
    def from_spec(cls, spec, action, target="gaussian", **params):
        schedule, t_min, importance = _dsm_settings(spec, **params)
        group = spec.build_group()
        shifts = wrapped_shifts(group, schedule, target)
        return cls(schedule, group, t_min, importance, target, shifts)
