"""Train small, generate large: 3D φ⁴ near the critical point (λ = 0.9, κ_c ≈ 0.1923).

The seed talk's "near critical sampling" study (Tang, Wang et al. 2026): a *local* score
network (`LocalCNN`, finite receptive field, no lattice-wide statistics) is trained on several
small volumes at once — {4, 8}, {4, 8, 16}, {4, 8, 16, 32} — and then generates a larger volume
by DM + MAALA (reverse SDE to t_mh, then Metropolis-adjusted Langevin with the learned drift;
exact for any network). The published acceptance grows 0.36 → 0.55 → 0.75 as volumes are
added. Here the acceptance is measured twice: on the DM's own samples (DM + MAALA) and with the
chains started at equilibrium (`drift_acceptance`), beside what a perfect network accepts
(`noised_score`); the two can differ by 20× (docs/studies/phi4_3d.md).

For every κ this script
1. generates the training ensembles and a reference ensemble at the target volume with
   Fourier-accelerated HMC + Wolff cluster flips (τ_int(|M|) ≈ 9 trajectories at L = 32, κ_c);
2. trains one network per training set (same weights, steps and batch for every set);
3. samples the target volume with MAALA at one fixed (t_mh, c) for all sets, and at the same step
   size with MALA whose drift is the noised score at t_mh (what a perfect network accepts) and
   with plain MALA (the drift −∇S, the t → 0 limit);
4. compares ⟨|M|⟩, χ2 (|M|), U_L and G(p) of the MAALA chains with the reference.

    python examples/phi4_train_small.py --out phi4-3d --kappa 0.18 0.1923   # ~30 min, 2 cores
    python examples/phi4_train_small.py --out phi4-3d-b --kappa 0.2 --sigma 400
    python examples/phi4_train_small.py --out tsm-kc --kappa 0.1923 --model multiscale \
        --objective tsm     # target score matching: the small-noise score MAALA uses

VE σ must make Σ(T)² exceed the zero mode V⟨M²⟩ of the *target* volume (965 at κ_c, 8751 at
κ = 0.2 for L = 32); `train` warns only about the training volumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.random as jr
import lineax as lx
import numpy as np

import sqdiff as sq
from sqdiff.objectives import crossover_scale
from sqdiff.sampling import sample_model
from sqdiff.train import TrainConfig, train


def reference_sampler(action, mass2):
    """FA-HMC (ε·n = 1) followed by 4 Wolff cluster flips: the classical baseline."""
    kernel = sq.FourierKernel.free_field(action.lattice_shape, mass2)
    return sq.Composed(sq.HMC(action, 0.05, 20, kernel=kernel), sq.WolffPhi4(action, n_flips=4))


def ensemble(action, seed, n, chains, thin, therm, mass2):
    """`(chains, n // chains, *shape)` configurations, every `thin`-th trajectory, and seconds."""
    init = jax.vmap(action.random_config)(jr.split(jr.key(seed), chains))
    t0 = time.perf_counter()
    x, acc = sq.run_chains(
        reference_sampler(action, mass2), jr.key(seed + 1), init, -(-n // chains),
        n_therm=therm, thin=thin,
    )  # fmt: skip
    return np.asarray(x), float(np.mean(acc)), time.perf_counter() - t0


def cached(out, kappa, L, make):
    """The ensemble `(chains, n, *shape)` and its seconds, generated once per (κ, L)."""
    path = os.path.join(out, f"ensemble_k{kappa}_L{L}.npz")
    if not os.path.exists(path):
        x, acc, sec = make()
        print(f"  generated L={L} (acceptance {acc:.2f})", flush=True)
        np.savez(path + ".tmp.npz", x=x, seconds=sec)
        os.replace(path + ".tmp.npz", path)
    with np.load(path) as f:
        return f["x"], float(f["seconds"])


def summary(action, samples, kmax=4):
    """⟨|M|⟩, χ2 (|M|), U_L and G(2πk/L) for k ≤ kmax with Γ-method errors: `[value, error]`."""
    res = sq.analyze(action, samples)
    keys = ["<|M|>", "chi2_abs", "U_L"] + [f"G(p=2pi*{k}/L)" for k in range(kmax + 1)]
    return {k: [res[k].value, res[k].error] for k in keys}


def noised_score(action: sq.Phi4, schedule):
    """The score of the VE-noised φ⁴ law at time t, the drift of a perfect network:

        ∇log p_t ≈ −(1 + Σ²H)⁻¹ (∇S + ½ Σ² ∇ΔS),   Σ = Σ(t), ∇ΔS = 24λφ,

    `H` the Hessian of S (a linear solve by conjugate gradients, `lineax`). It agrees with the
    heat-kernel expansion `−∇S + Σ²(H∇S − ½∇ΔS)` to O(Σ⁴) and is exact for a Gaussian
    (docs/studies/phi4_3d.md, "What a perfect network accepts"). Returns `(t, φ) → ∇log p_t(φ)`,
    a `ScoreDrift` score."""

    def score(t, phi):
        sigma2 = schedule.marginal_std(t) ** 2

        def operator(v):  # (1 + Σ²H) v
            return v + sigma2 * jax.jvp(action.force, (phi,), (v,))[1]

        rhs = action.force(phi) + 12 * sigma2 * action.lam * phi
        structure = jax.ShapeDtypeStruct(phi.shape, phi.dtype)
        op = lx.FunctionLinearOperator(operator, structure, lx.positive_semidefinite_tag)
        return -lx.linear_solve(op, rhs, lx.CG(rtol=1e-6, atol=1e-6)).value

    return score


def noised_score_check(action, schedule, t, clean, trajectories=200, seed=1):
    """How close `noised_score` is to the exact noised score at time t on the target volume.

    For each clean configuration `x0`, `x = x0 + Σ η`; the exact score is
    `E[−∇S(y) | x]` over `y ∝ exp(−S(y) − |x − y|²/(2Σ²))` (the target score identity),
    averaged over HMC trajectories started at `x0`, itself an exact draw of that law. Two halves
    of the run give `‖m − s‖²` without the Monte Carlo noise (their product). Returns the mean
    over configurations of that squared error for `noised_score`, for `−∇S`, and the
    half-difference noise."""
    sigma = float(schedule.marginal_std(t))
    score = noised_score(action, schedule)
    rows = []
    for i, x0 in enumerate(jax.numpy.asarray(clean)):
        x = x0 + sigma * jr.normal(jr.key(seed + i), x0.shape)

        def posterior(y, x=x):
            return action(y) + jax.numpy.sum((y - x) ** 2) / (2 * sigma**2)

        y, _ = sq.run_chains(
            sq.HMC(posterior, 0.1 * sigma, 20), jr.key(seed + 100 + i), x0[None], trajectories
        )
        m = -np.asarray(jax.vmap(action.force)(y[0]))
        half = len(m) // 2
        a, b = m[:half].mean(0), m[half:].mean(0)
        rows.append(
            [
                float(np.sum((a - s) * (b - s)))
                for s in (np.asarray(score(t, x)), -np.asarray(action.force(x)))
            ]
            + [float(np.sum((a - b) ** 2) / 4)]
        )
    mean = np.mean(rows, axis=0)
    return {"noised_score": mean[0], "force": mean[1], "noise": mean[2]}


def mala_acceptance(target, eps, ref, steps, burn, drift=None, seed=4):
    """MALA at step ε with `drift` (None: `−∇S`), one chain from the last configuration of each
    reference chain: the acceptance `[mean, error over chains]`."""
    init = jax.numpy.asarray(ref[:, -1])
    sampler = sq.MALA(target, eps, drift=drift)
    _, acc = sq.run_chains(sampler, jr.key(seed), init, steps, n_therm=burn)
    acc = np.asarray(acc)  # per chain
    return [float(acc.mean()), float(acc.std(ddof=1) / np.sqrt(acc.size))]


def drift_acceptance(mdir, target, ref, eps, t_mh, steps, burn):
    """MALA with the learned drift `s_θ(t_mh)` at step ε, started from the reference
    configurations instead of the DM's samples: the acceptance of the drift alone."""
    net = sq.ModelDir(mdir).load().network()
    drift = sq.mcmc.ScoreDrift(net, t_mh * net.schedule.T)
    return mala_acceptance(target, eps, ref, steps, burn, drift)


