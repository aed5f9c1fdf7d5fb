"""sqdiff's U-Net training step against the same network in PyTorch, in one run (CPU).

The default U-Net (32 channels, 3 levels, L = 32, batch 32, VE σ = 25) is built in sqdiff and
copied weight for weight into an equivalent `torch.nn.Module` (circular `Conv2d`, `GroupNorm`,
SiLU, the same Gaussian Fourier time embedding and `Σ(t)` output scaling). First the two are
checked to agree: the DSM loss and every gradient leaf on the same `(φ0, t, η)`, to float32
tolerance. Then, interleaved (minimum over repeats), one optimiser step (DSM loss, gradient,
global-norm clip, Adam, EMA) is timed in

* `sqdiff.train` — the real training loop: `--iters` steps in one `lax.scan`;
* `sqdiff jit, no loop` — the same step jitted on its own, one host call per step;
* `torch eager` — PyTorch's forward/backward/`clip_grad_norm_`/`Adam`/`_foreach` EMA;
* `torch.compile` — the same step compiled (with `--compile`; compilation takes minutes).

PyTorch is an optional extra, not a dependency: `pip install -e ".[torch]"` (on a CPU-only
machine `pip install torch --index-url https://download.pytorch.org/whl/cpu` is the small
wheel). Run: `python benchmarks/bench_train_torch.py [--L 32 --batch 32 --iters 10]`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sqdiff as sq
from sqdiff._xla import hot_jit
from sqdiff.checkpoint import TrainConfig, make_optimizer
from sqdiff.train import _advance, build_model, train


def _t(a):
    return torch.from_numpy(np.array(a, dtype=np.float32))


class _Mirror:
    """Builds torch layers from sqdiff ones, recording which sqdiff leaf each torch parameter
    mirrors (`pairs`: (path into the equinox model, torch parameter)) for the parity check."""

    def __init__(self, model):
        self.model, self.pairs = model, []

    def _copy(self, path, torch_param):
        leaf = path(self.model)
        with torch.no_grad():
            torch_param.copy_(_t(leaf).reshape(torch_param.shape))
        self.pairs.append((path, torch_param))

    def conv(self, path):
        c = path(self.model)
        out, cin, k, _ = c.weight.shape
        conv = nn.Conv2d(cin, out, k, stride=c.stride, padding=k // 2, padding_mode="circular")
        self._copy(lambda m: path(m).weight, conv.weight)
        self._copy(lambda m: path(m).bias, conv.bias)
        return conv

    def norm(self, path):
        g = path(self.model)
        norm = nn.GroupNorm(g.groups, g.channels, eps=g.eps)
        self._copy(lambda m: path(m).weight, norm.weight)
        self._copy(lambda m: path(m).bias, norm.bias)
        return norm

    def linear(self, path):
        lin = path(self.model)
        out = nn.Linear(lin.in_features, lin.out_features)
        self._copy(lambda m: path(m).weight, out.weight)
        self._copy(lambda m: path(m).bias, out.bias)
        return out


class _ResBlock(nn.Module):
    def __init__(self, mirror, path):
        super().__init__()
        at = lambda name: lambda m: getattr(path(m), name)  # noqa: E731
        self.norm1, self.conv1 = mirror.norm(at("norm1")), mirror.conv(at("conv1"))
        self.dense = mirror.linear(at("dense"))
        self.norm2, self.conv2 = mirror.norm(at("norm2")), mirror.conv(at("conv2"))
        self.skip = None if path(mirror.model).skip is None else mirror.conv(at("skip"))

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.dense(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip is None else self.skip(x))


class TorchUNet(nn.Module):
    """`sqdiff.nn.UNet` (d = 2, no antisymmetrisation, no data_std) in PyTorch, same weights;
    `pairs` lists (path into the sqdiff model, torch parameter) for every parameter."""

    def __init__(self, m):
        super().__init__()
        mirror = _Mirror(m)
        self.log_sigma = math.log(m.schedule.sigma)
        self.register_buffer("W", _t(m.embed.W))
        self.emb1 = mirror.linear(lambda m: m.emb_mlp.layers[0])
        self.emb2 = mirror.linear(lambda m: m.emb_mlp.layers[1])
        self.conv_in = mirror.conv(lambda m: m.conv_in)

        def blocks(name, cls):
            n = len(getattr(m, name))
            return nn.ModuleList(cls(mirror, lambda m, i=i: getattr(m, name)[i]) for i in range(n))

        self.down = blocks("down_blocks", _ResBlock)
        self.downsample = blocks("downsample", lambda mir, path: mir.conv(path))
        self.mid = blocks("mid", _ResBlock)
        self.upsample = blocks("upsample", lambda mir, path: mir.conv(path))
        self.up = blocks("up_blocks", _ResBlock)
        self.norm_out = mirror.norm(lambda m: m.norm_out)
        self.conv_out = mirror.conv(lambda m: m.conv_out)
        self.pairs = mirror.pairs

    def marginal_std(self, t):
        return torch.sqrt(torch.expm1(2 * t * self.log_sigma) / (2 * self.log_sigma))

    def forward(self, t, phi):  # t (B,), phi (B, L, L)
        std = self.marginal_std(t)
        proj = 2 * math.pi * self.W[None] * (0.25 * torch.log(std))[:, None]
        emb = self.emb2(F.silu(self.emb1(torch.cat([torch.sin(proj), torch.cos(proj)], 1))))
        h = self.conv_in(phi[:, None])
        skips = []
        for block, down in zip(self.down, self.downsample, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, emb)
        for i in reversed(range(len(self.down))):
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = self.upsample[i](h)
            h = self.up[i](torch.cat([h, skips[i]], 1), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))[:, 0]
        return out / std[:, None, None]


def dsm(pred, std, eta):
    """The DSM loss of `sqdiff.objectives.dsm_loss` for given `(t, η)` (uniform-t weights)."""
    return ((std * pred + eta) ** 2).mean()


def _sqdiff_loss(model, x0, t, eta):
    std = model.schedule.marginal_std(t)[:, None, None]
    return dsm(jax.vmap(model)(t, x0 + std * eta), std, eta)


def _torch_loss(net, x0, t, eta):
    std = net.marginal_std(t)[:, None, None]
    return dsm(net(t, x0 + std * eta), std, eta)


def check_parity(model, net, x0, t, eta):
    """Relative differences of the loss and, leaf by leaf, of every gradient (max over leaves
    of ‖g_sqdiff − g_torch‖ / ‖g_torch‖)."""
    loss_j, g = eqx.filter_value_and_grad(_sqdiff_loss)(model, x0, t, eta)
    net.zero_grad()
    loss_t = _torch_loss(net, _t(x0), _t(t), _t(eta))
    loss_t.backward()
    rel = [
        float(np.linalg.norm(np.ravel(path(g)) - p.grad.numpy().ravel()))
        / max(float(np.linalg.norm(p.grad.numpy())), 1e-30)
        for path, p in net.pairs
    ]
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sum(np.size(path(model)) for path, _ in net.pairs)
    return {
        "loss_sqdiff": float(loss_j),
        "loss_torch": float(loss_t),
        "loss_rel_diff": abs(float(loss_j) - float(loss_t)) / abs(float(loss_t)),
        "grad_leaves": len(rel),
        "grad_max_rel_diff": max(rel),
    }


def torch_step(net, ema, opt, x0, clip=1.0, ema_decay=0.999):
    def step():
        t = torch.rand(x0.shape[0]) * (1 - 1e-3) + 1e-3
        eta = torch.randn_like(x0)
        opt.zero_grad(set_to_none=True)
        loss = _torch_loss(net, x0, t, eta)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        with torch.no_grad():
            params = list(net.parameters())
            torch._foreach_mul_(ema, ema_decay)
            torch._foreach_add_(ema, params, alpha=1 - ema_decay)
        return loss

    return step


def sqdiff_single_step(model, spec, data, cfg):
    """sqdiff.train's own scan body (`_advance`) for one step, jitted alone: one host call
    per step."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    objective = sq.specs.ModelSpec.from_json(spec, None).build_objective(None)
    # compiled like sqdiff.train's scan (same XLA options); the inner _advance is inlined
    one = hot_jit(lambda state, i: _advance(objective, cfg, static, data, state, i, 1)[0])
    state = [(params, params, make_optimizer(cfg).init(params))]

    def run():
        state[0] = one(state[0], jnp.int32(0))
        return state[0]

    return run


