r"""The exact conditional score of the group forward process (the "wrapped" DSM target).

The forward noise `U_t = exp(iσ X^a T^a) U_0`, `X ~ N(0, 1)`, gives `W = U_t U_0†` the Haar
density (a class function of `W`)

    p(W) = Σ_{preimages Y of W} N(Y; 0, σ²) / J(Y),     J(Y) = Π_{i<j} sinc²((λ_i − λ_j)/2),

where `λ_i` are the eigenvalues of `Y^aT^a` and `J` the Jacobian of `exp` against Haar measure
(docs, "MAALA on SU(N) and U(N)"). The preimages shift the principal eigenvalues by `2π k_i`
(`Σ k_i = 0` for SU(N)); `‖Y‖² = Σ_a (Y^a)² = 2 Σ_i λ_i²`. The score is the left Lie derivative
of `log p` at `U_t`; for a class function it follows from first-order perturbation of the
eigenphases, `∂λ_i/∂ε^a = v_i† T^a v_i` (`v_i` the eigenvectors of `W`):

    s^a(U_t) = Σ_i ∂ log p/∂λ_i · v_i† T^a v_i.

As σ → 0 only the principal preimage matters and `σ s → −X` (the published DSM target
`−η/σ`, with an `O(σ²)` Jacobian correction); at large σ it tends to 0 (Haar).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

__all__ = ["image_shifts", "wrapped_normal_score"]


def image_shifts(N: int, special: bool, sigma_max: float) -> np.ndarray:
    """The integer shifts `k` (shape `(images, N)`) whose preimages carry weight above
    `e^{−12}` of the principal one for noise up to `sigma_max` (`|k_i| ≤ K`,
    `K = ⌈3σ_max/(2π)⌉ + 1`; `Σ k = 0` for SU(N))."""
    K = int(math.ceil(3 * float(sigma_max) / (2 * math.pi))) + 1
    ks = [k for k in itertools.product(range(-K, K + 1), repeat=N) if not special or sum(k) == 0]
    return np.array(ks, dtype=np.float64)


def _log_density(lam, sigma, shifts):
    """`log p` as a function of the principal eigenvalues `λ` (`(N,)`), up to a constant."""
    lp = lam[None, :] + 2 * jnp.pi * shifts  # (images, N)
    gauss = -jnp.sum(lp**2, axis=-1) / sigma**2
    n = lam.shape[0]
    i, j = np.triu_indices(n, 1)
    diff = (lp[:, i] - lp[:, j]) / 2
    # log sinc²(Δ/2), with the removable point Δ = 0; a tiny floor keeps W = −1 finite
    sinc = jnp.sinc(diff / jnp.pi)
    log_j = jnp.sum(jnp.log(jnp.maximum(sinc**2, 1e-30)), axis=-1)
    return jax.nn.logsumexp(gauss - log_j)


def wrapped_normal_score(
    group, W: Array, sigma: Float[Array, ""], shifts: np.ndarray
) -> Float[Array, "... dim"]:
    """The exact score `∇^a log p(W)` of the law of `W = exp(iσ X^a T^a)`, `X ~ N(0, 1)`, on a
    compact matrix group (`W` of shape `(..., N, N)`), in algebra coordinates. `shifts` from
    `image_shifts`."""
    V, lam = group.principal_eigen(W)
    real = jnp.real(W).dtype
    shifts = jnp.asarray(shifts, real)
    flat = lam.reshape((-1, lam.shape[-1])).astype(real)
    grad = jax.vmap(jax.grad(_log_density), in_axes=(0, None, None))(flat, sigma, shifts)
    grad = grad.reshape(lam.shape)
    T = group.basis(real)
    # v_i† T^a v_i for every eigenvector column v_i
    proj = jnp.real(jnp.einsum("...ji,ajk,...ki->...ai", jnp.conj(V), T, V))
    return jnp.einsum("...ai,...i->...a", proj, grad)