def mode_response(mdir, ref, sigmas=(10.0, 20.0, 30.0), n=64):
    """How the learned score restores the zero mode and the lowest non-zero mode at noise Σ:
    the slope `a` of `s̃(p) ≈ −a ỹ(p)` over reference configurations plus noise, with the
    Gaussian value `1/(G(p) + Σ²)` beside it (a network blind to the mode gives `1/Σ²`).
    Returns `{Σ: {"zero": [a, Gaussian], "p1": [a, Gaussian]}}`."""
    net = sq.ModelDir(mdir).load().network()
    sch = net.schedule
    x = ref.reshape((-1,) + ref.shape[2:])
    x = x[:: max(1, len(x) // n)][:n]
    axes = tuple(range(1, x.ndim))
    modes = {"zero": (0,) * len(axes), "p1": (1,) + (0,) * (len(axes) - 1)}
    xk = np.fft.fftn(x, axes=axes)
    V = x[0].size
    G = {m: float(np.mean(np.abs(xk[(slice(None),) + i]) ** 2)) / V for m, i in modes.items()}
    score = jax.jit(jax.vmap(net, in_axes=(None, 0)))
    grid = np.linspace(1e-4, float(sch.T), 20001)
    out = {}
    for sig in sigmas:
        t = float(np.interp(sig, np.asarray(sch.marginal_std(grid)), grid))
        y = x + sig * np.asarray(jr.normal(jr.key(0), x.shape))
        s = np.asarray(score(t, jax.numpy.asarray(y, jax.numpy.float32)))
        yk, sk = np.fft.fftn(y, axes=axes), np.fft.fftn(s, axes=axes)
        res = {}
        for m, i in modes.items():
            a, b = yk[(slice(None),) + i], sk[(slice(None),) + i]
            slope = -np.real(np.sum(b * np.conj(a))) / np.sum(np.abs(a) ** 2)
            res[m] = [float(slope), 1.0 / (G[m] + sig**2)]
        out[str(sig)] = res
    return out


def spec(d, L, params, a, data):
    """The model spec of one training set: `data`, its first volume's configurations, set
    the crossover of target score matching."""
    objective = {"name": "dsm", "importance": True}
    if a.objective == "tsm":
        action = sq.Phi4(L, params["kappa"], params["lam"], d=d)
        objective = {"name": "tsm", "importance": True, "crossover": crossover_scale(action, data)}
    kwargs = {"d": d, "channels": a.channels, "depth": a.depth, "antisymmetric": True}
    if a.model == "multiscale":
        kwargs["levels"] = a.levels
    if a.force_skip:
        kwargs["force_skip"] = [params["kappa"], params["lam"]]
    return {
        "model": a.model,
        "kwargs": kwargs,
        "schedule": {"name": "ve", "sigma": a.sigma},
        "config_shape": [L] * d,
        "group": "euclidean",
        "objective": objective,
        "theory": {"name": "phi4", "params": params},
        "zero_init": a.force_skip,
    }


def fmt(v):
    return f"{v[0]:.4g} ± {v[1]:.2g}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="directory for models and results.json")
    ap.add_argument("--kappa", type=float, nargs="+", default=[0.18, 0.1923, 0.2])
    ap.add_argument("--lam", type=float, default=0.9)
    ap.add_argument("--d", type=int, default=3)
    ap.add_argument(
        "--sets", nargs="*", default=["4,8", "4,8,16", "4,8,16,32"],
        help="training sets (none: only the reference ensemble and the reference drifts)",
    )  # fmt: skip
    ap.add_argument("--target", type=int, default=32, help="lattice size generated")
    ap.add_argument("--n-train", type=int, default=512, help="training configurations per L")
    ap.add_argument("--n-ref", type=int, default=512, help="reference configurations at target")
    ap.add_argument("--thin", type=int, default=10, help="trajectories between saved configs")
    ap.add_argument("--mass2", type=float, default=0.5, help="FA-HMC m²_eff")
    ap.add_argument("--iters", type=int, default=1000, help="training steps per set")
    ap.add_argument(
        "--batch", type=int, default=32, help="configurations of the first volume per step; "
        "the others get as many sites (TrainConfig.volume_batch = 'sites')",
    )  # fmt: skip
    ap.add_argument(
        "--model", choices=("local", "multiscale"), default="local",
        help="local: one 7³ stencil; multiscale: one per 2^k block level (range grows with L)",
    )  # fmt: skip
    ap.add_argument("--levels", type=int, default=5, help="multiscale: block levels (L=32: 0–4)")
    ap.add_argument(
        "--objective", choices=("dsm", "tsm"), default="dsm",
        help="dsm: denoising score matching; tsm: target score matching (−∇S mixed in below "
        "the crossover ς = (N/E‖∇S‖²)^1/2 of the training data)",
    )  # fmt: skip
    ap.add_argument(
        "--force-skip", action="store_true",
        help="physics-conditioned score: −∇S exp(−e^a Σ²) + Σ²/(1 + Σ³)·network (exact at t → 0)",
    )  # fmt: skip
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument(
        "--sigma", type=float, default=200.0, help="VE σ (Σ(T)² ≥ G(0) at the target: 3774 > 965)"
    )
    ap.add_argument("--chains", type=int, default=16, help="MAALA chains at the target")
    ap.add_argument("--mala-steps", type=int, default=40, help="MAALA steps kept per chain")
    ap.add_argument("--burn", type=int, default=10, help="MAALA steps discarded per chain")
    ap.add_argument("--sde-steps", type=int, default=100, help="reverse-SDE steps to t_mh")
    ap.add_argument("--t-mh", type=float, default=0.01)
    ap.add_argument("--c", type=float, default=0.2, help="MAALA ε = c Σ(t_mh)²")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sets = [tuple(int(s) for s in x.split(",")) for x in a.sets]
    sizes = sorted({L for s in sets for L in s})
    path = os.path.join(a.out, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    print(f"{a.d}D φ⁴, λ = {a.lam}; training sets {a.sets}; generating L = {a.target}", flush=True)
    for kappa in a.kappa:
        kres = results.setdefault(str(kappa), {})
        target = sq.Phi4(a.target, kappa, a.lam, d=a.d)
        data = {}
        for L in sizes:
            action = sq.Phi4(L, kappa, a.lam, d=a.d)
            x, sec = cached(a.out, kappa, L, lambda action=action, L=L: ensemble(
                action, 10 * L, a.n_train, 16, a.thin, 200, a.mass2))  # fmt: skip
            data[L] = x.reshape((-1,) + action.lattice_shape)
            print(f"κ={kappa} L={L}: {data[L].shape[0]} configs, {sec:.0f} s", flush=True)
            if L == a.target:
                ref, ref_sec = x, sec
        if a.target not in data:
            ref, ref_sec = cached(a.out, kappa, a.target, lambda target=target: ensemble(
                target, 7, a.n_ref, 16, a.thin, 200, a.mass2))  # fmt: skip
        kres["reference"] = {**summary(target, ref), "seconds": ref_sec}
        print(f"  reference L={a.target}: {json.dumps(kres['reference'])}", flush=True)
        # the step size every sampler below shares; MALA with −∇S (the t → 0 drift)
        sch = sq.VarianceExploding(a.sigma)
        eps = a.c * float(sch.marginal_std(a.t_mh * sch.T)) ** 2
        t0 = time.perf_counter()
        acc = mala_acceptance(target, eps, ref, a.mala_steps, a.burn, seed=3)
        kres["mala_exact_drift"] = {"acceptance": acc, "seconds": time.perf_counter() - t0}
        print(f"  MALA (−∇S) at ε = {eps:.4g}: acceptance {acc[0]:.3f}", flush=True)
        # what a perfect network accepts: MALA with the noised score at t_mh (to O(Σ⁴))
        drift = sq.mcmc.ScoreDrift(noised_score(target, sch), a.t_mh * sch.T)
        acc = mala_acceptance(target, eps, ref, a.mala_steps, a.burn, drift)
        check = noised_score_check(target, sch, a.t_mh * sch.T, ref[:4, -1])
        kres["mala_noised_score"] = {"acceptance": acc, "check": check}
        print(f"  MALA (noised score at t_mh): acceptance {acc[0]:.3f}; {check}", flush=True)
        for s in sets:
            name = "{" + ", ".join(map(str, s)) + "}"
            mdir = os.path.join(a.out, f"k{kappa}_" + "-".join(map(str, s)))
            cfg = TrainConfig(
                steps=a.iters, batch=a.batch, lr=2e-3, steps_per_call=100, volume_batch="sites"
            )
            t0 = time.perf_counter()
            sp = spec(a.d, s[0], {**target.params, "L": s[0]}, a, data[s[0]])
            train(mdir, [data[L] for L in s], sp, cfg, progress=False)
            t_train = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = sample_model(
                mdir, a.chains * a.mala_steps, "maala", L=a.target, steps=a.sde_steps,
                t_mh=a.t_mh, c=a.c, chains=a.chains, n_therm=a.burn,
            )  # fmt: skip
            t_sample = time.perf_counter() - t0
            meta = res.metadata
            kres[name] = {
                "acceptance": [meta["acceptance"], meta["acceptance_error"]],
                "drift_acceptance": drift_acceptance(
                    mdir, target, ref, eps, a.t_mh, a.mala_steps, a.burn
                ),
                **summary(target, np.asarray(res.samples)),
                "train_seconds": t_train,
                "sample_seconds": t_sample,
                "health": meta["health"],
                "mode_response": mode_response(mdir, ref),
            }
            print(f"  {name}: {json.dumps(kres[name])}", flush=True)
            with open(path + ".tmp", "w") as f:
                json.dump(results, f, indent=1)
            os.replace(path + ".tmp", path)
    table(results, [("{" + ", ".join(map(str, s)) + "}") for s in sets], a)


def table(results, names, a):
    kappas = list(results)
    print("\nMAALA acceptance at L =", a.target)
    print("| training set | " + " | ".join(f"κ = {k}" for k in kappas) + " |")
    print("| --- " * (len(kappas) + 1) + "|")
    labels = {
        "mala_noised_score": "MALA with the noised score at t_mh (a perfect network)",
        "mala_exact_drift": "MALA with −∇S",
    }
    for name in names + list(labels):
        cells = [fmt(results[k][name]["acceptance"]) if name in results[k] else "-" for k in kappas]
        label = labels.get(name, name)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nThe learned drift alone: MALA with s_θ(t_mh) from the reference configurations")
    for name in names:
        cells = [
            fmt(results[k][name]["drift_acceptance"])
            if "drift_acceptance" in results[k].get(name, {})
            else "-"
            for k in kappas
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for k in kappas:
        print(f"\nκ = {k}: observables at L = {a.target}")
        obs = ["<|M|>", "chi2_abs", "U_L"] + [f"G(p=2pi*{i}/L)" for i in range(5)]
        print("| sampler | " + " | ".join(obs) + " |")
        print("| --- " * (len(obs) + 1) + "|")
        for name in ["reference"] + names:
            if name in results[k]:
                r = results[k][name]
                label = "FA-HMC + Wolff" if name == "reference" else f"DM + MAALA {name}"
                print(f"| {label} | " + " | ".join(fmt(r[o]) for o in obs) + " |")


if __name__ == "__main__":
    main()
