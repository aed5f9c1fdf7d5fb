r"""A score network whose exact divergence costs one pass: per-site features mixed by one
lattice convolution (Gerdes, de Haan, Rainone, Bondesan, Cheng, "Learning lattice quantum field
theories with equivariant continuous flows", SciPost Phys. 15, 238 (2023), arXiv 2207.00283,
Eqs. 9–11).

For a scalar field φ of shape `(L,)*d`:

    u_x = c_in(t) φ_x,     g(u) = (sin ω_1 u, …, sin ω_{F−1} u, u),
    s(t, φ)_x = Σ_{δ ∈ Ω} Σ_f W_{δ,f}(t) g_f(u_{x+δ}) / Σ(t)  [+ the Gaussian skip],

with learned frequencies `ω_f`, a kernel `W_{δ,f}(t) = Σ_e Θ_{o(δ),f,e} h_e(t)` on the offsets
`Ω = {δ : max|δ_i| ≤ radius}`, one parameter per orbit `o(δ)` of the hyperoctahedral group
(permutations and sign flips of the axes: D4 in 2D), and `h(t)` an MLP of EDM's noise level
`¼ ln Σ(t)`. Every symmetry of lattice φ⁴ holds by construction: translations (a convolution),
rotations and reflections (orbit weights), and Z2, `s(−φ) = −s(φ)` (every feature is odd).

**The divergence in one pass** (Gerdes et al. Eq. 11): only the `δ = 0` tap connects a site to
itself, so the Jacobian's diagonal is

    ∂s_x/∂φ_x = c_in(t) Σ_f W_{0,f}(t) g_f'(u_x) / Σ(t)  [− 1/(m²σ_d² + Σ²)],

`O(V·F)` with no Jacobian-vector product and no Hutchinson noise (`jacobian_diagonal`;
`divergence` is its sum). `sqdiff.ProbabilityFlow` asks the network for it.

**Checkerboard** (`checkerboard=True`): the kernel keeps only `δ = 0` and the offsets of odd
`Σ|δ_i|`, so the score at an even site depends on the odd sites and on itself alone (and vice
versa). A step that moves the even sites, then the odd ones, then has a *triangular* Jacobian
whose determinant is the product of the diagonal above: the exact density of the discrete map
at any volume (`sqdiff.flows.SplitStepFlow`). Nearest-neighbour actions fit the mask: the φ⁴
force couples a site only to itself and to its odd neighbours. The lattice must have even `L`.

The bound `|g_f'| ≤ |ω_f|` (and `1` for the linear feature) gives `sup_φ |∂s_x/∂φ_x|` in closed
form (`diagonal_bound`), which the split-step map uses to stay a bijection of `R^V`.

The convolution runs as an FFT over the lattice, so the kernel may reach across the whole
lattice (`radius ≥ L/2`, Gerdes et al.'s choice) at the cost of a local one; offsets that wrap
around a small lattice add up there, and the `δ = 0` tap in the diagonal includes them.
"""

from __future__ import annotations

import itertools
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from ..schedules import AbstractSchedule
from .base import AbstractExactDivergenceNetwork
from .embeddings import GaussianFourierEmbedding, noise_level, output_scale
from .local import input_scale

__all__ = ["FeatureConv", "kernel_orbits"]


def kernel_orbits(d: int, radius: int, checkerboard: bool) -> tuple[np.ndarray, np.ndarray]:
    """The offsets `δ` with `max|δ_i| ≤ radius` (kept: all, or with `checkerboard` `δ = 0` and
    odd `Σ|δ_i|`) and the index of each one's orbit under axis permutations and sign flips;
    orbit 0 is `δ = 0`. Returns `(offsets (n, d), orbit (n,))`."""
    offsets, keys = [], []
    for delta in itertools.product(range(-radius, radius + 1), repeat=d):
        parity = sum(abs(v) for v in delta) % 2
        if checkerboard and any(delta) and parity == 0:
            continue
        offsets.append(delta)
        keys.append(tuple(sorted(abs(v) for v in delta)))
    names = sorted(set(keys))  # (0, …, 0) sorts first
    orbit = np.array([names.index(k) for k in keys])
    return np.array(offsets, dtype=np.int64).reshape(-1, d), orbit


def on_lattice(offsets: np.ndarray, values: Array, L: int) -> Array:
    """`values[i]` (of shape `(n, *rest)`) added at the lattice point `offsets[i] mod L`: an
    array of shape `(L,)*d + rest`, offsets that wrap around a small lattice adding up."""
    K = jnp.zeros((L,) * offsets.shape[1] + values.shape[1:], values.dtype)
    return K.at[tuple((offsets % L).T)].add(values)


