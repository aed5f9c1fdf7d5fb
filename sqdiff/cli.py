"""The `sqdiff` command: generate and measure ensembles.

sqdiff generate THEORY [--L … --kappa … --lam … --beta … --N … --d …] --n N --out FILE
sqdiff measure FILE [--json]
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import re
import sys

SAMPLERS = (
    "hmc", "omelyan", "fahmc", "mala", "hmc+wolff", "fahmc+wolff", "hmc+instanton", "exact"
)  # fmt: skip
TOYS = ("quartic", "double_well", "cosine")
# default (step size, MD steps) per theory
DEFAULT_MD = {
    "phi4": (0.2, 10), "u1": (0.1, 10), "sun": (0.05, 20), "un": (0.05, 20), "toy": (0.2, 10),
}  # fmt: skip


def _int_type(lo: int, hi: int | None = None, what: str = "an integer"):
    """An argparse type: an integer in [lo, hi) with a message naming the range."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if v < lo or (hi is not None and v >= hi):
            if hi is None or (hi == MAX_COUNT and v < lo):
                rng = f"≥ {lo}"
            elif hi == MAX_COUNT:  # a count: below XLA's index range
                rng = f"< {hi} (2³¹)"
            else:
                rng = f"in [{lo}, {hi})"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {v}")
        return v

    return parse


def _real_type(positive: bool = False, below_one: bool = False):
    """An argparse type: a finite float (> 0, and < 1, where asked)."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text}")
        if positive and not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
        if below_one and not v < 1:
            raise argparse.ArgumentTypeError(f"must be < 1, got {v}")
        return v

    return parse


#: every count is an array dimension or a loop length: below 2³¹ (XLA's index range)
MAX_COUNT = 2**31
_COUNT = _int_type(1, MAX_COUNT)  # how many: ≥ 1
_COUNT0 = _int_type(0, MAX_COUNT)  # ≥ 0
_SEED = _int_type(0, 2**63, "a seed")
_REAL = _real_type()
_POSITIVE = _real_type(positive=True)
_FRACTION = _real_type(positive=True, below_one=True)


def _default(fn, name: str):
    """The default of argument `name` of `fn`: the parser shows the library's defaults instead
    of keeping its own copies."""
    return inspect.signature(fn).parameters[name].default


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


#: the naming scheme every subcommand follows (docs/cli.md, "One naming scheme")
RENAMED = {
    ("train", "--steps"): "--iters (optimiser steps; --steps counts integration steps)",
    ("demo", "--train-steps"): "--iters (optimiser steps)",
    ("demo", "--sde-steps"): "--steps (reverse-SDE steps)",
}


class _Renamed(argparse.Action):
    """An option that was renamed: using it is a one-line error naming the new spelling."""

    def __init__(self, option_strings, dest, command: str, **kwargs):
        kwargs.update(nargs="?", help=argparse.SUPPRESS, default=None)
        super().__init__(option_strings, "renamed_" + dest, **kwargs)
        self.command = command

    def __call__(self, parser, namespace, values, option_string=None):
        new = RENAMED[(self.command, option_string)]
        raise CLIError(f"{self.command} {option_string} is now {new}")


def _add_renamed(parser, command: str) -> None:
    for (cmd, old), _ in RENAMED.items():
        if cmd == command:
            parser.add_argument(old, action=_Renamed, command=command)


def _has_default(action) -> bool:
    """Whether an option has a default worth showing (not None, not a store_true's False, not
    suppressed; 0 is a default)."""
    d = action.default
    return not (d is None or d is False or d is argparse.SUPPRESS or action.required)


class _Help(argparse.HelpFormatter):
    """Shows each option's default (where it has one and the help does not say it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = _has_default(action)
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text

    def _format_action(self, action):
        # argparse prints no help line for an option without help text: give every option
        # with a default one (options of the parser and of its argument groups alike)
        if action.option_strings and _has_default(action) and not (action.help or "").strip():
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)
        # "-1e-3" is a negative number, not an option (argparse's own pattern misses exponents)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message):
        raise CLIError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sqdiff", description="Diffusion models and stochastic quantization.")
    p.add_argument("--debug", action="store_true", help="show the traceback of an internal error")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _add_generate(sub)
    _add_train(sub)
    _add_sample(sub)
    _add_osq(sub)
    _add_demo(sub)
    _add_measure(sub)
    _add_compare(sub)
    for command in sub.choices.values():
        command.add_argument(
            "--config",
            metavar="FILE.toml",
            help="options from a TOML file (keys = option names, top level or in a table "
            "named after the command; the command line wins). Every output gets its "
            "resolved configuration beside it as OUT.config.toml",
        )
    return p


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse `argv`, with the options of `--config FILE.toml` as the command's defaults."""
    from ._cli_config import apply_config, config_path

    parser = _parser()
    path = config_path(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if path is not None and command in subparsers.choices:
        apply_config(subparsers.choices, command, path)
    return parser.parse_args(argv)


def _add_theory_flags(p, gauge: bool = True) -> None:
    """The theory's parameters, spelled the same in every command that builds a theory
    (`generate`, `osq`: scalar theories only, `gauge=False`); `build_action` refuses a flag the
    chosen theory does not take."""
    p.add_argument("--L", type=_COUNT, help="lattice size (phi4, u1, sun, un)")
    p.add_argument("--d", type=_COUNT, help="dimensions (phi4: default 2; sun: default 4)")
    p.add_argument("--kappa", type=_REAL, help="phi4 hopping parameter κ")
    p.add_argument("--lam", type=_REAL, help="phi4 quartic coupling λ ≥ 0")
    if gauge:
        p.add_argument("--beta", type=_POSITIVE, help="gauge coupling β > 0 (u1, sun, un)")
        p.add_argument("--N", type=_COUNT, help="N of SU(N) or U(N) (sun, un)")
    p.add_argument("--action", choices=TOYS, help="toy action (theory toy only; default quartic)")
    p.add_argument("--mu2", type=_REAL, help="quartic μ² (default 1)")
    p.add_argument("--g", type=_REAL, help="quartic coupling g (default 0.4)")
    p.add_argument("--k", type=_REAL, help="cosine k (default 5)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any other theory parameter, repeatable",
    )


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="generate an ensemble with a classical sampler")
    g.add_argument("theory", help="phi4, u1, sun, quartic, double_well, cosine (or toy --action …)")
    _add_theory_flags(g)
    g.add_argument("--sampler", choices=SAMPLERS, default="hmc")
    g.add_argument("--step-size", type=_POSITIVE, help="MD / MALA step size")
    g.add_argument("--n-md", type=_COUNT, help="MD steps per trajectory")
    g.add_argument("--mass2", type=_POSITIVE, help="fahmc*: FA-HMC m²_eff (default 1)")
    g.add_argument("--n-wolff", type=_COUNT, help="*+wolff: Wolff flips per step (default 1)")
    g.add_argument(
        "--n-instanton",
        type=_COUNT,
        help="hmc+instanton (u1): instanton-insertion moves per trajectory (default 4)",
    )
    g.add_argument("--n", type=_COUNT, required=True, help="configurations per chain")
    g.add_argument("--chains", type=_COUNT, default=1, help="independent chains")
    g.add_argument("--therm", type=_COUNT0, default=200, help="thermalisation steps")
    g.add_argument(
        "--target-acceptance",
        type=_FRACTION,
        help="adapt the HMC/MALA step size during --therm by dual averaging towards this mean "
        "acceptance (from --step-size or the default; composite samplers: the HMC steps alone)",
    )
    g.add_argument("--thin", type=_COUNT, default=1, help="steps between saved configurations")
    g.add_argument("--seed", type=_SEED, default=0)
    g.add_argument(
        "--out", required=True, help="output file: .npz, .h5, or .lime/.ildg (4D SU(2)/SU(3))"
    )
    g.add_argument(
        "--force", action="store_true", help="replace a file at --out that is not an ensemble"
    )
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(sub) -> None:
    from .checkpoint import TrainConfig

    t = sub.add_parser("train", help="train a score network on an ensemble (score matching)")
    t.add_argument("ensemble", help="ensemble (.npz, .h5, .lime) from `sqdiff generate`")
    t.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="ENSEMBLE",
        help="the same theory at another lattice size, repeatable: train on every volume at "
        "once (each step: --batch configurations of each; translation-equivariant networks)",
    )
    t.add_argument(
        "--volume-batch",
        choices=("configs", "sites"),
        default=TrainConfig.volume_batch,
        help="with --also: --batch configurations of every volume per step (configs), or of the "
        "first one and as many lattice sites of each other (sites)",
    )
    t.add_argument("--out", required=True, help="model directory")
    t.add_argument("--iters", type=_COUNT, default=TrainConfig.steps, help="optimiser steps")
    t.add_argument("--batch", type=_COUNT, default=TrainConfig.batch)
    t.add_argument("--lr", type=_POSITIVE, default=TrainConfig.lr)
    t.add_argument("--warmup", type=_COUNT0, default=TrainConfig.warmup)
    t.add_argument("--ema", type=_REAL, default=TrainConfig.ema)
    t.add_argument("--steps-per-call", type=_COUNT, default=TrainConfig.steps_per_call)
    t.add_argument("--seed", type=_SEED, default=0)
    t.add_argument("--resume", action="store_true", help="continue the model in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument(
        "--validation",
        type=_FRACTION,
        help="fraction of the configurations held out (the end of the ensemble) for the "
        "held-out DSM loss per noise band (default: 0.1 with ≥ 80 configurations, else none)",
    )
    g = t.add_argument_group("noise schedule")
    g.add_argument("--schedule", choices=("ve", "vp", "subvp"), default="ve")
    g.add_argument(
        "--sigma",
        type=_POSITIVE,
        help="VE σ (> 1); default from the data: Σ(T)² = 9× the variance of its widest "
        "direction (the zero mode), and at least 25 (gauge fields: 25)",
    )
    g.add_argument("--beta-min", type=_REAL, default=0.1, help="VP/sub-VP β_min")
    g.add_argument("--beta-max", type=_REAL, default=20.0, help="VP/sub-VP β_max")
    g.add_argument("--T", type=_POSITIVE, default=1.0, help="diffusion time horizon")
    _add_train_network(t.add_argument_group("network"))
    _add_train_objective(t.add_argument_group("objective"))
    _add_renamed(t, "train")


