r"""Training networks with optax: warm-up + cosine Adam, gradient clipping, EMA, minibatches
from an ensemble, `lax.scan` over many steps per host call, atomic bit-for-bit resumable
checkpoints (`sqdiff.checkpoint.ModelDir`) and a NaN/inf guard that stops with the last good
state saved.

`train` never branches on the kind of model: the `ModelSpec` builds the network and the
objective (`objective.loss(model, key, batch)`); a custom action goes in as `action=`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

from ._batching import Progress
from ._xla import hot_jit
from .checkpoint import Checkpoint, ModelDir, TrainConfig, make_optimizer, templates
from .objectives import AbstractObjective
from .schedules import AbstractSchedule
from .sharding import batch_sharding
from .specs import ModelSpec
from .theories.base import AbstractAction

__all__ = [
    "TrainConfig",
    "TrainResult",
    "as_model_spec",
    "build_model",
    "build_osq",
    "load_model",
    "prior_coverage",
    "train",
    "volume_batches",
    "widest_variance",
]


class TrainResult(NamedTuple):
    model: Any  # the EMA model
    raw_model: Any
    step: int
    losses: list[float]
    status: str  # "done" or "nan"


def as_model_spec(spec: ModelSpec | Mapping, config: TrainConfig | None = None) -> ModelSpec:
    """A `ModelSpec`, or a version-1 spec dict (sqdiff 0.1) converted to one (with 0.1's
    meaning: an optimal-SQ loss over `config.batch` paths)."""
    if isinstance(spec, ModelSpec):
        return spec
    if isinstance(spec, Mapping):
        train = None if config is None else dataclasses.asdict(config)
        return ModelSpec.from_json(spec, train)
    raise TypeError(f"`spec` must be a ModelSpec, got {type(spec).__name__}.")


def build_model(spec: ModelSpec | Mapping, key=None):
    """The (untrained) network of a spec."""
    return as_model_spec(spec).build_network(key)


def build_osq(spec: ModelSpec | Mapping, residual, action: AbstractAction | None = None):
    """The `OptimalSQ` process of an optimal-SQ model spec around the residual network."""
    return as_model_spec(spec).build_objective(action).process(residual)


def load_model(model_dir: str, ema: bool = True, *, allow_unverified: bool = False):
    """The trained network of `model_dir` in one call (EMA weights by default;
    `allow_unverified`: see `ModelDir`)."""
    return ModelDir(model_dir, allow_unverified=allow_unverified).load().network(ema)


def _check_data(objective: AbstractObjective, spec: ModelSpec, data):
    """`None` (data-free objectives) or the training volumes as a tuple of arrays."""
    if not objective.needs_data:
        if data is not None:
            raise ValueError(
                f"the {objective.name!r} objective of this model takes no `data` (e.g. an "
                "optimal-SQ model with a Gaussian prior); pass data=None, or prior 'target' / "
                "'ensemble' to start from the given configurations."
            )
        return None
    if data is None:
        raise ValueError(f"training needs `data` (n, *{spec.config_shape}).")
    if isinstance(data, (list, tuple)):  # several volumes
        if not data:
            raise ValueError("`data` is an empty list: give at least one volume.")
        return tuple(
            _check_volume(spec, v, f"data[{i}]", any_size=True) for i, v in enumerate(data)
        )
    return (_check_volume(spec, data, "data"),)


def _check_volume(spec: ModelSpec, data, name: str, any_size: bool = False):
    """One array of training configurations: `(n, *config_shape)`, or with `any_size` any
    lattice of the same rank (a translation-equivariant network trained on several volumes)."""
    data = jnp.asarray(data)
    shape = spec.config_shape
    same = tuple(data.shape[1:]) == shape
    if data.ndim != len(shape) + 1 or not (same or any_size):
        raise ValueError(f"training {name} must have shape (n, *{shape}), got {data.shape}.")
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError(f"training {name} contains non-finite values.")
    if data.shape[0] < 2:
        raise ValueError(f"training {name} needs at least 2 configurations.")
    return data


def widest_variance(data, iterations: int = 50, max_configs: int = 4096) -> float:
    """The variance `E[(v·x)²]` of the data along its widest direction `v`, the top eigenvector
    of the second-moment matrix `E[x xᵀ]`: for a ferromagnet near κ_c the zero mode,
    `V⟨M²⟩ = G(0)`. `v` comes from power iteration on the even-numbered configurations and
    the variance from the odd-numbered ones (at most `max_configs`, float64): the in-sample top
    eigenvalue of `n` configurations of `D` sites is inflated to about `D/n` times the
    per-site variance when `n ≪ D`, the held-out one is not."""
    x = np.asarray(data, np.float64).reshape(data.shape[0], -1)[:max_configs]
    fit, held = (x[0::2], x[1::2]) if x.shape[0] >= 4 else (x, x)
    v = np.mean(fit, 0) + np.random.default_rng(0).normal(size=x.shape[1]) * np.std(fit)
    for _ in range(iterations):
        w = fit.T @ (fit @ v)
        norm = float(np.linalg.norm(w))
        if norm == 0:
            return 0.0
        v = w / norm
    return float(np.mean((held @ v) ** 2))


def prior_coverage(schedule: AbstractSchedule, volumes) -> float:
    """`m(T)² λ_max / Σ(T)²`, the largest over the training volumes: how much of the widest
    direction of the noised data at `T` is data rather than noise. The reverse process starts
    from `N(0, Σ(T)²)`, which is the law at `T` only if this is ≪ 1 (Song & Ermon, NeurIPS 2020,
    technique 1: σ_max as large as the largest distance between data points)."""
    T = schedule.T
    m2 = float(schedule.mean_coeff(T)) ** 2
    return max(m2 * widest_variance(v) for v in volumes) / float(schedule.marginal_std(T)) ** 2


#: the data-derived VE prior is this many times wider, in variance, than the data's widest
#: direction: `Σ(T)² = 9 λ_max`, a prior std 3× the widest data std. The law at `T` then
#: differs from the prior by a KL of ½(r − ln(1 + r)) ≈ 0.005 nats (r = 1/9) in that one mode,
#: and less in every other
PRIOR_WIDTH = 9.0
#: the VE σ of the earlier fixed default; a data-derived σ is never smaller (data with unit
#: per-site variance and a zero mode of ≤ 10 keep today's schedule, Σ(T)² = 97)
MIN_DATA_SIGMA = 25.0


def ve_sigma_for(prior_variance: float, T: float = 1.0) -> float:
    """The VE `σ` with `Σ(T)² = (σ^{2T} − 1)/(2 ln σ) = prior_variance`, by bisection in
    `ln σ` (`Σ(T)²` increases with σ from its σ → 1 limit `T`, so it needs
    `prior_variance > T`)."""
    target = float(prior_variance)
    if not target > T:
        raise ValueError(f"a VE prior variance must exceed T = {T}, got {prior_variance}.")

    def variance(log_s: float) -> float:
        return math.expm1(2 * T * log_s) / (2 * log_s)

    lo, hi = 1e-12, 1.0
    while variance(hi) < target:
        lo, hi = hi, 2 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if variance(mid) < target else (lo, mid)
    return math.exp(hi)


def data_sigma(volumes, T: float = 1.0) -> float:
    """The default VE `σ` for training data (issue 39): its prior `N(0, Σ(T)²)` covers the
    data's widest direction with `Σ(T)² = PRIOR_WIDTH · λ_max` (`widest_variance`, for φ⁴
    near κ_c the zero mode `V⟨M²⟩`), and never narrower than `MIN_DATA_SIGMA`. Song & Ermon
    (NeurIPS 2020), technique 1: σ_max as large as the data's largest scale."""
    lam = max(widest_variance(v) for v in volumes)
    if not math.isfinite(lam):
        raise ValueError("the training data's variance is not finite; check the ensemble.")
    return max(ve_sigma_for(PRIOR_WIDTH * lam, T), MIN_DATA_SIGMA)


