"""SU(N) diffusion model, published-style (Aarts et al., "DM as SQ on the lattice", 2026):
train an L-CNN at (β0, L) on HMC configurations, then generate at (β0, L), at (β, L) with the
score rescaled by β/β0, and at (β0, L' > L) with the same weights — by the reverse SDE (DM) and
exactly by DM + MAALA — beside HMC at each target. In 2D also the exact values
(`u = ⟨(1/N) Re tr U⟩` by Weyl integration, `W(R×T) = u^{RT}`); in 4D the Wilson-flowed
observables (`t²E` at flow time `--t-flow`, clover `Q`, `χ_t`) and the Polyakov loop, and the
largest deviation of DM + MAALA from HMC in units of the combined error.

    python examples/sun_diffusion.py --out sun-dm                 # 2D SU(2), ~2 min on 2 cores
    python examples/sun_diffusion.py --N 3 --beta0 4 --beta 5 --out su3-dm
    python examples/sun_diffusion.py --d 4 --beta0 2.2 --beta 2.4 --L-large 6 --out sun4d
    python examples/sun_diffusion.py --d 4 --beta0 2.2 --beta 2.4 --L-large 6 --iters 1500 \
        --chains 16 --maala 200 --therm 4000 --force-skip --zero-init --t-mh 0.01 --c 2 \
        --c-large 1 --out sun4d-skip   # the physics-conditioned score (docs/gauge.md), ~35 min
    python examples/sun_diffusion.py ... --objective tsm   # target score matching (docs/gauge.md)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.random as jr
import numpy as np

import sqdiff as sq
from sqdiff.gradient_flow import analyze_flow
from sqdiff.sampling import sample_model
from sqdiff.specs import GroupSpec, ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
from sqdiff.theories.gauge_exact import wilson_loops_2d
from sqdiff.train import TrainConfig, train


def row(name, action, samples, extra=None, t_flow=None):
    samples = np.asarray(samples)
    res = sq.analyze(action, samples)
    if t_flow is not None:
        res.update(analyze_flow(action, samples, t_flow, eps=0.02))
    out = {k: [r.value, r.error] for k, r in res.items()}
    out.update(extra or {})
    tau = res["plaquette"].tau_int
    out["tau_int(plaquette)"] = tau
    # observables whose chains sit apart (replica Q-value < 1e-3): their errors are too small
    out["chains_disagree"] = tuple(k for k, r in res.items() if sq.stats.chains_disagree(r))
    if "seconds" in out:  # effective samples of the plaquette per second
        out["ess/s(plaquette)"] = samples.shape[0] * samples.shape[1] / (2 * tau) / out["seconds"]
    cells = "  ".join(f"{k} {v[0]:.4f}({v[1]:.4f})" for k, v in out.items() if isinstance(v, list))
    print(f"{name:<28} {cells}", {k: v for k, v in out.items() if not isinstance(v, list)})
    return out


def max_pull(a, b):
    """The largest |a − b| / sqrt(σ_a² + σ_b²) over the observables both rows measured."""
    shared = [k for k in a if isinstance(a[k], list) and k in b]
    pulls = {k: abs(a[k][0] - b[k][0]) / np.hypot(a[k][1], b[k][1]) for k in shared}
    worst = max(pulls, key=lambda k: pulls[k] if np.isfinite(pulls[k]) else -1)
    return [worst, float(pulls[worst])]


def denoise_check(model_dir, action, configs, starts=(0.05, 0.1, 0.2, 0.4, 1.0), n=16):
    """Where the learned score fails: noise `n` HMC configurations to `t_s` by the exact forward
    process (`U_t = exp(iΣ(t_s) η^a T^a) U_0`), run the reverse SDE from `t_s` to 0 (200 steps
    per unit time) and compare the plaquette with HMC's. With the exact score each row returns
    the HMC value; the first `t_s` whose row falls off is where the score goes wrong."""
    import jax.numpy as jnp

    from sqdiff.dynamics import Reverse
    from sqdiff.solvers import solve

    model = sq.load_model(model_dir)
    sch, g = model.schedule, action.group
    rev = Reverse(sch, model, group=g)
    U0 = jnp.asarray(configs[:n])
    plaq = lambda U: float(jax.vmap(action.measure)(U)["plaquette"].mean())  # noqa: E731
    out = {"HMC": plaq(U0)}
    for ts in starts:
        sigma, steps = float(sch.marginal_std(ts * sch.T)), max(10, int(200 * ts))

        def one(k, u, sigma=sigma, ts=ts, steps=steps):
            k1, k2 = jr.split(k)
            u_t = g.retract(u, sigma * g.sample_algebra(k1, g.lattice_shape(u), jnp.float32))
            return u_t, solve(rev, u_t, ts * sch.T, 0.0, key=k2, n_steps=steps).ys[-1]

        noised, back = jax.jit(jax.vmap(one))(jr.split(jr.key(2), len(U0)), U0)
        out[f"t_s={ts:g}"] = [plaq(noised), plaq(back)]
        print(f"denoise from t_s = {ts:<5g} (Σ = {sigma:.2f}): plaquette noised "
              f"{out[f't_s={ts:g}'][0]:.4f} → reverse SDE {out[f't_s={ts:g}'][1]:.4f} "
              f"(HMC {out['HMC']:.4f})")  # fmt: skip
    return out


def hmc(action, n, seed):
    init = jax.vmap(action.random_config)(jr.split(jr.key(seed), 8))
    sampler = sq.HMC(action, 0.05, 20)
    t = time.perf_counter()
    x, acc = sq.run_chains(sampler, jr.key(seed + 1), init, n, n_therm=100, thin=2)
    return x, {"acceptance": float(acc.mean()), "seconds": time.perf_counter() - t}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=2)
    ap.add_argument("--d", type=int, default=2, choices=(2, 4))
    ap.add_argument("--t-flow", type=float, default=1.0, help="4D: flow time of t²E and Q")
    ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--L-large", type=int, default=8)
    ap.add_argument("--beta0", type=float, default=2.0)
    ap.add_argument("--beta", type=float, default=2.5)
    ap.add_argument("--n-hmc", type=int, default=256, help="HMC samples per chain (8 chains)")
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--chains", type=int, default=32, help="MAALA chains")
    ap.add_argument("--maala", type=int, default=100, help="MAALA samples per chain")
    ap.add_argument("--therm", type=int, default=0, help="MAALA burn-in steps per chain")
    ap.add_argument("--channels", type=int, default=8, help="L-CNN channels")
    ap.add_argument("--depth", type=int, default=2, help="L-CNN residual blocks")
    ap.add_argument(
        "--force-skip",
        action="store_true",
        help="add the Wilson drift −∇S_β0 to the L-CNN (LCNN(force_skip=β0))",
    )
    ap.add_argument("--zero-init", action="store_true", help="start from a zero output layer")
    ap.add_argument(
        "--objective",
        choices=("group_dsm", "tsm"),
        default="group_dsm",
        help="group_dsm: DSM with the target −η/σ; tsm: target score matching, −∇S(U_0) mixed "
        "in below the crossover ς = (n/E‖∇S‖²)^1/2 of the training data (docs/diffusion.md)",
    )
    ap.add_argument("--t-mh", type=float, default=0.05, help="MAALA time (a fraction of T)")
    ap.add_argument("--c", type=float, default=0.5, help="MAALA step ε = c Σ(t_mh)²")
    ap.add_argument("--c-large", type=float, default=None, help="--c at L' (default: --c)")
    ap.add_argument(
        "--target-acceptance",
        type=float,
        default=None,
        help="adapt MAALA's step during --therm towards this acceptance (from --c)",
    )
    ap.add_argument(
        "--targets",
        default="beta0,beta,large",
        help="which of (β0, L), (β, L), (β0, L') to sample, comma-separated (a trained model in "
        "--out is reused)",
    )
    ap.add_argument("--out", default="sun-dm")
    args = ap.parse_args()
    every = {"beta0": ("(β0, L)", args.beta0, args.L), "beta": ("(β, L)", args.beta, args.L),
             "large": ("(β0, L')", args.beta0, args.L_large)}  # fmt: skip
    chosen = args.targets.split(",")
    if not set(chosen) <= set(every):
        ap.error(f"--targets: a comma-separated subset of {','.join(every)}; got {args.targets!r}")
    if args.L_large == args.L and "large" in chosen:  # --L-large = --L: the training volume only
        chosen.remove("large")
    os.makedirs(args.out, exist_ok=True)
    N, L = args.N, args.L
    d = args.d
    t_flow = args.t_flow if d == 4 else None
    train_action = sq.SUNWilson(N, L, args.beta0, d=d)
    path = os.path.join(args.out, "results.json")
    results = {}
    if os.path.exists(path):  # a rerun of some --targets keeps the others' results
        with open(path) as fh:
            results = json.load(fh)

    # training data: HMC at (β0, L)
    data, meta = hmc(train_action, args.n_hmc, 0)
    net = {"group": "su", "N": N, "d": d, "channels": args.channels, "depth": args.depth}
    if args.force_skip:
        net["force_skip"] = args.beta0
    objective = {"t_min": 1e-3}
    if args.objective == "tsm":
        objective["crossover"] = sq.objectives.crossover_scale(
            train_action, data.reshape((-1,) + train_action.config_shape)
        )
    spec = ModelSpec(
        network=NetworkSpec("lcnn", net),
        schedule=ScheduleSpec("ve", {"sigma": 5.0}),
        objective=ObjectiveSpec(args.objective, objective),
        config_shape=train_action.config_shape,
        group=GroupSpec.of(train_action.group),
        theory=TheorySpec.of(train_action),
        zero_init=args.zero_init,
    )
    model_dir = os.path.join(args.out, "model")
    t = time.perf_counter()
    flat = data.reshape((-1,) + train_action.config_shape)
    cfg = TrainConfig(steps=args.iters, batch=32, lr=2e-3, steps_per_call=250)
    train(model_dir, flat, spec, cfg, resume=os.path.isdir(model_dir), progress=True)
    # summed over reruns: a rerun with the model trained only resumes (seconds)
    results["training_seconds"] = results.get("training_seconds", 0.0) + time.perf_counter() - t
    results["denoise_check"] = denoise_check(model_dir, train_action, flat[:: len(flat) // 16])
    save(results, path)

    targets = [every[name] for name in chosen]
    for label, beta, size in targets:
        action = sq.SUNWilson(N, size, beta, d=d)
        exact = wilson_loops_2d("su", N, beta, action.loops()) if d == 2 else None
        print(f"\n{label}: SU({N}), β = {beta:g}, L = {size}, d = {d}; exact (2D, infinite "
              f"volume) {exact}")  # fmt: skip
        block = {"exact": exact}
        x, m = hmc(action, args.n_hmc, 10)
        block["HMC"] = row("HMC", action, x, m, t_flow)
        kw = {"L": size if size != L else None, "beta": beta if beta != args.beta0 else None}
        t = time.perf_counter()
        sde = sample_model(model_dir, args.chains * 4, "sde", steps=200, **kw)
        block["DM"] = row("DM (reverse SDE)", action, sde.samples,
                          {"seconds": time.perf_counter() - t}, t_flow)  # fmt: skip
        t = time.perf_counter()
        ma = sample_model(model_dir, args.chains * args.maala, "maala", steps=200,
                          chains=args.chains, seed=1, n_therm=args.therm, t_mh=args.t_mh,
                          c=args.c if size == L or args.c_large is None else args.c_large,
                          target_acceptance=args.target_acceptance, **kw)  # fmt: skip
        block["DM+MAALA"] = row(
            "DM + MAALA", action, ma.samples,
            {"acceptance": ma.metadata["acceptance"],
             "acceptance_error": ma.metadata["acceptance_error"],
             "seconds": time.perf_counter() - t, "step_size": ma.metadata["sampler"]["step_size"]},
            t_flow,
        )  # fmt: skip
        block["max |DM+MAALA − HMC|/σ"] = max_pull(block["DM+MAALA"], block["HMC"])
        print("max |DM+MAALA − HMC| / σ:", block["max |DM+MAALA − HMC|/σ"])
        results[label] = block
        save(results, path)  # after every target: a later one that fails keeps these


def save(results, path):
    """Write `results` to `path` atomically (temp file + rename)."""
    with open(path + ".tmp", "w") as fh:
        json.dump(results, fh, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