def _add_train_network(g) -> None:
    """`sqdiff train`'s network options."""
    g.add_argument(
        "--model",
        choices=("auto", "mlp", "unet", "local", "multiscale", "fconv", "u1", "lcnn"),
        default="auto",
        help="local: a finite-receptive-field CNN for φ⁴ that runs on any L (train small, "
        "generate large); multiscale: one local CNN per 2^k block level (--levels), whose range "
        "grows with L; fconv: per-site features mixed by one D4-symmetric convolution "
        "(Gerdes et al. 2023), whose split-step map has an exact density at any L for two "
        "evaluations per half step (sample --method imh; --objective reverse-kl)",
    )
    g.add_argument("--features", type=_COUNT, default=16, help="fconv: per-site features")
    g.add_argument(
        "--radius", type=_COUNT, default=None, help="fconv: kernel half-width (default L/2)"
    )
    g.add_argument("--width", type=_COUNT, default=64, help="MLP width")
    g.add_argument(
        "--depth", type=_COUNT, default=3, help="MLP / local / multiscale / link-net / L-CNN depth"
    )
    g.add_argument(
        "--channels",
        type=_COUNT,
        default=32,
        help="U-Net / local / multiscale / link-net / L-CNN channels",
    )
    g.add_argument("--levels", type=_COUNT, default=3, help="U-Net / multiscale levels")
    g.add_argument(
        "--antisymmetric",
        action=argparse.BooleanOptionalAction,
        help="impose s(−φ) = −s(φ) (mlp, unet, local, multiscale); default: on where the "
        "action is Z2-symmetric (phi4 and the 0-dim toys)",
    )
    g.add_argument(
        "--force-skip",
        action="store_true",
        help="lcnn, and local/multiscale on phi4: add the drift −∇S of the ensemble's "
        "couplings with a learned weight (links: 1/(1 + e^a Σ(t)²); phi4: exp(−e^a Σ(t)²)), "
        "starting from a zero output layer (the score is exact at t → 0)",
    )


def _add_train_objective(g) -> None:
    """`sqdiff train`'s score-matching objective options."""
    g.add_argument("--importance", action="store_true", help="importance-sample t")
    g.add_argument(
        "--objective",
        choices=("dsm", "tsm", "reverse-kl"),
        default="dsm",
        help="denoising score matching, or target score matching (the target score −∇S "
        "mixed in below the --crossover noise, weighted to learn the small-noise score that "
        "MAALA uses; fields and links), or reverse KL E_q[log q + S] through the exact density "
        "of the split-step map (--model fconv; the ensemble gives the theory and data scale "
        "only; --init a DSM model to fine-tune it)",
    )
    g.add_argument(
        "--flow-steps",
        type=_COUNT,
        default=32,
        help="reverse-kl: steps of the split-step map (sample --method imh uses the same)",
    )
    g.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="start from the weights of MODEL (same network and schedule), e.g. fine-tune a "
        "DSM-trained fconv model by --objective reverse-kl",
    )
    g.add_argument(
        "--crossover",
        type=_POSITIVE,
        default=None,
        help="tsm: the noise level ς of the hand-over from −∇S to −η/Σ (default: "
        "(N/E‖∇S‖²)^1/2 over the training configurations)",
    )
    g.add_argument(
        "--dsm-target",
        choices=("gaussian", "wrapped"),
        default="gaussian",
        help="SU(N)/U(N) links: the published Gaussian target −η/σ or the exact conditional "
        "score of the wrapped law on the group",
    )


def _add_sample(sub) -> None:
    from .sampling import sample_pc

    sa = sub.add_parser("sample", help="sample a trained model into an ensemble file")
    sa.add_argument("model_dir")
    sa.add_argument("--n", type=_COUNT, required=True, help="configurations")
    sa.add_argument("--out", required=True, help="output ensemble (.npz, .h5, .lime)")
    sa.add_argument(
        "--force", action="store_true", help="replace a file at --out that is not an ensemble"
    )
    sa.add_argument(
        "--method",
        choices=("sde", "ode", "pc", "maala", "imh"),
        default="sde",
        help="OSQ models: sde (weighted paths) or imh",
    )
    sa.add_argument(
        "--allow-unverified",
        action="store_true",
        help="load a model directory whose config.json has no checksum (sqdiff 0.1)",
    )
    sa.add_argument("--L", type=_COUNT, help="lattice size (default: the training one)")
    sa.add_argument("--beta", type=_POSITIVE, help="target coupling β (score × β/β0; actions ∝ β)")
    sa.add_argument(
        "--steps",
        type=_COUNT,
        help="reverse SDE / ODE steps (default 500; IMH on sun/un: flow steps, default 100; "
        "OSQ: the training steps)",
    )
    sa.add_argument("--seed", type=_SEED, default=0)
    sa.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_sample_sde(sa.add_argument_group("reverse SDE (--method sde; --grid also maala)"))
    _add_sample_maala(sa.add_argument_group("MAALA (--method maala)"))
    pc = sa.add_argument_group("predictor–corrector (--method pc)")
    pc.add_argument(
        "--corrector-steps",
        type=_COUNT0,
        default=_default(sample_pc, "corrector_steps"),
        help="pc: Langevin corrector steps",
    )
    pc.add_argument(
        "--snr",
        type=_POSITIVE,
        default=_default(sample_pc, "snr"),
        help="pc: corrector signal-to-noise ratio",
    )


def _add_sample_sde(g) -> None:
    """`sqdiff sample`'s reverse-SDE options: adaptive steps and the fixed steps' grid."""
    from .sampling import GRIDS, sample_sde

    g.add_argument(
        "--adaptive",
        action="store_true",
        help="sde: adaptive steps per sample under Gotta Go Fast's mixed tolerance (--rtol, "
        "--atol, --noise) instead of --steps; the evaluations per sample are printed",
    )
    for tol in ("rtol", "atol"):
        g.add_argument(
            f"--{tol}", type=_POSITIVE, default=_default(sample_sde, tol), help=f"--adaptive: {tol}"
        )
    g.add_argument(
        "--noise",
        choices=("tree", "fresh"),
        default=_default(sample_sde, "noise"),
        help="--adaptive: a Brownian tree, rejected steps retried (ShARK; converges for any "
        "score), or fresh increments with no step rejected (Gotta Go Fast's Euler–Maruyama/Heun "
        "pair; no tree)",
    )
    g.add_argument(
        "--grid",
        choices=GRIDS,
        default="uniform",
        help="sde, maala: the reverse-SDE steps uniform in t, or sigma: equal steps in "
        "log Σ(t)/m(t), fine near t → 0 where a uniform grid takes its largest relative steps "
        "(better for data finer than about 0.1; see docs/diffusion.md)",
    )