def _warn_narrow_prior(spec: ModelSpec, volumes) -> None:
    """A `UserWarning` when the prior is narrower than the data (`prior_coverage` > 1)."""
    schedule = spec.build_schedule()
    if schedule is None or not spec.build_group().is_vector_space:
        return
    r = prior_coverage(schedule, volumes)
    if r > 1:
        warnings.warn(
            f"the prior N(0, Σ(T)²), Σ(T)² = {float(schedule.marginal_std(schedule.T)) ** 2:.4g}, "
            f"is narrower than the data: along its widest direction (for φ⁴ the zero mode, "
            f"V⟨M²⟩) the data has m(T)²λ_max = {r:.3g} Σ(T)², so the reverse process starts "
            "from the wrong law and the long-wavelength modes come out too small; use a wider "
            f"schedule (VE: sigma ≥ {data_sigma(volumes, schedule.T):.4g}, the data-derived "
            "default of `sqdiff train`, which gives Σ(T)² = 9 λ_max).",
            stacklevel=3,
        )


def _check_model_takes(model, volumes) -> None:
    """A clear error if the network cannot run on one of the training volumes."""
    for v in volumes:
        one = jax.ShapeDtypeStruct(v.shape[1:], v.dtype)
        try:
            jax.eval_shape(model, 0.5, one)
        except (ValueError, TypeError) as e:
            raise ValueError(
                f"the network cannot take training configurations of shape {v.shape[1:]}: {e}"
            ) from None


