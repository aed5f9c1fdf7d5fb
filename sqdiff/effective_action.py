r"""The effective action learned by a diffusion model of a 0-dimensional theory,

    S_DM(φ, t) = −∫_{φ_0}^{φ} s_θ(t, φ') dφ' (+ a constant),

with `∇_φ S_DM = −∇ log p_t ≈ −s_θ` (Wang, Aarts, Zhou, NeurIPS ML4PS 2023, Sec. 3, Fig. 2),
integrated along φ with diffrax (Tsit5, adaptive) and saved on the requested grid.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["effective_action"]


def effective_action(
    score: Callable, t: float, phi: Float[ArrayLike, " n"], rtol: float = 1e-6
) -> Float[Array, " n"]:
    """`S_DM(φ, t)` on the increasing grid `phi`, normalised to `S_DM(phi[0]) = 0`; add the
    constant that matches a reference action (e.g. at its minimum) to compare shapes."""
    phi = jnp.asarray(phi, float)
    if phi.ndim != 1 or phi.shape[0] < 2 or not bool(jnp.all(jnp.diff(phi) > 0)):
        raise ValueError("`phi` must be a strictly increasing 1-d grid of at least 2 points.")
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda x, S, args: -score(t, x)),
        diffrax.Tsit5(),
        phi[0],
        phi[-1],
        None,
        jnp.zeros(()),
        saveat=diffrax.SaveAt(ts=phi),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol),
        max_steps=16384,
    )
    return sol.ys
