r"""Target score matching: denoising score matching that also uses the known target score.

For a lattice theory the clean law's score is known, `∇log p_0 = −∇S`, and the noised law
`x_t = m(t) x_0 + Σ(t) η` has two unbiased regression targets for `∇log p_t(x_t)`: the
denoising one `−η/Σ` (Vincent 2011; its variance grows as `1/Σ²` at low noise) and the target
score identity's `−∇S(x_0)/m` (De Bortoli, Hutchinson, Wirnsberger, Doucet, "Target Score
Matching", arXiv:2402.08667; its variance grows with `Σ`). Both have the conditional mean
`∇log p_t(x_t)`, so any `t`-dependent convex combination does too (a control variate: Kahouli
et al., "Control Variate Score Matching", arXiv:2512.20003). The loss

    L(θ) = E_t E_{x_0} E_η ‖Σ s_θ(t, x_t) + (1 − a) η + a Σ ∇S(x_0)/m‖² / (1 − a)  (per site),
    a(t) = m² ς² / (m² ς² + Σ²),

has the true score as its minimiser (at every t the regression target is unbiased). The weight
`a` is the one for which the target has no variance at all when `p_0` is a Gaussian of
variance `ς²` per site (the two targets are then exactly anticorrelated); `ς`, the
*crossover*, is the noise level below which the target score takes over. For an interacting
theory `crossover_scale(action, data) = (N / E‖∇S‖²)^{1/2}` (N sites) is that Gaussian's `ς`
(by parts, `E‖∇S‖² = E[ΔS]`: one over the mean curvature).

The factor `1/(1 − a) = 1 + m²ς²/Σ²` weighs the score error by `Σ² + m²ς²` instead of DSM's
`Σ²`: below the crossover a score error counts as much as at `ς` instead of fading as `Σ²`.
The low-variance target is what allows it (with DSM's target the same weight would give the
loss a `1/Σ²` variance). Both parts matter: with the mixed target alone (DSM's weight) a local
network learns the free field's score at Σ = 0.05 hardly better than with DSM; with the weight
its error there is 8–12× smaller (tests/test_objectives.py).

At the noise level where Metropolis-adjusted annealed Langevin (MAALA) evaluates the network,
Σ ≈ 0.1, the target is far less noisy: on 3D φ⁴ at κ_c (λ = 0.9, L = 8) the mean squared
residual of a DSM-trained network against the mixed target (ς = 0.5) is 0.020 per site,
against 0.96 against DSM's own target.

**On a group** (U(1), SU(N), U(N) links noised as `U_t = exp(iσηT) U_0`, VE, m = 1) the identity
holds with the algebra-coordinate derivative `D^a f(U) = ∂_ε f(exp(iεT^a) U)|₀` that the score
and `force` use: the noise law `k(U_t U_0†)` is a class function (`exp(iσηT)` with η ~ N(0, 1)
is invariant under conjugation), so `p_t(e^{iεT}U) = ∫ p_0(e^{iεT}V) k(UV†) dV` and

    D^a log p_t(U) = E[D^a log p_0(U_0) | U_t = U] = −E[D^a S(U_0) | U_t = U],

the same identity without a transport of the algebra (`group_tsm_loss`). DSM's target there is
`−η/σ` (exact for U(1), the small-σ limit for SU(N)) or the wrapped law's exact conditional
score (`target="wrapped"`); the mixing weight is `a = ς²/(ς² + σ²)` per algebra coordinate.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import positive_float
from ..groups import AbstractGroup
from ..schedules import AbstractSchedule, VarianceExploding
from ..theories.base import AbstractAction
from .base import AbstractObjective
from .dsm import (
    _check_shifts,
    _dsm_settings,
    _shifts_array,
    group_noise_batch,
    noise_batch,
    wrapped_shifts,
)

__all__ = ["TargetScoreMatching", "crossover_scale", "group_tsm_loss", "tsm_loss"]


def tsm_loss(
    key: PRNGKeyArray,
    model: Callable,
    schedule: AbstractSchedule,
    grad_action: Callable[[Array], Array],
    x0: Float[Array, "batch ..."],
    crossover: float,
    t_min: float = 1e-3,
    importance: bool = False,
) -> Float[Array, ""]:
    """The target-score-matching loss of a batch `x0` (module docstring).

    Args:
        key: the key for the times and the noise.
        model: the network `(t, x) → s(t, x)`.
        schedule: the forward noising schedule (`m(t)`, `Σ(t)`).
        grad_action: `∇S` of one configuration (the negative clean score).
        x0: a batch of clean configurations, `(batch, *shape)`.
        crossover: `ς > 0`, the noise level where the weight of `−∇S` falls to one half.
        t_min: the smallest time drawn (absolute).
        importance: draw t from `q(t) ∝ g²/Σ²` with compensating weights.
    """
    t, w, eta, mean, std = noise_batch(key, schedule, x0, t_min, importance)
    a, b = _weights(mean * crossover, std)
    pred = jax.vmap(model)(t, mean * x0 + std * eta)
    res = std * pred + b * eta + a * std * jax.vmap(grad_action)(x0) / mean
    per_sample = jnp.mean(res.reshape(x0.shape[0], -1) ** 2, axis=1) / b.reshape(-1)
    return jnp.mean(w * per_sample)


def _weights(scale, std):
    """`a = ς_t²/(ς_t² + Σ²)` and `1 − a`, each by its own quotient (no cancellation where
    `a → 1`), `ς_t = m ς`."""
    return scale**2 / (scale**2 + std**2), std**2 / (scale**2 + std**2)


def group_tsm_loss(
    key: PRNGKeyArray,
    model: Callable,
    schedule: VarianceExploding,
    group: AbstractGroup,
    grad_action: Callable[[Array], Array],
    U0: Array,
    crossover: float,
    t_min: float = 1e-3,
    importance: bool = False,
    shifts: np.ndarray | None = None,
) -> Float[Array, ""]:
    """Target score matching for group-valued links (module docstring, "On a group"): DSM's
    target `−η/σ` (or with `shifts` the wrapped law's exact conditional score, as in
    `group_dsm_loss`) mixed with `−∇S(U_0)` in algebra coordinates, weight
    `a = ς²/(ς² + σ²)`, loss weighted by `1/(1 − a)`; flat fields go to `tsm_loss`.

    Args:
        key: the key for the times and the noise.
        model: the network `(t, U) → s^a(t, U)` (algebra coordinates).
        schedule: the variance-exploding noise schedule (`σ(t)`).
        group: the links' group.
        grad_action: `∇S` of one configuration in algebra coordinates (the action's `force`).
        U0: a batch of clean configurations.
        crossover: `ς > 0`, the noise level where the weight of `−∇S` falls to one half.
        t_min: the smallest time drawn (absolute).
        importance: draw t from `q(t) ∝ g²/Σ²` with compensating weights.
        shifts: the preimage shifts of the wrapped target (`dsm.wrapped_shifts`), or None.
    """
    if group.is_vector_space:
        return tsm_loss(key, model, schedule, grad_action, U0, crossover, t_min, importance)
    t, w, Ut, std, target = group_noise_batch(key, schedule, group, U0, t_min, importance, shifts)
    a, b = _weights(crossover, std)
    pred = jax.vmap(model)(t, Ut)
    res = std * pred - b * target + a * std * jax.vmap(grad_action)(U0)
    per_sample = jnp.mean(res.reshape(U0.shape[0], -1) ** 2, axis=1) / b.reshape(-1)
    return jnp.mean(w * per_sample)


def crossover_scale(action: AbstractAction, data: Float[Array, "n ..."]) -> float:
    """`ς = (N / E‖∇S‖²)^{1/2}` over configurations `data` (N sites, or algebra coordinates
    of links, each): the standard deviation of the Gaussian with the theory's mean curvature,
    the default crossover."""
    data = jnp.asarray(data)
    f2 = np.mean(np.asarray(jax.vmap(lambda x: jnp.mean(action.force(x) ** 2))(data)))
    if not np.isfinite(f2) or f2 <= 0:
        raise ValueError(f"the training data give E‖∇S‖² = {f2}: cannot set the crossover.")
    return float(1 / np.sqrt(f2))


class TargetScoreMatching(AbstractObjective):
    """Target score matching (`tsm_loss` on flat fields, `group_tsm_loss` on links): DSM with
    the target score `−∇S` mixed in at low noise, for models whose theory has an analytic
    force.

    Args:
        schedule: the forward noising schedule (variance-exploding for links).
        action: the target action (its `force` is `∇S`).
        crossover: `ς`, the noise level of the hand-over from `−∇S(x_0)/m` to `−η/Σ`.
        t_min: the smallest time drawn (absolute).
        importance: draw t from `q(t) ∝ g²/Σ²` with compensating weights.
        target: links: DSM's part of the target, `"gaussian"` (`−η/σ`) or `"wrapped"` (the
            exact conditional score on SU(N)/U(N), as in `GroupDSM`).
    """

    schedule: AbstractSchedule
    action: AbstractAction
    crossover: float
    t_min: float
    importance: bool
    target: str = eqx.field(static=True, default="gaussian")
    #: the preimage shifts of the wrapped target (`dsm.wrapped_shifts`)
    shifts: tuple[tuple[int, ...], ...] | None = eqx.field(static=True, default=None)

    name = "tsm"

    def __check_init__(self):
        group = self.action.group
        if not group.is_vector_space and not isinstance(self.schedule, VarianceExploding):
            raise ValueError(
                f"{group} links are noised on the group with a variance-exploding schedule, "
                f"not {type(self.schedule).__name__}."
            )
        _check_shifts(self.target, group, self.shifts)

    def loss(self, model, key, batch):
        return group_tsm_loss(
            key, model, self.schedule, self.action.group, self.action.force, batch,
            self.crossover, self.t_min, self.importance, _shifts_array(self.shifts),
        )  # fmt: skip

    @classmethod
    def from_spec(cls, spec, action, crossover=1.0, target="gaussian", **params):
        schedule, t_min, importance = _dsm_settings(spec, **params)
        action = spec.build_theory() if action is None else action
        shifts = wrapped_shifts(action.group, schedule, target)
        return cls(
            schedule, action, positive_float(crossover, "crossover"), t_min, importance, target,
            shifts,
        )  # fmt: skip