def best_of(fns, repeats):
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--L", type=int, default=32)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--iters", type=int, default=10, help="optimiser steps per timed repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    a = p.parse_args()
    spec = {
        "model": "unet",
        "kwargs": {"d": 2, "channels": a.channels, "levels": a.levels},
        "schedule": {"name": "ve", "sigma": 25.0},
        "config_shape": [a.L, a.L],
        "group": "euclidean",
    }
    torch.manual_seed(0)
    model = build_model(spec)
    net = TorchUNet(model)
    k0, k1, k2 = jr.split(jr.key(1), 3)
    x0 = jr.normal(k0, (a.batch, a.L, a.L))
    t = jr.uniform(k1, (a.batch,), minval=0.05, maxval=1.0)
    eta = jr.normal(k2, (a.batch, a.L, a.L))
    parity = check_parity(model, net, x0, t, eta)

    data = jr.normal(jr.key(0), (512, a.L, a.L))
    cfg = TrainConfig(steps=a.iters, batch=a.batch, steps_per_call=a.iters, checkpoint_every=10**9)
    tmp = tempfile.mkdtemp()
    runs = iter(range(10**6))

    def sqdiff_train():
        train(f"{tmp}/run{next(runs)}", data, spec, cfg, progress=False)

    single = sqdiff_single_step(model, spec, data, cfg)

    def sqdiff_noloop():
        for _ in range(a.iters):
            out = single()
        jax.block_until_ready(out)

    xt = _t(data[: a.batch])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, foreach=True)
    ema = [q.detach().clone() for q in net.parameters()]
    eager = torch_step(net, ema, opt, xt)

    def torch_eager():
        for _ in range(a.iters):
            eager()

    fns = {"sqdiff.train": sqdiff_train, "sqdiff jit, no loop": sqdiff_noloop,
           "torch eager": torch_eager}  # fmt: skip
    if a.compile:
        compiled = torch.compile(eager)

        def torch_compiled():
            for _ in range(a.iters):
                compiled()

        fns["torch.compile"] = torch_compiled
    try:
        for f in fns.values():  # warm-up: compilation, allocator, thread pools
            f()
        best = best_of(fns, a.repeats)
    finally:
        shutil.rmtree(tmp)
    per_step = {k: v / a.iters for k, v in best.items()}
    print(
        json.dumps(
            {
                "device": str(jax.devices()[0]),
                "torch": torch.__version__,
                "torch_threads": torch.get_num_threads(),
                "L": a.L,
                "batch": a.batch,
                "channels": a.channels,
                "parity": parity,
                "s_per_step": {k: round(v, 4) for k, v in per_step.items()},
                "sqdiff_train_over_torch_eager": round(
                    per_step["sqdiff.train"] / per_step["torch eager"], 3
                ),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