class FeatureConv(AbstractExactDivergenceNetwork):
    """`(t, φ) → s(t, φ)` for φ of shape `(L,)*d`: odd per-site features, one D4-symmetric
    convolution with a time-dependent kernel; its Jacobian's diagonal in closed form (module
    docstring). Registered as `"fconv"`."""

    name: ClassVar[str] = "fconv"

    d: int = eqx.field(static=True)
    radius: int = eqx.field(static=True)
    checkerboard: bool = eqx.field(static=True)
    data_std: float | None = eqx.field(static=True)
    offset_list: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    orbit_list: tuple[int, ...] = eqx.field(static=True)
    schedule: AbstractSchedule | None
    frequencies: Float[Array, " f"]
    theta: Float[Array, "orbits features emb"]
    prior_theta: Float[Array, " prior_orbits"]
    prior_offset_list: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    prior_orbit_list: tuple[int, ...] = eqx.field(static=True)
    embed: GaussianFourierEmbedding
    emb_mlp: eqx.nn.MLP

    def __init__(
        self,
        schedule: AbstractSchedule | None,
        d: int = 2,
        features: int = 16,
        radius: int = 3,
        emb_dim: int = 16,
        checkerboard: bool = True,
        data_std: float | None = None,
        *,
        key: PRNGKeyArray,
    ):
        """**Arguments:**

        - `schedule`: the noise schedule (`Σ(t)` scales input and output); `None` for a plain
          time-dependent field.
        - `d`: lattice dimension, 1–4.
        - `features`: per-site features `F` (`F − 1` sines and the field itself).
        - `radius`: the kernel's half-width (`radius ≥ L/2` reaches the whole lattice).
        - `emb_dim`: size of the time embedding `h(t)`.
        - `checkerboard`: keep only the `δ = 0` and odd-`Σ|δ|` taps, so that the even/odd
          split-step map has a triangular Jacobian (its exact density at any volume).
        - `data_std`: σ_d of the data, for the input scaling `c_in` and the Gaussian skip.
        """
        if d not in (1, 2, 3, 4):
            raise ValueError(f"FeatureConv supports d = 1–4, got d={d}.")
        if features < 1 or radius < 1 or emb_dim < 2 or emb_dim % 2:
            raise ValueError(
                f"need `features` ≥ 1, `radius` ≥ 1 and an even `emb_dim` ≥ 2, got {features}, "
                f"{radius}, {emb_dim}."
            )
        if data_std is not None and not data_std > 0:
            raise ValueError(f"`data_std` must be > 0, got {data_std}.")
        k = jr.split(key, 4)
        self.d, self.radius, self.checkerboard = d, radius, bool(checkerboard)
        self.data_std = None if data_std is None else float(data_std)
        self.schedule = schedule
        offsets, orbit = kernel_orbits(d, radius, self.checkerboard)
        self.offset_list = tuple(tuple(int(v) for v in o) for o in offsets)
        self.orbit_list = tuple(int(o) for o in orbit)
        n_orbits = max(self.orbit_list) + 1
        self.frequencies = jr.uniform(k[0], (features - 1,), minval=0.2, maxval=3.0)
        # a small start: the field starts near the Gaussian skip / the zero field
        self.theta = 1e-2 * jr.normal(k[1], (n_orbits, features, emb_dim)) / np.sqrt(emb_dim)
        p_offsets, p_orbit = kernel_orbits(d, radius, checkerboard=False)
        self.prior_offset_list = tuple(tuple(int(v) for v in o) for o in p_offsets)
        self.prior_orbit_list = tuple(int(o) for o in p_orbit)
        self.prior_theta = jnp.zeros(max(self.prior_orbit_list) + 1)
        self.embed = GaussianFourierEmbedding(emb_dim, scale=4.0, key=k[2])
        self.emb_mlp = eqx.nn.MLP(emb_dim, emb_dim, emb_dim, 1, activation=jax.nn.silu, key=k[3])

    # -- the pieces -------------------------------------------------------------------------

    @property
    def offsets(self) -> np.ndarray:
        return np.array(self.offset_list, dtype=np.int64).reshape(-1, self.d)

    @property
    def orbit(self) -> np.ndarray:
        return np.array(self.orbit_list)

    def output_layer(self) -> tuple[Array, ...]:
        return (self.theta,)

    @property
    def sublattice_triangular(self) -> bool:
        """Whether the score at a site depends on its own sublattice only through the site
        itself (`checkerboard`): the even/odd split-step map then has a triangular Jacobian."""
        return self.checkerboard

    def check_input(self, phi) -> None:
        shape = jnp.shape(phi)
        if len(shape) != self.d or len(set(shape)) != 1:
            raise ValueError(
                f"FeatureConv(d={self.d}) needs a field of shape (L,)*{self.d}, got {shape}."
            )
        if self.checkerboard and shape[0] % 2:
            raise ValueError(
                "FeatureConv(checkerboard=True) needs an even L (two sublattices), got "
                f"L={shape[0]}."
            )

    def _kernel_taps(self, t) -> Float[Array, "orbits features"]:
        h = self.emb_mlp(self.embed(noise_level(self.schedule, t)))
        return self.theta @ h

    def _scales(self, t):
        """`(c_in, 1/Σ)`: input scale and output factor."""
        return input_scale(self.schedule, self.data_std, t), 1.0 / output_scale(self.schedule, t)

    def _skip_coeff(self, t):
        """The Gaussian skip `−φ/(m²σ_d² + Σ²)` as its coefficient (0 without `data_std`)."""
        if self.data_std is None or self.schedule is None:
            return 0.0
        m, sig = self.schedule.mean_coeff(t), self.schedule.marginal_std(t)
        return -1.0 / ((m * self.data_std) ** 2 + sig**2)

    def _features(self, u):
        sines = jnp.sin(u[..., None] * self.frequencies)
        return jnp.concatenate([sines, u[..., None]], axis=-1)

    def _feature_slopes(self, u):
        cosines = jnp.cos(u[..., None] * self.frequencies) * self.frequencies
        return jnp.concatenate([cosines, jnp.ones_like(u)[..., None]], axis=-1)

    def _kernel_array(self, taps, L: int) -> Array:
        """The kernel on the periodic lattice: `K_f[δ mod L] += W_{δ,f}` (offsets that wrap
        around add up)."""
        return jnp.moveaxis(on_lattice(self.offsets, taps[self.orbit], L), -1, 0)

    def _self_taps(self, taps, L: int) -> Float[Array, " features"]:
        """`W_{0,f}` on this lattice: the `δ = 0` tap plus the offsets that wrap onto it."""
        at_zero = np.all(self.offsets % L == 0, axis=1)
        return jnp.sum(taps[self.orbit[at_zero]], axis=0)

    # -- the network ------------------------------------------------------------------------

    def __call__(self, t: Float[Array, ""], phi: Float[Array, "*L"]) -> Float[Array, "*L"]:
        self.check_input(phi)
        L = phi.shape[0]
        c_in, out = self._scales(t)
        taps = self._kernel_taps(t)
        g = jnp.moveaxis(self._features(c_in * phi), -1, 0)  # (F, *L)
        axes = tuple(range(1, self.d + 1))
        K = self._kernel_array(taps, L)
        # the kernel is symmetric under δ → −δ, so the correlation Σ_δ W_δ g(x+δ) is the
        # circular convolution
        spec = jnp.sum(jnp.fft.rfftn(K, axes=axes) * jnp.fft.rfftn(g, axes=axes), axis=0)
        conv = jnp.fft.irfftn(spec, s=phi.shape, axes=tuple(range(self.d)))
        return (out * conv + self._skip_coeff(t) * phi).astype(phi.dtype)

    def jacobian_diagonal(self, t: Float[Array, ""], phi: Float[Array, "*L"]) -> Float[Array, "*L"]:
        """`∂s_x/∂φ_x` at every site, in one pass (module docstring)."""
        self.check_input(phi)
        c_in, out = self._scales(t)
        w0 = self._self_taps(self._kernel_taps(t), phi.shape[0])
        slopes = self._feature_slopes(c_in * phi)
        return out * c_in * (slopes @ w0) + self._skip_coeff(t)

    def prior_log_spectrum(self, shape: tuple[int, ...]) -> Float[Array, "*L"]:
        """`k(p) = Σ_δ θ_{o(δ)} cos(p·δ)` on the momenta of an `L^d` lattice (all offsets
        `max|δ_i| ≤ radius`, one weight per D4 orbit; zero at initialisation): the split-step
        map starts from the Gaussian with spectrum `s_T² e^{2k(p)}` (a learned free-field-like
        prior, exact log-density by FFT). Score matching leaves it at zero."""
        offsets = np.array(self.prior_offset_list, dtype=np.int64).reshape(-1, self.d)
        K = on_lattice(offsets, self.prior_theta[np.array(self.prior_orbit_list)], shape[0])
        return jnp.real(jnp.fft.fftn(K))  # K is even in δ: its transform is real

    def self_term(self, t: Float[Array, ""], phi: Float[Array, "*L"]) -> Float[Array, "*L"]:
        """`c_in`-scaled `Σ_f W_{0,f}(t) g_f(u_x)/Σ(t)` plus the Gaussian skip: the part of
        `s_x` that depends on `φ_x` (elementwise; `jacobian_diagonal` is its derivative)."""
        self.check_input(phi)
        c_in, out = self._scales(t)
        w0 = self._self_taps(self._kernel_taps(t), phi.shape[0])
        return out * (self._features(c_in * phi) @ w0) + self._skip_coeff(t) * phi

    def diagonal_bound(self, t: Float[Array, ""], L: int) -> tuple[Array, Array]:
        """`(a, b)` with `∂s_x/∂φ_x ∈ [a − b, a + b]` for every field: `a` the linear
        feature's and the skip's part (independent of φ), `b = c_in Σ_f |W_{0,f} ω_f| / Σ` the
        sines' largest slope."""
        c_in, out = self._scales(t)
        w0 = self._self_taps(self._kernel_taps(t), L)
        a = out * c_in * w0[-1] + self._skip_coeff(t)
        b = out * c_in * jnp.sum(jnp.abs(w0[:-1] * self.frequencies))
        return a, b
