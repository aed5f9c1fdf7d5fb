"""`sqdiff demo`: the main job, end to end on a laptop CPU in a few minutes.

2D φ⁴ (λ = 0.022, κ = 0.21 by default): generate an HMC ensemble, train the periodic U-Net score
network on it, sample with the reverse SDE and with MAALA, and compare ⟨|M|⟩, χ2 and U_L
(value ± error, τ_int) in a table (HMC | DM | DM+MAALA); save the ensembles, the model and a
figure (one configuration during denoising; the observables of the three samplers). Options scale
it up to the published setup (`--L 32 --n 5120 --sigma 25`).
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np

OBSERVABLES = ("<|M|>", "chi2_abs", "U_L", "<phi^2>")


def _log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# long: 15 keyword arguments and four stages in order (each stage a helper or a library call)
def run_demo(
    out: str,
    L: int = 8,
    kappa: float = 0.21,
    lam: float = 0.022,
    n: int = 1024,
    iters: int = 1000,
    batch: int = 64,
    channels: int = 16,
    sigma: float = 25.0,
    steps: int = 200,
    mh_steps: int = 40,
    c: float = 1.0,
    t_mh: float = 0.05,
    seed: int = 0,
    quiet: bool = False,
) -> dict:
    """Run the demo into the new folder `out`; returns the table, its text, the verdicts of DM
    and DM+MAALA against HMC (`sqdiff.compare`) and the figure path.

    Args:
        out: a new or empty folder for the ensembles, the model (with its `loss.png`),
            `results.json`, `results.txt` and `demo.png`.
        L: lattice size of the 2D φ⁴ theory (even).
        kappa: hopping parameter κ.
        lam: quartic coupling λ.
        n: configurations per sampler (HMC, DM, DM+MAALA).
        iters: optimiser steps of the score network's training.
        batch: training batch size.
        channels: U-Net channels (≥ 16: see the docs on GroupNorm).
        sigma: VE noise scale σ.
        steps: reverse-SDE (Euler–Maruyama) steps from T to 0.
        mh_steps: DM+MAALA: each of the `n` independent chains starts from the reverse SDE at
            `t_mh` and is kept after `mh_steps` Metropolis-adjusted Langevin steps.
        c: MAALA step size ε = c Σ(t_mh)².
        t_mh: MAALA switch time, a fraction of T.
        seed: seeds every stage.
        quiet: no progress bars.
    """
    from .io import save_ensemble
    from .nn import UNet
    from .sampling import sample_model
    from .specs import ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
    from .theories import Phi4
    from .train import TrainConfig, load_model, train

    if os.path.isdir(out) and os.listdir(out):
        raise ValueError(f"output folder {out!r} is not empty; choose a new one.")
    os.makedirs(out, exist_ok=True)
    t0 = time.perf_counter()
    action = Phi4(L, kappa, lam)
    UNet(None, d=2, levels=2, key=jr.key(0)).check_input(jnp.zeros((L, L)))  # L must be even

    # 1. HMC ensemble (Fourier-accelerated: short autocorrelations at small cost)
    _log(f"[1/4] HMC ensemble: φ⁴ L={L}, κ={kappa}, λ={lam}, {n} configurations")
    samples, acc = _hmc_ensemble(action, n, seed, out, quiet)

    # 2. train the score network
    _log(f"[2/4] training the U-Net score network ({iters} steps, VE σ={sigma})")
    spec = ModelSpec(
        network=NetworkSpec("unet", {"d": 2, "channels": channels, "levels": 2}),
        schedule=ScheduleSpec("ve", {"sigma": sigma, "T": 1.0}),
        objective=ObjectiveSpec("dsm", {"t_min": 1e-3, "importance": True}),
        config_shape=(L, L),
        theory=TheorySpec.of(action),
    )
    model_dir = os.path.join(out, "model")
    t_train = time.perf_counter()
    trained = train(
        model_dir,
        jnp.asarray(samples.reshape(-1, L, L)),
        spec,
        TrainConfig(
            steps=iters,
            batch=batch,
            lr=2e-3,
            steps_per_call=min(100, iters),
            seed=seed,
        ),
        progress=not quiet,
    )
    t_train = time.perf_counter() - t_train

    # 3. diffusion sampling: reverse SDE and MAALA
    _log(
        f"[3/4] sampling: reverse SDE ({steps} steps) and MAALA (t_mh={t_mh}, c={c}, "
        f"{mh_steps} MH steps per chain)"
    )
    ens = {"HMC": samples}
    maala_options = {"t_mh": t_mh, "c": c, "chains": n, "thin": mh_steps}
    for name, method, options in (("DM", "sde", {}), ("DM+MAALA", "maala", maala_options)):
        x, meta, *_ = sample_model(
            model_dir, n, method, seed=seed + 2, steps=steps, progress=not quiet, **options
        )
        save_ensemble(os.path.join(out, f"{method}.npz"), x, meta)
        ens[name] = x
        if method == "maala":
            maala_acc = meta["acceptance"]
            from .mcmc import drift_message

            if drifting := drift_message(meta):  # shown even with --quiet: numbers are suspect
                print(f"! DM+MAALA: {drifting}", flush=True)

    # 4. compare
    _log("[4/4] measuring")
    table, text, verdicts = _compare(action, ens, n, float(np.mean(acc)), maala_acc)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(
            {
                "table": table,
                "verdicts against HMC": verdicts,
                "train_seconds": t_train,
                "total_seconds": time.perf_counter() - t0,
            },
            fh,
            indent=1,
        )
    with open(os.path.join(out, "results.txt"), "w") as fh:
        fh.write(text + "\n")

    # figure: one configuration during denoising, and the observables
    path, ts = _denoising(load_model(model_dir), L, steps, seed)
    figure = _figure(os.path.join(out, "demo.png"), np.asarray(path), np.asarray(ts), table)
    if figure is not None:
        from .plots import training_loss_figure

        training_loss_figure(os.path.join(model_dir, "loss.png"), trained.losses, "demo training")
    return {
        "text": text,
        "table": table,
        "verdicts": verdicts,
        "figure": figure,
        "train_seconds": t_train,
    }


def _hmc_ensemble(action, n, seed, out, quiet):
    """`(samples (4, n/4, L, L), acceptance)` by Fourier-accelerated HMC, saved as hmc.npz."""
    from .io import save_ensemble
    from .mcmc import HMC, chain_health, run_chains
    from .preconditioners import FourierKernel

    chains = 4
    hmc = HMC(action, 0.1, 10, kernel=FourierKernel.free_field(action.lattice_shape, 0.05))
    init = jax.vmap(action.random_config)(jr.split(jr.key(seed), chains))
    samples, acc = run_chains(
        hmc, jr.key(seed + 1), init, -(-n // chains), n_therm=200, thin=2, progress=not quiet
    )
    health = chain_health(samples, acc)
    if not health.ok:  # never train on (and compare with) a frozen or diverged ensemble
        raise ValueError(
            f"the demo's HMC ensemble is unhealthy ({'; '.join(health.problems)}): its settings "
            f"(ε = 0.1, 10 steps, Fourier mass² 0.05) do not fit κ = {action.kappa}, λ = "
            f"{action.lam}; generate the training data with `sqdiff generate` and a smaller "
            "--step-size instead."
        )
    meta = {
        "theory": "phi4",
        "params": action.params,
        "sampler": hmc.settings,
        "seed": seed,
        "acceptance": float(np.mean(acc)),
    }
    save_ensemble(os.path.join(out, "hmc.npz"), samples, meta)
    return samples, acc


def _compare(action, ens, n, hmc_acc, maala_acc):
    """The observables of every ensemble with errors, and the verdict of DM and DM+MAALA
    against HMC on every observable (`compare.compare_samples`): `(table, text, verdicts)`."""
    from .observables import analyze

    results = {name: analyze(action, x) for name, x in ens.items()}
    table = {
        name: {
            k: {"value": r[k].value, "error": r[k].error, "tau_int": r[k].tau_int}
            for k in OBSERVABLES
        }
        for name, r in results.items()
    }
    from .compare import compare_samples

    verdicts = {
        name: compare_samples(action, x, ens["HMC"]) for name, x in ens.items() if name != "HMC"
    }
    verdict_table = {
        name: {
            "agree": c.agree,
            "pulls": {p.name: p.pull for p in c.pulls},
            "disagreeing": c.disagreeing,
        }
        for name, c in verdicts.items()
    }
    p = action.params
    lines = [
        f"2D φ⁴  L={p['L']}  κ={p['kappa']}  λ={p['lam']}  ({n} configurations each; "
        f"HMC acceptance {hmc_acc:.2f}, MAALA acceptance {maala_acc:.2f})",
        f"{'observable':<12}" + "".join(f"{name:>30}" for name in ens),
    ]
    for k in OBSERVABLES:
        cells = ""
        for name in ens:
            r = results[name][k]
            cells += f"{f'{r.value:.4f} ± {r.error:.4f} (τ {r.tau_int:.1f})':>30}"
        lines.append(f"{k:<12}{cells}")
    for name, c in verdicts.items():  # every observable of φ⁴, not only the table's
        lines.append(f"{name} against HMC: {c.verdict()}")
    return table, "\n".join(lines), verdict_table


def _denoising(model, L, sde_steps, seed):
    """One configuration along the reverse SDE, saved at a few times."""
    from .dynamics import Reverse
    from .solvers import solve

    sch = model.schedule
    ts = jnp.array([1.0, 0.5, 0.3, 0.15, 0.05, 0.0])
    path = solve(
        Reverse(sch, model),
        sch.prior_sample(jr.key(seed + 3), (L, L)),
        1.0,
        0.0,
        key=jr.key(seed + 4),
        n_steps=sde_steps,
        ts=ts,
    ).ys
    return path, ts


def _figure(path, denoising, ts, table):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _log("matplotlib not installed: no figure (pip install matplotlib)")
        return None
    fig = plt.figure(figsize=(3 * len(ts), 6.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1)
    for i, (x, t) in enumerate(zip(denoising, ts, strict=True)):
        ax = top.add_subplot(1, len(ts), i + 1)
        lim = np.max(np.abs(x)) if i < 2 else 2.5
        ax.imshow(x, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"t = {t:.2f}")
        ax.set_xticks([])
        ax.set_yticks([])
    names = list(table)
    for j, k in enumerate(OBSERVABLES):
        ax = bottom.add_subplot(1, len(OBSERVABLES), j + 1)
        vals = [table[nm][k]["value"] for nm in names]
        errs = [table[nm][k]["error"] for nm in names]
        ax.errorbar(range(len(names)), vals, yerr=errs, fmt="o", capsize=4)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names)
        ax.set_title(k)
        ax.set_xlim(-0.5, len(names) - 0.5)
    fig.suptitle("sqdiff demo: denoising one configuration (top), HMC vs diffusion (bottom)")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