def _add_sample_maala(g) -> None:
    """`sqdiff sample`'s MAALA options."""
    from .sampling import sample_maala

    g.add_argument(
        "--t-mh",
        type=_FRACTION,
        default=_default(sample_maala, "t_mh"),
        help="MAALA switch time, fraction of T",
    )
    g.add_argument(
        "--c", type=_POSITIVE, default=_default(sample_maala, "c"), help="MAALA step ε = c Σ(t_mh)²"
    )
    g.add_argument(
        "--chains", type=_COUNT, default=_default(sample_maala, "chains"), help="MAALA chains"
    )
    g.add_argument(
        "--instanton",
        type=_COUNT0,
        default=0,
        help="maala on u1: instanton-insertion moves after every MAALA step (change Q by ±1)",
    )
    g.add_argument(
        "--anneal",
        choices=("sde", "langevin"),
        default="sde",
        help="MAALA: reach t_mh by the reverse SDE or by annealed Langevin (--steps levels)",
    )
    g.add_argument(
        "--target-acceptance",
        type=_FRACTION,
        help="maala: adapt ε during --therm by dual averaging towards this mean acceptance "
        "(from ε = c Σ(t_mh)²; 0.574 is MALA's optimum)",
    )
    g.add_argument(
        "--thin",
        type=_COUNT,
        default=_default(sample_maala, "thin"),
        help="MAALA steps between saved configs",
    )
    g.add_argument(
        "--therm",
        type=_COUNT0,
        default=_default(sample_maala, "n_therm"),
        help="maala: burn-in steps discarded per chain",
    )


def _add_osq(sub) -> None:
    o = sub.add_parser("osq", help="train an optimal-SQ sampler (residual force; no data)")
    o.add_argument("theory", help="phi4, quartic, double_well, cosine (or toy --action …)")
    _add_theory_flags(o, gauge=False)
    o.add_argument("--out", required=True, help="model directory")
    o.add_argument("--T", type=_POSITIVE, default=1.0, help="time horizon")
    o.add_argument(
        "--noise", type=_REAL, default=2**0.5, help="noise strength g of the SDE (√2: e^{-S} SQ)"
    )
    o.add_argument("--steps", type=_COUNT, default=100, help="Euler–Maruyama steps on [0, T]")
    o.add_argument("--reference", choices=("sq", "brownian", "ou"), default="ou")
    o.add_argument("--terminal", choices=("plain", "corrected"), default="corrected")
    o.add_argument(
        "--loss",
        choices=("kl", "log_variance"),
        default="kl",
        help="path KL or the log-variance loss (variance of the log-weights)",
    )
    o.add_argument("--prior-mean", type=_REAL, default=0.0, help="π = N(mean, std²) per site")
    o.add_argument("--prior-std", type=_REAL, default=1.0)
    o.add_argument("--iters", type=_COUNT, default=2000, help="optimiser steps")
    o.add_argument("--batch", type=_COUNT, default=256, help="paths per optimiser step")
    o.add_argument("--lr", type=_POSITIVE, default=3e-3)
    o.add_argument("--width", type=_COUNT, default=64, help="MLP width (0-dim)")
    o.add_argument("--depth", type=_COUNT, default=3, help="MLP depth (0-dim)")
    o.add_argument("--channels", type=_COUNT, default=16, help="U-Net channels (lattices)")
    o.add_argument("--levels", type=_COUNT, default=2, help="U-Net levels (lattices)")
    o.add_argument("--steps-per-call", type=_COUNT, default=50)
    o.add_argument("--seed", type=_SEED, default=0)
    o.add_argument("--resume", action="store_true", help="continue the model in --out")
    o.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_demo(sub) -> None:
    from .demo import run_demo

    de = sub.add_parser("demo", help="the main job: HMC → train → DM and DM+MAALA → table")
    de.add_argument("--out", default="sqdiff-demo", help="output folder (new or empty)")
    de.add_argument("--L", type=_COUNT, default=_default(run_demo, "L"))
    de.add_argument("--kappa", type=_REAL, default=_default(run_demo, "kappa"))
    de.add_argument("--lam", type=_REAL, default=_default(run_demo, "lam"))
    de.add_argument(
        "--n", type=_COUNT, default=_default(run_demo, "n"), help="configurations per sampler"
    )
    de.add_argument(
        "--iters", type=_COUNT, default=_default(run_demo, "iters"), help="optimiser steps"
    )
    de.add_argument("--batch", type=_COUNT, default=_default(run_demo, "batch"))
    de.add_argument("--channels", type=_COUNT, default=_default(run_demo, "channels"))
    de.add_argument("--sigma", type=_POSITIVE, default=_default(run_demo, "sigma"))
    de.add_argument(
        "--steps", type=_COUNT, default=_default(run_demo, "steps"), help="reverse-SDE steps"
    )
    de.add_argument(
        "--mh-steps",
        type=_COUNT,
        default=_default(run_demo, "mh_steps"),
        help="MAALA steps per chain",
    )
    de.add_argument(
        "--c", type=_POSITIVE, default=_default(run_demo, "c"), help="MAALA step ε = c Σ(t_mh)²"
    )
    de.add_argument("--t-mh", type=_FRACTION, default=_default(run_demo, "t_mh"))
    de.add_argument("--seed", type=_SEED, default=_default(run_demo, "seed"))
    de.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_renamed(de, "demo")


def _add_measure(sub) -> None:
    m = sub.add_parser("measure", help="observables of an ensemble with errors and τ_int")
    m.add_argument("file", help="ensemble: .npz, .h5, or .lime/.ildg (ILDG)")
    m.add_argument("--json", action="store_true", help="one JSON object on stdout")
    m.add_argument(
        "--force", action="store_true", help="measure an ensemble marked or found unhealthy"
    )
    m.add_argument(
        "--flow",
        type=_POSITIVE,
        metavar="T",
        help="gauge theories: also Wilson-flow every configuration to flow time T and report "
        "t²E(T), t0/a², w0/a and (4D clover, 2D U(N)) Q(T) and χ_t",
    )
    m.add_argument("--flow-eps", type=_POSITIVE, default=0.02, help="RK3 step of the flow")
    m.add_argument(
        "--flow-every",
        type=_COUNT,
        default=1,
        metavar="K",
        help="--flow: flow only every K-th configuration of each chain (the flow costs ~3·T/eps "
        "force evaluations per configuration; unflowed observables still use every one)",
    )
    m.add_argument(
        "--flow-ref", type=_POSITIVE, default=0.3, help="reference value of t²E for t0 and w0"
    )
    m.add_argument(
        "--beta", type=_POSITIVE, help="coupling of an ILDG file without sqdiff metadata"
    )
    m.add_argument(
        "--allow-unverified",
        action="store_true",
        help="read a sqdiff file that carries no checksum (written before 0.2, or edited); "
        "the output says so",
    )
    m.add_argument(
        "--plot",
        metavar="FIG.png",
        help="also write a figure: Γ-method ρ(t) and τ_int(W) per observable, a histogram of "
        "M, Q or the plaquette, the propagator G(p) (needs matplotlib)",
    )


def _add_compare(sub) -> None:
    c = sub.add_parser(
        "compare",
        help="does my model work? an ensemble against a reference: pulls, a histogram test, "
        "a verdict (exit 1 when they differ)",
    )
    c.add_argument("file", help="the ensemble under test (e.g. sampled from a model)")
    c.add_argument("reference", help="the reference ensemble of the same theory (e.g. HMC)")
    c.add_argument(
        "--alpha",
        type=_FRACTION,
        default=0.01,
        help="family-wise false-alarm rate of the verdict (Bonferroni over the tests)",
    )
    c.add_argument("--json", action="store_true", help="one JSON object on stdout")
    c.add_argument(
        "--allow-unverified", action="store_true", help="read files that carry no checksum"
    )


def cmd_compare(args) -> int:
    """Pulls per observable, a KS test on the order parameter's histogram and a verdict; exit
    0 when the ensembles agree, 1 when they do not (for scripts)."""
    from .compare import compare
    from .io import load_ensemble

    ens = load_ensemble(args.file, allow_unverified=args.allow_unverified)
    ref = load_ensemble(args.reference, allow_unverified=args.allow_unverified)
    c = compare(ens, ref, alpha=args.alpha)
    bad = c.disagreeing
    if args.json:
        out = {
            "pulls": {p.name: p._asdict() for p in c.pulls},
            "histogram": None
            if c.histogram is None
            else dict(
                zip(("primary", "D", "n_eff", "n_eff_reference", "p"), c.histogram, strict=True)
            ),
            "alpha": c.alpha,
            "threshold": c.threshold,
            "agree": c.agree,
            "disagreeing": bad,
        }
        print(json.dumps(out))
        return 0 if c.agree else 1
    print(f"{args.file} against {args.reference}: {ens.action.name} {ens.action.params}")
    print(f"{'observable':<22}{'value':>24}{'reference':>24}{'pull':>8}")
    for p in c.pulls:
        flag = " !" if not abs(p.pull) <= c.threshold else ""
        print(
            f"{p.name:<22}{f'{p.value:.6g} ± {p.error:.2g}':>24}"
            f"{f'{p.reference:.6g} ± {p.reference_error:.2g}':>24}{p.pull:>+8.2f}{flag}"
        )
    if c.histogram is not None:
        key, D, n_x, n_y, p = c.histogram
        print(
            f"histogram of {key}: KS D = {D:.3f}, p = {p:.3g} (effective sizes {n_x:.0f} and "
            f"{n_y:.0f})"
        )
    else:
        print("histogram: not compared (importance-weighted ensemble)")
    print(f"verdict: {c.verdict()}")
    return 0 if c.agree else 1