@hot_jit
def _advance(objective, config, static, data, state, start, count, shardings=None):
    """`count` optimiser steps from step `start` (traced) as one `lax.scan`. The objective's
    and model's static parts and the config are static, so runs and resumes with the same
    settings reuse one compilation. `shardings` (static, one per volume) split each minibatch
    over devices (data parallel; the compiler reduces the gradients). `data` is `None` or a
    tuple of volumes: every step draws `volume_batches(config, data)` configurations from
    each, and the loss is the mean of their losses (the DSM loss is per site, so every volume
    weighs the same)."""
    opt = make_optimizer(config)
    base_key = jr.key(config.seed)

    def one_step(state, i):
        params, ema, opt_state = state
        # the key of step i depends on (seed, i) only: resuming replays the same batches
        k_batch, k_loss = jr.split(jr.fold_in(base_key, i))
        if data is None:
            batches, loss_keys = (None,), (k_loss,)
        else:  # volume 0 keeps the single-volume keys; the others fold in their index
            keys = [(k_batch, k_loss)] + [
                (jr.fold_in(k_batch, v), jr.fold_in(k_loss, v)) for v in range(1, len(data))
            ]
            sizes = volume_batches(config, data)
            batches = tuple(
                _minibatch(x, kb, n, sh)
                for x, (kb, _), n, sh in zip(
                    data, keys, sizes, shardings or (None,) * len(data), strict=True
                )
            )
            loss_keys = tuple(kl for _, kl in keys)

        def mean_loss(p):
            model = eqx.combine(p, static)
            losses = [objective.loss(model, k, b) for k, b in zip(loss_keys, batches, strict=True)]
            return sum(losses) / len(losses)

        loss, grads = eqx.filter_value_and_grad(mean_loss)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        # EMA with the usual warm-up, min(decay, (1+i)/(10+i)), so early weights fade fast
        decay = jnp.minimum(config.ema, (1.0 + i) / (10.0 + i))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return (params, ema, opt_state), loss

    return jax.lax.scan(one_step, state, start + jnp.arange(count))


def volume_batches(config: TrainConfig, data) -> tuple[int, ...]:
    """Configurations drawn per step from each training volume (`config.volume_batch`)."""
    if config.volume_batch == "configs":
        return (config.batch,) * len(data)
    first = math.prod(data[0].shape[1:])
    return tuple(max(1, round(config.batch * first / math.prod(x.shape[1:]))) for x in data)


def _minibatch(data, key, size, sharding):
    """`size` configurations of `data` drawn with replacement (split over devices)."""
    batch = data[jr.randint(key, (size,), 0, data.shape[0])]
    if sharding is not None:
        batch = jax.lax.with_sharding_constraint(batch, sharding)
    return batch


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _start(directory: ModelDir, spec: ModelSpec, config: TrainConfig, resume: bool):
    """The model template, state, step and losses to start from (fresh or resumed)."""
    if directory.exists() and not resume:
        raise ValueError(
            f"{directory.path!r} already holds a model; use resume=True (--resume) to "
            "continue it or choose another directory."
        )
    if not resume:
        model, (params, _, opt_state) = templates(spec, config)
        return model, (params, params, opt_state), 0, []
    if not directory.exists():
        raise ValueError(f"nothing to resume in {directory.path!r}.")
    ck: Checkpoint = directory.load()
    if ck.spec != spec:
        diff = [
            f.name
            for f in dataclasses.fields(spec)
            if getattr(ck.spec, f.name) != getattr(spec, f.name)
        ]
        raise ValueError(f"{directory.path!r} holds a different model (differs in {diff}).")
    if dataclasses.replace(ck.config, steps=config.steps) != config:
        diff = [
            f.name
            for f in dataclasses.fields(config)
            if f.name != "steps" and getattr(ck.config, f.name) != getattr(config, f.name)
        ]
        raise ValueError(f"{directory.path!r} was trained with other settings: {diff} differ.")
    return ck.model, ck.state, ck.step, ck.losses


