"""Extending sqdiff is one file: this file defines a new theory and a new network (no edit of
the package), trains the network with `train()`, samples it by the reverse SDE and by MAALA
through `sample_model`, and measures it with `analyze`; MAALA must be exact."""

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.train import TrainConfig, train


class GaussianChain(sq.theories.AbstractAction):
    """`S = Σ_x [½(φ_{x+1} − φ_x)² + ½ m² φ_x²]` on a periodic chain of L sites."""

    L: int
    m2: float
    name = "test_gaussian_chain"

    @property
    def group(self):
        return sq.Euclidean()

    @property
    def lattice_shape(self):
        return (self.L,)

    @property
    def params(self):
        return {"L": self.L, "m2": self.m2}

    def __call__(self, phi):
        return 0.5 * jnp.sum((jnp.roll(phi, -1) - phi) ** 2 + self.m2 * phi**2)

    def force(self, phi):
        return 2 * phi - jnp.roll(phi, -1) - jnp.roll(phi, 1) + self.m2 * phi

    def measure(self, phi):
        return {"phi2": jnp.mean(phi**2)}

    def exact_phi2(self):
        p = 2 * np.pi * np.arange(self.L) / self.L
        return float(np.mean(1 / (4 * np.sin(p / 2) ** 2 + self.m2)))


class FourierScore(sq.nn.AbstractScoreNetwork):
    """A translation-invariant linear score `F⁻¹[h_θ(t, p) F φ]`, `h` from an MLP of log Σ(t)."""

    mlp: object  # an eqx.nn.MLP
    schedule: sq.AbstractSchedule
    n_modes: int
    name = "test_fourier_score"

    def __init__(self, schedule, L=8, width=32, *, key):
        import equinox as eqx

        self.n_modes = L // 2 + 1
        self.mlp = eqx.nn.MLP(1, self.n_modes, width, 2, activation=jax.nn.silu, key=key)
        self.schedule = schedule

    def output_layer(self):
        return self.mlp.layers[-1].weight, self.mlp.layers[-1].bias

    def __call__(self, t, phi):
        std = self.schedule.marginal_std(t)
        h = self.mlp(jnp.log(std)[None])
        out = jnp.fft.irfft(h * jnp.fft.rfft(phi), n=phi.shape[-1])
        return (out - phi) / std**2  # a Gaussian skip: exact for data of unit covariance


def test_a_new_theory_and_network_in_one_file(tmp_path):
    action = GaussianChain(8, 0.5)
    init = jax.vmap(action.random_config)(jr.split(jr.key(0), 8))
    samples, _ = sq.run_chains(sq.HMC(action, 0.3, 6), jr.key(1), init, 256, n_therm=100)
    data = jnp.asarray(samples.reshape(-1, 8))
    spec = ModelSpec(
        network=NetworkSpec("test_fourier_score", {"L": 8, "width": 32}),
        schedule=ScheduleSpec("ve", {"sigma": 10.0}),
        objective=ObjectiveSpec("dsm", {"importance": True}),
        config_shape=(8,),
        theory=TheorySpec.of(action),
    )
    cfg = TrainConfig(steps=1500, batch=128, lr=3e-3, steps_per_call=500, warmup=50)
    res = train(str(tmp_path / "m"), data, spec, cfg, progress=False)
    assert res.status == "done"
    exact = action.exact_phi2()

    sde = sq.sampling.sample_model(str(tmp_path / "m"), 2000, "sde", steps=200)
    r = sq.analyze(sde.action, sde.samples)["phi2"]
    assert abs(r.value / exact - 1) < 0.1, (r, exact)  # the learned law: close, not exact

    maala = sq.sampling.sample_model(
        str(tmp_path / "m"), 16 * 150, "maala", steps=200, chains=16, thin=3, c=0.5
    )
    assert maala.samples.shape == (16, 150, 8) and 0.2 < maala.metadata["acceptance"] <= 1
    r = sq.analyze(maala.action, maala.samples)["phi2"]
    assert abs(r.value - exact) < 4 * r.error, (r, exact)  # exact whatever was learned