#: the theory flags of `generate` and `osq`; each is passed to the theory's constructor when given
THEORY_FLAGS = ("L", "d", "kappa", "lam", "beta", "N", "mu2", "g", "k")


def build_action(args):
    """The theory named on the command line (`THEORIES` registry; `toy --action X` is kept as
    an alias of `X`), built from the flags it takes: a flag it does not take is an error, not
    silently ignored."""
    from .theories import THEORIES

    name = _theory_name(args)
    names = [n for n in THEORIES.names() if n != "custom"]
    if name not in names:
        raise CLIError(f"unknown theory {name!r}; choose one of {names} (or toy --action …)")
    params = {f: getattr(args, f, None) for f in THEORY_FLAGS}
    params = {f: v for f, v in params.items() if v is not None}
    extra_params = _theory_params(args.param)
    twice = [f for f in extra_params if f in params]
    if twice:
        raise CLIError(f"--param {twice[0]}=… repeats --{twice[0]}; give it once")
    params.update(extra_params)
    sig = inspect.signature(THEORIES[name].__init__).parameters
    extra = [f for f in params if f not in sig]
    if extra:
        raise CLIError(f"theory {name!r} takes no " + ", ".join(f"--{f}" for f in extra))
    needed = [
        p.name
        for p in list(sig.values())[1:]
        if p.default is p.empty
        and p.name not in params
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if needed:
        raise CLIError(f"theory {name!r} needs " + ", ".join(f"--{f}" for f in needed))
    return THEORIES[name](**params)


def _theory_name(args) -> str:
    """The theory's registry name: `toy --action X` is `X` (quartic by default); `--action`
    with any other theory is an error, not ignored."""
    if args.theory == "toy":
        return args.action or "quartic"
    if args.action is not None:
        raise CLIError(f"--action picks the action of theory toy; {args.theory!r} takes none")
    return args.theory


#: the tuning options each --sampler takes; one it does not take is an error, not ignored
SAMPLER_OPTIONS = {
    "hmc": ("step_size", "n_md", "target_acceptance"),
    "omelyan": ("step_size", "n_md", "target_acceptance"),
    "fahmc": ("step_size", "n_md", "target_acceptance", "mass2"),
    "mala": ("step_size", "target_acceptance"),
    "hmc+wolff": ("step_size", "n_md", "target_acceptance", "n_wolff"),
    "fahmc+wolff": ("step_size", "n_md", "target_acceptance", "mass2", "n_wolff"),
    "hmc+instanton": ("step_size", "n_md", "target_acceptance", "n_instanton"),
    "exact": (),
}


def _check_sampler_options(args) -> None:
    takes = SAMPLER_OPTIONS[args.sampler]
    for option in ("step_size", "n_md", "target_acceptance", "mass2", "n_wolff", "n_instanton"):
        if getattr(args, option) is not None and option not in takes:
            flag = "--" + option.replace("_", "-")
            raise CLIError(f"{flag} does not apply to --sampler {args.sampler}")


def build_sampler(args, action):
    """The sampler named by --sampler, as `(stepper, moves)`: the HMC or MALA kernel and the
    moves that follow each of its steps (`None`, or Wolff flips / instanton insertions for
    `hmc+wolff` / `hmc+instanton`). The library checks what fits the theory (Fourier
    acceleration needs a scalar field on a lattice, Wolff flips a φ⁴ action)."""
    from .mcmc import HMC, MALA, InstantonU1, WolffPhi4
    from .preconditioners import FourierKernel

    eps, n_md = DEFAULT_MD.get(action.name, DEFAULT_MD["toy"])
    eps = args.step_size if args.step_size is not None else eps
    n_md = args.n_md if args.n_md is not None else n_md
    name = args.sampler
    if name == "mala":
        return MALA(action, eps), None
    if name.startswith("fahmc"):
        kernel = FourierKernel.free_field(action.lattice_shape, args.mass2 or 1.0)
        hmc = HMC(action, eps, n_md, "leapfrog", kernel=kernel)
    else:
        hmc = HMC(action, eps, n_md, "omelyan" if name == "omelyan" else "leapfrog")
    if name.endswith("+wolff"):
        return hmc, WolffPhi4(action, args.n_wolff or 1)
    if name.endswith("+instanton"):
        return hmc, InstantonU1(action, args.n_instanton or 4)
    return hmc, None


def _check_fits(count: int, action, what: str) -> None:
    """Before any compute: `count` configurations of `action` must fit in half the machine's
    memory (the ensemble is held in memory and written at the end), else one line."""
    import numpy as np

    itemsize = np.dtype(action.group.state_dtype(np.float32)).itemsize
    need = count * math.prod(action.config_shape) * itemsize
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on Linux/macOS
        return
    if need > have / 2:
        raise CLIError(
            f"{what} = {count} configurations of {action.config_shape} need {need / 2**30:.3g} "
            f"GiB, more than half of this machine's {have / 2**30:.3g} GiB; ask for fewer"
        )


def cmd_generate(args) -> int:
    import jax
    import jax.random as jr
    import numpy as np

    from .io import check_output, save_ensemble
    from .mcmc import Composed, chain_health, run_chains

    check_output(args.out, force=args.force)  # before the compute, not after
    for name in ("n", "chains", "thin"):
        if getattr(args, name) < 1:
            raise CLIError(f"--{name} must be ≥ 1")
    if args.therm < 0:
        raise CLIError("--therm must be ≥ 0")
    action = build_action(args)
    _check_sampler_options(args)
    _check_fits(args.n * (1 if args.sampler == "exact" else args.chains), action, "--n × --chains")
    if args.sampler == "exact":  # independent draws: no chain, no thermalisation
        samples = _exact_draws(args, action)
        settings, acceptance, n_therm, thin = {"sampler": "u1-exact"}, 1.0, 0, 1
        health = chain_health(samples, independent=True)
    else:
        stepper, moves = build_sampler(args, action)
        key_init, key_run = jr.split(jr.key(args.seed))
        init = jax.vmap(action.random_config)(jr.split(key_init, args.chains))
        stepper, init, tuning, n_left = _tuned(args, stepper, init)
        sampler = stepper if moves is None else Composed(stepper, moves)
        samples, acc = run_chains(
            sampler,
            key_run,
            init,
            args.n,
            n_therm=n_left,
            thin=args.thin,
            progress=not args.quiet,
        )
        settings, acceptance = {**sampler.settings, **tuning}, float(np.mean(acc))
        n_therm, thin = args.therm, args.thin
        health = chain_health(samples, acc)
    meta = {
        "theory": action.name,
        "params": action.params,
        "sampler": settings,
        "seed": args.seed,
        "acceptance": acceptance,
        "n_therm": n_therm,
        "thin": thin,
        "health": health.to_json(),
    }
    save_ensemble(args.out, samples, meta, force=args.force)
    print(
        f"wrote {args.out}: {args.chains}×{args.n} configurations of {action.name} "
        f"{action.params} by {settings['sampler']}, acceptance {acceptance:.3f}"
    )
    return _report_health(health, args.out)


def _tuned(args, stepper, init):
    """`(stepper, start, tuning settings, thermalisation steps left)`: with
    --target-acceptance, the HMC or MALA step adapted over the --therm steps
    (`mcmc.tune_step_size`; for `hmc+wolff` / `hmc+instanton` the burn-in runs the HMC steps
    alone, and the moves join the kept steps, as `sample --method maala --instanton` does)."""
    import jax.random as jr

    from .mcmc import tune_step_size

    if args.target_acceptance is None:
        return stepper, init, {}, args.therm
    if args.therm < 20:
        raise CLIError("--target-acceptance adapts the step during --therm: give --therm ≥ 20")
    key = jr.fold_in(jr.key(args.seed), 1)
    tuned, init, tuning = tune_step_size(
        stepper, key, init, args.therm, args.target_acceptance, progress=not args.quiet
    )
    return tuned, init, tuning, 0


def _report_health(health, path: str) -> int:
    """0 for a healthy run; else one line on stderr and exit status 1 (the file is kept, marked
    unhealthy, and `measure` refuses it)."""
    if health.ok:
        return 0
    print(
        f"sqdiff: error: unhealthy sampler run ({'; '.join(health.problems)}); {path} is marked "
        "unhealthy and 'sqdiff measure' refuses it (change the step size or coupling)",
        file=sys.stderr,
    )
    return 1


def _exact_draws(args, action):
    """`(chains, n, …)` independent exact draws (theories with an exact sampler)."""
    import jax.random as jr
    import numpy as np

    x = action.exact_samples(jr.key(args.seed), args.n * args.chains)
    return np.asarray(x).reshape((args.chains, args.n) + action.config_shape)


def _measured_health(ens):
    """The recorded verdict combined with a fresh look at the samples and the acceptance."""
    from .mcmc import MIN_ACCEPTANCE, ChainHealth, chain_health

    recorded = ChainHealth.from_json(ens.metadata.get("health"))
    fresh = chain_health(ens.samples, independent=ens.samples.shape[0] == 1)
    problems = list(recorded.problems if recorded else ()) + [
        p for p in fresh.problems if not recorded or p not in recorded.problems
    ]
    acceptance = ens.metadata.get("acceptance")
    known = isinstance(acceptance, (int, float)) and math.isfinite(acceptance)  # nan: imported
    if known and not acceptance >= MIN_ACCEPTANCE:
        msg = f"mean acceptance {acceptance:.3g} < {MIN_ACCEPTANCE}"
        if not any("acceptance" in p for p in problems):
            problems.append(msg)
    return ChainHealth(not problems, tuple(problems))


def cmd_measure(args) -> int:
    from .io import load_ensemble
    from .observables import analyze_primaries, measure_primaries

    if args.plot is not None:  # before any compute, like every output
        _check_figure(args.plot)
    ens = load_ensemble(args.file, beta=args.beta, allow_unverified=args.allow_unverified)
    health = _measured_health(ens)
    if not health.ok and not args.force:
        raise CLIError(
            f"{args.file} comes from an unhealthy sampler run ({'; '.join(health.problems)}); "
            "its error bars would be meaningless (--force measures it anyway)"
        )
    primaries = measure_primaries(ens.action, ens.samples)
    results = analyze_primaries(ens.action, primaries, log_weights=ens.log_weights)
    if args.plot is not None:
        _measurement_plot(args.plot, ens, primaries, results)
    first = next(iter(results.values()), None)
    n = ens.samples.shape[1]
    length = dict.fromkeys(results, n)  # configurations per chain behind each observable
    if args.flow is not None:
        flowed, flowed_n = _flowed(args, ens)
        results.update(flowed)
        length.update(dict.fromkeys(flowed, flowed_n))
    m = ens.metadata
    diagnostics = {"acceptance": m["acceptance"], "health": health.to_json()}
    if not ens.verified:
        diagnostics["unverified"] = True
    if args.flow is not None:
        diagnostics["flow_every"] = args.flow_every
    if m.get("acceptance_error") is not None:  # MAALA: the spread over independent chains
        diagnostics["acceptance_error"] = m["acceptance_error"]
    if ens.log_weights is None:  # weighted ensembles are independent draws: k̂ judges them
        from .stats import chains_disagree, too_short

        diagnostics["too_short"] = [k for k, r in results.items() if too_short(r, length[k])]
        diagnostics["chains_disagree"] = [k for k, r in results.items() if chains_disagree(r)]
    if m.get("relaxation", {}).get("drifting"):  # recorded by MAALA's final-state design
        drifting, obs = set(m["relaxation"]["drifting"]), ens.action.observables()
        diagnostics["relaxation"] = m["relaxation"]
        diagnostics["not_relaxed"] = [k for k in results if k in obs and drifting & set(obs[k][0])]
    if ens.log_weights is not None and first is not None:
        diagnostics.update(ess=first.ess, n=int(ens.log_weights.size), pareto_k=first.pareto_k)
    definitions = {k: v for k, v in ens.action.definitions().items() if k in results}
    if args.flow is not None:
        definitions.update(_flow_definitions(results))
    if args.json:
        out = {
            "theory": m["theory"],
            "params": m["params"],
            "observables": {
                k: {"value": r.value, "error": r.error, "tau_int": r.tau_int}
                | ({"replica_q": r.replica_q} if math.isfinite(r.replica_q) else {})
                for k, r in results.items()
            },
            "diagnostics": diagnostics,
            "definitions": definitions,
        }
        print(json.dumps(out))
        return 0
    _print_measurement(m, results, definitions, diagnostics, health)
    return 0


def _check_figure(path: str) -> None:
    """A figure's path, checked before any compute like every output: a known suffix, and
    nothing there but a figure sqdiff wrote (`sqdiff.io.is_sqdiff_figure`)."""
    from .io import check_output, is_sqdiff_figure
    from .plots import FIGURE_SUFFIXES

    if os.path.splitext(path)[1].lower() not in FIGURE_SUFFIXES:
        raise CLIError(f"--plot {path}: a figure's name ends in {', '.join(FIGURE_SUFFIXES)}")
    check_output(path, what="figure", owned=is_sqdiff_figure)


def _measurement_plot(path: str, ens, primaries, results) -> None:
    from .plots import measurement_figure

    try:
        measurement_figure(path, ens.action, primaries, results, log_weights=ens.log_weights)
    except ImportError as e:
        raise CLIError(f"--plot: {e}") from None
    print(f"figure: {path}", file=sys.stderr)


def _check_loss_plot(model_dir: str) -> None:
    """Before training: `MODEL_DIR/loss.png` may replace only a figure sqdiff wrote."""
    if os.path.isdir(model_dir):
        _check_figure(os.path.join(model_dir, "loss.png"))


def _report_training(out: str, res, title: str, last: int, what: str, bands=None) -> int:
    """The end of `sqdiff train` and `sqdiff osq`: the loss plot (with the held-out `bands`
    when given), one line (the mean loss over the `last` steps), and the exit code (1 unless
    training finished)."""
    import numpy as np

    tail = np.mean(res.losses[-last:]) if res.losses else float("nan")
    _loss_plot(out, res.losses, title, bands)
    verb = "stopped (non-finite loss)" if res.status == "nan" else "trained"
    print(f"{verb} {what}; final loss {tail:.4f}; model in {out}")
    return 0 if res.status == "done" else 1


def _loss_plot(model_dir: str, losses, title: str, bands=None) -> None:
    """`MODEL_DIR/loss.png`, the training-loss curve and the held-out band losses (skipped,
    with a note, without matplotlib)."""
    from .plots import training_loss_figure

    if not losses:
        return
    try:
        path = training_loss_figure(os.path.join(model_dir, "loss.png"), losses, title, bands)
    except ImportError as e:
        print(f"no loss curve: {e}", file=sys.stderr)
        return
    print(f"loss curve: {path}", file=sys.stderr)


def _print_measurement(meta, results, definitions, diagnostics, health) -> None:
    """`measure`'s table: the observables, what they are, then the sampler and its
    diagnostics, apart."""
    from .stats import MIN_REPLICA_Q, MIN_RUN_PER_TAU

    if not health.ok:
        print(f"UNHEALTHY (measured with --force): {'; '.join(health.problems)}")
    if diagnostics.get("unverified"):
        print("! UNVERIFIED: this file carries no checksum (read with --allow-unverified); an "
              "edit of its numbers or settings would not be detected")  # fmt: skip
    shape = f"{meta['n_chains']}×{meta['n_samples']}"
    print(f"{meta['theory']} {meta['params']}  {shape} configurations")
    if "pareto_k" in diagnostics:
        print("importance-weighted: the values below are reweighted")
    print(f"{'observable':<22}{'value':>14}{'error':>12}{'tau_int':>10}")
    short = diagnostics.get("too_short", [])
    disagree = diagnostics.get("chains_disagree", [])
    unrelaxed = diagnostics.get("not_relaxed", [])
    for k, r in results.items():
        tau = f"{r.tau_int:.2f}" if math.isfinite(r.tau_int) else "-"
        flag = " !" if k in short or k in disagree or k in unrelaxed else ""
        print(f"{k:<22}{r.value:>14.6g}{r.error:>12.3g}{tau:>10}{flag}")
    print("errors: Γ-method (autocorrelation included); tau_int in units of saved configurations")
    if diagnostics.get("flow_every", 1) > 1:
        k = diagnostics["flow_every"]
        print(f"flowed observables: every {k}-th configuration of each chain (tau_int in those)")
    for k, text in definitions.items():
        print(f"  {k}: {text}")
    print(f"sampler: {meta['sampler']}")
    line = f"diagnostics: acceptance {meta['acceptance']:.3f}"
    if meta.get("acceptance_error") is not None:
        line += f" ± {meta['acceptance_error']:.3f} (spread over chains)"
    if "pareto_k" in diagnostics:
        k = diagnostics["pareto_k"]
        flag = "  (k̂ > 0.7: UNRELIABLE)" if not k <= 0.7 else ""
        line += f", ESS {diagnostics['ess']:.1f} of {diagnostics['n']}, Pareto k̂ {k:.2f}{flag}"
    if short:
        line += (
            f"; ! RUN TOO SHORT for {', '.join(short)}: fewer than {MIN_RUN_PER_TAU:.0f} τ_int "
            "per chain, so τ_int(W) has no plateau and these errors are underestimated (a frozen "
            "or slow chain; run longer, or see measure --plot)"
        )
    if disagree:
        worst = min(results[k].replica_q for k in disagree)
        line += (
            f"; ! CHAINS DISAGREE for {', '.join(disagree)} (replica Q-value down to "
            f"{worst:.1e} < {MIN_REPLICA_Q:g}): the chains' means differ by more than these "
            "errors allow (e.g. topology frozen per chain, or chains not relaxed), so the errors "
            "are underestimated"
        )
    if "relaxation" in diagnostics:
        from .mcmc import drift_message

        line += f"; ! {drift_message(diagnostics)}"
        if unrelaxed:
            line += f" (flagged: {', '.join(unrelaxed)})"
    print(line + ("" if health.ok else "; " + "; ".join(health.problems)))


#: what `measure --flow` adds (sqdiff.gradient_flow), by the start of the name
FLOW_DEFINITIONS = {
    "t2E_clov": "t²E at the final flow time T, E from the clover field strength",
    "t2E_plaq": "t²E at the final flow time T, E from the plaquette",
    "t0/a^2": "t0/a²: t²E(t0) = --flow-ref (clover; nan when T does not reach it)",
    "w0/a": "w0/a: t d/dt[t²E](w0²) = --flow-ref (clover; nan when T does not reach it)",
    "Q(t=": "the charge of the flowed links (clover in 4D, arg det in 2D U(N))",
    "chi_t(t=": "χ_t = ⟨Q²⟩/V of the flowed charge",
}


def _flow_definitions(results) -> dict[str, str]:
    return {
        name: text
        for name in results
        for start, text in FLOW_DEFINITIONS.items()
        if name.startswith(start)
    }


def _flowed(args, ens):
    """`measure --flow`: the Wilson-flowed observables (gauge theories, unweighted) of every
    `--flow-every`-th configuration, and how many configurations per chain that leaves."""
    from .gradient_flow import analyze_flow

    if ens.log_weights is not None:
        raise CLIError("--flow measures unweighted ensembles only")
    from .stats import MIN_PER_REPLICA

    samples = ens.samples[:, :: args.flow_every]
    if samples.shape[1] < MIN_PER_REPLICA:
        raise CLIError(
            f"--flow-every {args.flow_every} leaves {samples.shape[1]} of the "
            f"{ens.samples.shape[1]} configurations per chain; the errors need at least "
            f"{MIN_PER_REPLICA}"
        )
    flowed = analyze_flow(ens.action, samples, args.flow, eps=args.flow_eps, ref=args.flow_ref)
    return flowed, samples.shape[1]


#: the networks that take `antisymmetric` (fconv is odd in φ by construction)
_ANTISYMMETRIC = ("mlp", "unet", "local", "multiscale")


def _antisymmetric(kind: str, args, action) -> bool:
    """`--antisymmetric`: on by default where the action is Z2-symmetric (issue 39); asked for
    on an action without the symmetry, or a network without the option, an error."""
    if args.antisymmetric is None:
        return kind in _ANTISYMMETRIC and action.z2_symmetric
    if args.antisymmetric and not action.z2_symmetric:
        raise CLIError(
            f"--antisymmetric imposes s(−φ) = −s(φ), but the action {action.name} "
            f"{action.params} is not Z2-symmetric (S(−φ) ≠ S(φ))"
        )
    if args.antisymmetric and kind not in _ANTISYMMETRIC:
        raise CLIError(
            f"--antisymmetric is an option of --model {', '.join(_ANTISYMMETRIC)}, not {kind}"
        )
    return args.antisymmetric


def _network_kwargs(kind: str, args, action) -> dict:
    """The keyword arguments of network `kind` from the options and the ensemble's theory."""
    z2 = _antisymmetric(kind, args, action)
    kwargs = {
        "mlp": {"width": args.width, "depth": args.depth, "antisymmetric": z2},
        "unet": {
            "d": len(action.lattice_shape),
            "channels": args.channels,
            "levels": args.levels,
            "antisymmetric": z2,
        },
        "local": {
            "d": len(action.lattice_shape),
            "channels": args.channels,
            "depth": args.depth,
            "antisymmetric": z2,
        },
        "multiscale": {
            "d": len(action.lattice_shape),
            "channels": args.channels,
            "depth": args.depth,
            "levels": args.levels,
            "antisymmetric": z2,
        },
        "fconv": {
            "d": len(action.lattice_shape),
            "features": args.features,
            "radius": args.radius or max(1, (action.lattice_shape or (2,))[0] // 2),
        },
        "u1": {"channels": args.channels, "depth": args.depth},
        "lcnn": {
            "group": action.group.name,
            "N": action.group.params.get("N", 0),
            "d": len(action.lattice_shape) - 1,
            "channels": args.channels,
            "depth": args.depth,
        },
    }[kind]
    if args.force_skip:
        if kind == "lcnn":
            kwargs["force_skip"] = float(action.params["beta"])
        elif kind in ("local", "multiscale") and action.name == "phi4":
            kwargs["force_skip"] = [float(action.params["kappa"]), float(action.params["lam"])]
        else:
            raise CLIError(
                f"--force-skip is an option of --model lcnn (links) and of --model local or "
                f"multiscale on phi4, not of --model {kind} on {action.name}"
            )
        if args.schedule != "ve":
            raise CLIError("--force-skip needs --schedule ve")
    return kwargs


def model_spec(args, action, data=None, volumes=()):
    """The `ModelSpec` for an ensemble's theory and the options (`data`: the training
    configurations, for the default `--crossover` of target score matching and fconv's data
    scale; `volumes`: every training volume, for the default VE σ, `train.data_sigma`)."""
    import numpy as np

    from .specs import GroupSpec, ModelSpec, NetworkSpec, ObjectiveSpec, ScheduleSpec, TheorySpec
    from .train import data_sigma

    kind = args.model
    if kind == "auto":
        kind = action.default_network()
        if kind is None:
            raise CLIError(
                f"no score network for theory {action.name!r} "
                f"{action.params} yet; choose --model explicitly"
            )
    if args.schedule == "ve":
        sigma = args.sigma
        if sigma is None:
            derive = action.group.is_vector_space and len(volumes) > 0
            sigma = data_sigma(volumes, args.T) if derive else 25.0
        schedule = ScheduleSpec("ve", {"sigma": sigma, "T": args.T})
    else:
        schedule = ScheduleSpec(
            args.schedule, {"beta_min": args.beta_min, "beta_max": args.beta_max, "T": args.T}
        )
    kwargs = _network_kwargs(kind, args, action)
    if kind == "fconv" and data is not None:  # the data's scale, for c_in and the skip
        kwargs["data_std"] = float(np.std(np.asarray(data))) or 1.0
    group = GroupSpec.of(action.group)
    from .nn import NETWORKS

    if group.name not in NETWORKS[kind].groups:
        raise CLIError(f"--model {kind} does not fit theory {action.name!r} (on {action.group})")
    if not action.group.is_vector_space and args.schedule != "ve":
        raise CLIError(f"{action.group} fields are noised on the group: use --schedule ve")
    settings = {"t_min": 1e-3, "importance": args.importance}
    if args.dsm_target != "gaussian":
        if action.group.is_flat:
            raise CLIError(f"--dsm-target {args.dsm_target} is for SU(N)/U(N) links")
        settings["target"] = args.dsm_target
    name = "dsm" if action.group.is_vector_space else "group_dsm"
    if args.objective == "reverse-kl":
        if kind != "fconv":
            raise CLIError("--objective reverse-kl needs --model fconv (an exact density)")
        name, settings = "reverse_kl", {"steps": args.flow_steps, "samples": args.batch}
    if args.objective == "tsm":
        from .objectives import crossover_scale

        name = "tsm"
        crossover = args.crossover
        settings["crossover"] = crossover_scale(action, data) if crossover is None else crossover
    elif args.crossover is not None:
        raise CLIError("--crossover is a setting of --objective tsm")
    objective = ObjectiveSpec(name, settings)
    return ModelSpec(
        network=NetworkSpec(kind, kwargs),
        schedule=schedule,
        objective=objective,
        config_shape=tuple(action.config_shape),
        group=group,
        theory=TheorySpec.of(action),
        zero_init=args.force_skip,
    )


def cmd_train(args) -> int:
    import jax
    import numpy as np

    from .io import load_ensemble
    from .objectives import ReverseKL
    from .train import TrainConfig, train, widest_variance

    ens = load_ensemble(args.ensemble)
    if ens.log_weights is not None:
        raise CLIError(
            f"{args.ensemble} is importance-weighted (optimal-SQ paths): score matching on it "
            "would learn the proposal, not the target; resample it first (sqdiff sample "
            "--method imh gives an unweighted exact chain)"
        )
    data = ens.samples.reshape((-1,) + tuple(ens.action.config_shape))
    data, held = _validation_split(args, ens, data)
    volumes = [data] + [_other_volume(path, ens) for path in args.also]
    spec = model_spec(args, ens.action, data, volumes)
    if args.schedule == "ve" and args.sigma is None and ens.action.group.is_vector_space:
        schedule = spec.build_schedule()
        print(
            f"schedule: VE σ = {schedule.sigma:.4g} from the data (Σ(T)² = "
            f"{schedule.prior_std**2:.4g}; the data's widest direction has variance "
            f"{max(widest_variance(v) for v in volumes):.4g})"
        )
    model = spec.build_network()
    one = jax.ShapeDtypeStruct(spec.config_shape, ens.action.group.state_dtype(np.float32))
    try:
        jax.eval_shape(model, 0.5, one)
    except ValueError as e:
        raise CLIError(f"the {spec.network.name} network cannot take this ensemble: {e}") from None
    config = TrainConfig(
        steps=args.iters,
        batch=args.batch,
        lr=args.lr,
        warmup=args.warmup,
        ema=args.ema,
        steps_per_call=args.steps_per_call,
        seed=args.seed,
        volume_batch=args.volume_batch,
    )
    _check_loss_plot(args.out)
    objective = spec.build_objective(ens.action)
    res = train(
        args.out, (volumes if args.also else data) if objective.needs_data else None, spec,
        config, resume=args.resume, progress=not args.quiet, init_from=args.init,
    )  # fmt: skip
    sizes = " + ".join(str(v.shape[0]) for v in volumes)
    what = f"{spec.network.name} for {res.step} steps on {sizes} configurations"
    title = f"score matching ({spec.network.name})"
    if isinstance(objective, ReverseKL):
        ess = objective.ess(res.model, jax.random.key(args.seed + 1), 1024)
        print(f"ESS per draw of the split-step map: {ess:.3f} (1024 fresh draws)")
        what = f"{spec.network.name} for {res.step} steps by reverse KL (no data: the ensemble "
        what += "gave the theory and the data scale)"
        title = f"reverse KL ({spec.network.name})"
    bands = None
    if held is not None and res.status == "done":
        bands = _report_bands(res.model, spec, data, held, args.seed)
    return _report_training(args.out, res, title, 100, what, bands)


#: `train --validation` by default: a tenth held out, from this many configurations on
AUTO_VALIDATION_MIN = 80
#: the fewest held-out configurations the band losses are computed from
MIN_VALIDATION = 8


def _validation_split(args, ens, data):
    """`(training configurations, held-out ones or None)`: the last `--validation` fraction of
    the ensemble (chain-major: the end of the last chains), for DSM on scalar fields."""
    import math

    dsm = args.objective == "dsm" and ens.action.group.is_vector_space
    frac = args.validation
    if frac is None:
        if not dsm or data.shape[0] < AUTO_VALIDATION_MIN:
            return data, None
        frac = 0.1
    if not dsm:
        raise CLIError(
            "--validation reports the held-out DSM loss per noise band: it needs --objective "
            "dsm on a scalar field"
        )
    k = math.ceil(frac * data.shape[0])
    if k < MIN_VALIDATION or data.shape[0] - k < MIN_VALIDATION:
        raise CLIError(
            f"--validation {frac:g} of {data.shape[0]} configurations holds out {k}: the band "
            f"losses need ≥ {MIN_VALIDATION} held out and ≥ {MIN_VALIDATION} to train on"
        )
    return data[:-k], data[-k:]


def _report_bands(model, spec, data, held, seed: int):
    """The held-out DSM loss per noise band against the Gaussian bound on its irreducible part
    (`sqdiff.validation`), one line per band; `! REDUCIBLE` where the loss is above it."""
    import jax.random as jr

    from .validation import REDUCIBLE_SE, band_losses, data_spectrum

    t_min = dict(spec.objective.params).get("t_min", 1e-3)
    bands = band_losses(
        model, spec.build_schedule(), held, jr.key(seed + 7), spectrum=data_spectrum(data),
        t_min=t_min,
    )  # fmt: skip
    print(
        f"held-out DSM loss per noise band ({held.shape[0]} configurations; bound: the "
        "irreducible loss of Gaussian data with this covariance, which no law exceeds)"
    )
    for b in bands:
        flag = f"  ! REDUCIBLE (+{b.excess:.1f} SE)" if b.reducible else ""
        print(
            f"  Σ {b.sigma_lo:9.3g} – {b.sigma_hi:<9.3g} loss {b.loss:.4f} ± {b.error:.4f}  "
            f"bound {b.bound:.4f}{flag}"
        )
    n_bad = sum(b.reducible for b in bands)
    if n_bad:
        print(
            f"! {n_bad} of {len(bands)} bands are above the bound by > {REDUCIBLE_SE:g} SE: "
            "the network can still learn there (train longer, or a larger network)"
        )
    return bands


def _other_volume(path: str, main):
    """The configurations of `--also PATH`: the main ensemble's theory at another size."""
    from .io import load_ensemble

    other = load_ensemble(path)
    if other.log_weights is not None:
        raise CLIError(f"--also {path} is importance-weighted: resample it first")
    strip = lambda a: (a.name, {k: v for k, v in a.params.items() if k != "L"})  # noqa: E731
    if strip(other.action) != strip(main.action):
        raise CLIError(
            f"--also {path} holds {other.action.name} {other.action.params}, not "
            f"{main.action.name} {main.action.params} at another L"
        )
    return other.samples.reshape((-1,) + other.samples.shape[2:])


def cmd_sample(args) -> int:
    from .checkpoint import ModelDir
    from .io import check_output, save_ensemble
    from .sampling import sample_model

    check_output(args.out, force=args.force)  # before the compute, not after
    model_dir = ModelDir(args.model_dir, allow_unverified=args.allow_unverified)
    spec, _ = model_dir.read_spec()  # no weights read: verified once below
    is_osq = spec.objective.name == "osq"
    kw = _sample_options(args, spec)
    if spec.theory is not None:  # the output must fit in memory: checked before any compute
        from .sampling import _target

        _check_fits(args.n, _target(spec.theory, args.L, None)[0], "--n")
    res = sample_model(
        model_dir,
        args.n,
        args.method,
        seed=args.seed,
        L=args.L,
        beta=args.beta,
        progress=not args.quiet,
        **kw,
    )
    meta = res.metadata
    extra = ""
    if is_osq:
        extra = (
            f", ESS {meta['ess']:.1f}/{args.n}, Pareto k̂ {meta['pareto_k']:.2f}, log Z "
            f"{meta['log_z']:.5f} ± {meta['log_z_error']:.5f}"
            if "ess" in meta
            else " (unweighted: reference marginal unknown)"
        )
    save_ensemble(args.out, res.samples, meta, log_weights=res.log_weights, force=args.force)
    print(
        f"wrote {args.out}: {res.samples.shape[0]}×{res.samples.shape[1]} configurations of "
        f"{res.action.name} {res.action.params} by {meta['sampler']['sampler']}, acceptance "
        f"{meta['acceptance']:.3f}{extra}"
    )
    if "nfe" in meta:
        nfe = meta["nfe"]
        print(f"network evaluations per sample: {nfe['mean']:.1f} (max {nfe['max']:.0f})")
    from .mcmc import ChainHealth, drift_message

    if drifting := drift_message(meta):  # MAALA's final states: still drifting
        print(f"! {drifting}")

    return _report_health(ChainHealth.from_json(meta["health"]) or ChainHealth(True, ()), args.out)


def _sample_options(args, spec) -> dict:
    """The keyword arguments of `args.method`'s sampler from `sqdiff sample`'s flags (each
    method takes its own; the parser's defaults fill the rest), after the cross-flag checks."""
    options = {
        "steps": args.steps,
        "t_mh": args.t_mh,
        "c": args.c,
        "chains": args.chains,
        "thin": args.thin,
        "n_therm": args.therm,
        "corrector_steps": args.corrector_steps,
        "snr": args.snr,
        "anneal": args.anneal,
        "instanton": args.instanton or None,
        "target_acceptance": args.target_acceptance,
        "adaptive": args.adaptive or None,
        "rtol": args.rtol,
        "atol": args.atol,
        "noise": args.noise,
        "grid": args.grid,
    }
    is_osq = spec.objective.name == "osq"
    maala = ("steps", "t_mh", "c", "chains", "thin", "anneal", "n_therm", "instanton")
    wanted = {
        "sde": ("steps", "adaptive", "rtol", "atol", "noise", "grid") if not is_osq else ("steps",),
        "ode": ("steps",),
        "pc": ("steps", "corrector_steps", "snr"),
        "maala": (*maala, "target_acceptance", "grid"),
        # --steps: the OSQ path steps, the fixed flow steps of an SU(N)/U(N) proposal, or the
        # split-step map's steps of a network with a one-pass divergence (fconv)
        "imh": ("steps",) if is_osq or not spec.group.build().is_flat or _split_step(spec) else (),
    }[args.method]
    if args.steps is not None and "steps" not in wanted:
        raise CLIError(
            f"--steps does not apply to --method {args.method} of this model (its flow is solved "
            "adaptively with the exact Jacobian)"
        )
    if args.instanton and args.method != "maala":
        raise CLIError("--instanton is for --method maala (on u1)")
    if args.target_acceptance is not None and (args.method != "maala" or args.therm < 20):
        raise CLIError("--target-acceptance adapts --method maala's step during --therm ≥ 20")
    if args.adaptive and (args.method != "sde" or is_osq):
        raise CLIError("--adaptive is for --method sde of a diffusion model")
    if args.adaptive and args.steps is not None:
        raise CLIError("give --steps (fixed steps) or --adaptive, not both")
    if args.grid != "uniform" and ("grid" not in wanted or args.adaptive):
        raise CLIError(
            "--grid sets the fixed reverse-SDE steps of a diffusion model's --method sde or maala"
        )
    if args.grid != "uniform" and args.anneal != "sde":
        raise CLIError("--grid is the reverse SDE's: not with --anneal langevin")
    return {k: options[k] for k in wanted if options[k] is not None}


def _split_step(spec) -> bool:
    """Whether the model's network samples IMH through the exact split-step map."""
    from .nn import NETWORKS, AbstractExactDivergenceNetwork

    return issubclass(NETWORKS[spec.network.name], AbstractExactDivergenceNetwork)


def _theory_params(items) -> dict:
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CLIError(f"--param expects NAME=VALUE, got {item!r}")
        if name in params:
            raise CLIError(f"--param {name} is given twice")
        try:
            v = float(value)
        except ValueError:
            raise CLIError(f"--param {name}: {value!r} is not a number") from None
        params[name] = int(v) if name in ("L", "d", "N") and v.is_integer() else v
    return params


def cmd_osq(args) -> int:
    from .train import TrainConfig, train

    euclid = ("phi4", *TOYS)
    name = _theory_name(args)
    if name not in euclid:
        raise CLIError(f"optimal SQ supports the scalar theories {euclid}, got {name!r}")
    try:
        action = build_action(args)
    except CLIError as e:
        hint = " (the OSQ noise strength is --noise)" if re.search(r"--g\b", str(e)) else ""
        raise CLIError(f"{e}{hint}") from None
    spec = _osq_spec(args, action)
    spec.build_objective(action)  # validates the objective before any work
    config = TrainConfig(
        steps=args.iters,
        batch=args.batch,
        lr=args.lr,
        warmup=min(100, args.iters // 10),
        ema=0.99,
        steps_per_call=args.steps_per_call,
        checkpoint_every=max(args.steps_per_call, 200),
        seed=args.seed,
    )
    _check_loss_plot(args.out)
    res = train(args.out, None, spec, config, resume=args.resume, progress=not args.quiet)
    return _report_training(
        args.out, res, f"optimal SQ ({args.loss} loss)", 50,
        f"optimal-SQ residual ({spec.network.name}) for {res.step} steps",
    )  # fmt: skip


def _osq_spec(args, action):
    """The `ModelSpec` of `sqdiff osq`: an MLP residual for a 0-dim action, a U-Net for 2D/3D
    φ⁴, and the OSQ objective from the flags."""
    from .specs import ModelSpec, NetworkSpec, ObjectiveSpec, TheorySpec

    if action.lattice_shape == ():
        model, kwargs = "mlp", {"width": args.width, "depth": args.depth}
    elif action.name == "phi4" and action.d in (2, 3):
        model = "unet"
        kwargs = {"d": action.d, "channels": args.channels, "levels": args.levels}
    else:
        raise CLIError(f"no residual network for {action.name} {action.params}")
    objective = {
        "T": args.T,
        "g": args.noise,
        "steps": args.steps,
        "paths": args.batch,
        "reference": args.reference,
        "terminal": args.terminal,
        "loss": args.loss,
        "prior": "gaussian",
        "prior_mean": args.prior_mean,
        "prior_std": args.prior_std,
    }
    return ModelSpec(
        network=NetworkSpec(model, kwargs),
        schedule=None,
        objective=ObjectiveSpec("osq", objective),
        config_shape=tuple(action.config_shape),
        theory=TheorySpec.of(action),
        zero_init=True,
    )


def cmd_demo(args) -> int:
    from .demo import run_demo

    if args.n < 8 or args.L < 4:
        raise CLIError("--n must be ≥ 8 and --L ≥ 4")
    res = run_demo(
        args.out,
        L=args.L,
        kappa=args.kappa,
        lam=args.lam,
        n=args.n,
        iters=args.iters,
        batch=args.batch,
        channels=args.channels,
        sigma=args.sigma,
        steps=args.steps,
        mh_steps=args.mh_steps,
        c=args.c,
        t_mh=args.t_mh,
        seed=args.seed,
        quiet=args.quiet,
    )
    print(res["text"])
    print(f"figure: {res['figure']}" if res["figure"] else "figure: (matplotlib missing)")
    print(f"ensembles, model and results in {args.out}/")
    return 0


def _runtime_check_message(err: BaseException) -> str | None:
    """The message of an `eqx.error_if` check carried by a JAX runtime error, if it is one."""
    for line in str(err).splitlines():
        _, sep, msg = line.partition("EquinoxRuntimeError: ")
        if sep and msg.strip():
            return msg.strip()
    return None


def _run_with_resolved_config(command, args) -> int:
    """Run `command(args)` (0, or 1 when the written chains look unhealthy) with its
    `OUT.config.toml`: checked and written to a temporary file before the compute, put in place
    once the output exists, removed otherwise."""
    out = getattr(args, "out", None)
    if out is None:
        return command(args)
    from ._cli_config import prepare_resolved

    side = prepare_resolved(args, out, force=getattr(args, "force", False))
    try:
        rc = command(args)
    except BaseException:
        side.discard()
        raise
    if rc in (0, 1) and os.path.exists(out):
        side.commit()
    else:
        side.discard()
    return rc


def _quiet_runtime_checks() -> None:
    """Without `--debug`, a check inside compiled code (`eqx.error_if`) shows only its one-line
    message: JAX logs the failed `pure_callback` with a 20-line traceback first (logger
    `jax._src.callback`), and an overflowing cast warns before it."""
    import logging
    import warnings

    logging.getLogger("jax._src.callback").setLevel(logging.CRITICAL + 1)
    warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" not in argv:
        _quiet_runtime_checks()
    try:
        args = _parse(argv)
        if args.command is None:
            raise CLIError(
                "choose a command: demo, generate, train, sample, osq, measure or compare (--help)"
            )
        commands = {
            "generate": cmd_generate,
            "measure": cmd_measure,
            "compare": cmd_compare,
            "train": cmd_train,
            "sample": cmd_sample,
            "osq": cmd_osq,
            "demo": cmd_demo,
        }
        return _run_with_resolved_config(commands[args.command], args)
    except CLIError as e:
        print(f"sqdiff: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, OSError) as e:
        print(f"sqdiff: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sqdiff: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("sqdiff: error: out of memory (a smaller lattice, batch or --n)", file=sys.stderr)
        return 2
    except Exception as e:
        msg = _runtime_check_message(e)  # a runtime check inside compiled code (`eqx.error_if`)
        if msg is not None:
            print(f"sqdiff: error: {msg}", file=sys.stderr)
            return 2
        if "RESOURCE_EXHAUSTED" in str(e) and "--debug" not in argv:
            print(  # XLA could not allocate (e.g. train --batch 1000000000)
                "sqdiff: error: out of memory in XLA (a smaller --batch, lattice, --n or --chains)",
                file=sys.stderr,
            )
            return 2
        if "--debug" in argv:
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        print(
            f"sqdiff: internal error: {type(e).__name__}: {first} (please report it; --debug "
            "shows the traceback)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
