r"""Training score networks with optax: warm-up + cosine Adam, gradient clipping, EMA,
minibatches from an ensemble, `lax.scan` over many steps per host call, checkpoints that are
written atomically (weights via `equinox.tree_serialise_leaves`, every hyper-parameter in JSON),
bit-for-bit resumable, and a NaN/inf guard that stops with the last good state saved.

A *model directory* holds `config.json` (the model spec, the training config, the step, the
loss history and the name + SHA-256 of the weights file) and `weights-<step>.eqx`. A new
weights file is written first, then `config.json` is replaced atomically to point at it, then
the old weights are removed: at every instant the directory holds a complete checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from .groups import U1, Euclidean
from .io import atomic_write
from .nn import ScoreMLP, U1LinkNet, UNet, conv_layout, zero_output
from .objectives import dsm_loss, group_dsm_loss
from .osq import OptimalSQ
from .sde import SubVariancePreserving, VarianceExploding, VariancePreserving

__all__ = [
    "TrainConfig",
    "TrainResult",
    "build_model",
    "build_osq",
    "build_schedule",
    "load_model",
    "load_checkpoint",
    "train",
]

SCHEDULES = {"ve": VarianceExploding, "vp": VariancePreserving, "subvp": SubVariancePreserving}
MODELS = {"mlp": ScoreMLP, "unet": UNet, "u1": U1LinkNet}
GROUPS = {"euclidean": Euclidean, "u1": U1}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (all saved in `config.json`)."""

    steps: int = 2000
    batch: int = 128
    lr: float = 2e-3
    warmup: int = 100
    clip: float = 1.0
    ema: float = 0.999
    steps_per_call: int = 100
    checkpoint_every: int = 500
    seed: int = 0
    t_min: float = 1e-3
    importance: bool = False

    def __post_init__(self):
        for name in ("steps", "batch", "steps_per_call", "checkpoint_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {v!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"`lr` must be > 0, got {self.lr}.")
        if not 0 <= self.ema < 1:
            raise ValueError(f"`ema` must be in [0, 1), got {self.ema}.")
        if self.warmup < 0 or self.clip <= 0 or self.t_min <= 0:
            raise ValueError("`warmup` must be ≥ 0, `clip` > 0 and `t_min` > 0.")


class TrainResult(NamedTuple):
    model: Any  # the EMA model
    raw_model: Any
    step: int
    losses: list[float]
    status: str  # "done" or "nan"


def build_schedule(spec: dict):
    """`{"name": "ve", "sigma": 25, "T": 1}` → schedule."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}.")
    return SCHEDULES[name](**spec)


def build_model(spec: dict, key=None):
    """Build a network from its spec: `{"model": "unet", "kwargs": {...}, "schedule": {...},
    "config_shape": [...], "group": "euclidean"}`. `"schedule": null` gives a plain
    time-dependent field (the optimal-SQ residual); `"zero_init": true` zeroes its last layer."""
    if spec.get("model") not in MODELS:
        raise ValueError(f"unknown model {spec.get('model')!r}; choose one of {sorted(MODELS)}.")
    schedule = None if spec.get("schedule") is None else build_schedule(spec["schedule"])
    key = jr.key(spec.get("init_seed", 0)) if key is None else key
    model = MODELS[spec["model"]](schedule, **spec.get("kwargs", {}), key=key)
    return zero_output(model) if spec.get("zero_init") else model


def build_osq(spec: dict, residual):
    """The `OptimalSQ` process of an optimal-SQ model spec (`spec["objective"]["name"] ==
    "osq"`) around the residual network `residual`."""
    from .io import THEORIES

    obj = dict(spec["objective"])
    theory = spec["theory"]
    action = THEORIES[theory["name"]](**theory["params"])
    kw = {
        k: obj[k]
        for k in (
            "g",
            "T",
            "reference",
            "terminal",
            "prior",
            "prior_mean",
            "prior_std",
            "ou_std",
            "loss",
        )
        if k in obj
    }
    return OptimalSQ(action, residual, **kw)


def is_osq(spec: dict) -> bool:
    return (spec.get("objective") or {}).get("name") == "osq"


def _group(spec):
    return GROUPS[spec.get("group", "euclidean")]()


def _loss_fn(spec, config):
    if is_osq(spec):
        n_steps = int(spec["objective"]["steps"])

        def osq_loss(model, key, batch):
            osq = build_osq(spec, model)
            return osq.loss(key, config.batch, n_steps, phi0=batch)

        return osq_loss
    group = _group(spec)
    schedule = build_schedule(spec["schedule"])
    t_min = config.t_min * schedule.T

    def loss(model, key, batch):
        if isinstance(group, Euclidean):
            return dsm_loss(model, schedule, key, batch, t_min, config.importance)
        return group_dsm_loss(model, schedule, group, key, batch, t_min, config.importance)

    return loss


def _optimizer(config: TrainConfig):
    lr = optax.warmup_cosine_decay_schedule(
        0.0,
        config.lr,
        max(config.warmup, 1),
        max(config.steps, config.warmup + 1),
        end_value=0.01 * config.lr,
    )
    # one flat parameter vector for the optimiser: a few large kernels instead of several per
    # leaf (the U-Net has ~100 leaves; per-leaf updates are launch-bound on a GPU)
    return optax.flatten(optax.chain(optax.clip_by_global_norm(config.clip), optax.adam(lr)))


# --- checkpoints ------------------------------------------------------------------------------
def _serialise(tree) -> bytes:
    import io

    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    return buf.getvalue()


def save_checkpoint(model_dir, spec, config, step, state, losses):
    from . import __version__

    os.makedirs(model_dir, exist_ok=True)
    data = _serialise(state)
    name = f"weights-{step}.eqx"
    atomic_write(os.path.join(model_dir, name), lambda fh: fh.write(data))
    old = _read_config(model_dir, missing_ok=True)
    meta = {
        "sqdiff_version": __version__,
        "spec": spec,
        "train": dataclasses.asdict(config),
        "step": step,
        "losses": losses,
        "weights": name,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    text = json.dumps(meta, indent=1).encode()
    atomic_write(os.path.join(model_dir, "config.json"), lambda fh: fh.write(text))
    if old and old.get("weights") not in (None, name):
        try:
            os.remove(os.path.join(model_dir, old["weights"]))
        except FileNotFoundError:
            pass


def _read_config(model_dir, missing_ok=False):
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        if missing_ok:
            return None
        raise ValueError(f"{model_dir!r} is not a sqdiff model directory (no config.json).")
    try:
        with open(path) as fh:
            meta = json.load(fh)
    except json.JSONDecodeError:
        raise ValueError(f"{path!r} is not valid JSON.") from None
    for k in ("spec", "train", "step", "weights", "sha256"):
        if k not in meta:
            raise ValueError(f"{path!r} lacks {k!r}; not a sqdiff model directory.")
    return meta


def _templates(spec, config):
    model = build_model(spec)
    params = eqx.filter(model, eqx.is_inexact_array)
    opt_state = _optimizer(config).init(params)
    return model, (params, params, opt_state)


def load_checkpoint(model_dir):
    """`(spec, config, step, losses, model, (params, ema_params, opt_state))` of a directory."""
    meta = _read_config(model_dir)
    spec, config = meta["spec"], TrainConfig(**meta["train"])
    path = os.path.join(model_dir, meta["weights"])
    if not os.path.isfile(path):
        raise ValueError(f"{model_dir!r}: weights file {meta['weights']!r} is missing.")
    with open(path, "rb") as fh:
        data = fh.read()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise ValueError(f"{path!r} does not match the checksum in config.json.")
    model, template = _templates(spec, config)
    import io

    try:
        state = eqx.tree_deserialise_leaves(io.BytesIO(data), template)
    except Exception as e:  # shape mismatch between spec and weights
        raise ValueError(f"{path!r} does not fit the model in config.json: {e}") from None
    return spec, config, meta["step"], meta.get("losses", []), model, state


def load_model(model_dir: str, ema: bool = True):
    """The trained score network of `model_dir` in one call (EMA weights by default)."""
    _, _, _, _, model, (params, ema_params, _) = load_checkpoint(model_dir)
    return eqx.combine(ema_params if ema else params, model)


# --- the loop ---------------------------------------------------------------------------------
def _check_data(spec, data):
    gaussian_osq = is_osq(spec) and spec["objective"].get("prior", "gaussian") == "gaussian"
    if data is None:
        if gaussian_osq:
            return None
        raise ValueError("training needs `data` (n, *config_shape).")
    if gaussian_osq:
        raise ValueError(
            "an optimal-SQ model with a Gaussian prior takes no `data`; pass data=None, or "
            "prior 'target' / 'ensemble' to start from the given configurations."
        )
    data = jnp.asarray(data)
    shape = tuple(spec["config_shape"])
    if data.ndim != len(shape) + 1 or tuple(data.shape[1:]) != shape:
        raise ValueError(f"training data must have shape (n, *{shape}), got {data.shape}.")
    if not bool(jnp.all(jnp.isfinite(data))):
        raise ValueError("training data contain non-finite values.")
    if data.shape[0] < 2:
        raise ValueError("training data need at least 2 configurations.")
    return data


@eqx.filter_jit
def _advance(spec_json, config, static, data, state, start, count):
    """`count` optimiser steps from step `start` (traced) as one `lax.scan`. Everything that
    shapes the computation is static (spec as JSON, config, the model's static part), so runs
    and resumes with the same settings reuse one compilation."""
    spec = json.loads(spec_json)
    loss_fn = _loss_fn(spec, config)
    opt = _optimizer(config)
    base_key = jr.key(config.seed)

    def one_step(state, i):
        params, ema, opt_state = state
        # the key of step i depends on (seed, i) only: resuming replays the same batches
        k_batch, k_loss = jr.split(jr.fold_in(base_key, i))
        batch = (
            None if data is None else data[jr.randint(k_batch, (config.batch,), 0, data.shape[0])]
        )
        loss, grads = eqx.filter_value_and_grad(
            lambda p: loss_fn(eqx.combine(p, static), k_loss, batch)
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = eqx.apply_updates(params, updates)
        # EMA with the usual warm-up, min(decay, (1+i)/(10+i)), so early weights fade fast
        decay = jnp.minimum(config.ema, (1.0 + i) / (10.0 + i))
        ema = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
        return (params, ema, opt_state), loss

    with conv_layout(channels_last=False):  # gradients in a loop: faster channels-first
        return jax.lax.scan(one_step, state, start + jnp.arange(count))


@jax.jit
def _all_finite(tree):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def train(
    model_dir: str,
    data,
    spec: dict,
    config: TrainConfig = TrainConfig(),
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train (or with `resume=True` continue) the model `spec` on `data` `(n, *config_shape)`
    into `model_dir`. Stops early with status "nan" if a loss or weight becomes non-finite,
    after saving the last finite state."""
    existing = _read_config(model_dir, missing_ok=True) if os.path.isdir(model_dir) else None
    if existing is not None and not resume:
        raise ValueError(
            f"{model_dir!r} already holds a model; use resume=True (--resume) to "
            "continue it or choose another directory."
        )
    if resume:
        if existing is None:
            raise ValueError(f"nothing to resume in {model_dir!r}.")
        spec0, config0, step, losses, model, state = load_checkpoint(model_dir)
        if spec0 != spec:
            raise ValueError(f"{model_dir!r} holds a different model: {spec0} ≠ {spec}.")
        if dataclasses.replace(config0, steps=config.steps) != config:
            raise ValueError(f"{model_dir!r} was trained with other settings: {config0}.")
    else:
        model, state = _templates(spec, config)
        params = eqx.filter(model, eqx.is_inexact_array)
        state, step, losses = (params, params, state[2]), 0, []
    data = _check_data(spec, data)
    static = eqx.filter(model, eqx.is_inexact_array, inverse=True)
    spec_json = json.dumps(spec, sort_keys=True)
    status = "done"
    last_saved = step
    while step < config.steps:
        count = min(config.steps_per_call, config.steps - step)
        new_state, chunk_losses = _advance(
            spec_json, config, static, data, state, jnp.asarray(step), count
        )
        chunk_losses = np.asarray(chunk_losses)
        finite = np.all(np.isfinite(chunk_losses)) and bool(_all_finite(new_state[0]))
        if not finite:
            status = "nan"
            if progress:
                sys.stderr.write(
                    f"\nnon-finite loss or weights in steps {step}–{step + count}; "
                    f"stopping, last good checkpoint is step {step}\n"
                )
            break
        state = new_state
        losses.extend(float(x) for x in chunk_losses)
        step += count
        if progress:
            sys.stderr.write(
                f"\rtraining: step {step}/{config.steps}  loss {np.mean(chunk_losses):.4f}"
            )
            sys.stderr.flush()
        if step - last_saved >= config.checkpoint_every or step == config.steps:
            save_checkpoint(model_dir, spec, config, step, state, losses)
            last_saved = step
    if step != last_saved or not os.path.isfile(os.path.join(model_dir, "config.json")):
        save_checkpoint(model_dir, spec, config, step, state, losses)
    if progress:
        sys.stderr.write("\n")
    return TrainResult(
        eqx.combine(state[1], static), eqx.combine(state[0], static), step, losses, status
    )