def train(
    model_dir: str | ModelDir,
    data,
    spec: ModelSpec | Mapping,
    config: TrainConfig = TrainConfig(),
    *,
    action: AbstractAction | None = None,
    resume: bool = False,
    progress: bool = True,
    init_from: str | ModelDir | None = None,
) -> TrainResult:
    """Train (or with `resume=True` continue) the model `spec` into `model_dir`.

    Args:
        model_dir: the model directory (new, or the one to resume).
        data: training configurations `(n, *config_shape)`; or a list of such arrays at
            several lattice sizes (same rank) for a translation-equivariant network trained on
            several volumes at once (each step: `config.batch` configurations of every volume,
            the mean of their losses); or `None` for data-free objectives (optimal SQ from a
            Gaussian prior).
        spec: the `ModelSpec` (network, schedule, objective, shapes; a version-1 dict works).
        config: optimisation settings.
        action: the target action for objectives that need one (optimal SQ) when the spec
            records no named theory, e.g. a custom `S(φ)`.
        resume: continue the checkpoint in `model_dir` (same spec and settings).
        progress: a progress line on stderr.
        init_from: start from the (EMA) weights of another model directory with the same
            network, schedule and shape, e.g. a DSM-trained score network fine-tuned by
            reverse KL (`objective="reverse_kl"`); a fresh optimiser state. Not with `resume`.

    Stops early with status "nan" if a loss or weight becomes non-finite, after saving the last
    finite state.
    """
    spec = as_model_spec(spec, config)
    directory = model_dir if isinstance(model_dir, ModelDir) else ModelDir(model_dir)
    directory.check_writable(resume)
    objective = spec.build_objective(action)
    data = _check_data(objective, spec, data)
    if data is not None and not resume:
        _warn_narrow_prior(spec, data)
    if init_from is not None and resume:
        raise ValueError("give `resume` or `init_from`, not both.")
    init = None if init_from is None else _initial_weights(init_from, spec)
    with directory.lock():
        model, state, step, losses = _start(directory, spec, config, resume)
        if init is not None:
            state = (init, init, make_optimizer(config).init(init))
        if data is not None:
            _check_model_takes(model, data)
        return _loop(directory, spec, config, objective, data, model, state, step, losses, progress)


def _initial_weights(source: str | ModelDir, spec: ModelSpec):
    """The EMA weights of `source`, checked to fit `spec`'s network."""
    ck = (source if isinstance(source, ModelDir) else ModelDir(source)).load()
    same = ("network", "schedule", "config_shape", "group")
    diff = [k for k in same if getattr(ck.spec, k) != getattr(spec, k)]
    if diff:
        raise ValueError(f"`init_from` {ck.spec.network.name} model differs in {diff}.")
    return ck.state[1]


def _loop(directory, spec, config, objective, data, model, state, step, losses, progress):
    """The chunked training loop with checkpoints and the NaN guard (under the lock)."""
    static = eqx.filter(model, eqx.is_inexact_array, inverse=True)
    status = "done"
    last_saved = step
    bar = Progress(config.steps, "training", enabled=progress, unit="step")
    bar.update(step)  # a resumed run starts where it stopped
    shardings = None
    if data is not None:
        sizes = volume_batches(config, data)
        shardings = tuple(batch_sharding(n, x.ndim) for n, x in zip(sizes, data, strict=True))
    while step < config.steps:
        count = min(config.steps_per_call, config.steps - step)
        new_state, chunk_losses = _advance(
            objective, config, static, data, state, jnp.asarray(step), count, shardings
        )
        chunk_losses = np.asarray(chunk_losses)
        finite = np.all(np.isfinite(chunk_losses)) and bool(_all_finite(new_state[0]))
        if not finite:
            status = "nan"
            if progress:
                bar.write(
                    f"non-finite loss or weights in steps {step}–{step + count}; "
                    f"stopping, last good checkpoint is step {step}"
                )
            break
        state = new_state
        losses.extend(float(x) for x in chunk_losses)
        step += count
        bar.update(count, loss=f"{np.mean(chunk_losses):.4f}")
        if step - last_saved >= config.checkpoint_every or step == config.steps:
            directory.save(spec, config, step, state, losses)
            last_saved = step
    if step != last_saved or not os.path.isfile(directory.config_path):
        directory.save(spec, config, step, state, losses)
    bar.close()
    return TrainResult(
        eqx.combine(state[1], static), eqx.combine(state[0], static), step, losses, status
    )
