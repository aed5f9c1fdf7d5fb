r"""2D U(1) lattice gauge theory with the Wilson action `S = β Σ_P (1 − cos θ_P)`.

Links are angles `θ_μ(x)`, array shape `(2, L, L)`; the plaquette angle is
`θ_P(x) = θ_0(x) + θ_1(x+0̂) − θ_0(x+1̂) − θ_1(x)`. Geometric topological charge
`Q = (1/2π) Σ_P wrap(θ_P)` (integer on a periodic lattice), `χ_t = ⟨Q²⟩/V`.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from .._checks import positive_float
from ..groups import U1, wrap_angle
from ._lattice import check_lattice
from .base import AbstractAction


def plaquette_angles(theta):
    """`θ_P(x)` for links `theta` of shape `(..., 2, L, L)`."""
    t0, t1 = theta[..., 0, :, :], theta[..., 1, :, :]
    return t0 + jnp.roll(t1, -1, axis=-2) - jnp.roll(t0, -1, axis=-1) - t1


def topological_charge(theta):
    """Geometric charge `Q = (1/2π) Σ_x wrap(θ_P(x))`."""
    return jnp.sum(wrap_angle(plaquette_angles(theta)), axis=(-2, -1)) / (2 * jnp.pi)


def wilson_loop(theta, size: int):
    """Average `cos` of the `size×size` Wilson loop angle over positions, links `(..., 2, L, L)`."""
    t0, t1 = theta[..., 0, :, :], theta[..., 1, :, :]
    ax0, ax1 = -2, -1

    def line(t, axis, shift_axis, shift):
        t = jnp.roll(t, -shift, axis=shift_axis)
        return sum(jnp.roll(t, -k, axis=axis) for k in range(size))

    bottom = line(t0, ax0, ax1, 0)
    right = line(t1, ax1, ax0, size)
    top = line(t0, ax0, ax1, size)
    left = line(t1, ax1, ax0, 0)
    return jnp.mean(jnp.cos(bottom + right - top - left), axis=(-2, -1))


class U1Wilson2D(AbstractAction):
    """`S = β Σ_P (1 − cos θ_P)` on a periodic `L×L` lattice."""

    L: int = eqx.field(static=True)
    beta: float = eqx.field(static=True)
    name = "u1"

    def __init__(self, L: int, beta: float):
        self.L, _ = check_lattice(L, 2, (2,))
        self.beta = positive_float(beta, "beta")

    def exact_samples(self, key, n):
        """Independent exact configurations (`u1_exact.u1_exact_samples`)."""
        from .u1_exact import u1_exact_samples

        return u1_exact_samples(key, self.L, self.beta, n)

    def default_network(self):
        return "u1"

    @property
    def group(self):
        return U1()

    @property
    def lattice_shape(self):
        return (2, self.L, self.L)

    @property
    def params(self):
        return {"L": self.L, "beta": self.beta}

    def __call__(self, theta):
        return self.beta * jnp.sum(1 - jnp.cos(plaquette_angles(theta)))

    def force(self, theta):
        s = self.beta * jnp.sin(plaquette_angles(theta))
        f0 = s - jnp.roll(s, 1, axis=-1)
        f1 = jnp.roll(s, 1, axis=-2) - s
        return jnp.stack([f0, f1], axis=-3)

    def measure(self, theta):
        Q = topological_charge(theta)
        out = {"plaquette": jnp.mean(jnp.cos(plaquette_angles(theta))), "Q": Q, "Q2": Q**2}
        for n in range(2, min(4, self.L // 2) + 1):
            out[f"W{n}x{n}"] = wilson_loop(theta, n)
        return out

    def definitions(self):
        return {
            "plaquette": "⟨cos θ_P⟩, averaged over plaquettes",
            "<Q>": "Q = (1/2π) Σ_x wrap(θ_P(x)), the geometric charge (an integer)",
            "chi_t": "χ_t = ⟨Q²⟩/V",
            "W(2x2)": "⟨cos θ_{R×R}⟩, square Wilson loops (also larger R)",
        }

    def observables(self):
        V = self.L**2
        obs = {
            "plaquette": (("plaquette",), lambda a: a[0]),
            "<Q>": (("Q",), lambda a: a[0]),
            "chi_t": (("Q2",), lambda a: a[0] / V),
        }
        for n in range(2, min(4, self.L // 2) + 1):
            obs[f"W({n}x{n})"] = ((f"W{n}x{n}",), lambda a: a[0])
        return obs
