"""Chapter 3's evaluation under one reading of appendix B.2 and one EM noise floor, kept as one record.

    python scripts/fidelity_study.py --dataset mnist --attribute 0_vs_6 --asymmetric-base symmetric \\
        --variants asymmetric --data-dir DATA

The paper's asymmetric datasets add one broad outlier (sigma = 0.5) per class to "the MFA models". Read
one way (``--asymmetric-base fitted``, the book's default) that is the fitted pair with the noise the EM
learned; read the other (``symmetric``) it is the symmetric pair, every component's noise fixed at
sigma = 0.01, so that the two variants differ only by the outliers. ``--min-variance`` is the EM's floor
on the noise variance (the book's 1e-4, a std of 0.01; the authors' MFA code clips the std at 1e-3, a
variance of 1e-6).

For one task and one setting this builds the task's models (``build_task_models`` of
``nbhelpers.chapters.task_models``, at ``--profile``, default ``paper``) and attacks the Bayes-optimal
classifier of each of ``--variants`` as chapter 3 does (``nbhelpers.chapters.ch3_bayes.evaluate_bayes``: the
chapter's attacks and samples, ``--n-attack`` of them, default the profile's: 1000 for ``paper``). It writes
one JSON record into ``--out-dir`` (default ``results/paper/fidelity``), named after the task and the
setting: the report numbers per variant and attack, how many adversarials the other class's outlier holds
(over all attacked samples, and over those drawn from the regular components, the ones whose route tells
Lemma 1 from Lemma 3), the quantiles of the fitted noise std per class, the MFA sizes, the wall time of each
stage and the code version.

Every finished attack is kept in checkpoints of the record's own (``nbhelpers.runs.checkpoints``, in the
cache folder, deleted once the record is written): the same command run again after a kill resumes after the
last finished attack, and the MFA pair comes from the model cache. Three options change the MFA fit for
checks (a derived profile, so a fit of its own): ``--latent-dim``, ``--components`` (MNIST) and
``--max-images-per-class``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nbhelpers.chapters import ch3_bayes
from nbhelpers.chapters.evaluation import attack_table
from nbhelpers.chapters.profiles import PROFILES, get_profile
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.io import json_number, write_json_atomic
from nbhelpers.core.paths import cache_dir
from nbhelpers.core.versions import code_version
from nbhelpers.runs.checkpoints import Checkpoints
from nbhelpers.runs.manifest import machine_fields
from nbhelpers.science.attacks import ATTACKS
from nbhelpers.science.data import canonical_task, source_label
from nbhelpers.science.datasets import (
    ASYMMETRIC_BASES,
    MIN_VARIANCE,
    OUTLIER_SIGMA,
    TaskModels,
    check_min_variance,
)

VARIANTS = ("symmetric", "asymmetric")
DEFAULT_ATTACKS = ("gradient", "cw", "fmn")  # chapter 3's
DEFAULT_OUT_DIR = Path("results/paper/fidelity")
QUANTILES = (0.01, 0.05, 0.5)


def log(message: str) -> None:
    print(f"[fidelity {time.strftime('%H:%M:%S')}] {message}", flush=True)


def parse_min_variance(text: str) -> float:
    """A ``--min-variance`` value: a number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = text  # not a number: check_min_variance names what it wants
    try:
        return check_min_variance(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).replace("min_variance", "--min-variance")) from None


def derived_profile(args: argparse.Namespace) -> str:
    """``args.profile``, or with ``--latent-dim``/``--components``/``--max-images-per-class`` that profile
    with those MFA sizes, registered under a name of its own (its fits get their own cache folder)."""
    base = get_profile(args.profile)
    changes: dict[str, int] = {}
    suffixes = []
    if args.latent_dim is not None:
        field = "mnist_latent_dim" if args.dataset == "mnist" else "celeba_latent_dim"
        changes[field] = args.latent_dim
        suffixes.append(f"latent{args.latent_dim}")
    if args.components is not None:
        changes["mnist_components"] = args.components
        suffixes.append(f"K{args.components}")
    if args.max_images_per_class is not None:
        changes["max_images_per_class"] = args.max_images_per_class
        suffixes.append(f"{args.max_images_per_class}-per-class")
    if not changes:
        return base.name
    name = "-".join([base.name, *suffixes])
    described = ", ".join(f"{field} = {value}" for field, value in changes.items())
    PROFILES[name] = dataclasses.replace(
        base,
        name=name,
        description=f"{base.description} MFA: {described}.",
        mfa=dataclasses.replace(base.mfa, **changes),
    )
    return name


def record_name(args: argparse.Namespace, profile: str, n_attack: int) -> str:
    """The record's file name: the task, the setting and whatever differs from the chapter's run."""
    parts = [args.dataset, args.attribute, f"{args.asymmetric_base}-base", f"floor{args.min_variance:g}"]
    if profile != "paper":
        parts.append(profile)
    if tuple(args.variants) != VARIANTS:
        parts.append("-".join(args.variants))
    if tuple(args.attacks) != DEFAULT_ATTACKS:
        parts.append("-".join(args.attacks))
    if n_attack != get_profile(profile).attacks.n_attack:
        parts.append(f"n{n_attack}")
    if args.seed != 0:
        parts.append(f"seed{args.seed}")
    return "__".join(parts) + ".json"


def command(args: argparse.Namespace) -> str:
    """The command line of ``args``, with the data folder written DATA (a record names no local path)."""
    parts = [
        "python scripts/fidelity_study.py",
        f"--dataset {args.dataset} --attribute {args.attribute}",
        f"--asymmetric-base {args.asymmetric_base} --min-variance {args.min_variance:g}",
        "--variants " + " ".join(args.variants),
        "--attacks " + " ".join(args.attacks),
    ]
    if args.n_attack is not None:
        parts.append(f"--n-attack {args.n_attack}")
    parts.append(f"--profile {args.profile} --seed {args.seed} --device {args.device}")
    for option in ("latent_dim", "components", "max_images_per_class"):
        if getattr(args, option) is not None:
            parts.append(f"--{option.replace('_', '-')} {getattr(args, option)}")
    if args.data_dir is not None:
        parts.append("--data-dir DATA")
    return " ".join(parts)


def noise_quantiles(models: TaskModels) -> dict[str, dict[str, float]]:
    """Per class: quantiles of the fitted noise std over every component and pixel, its minimum and the
    share of values at the EM's floor."""
    floor = math.sqrt(models.min_variance)
    out = {}
    for name, mfa in zip(models.class_names, models.fitted, strict=True):
        std = np.exp(0.5 * mfa.log_D.double().cpu().numpy()).ravel()
        values = {f"q{round(100 * q):02d}": float(np.quantile(std, q)) for q in QUANTILES}
        values["min"] = float(std.min())
        values["share_at_floor"] = float((std <= floor * 1.001).mean())
        out[name] = values
    return out


def attack_numbers(evaluation: ch3_bayes.BayesEvaluation) -> dict[str, dict[str, Any]]:
    """Per attack: its success rate and mean L2 on the correctly classified samples it broke, and the rest
    of chapter 3's attack table (mean L2 where all attacks broke, ratio to the best, samples it won)."""
    table = attack_table({evaluation.variant: evaluation.result}, evaluation.y, index="variant")
    table = table.xs(table.index.get_level_values("variant")[0], level="variant")
    correct = (evaluation.result.clean_pred == evaluation.y).numpy()
    out = {}
    for name in evaluation.attacks:
        l2 = evaluation.result.per_attack_l2[name].numpy()
        broke = correct & np.isfinite(l2)
        row = table.loc[name]
        out[name] = {
            "success_rate": json_number(row["success rate"]),
            "mean_l2": json_number(float(l2[broke].mean())) if broke.any() else None,
            "mean_l2_all_attacks_broke": json_number(row["mean L2, all broke"]),
            "mean_l2_over_best": json_number(row["mean L2 / best"]),
            "best_on": int(row["best on"]),
        }
    return out


def outlier_numbers(evaluation: ch3_bayes.BayesEvaluation) -> dict[str, Any]:
    """Asymmetric variant: which of the attacked samples the outliers drew, and how many adversarials the
    other class's outlier holds, over all evaluated samples and over those of each origin."""
    n = len(evaluation.y)
    y, component = evaluation.y.numpy(), evaluation.drawn_component
    last = np.asarray(evaluation.n_components) - 1  # the outlier is each class's last component
    from_outlier = component == last[y]
    held = evaluation.adv_component == last[1 - y]
    evaluated = evaluation.evaluated
    correct = (evaluation.result.clean_pred == evaluation.y).numpy()
    l2 = evaluation.result.l2.numpy()

    def part(mask: np.ndarray) -> dict[str, Any]:
        m = evaluated & mask
        return {
            "n": int(mask.sum()),
            "clean_accuracy": json_number(float(correct[mask].mean())) if mask.any() else None,
            "n_evaluated": int(m.sum()),
            "outlier_share": json_number(float(held[m].mean())) if m.any() else None,
            "mean_l2": json_number(float(l2[m].mean())) if m.any() else None,
        }

    return {
        "n_drawn_from_outlier": int(from_outlier.sum()),
        "all": part(np.ones(n, dtype=bool)),
        "regular": part(~from_outlier),
        "drawn_from_outlier": part(from_outlier),
    }


def variant_numbers(
    models: TaskModels, variant: str, args: argparse.Namespace, n_attack: int, checkpoints: Checkpoints
) -> dict[str, Any]:
    log(f"attacking the {variant} Bayes-optimal classifier: {n_attack} samples, attacks {args.attacks}")
    evaluation = ch3_bayes.evaluate_bayes(
        models, variant, n_attack, args.attacks, args.seed, args.device, checkpoints=checkpoints
    )
    report = evaluation.report
    out: dict[str, Any] = {
        "clean_accuracy": report.clean_accuracy,
        "adversarial_accuracy": report.adversarial_accuracy,
        "mean_l2": json_number(report.mean_l2),
        "median_l2": json_number(report.median_l2),
        "n": report.n,
        "n_evaluated": report.n_evaluated,
        "frac_pixels_above_5": json_number(report.frac_pixels_above_5),
        "components": list(evaluation.n_components),
        "attacks": attack_numbers(evaluation),
    }
    if variant == "asymmetric":
        out["outliers"] = outlier_numbers(evaluation)
    else:
        distance, radius = evaluation.bound_means()
        out["subspace_distance_mean"] = json_number(distance)
        out["certified_radius_mean"] = json_number(radius)
    out["seconds"] = evaluation.seconds
    log(
        f"{variant}: clean accuracy {report.clean_accuracy:.3f}, mean L2 {report.mean_l2:.3f}, "
        f"median {report.median_l2:.3f}"
        + (
            f", outlier share {out['outliers']['all']['outlier_share']} (all), "
            f"{out['outliers']['regular']['outlier_share']} (regular components)"
            if variant == "asymmetric"
            else ""
        )
        + f" ({evaluation.seconds:.0f} s)"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="celeba", help="celeba or mnist (default celeba)")
    parser.add_argument(
        "--attribute", default="Male", help="a CelebA attribute or an MNIST pair (default Male)"
    )
    parser.add_argument(
        "--asymmetric-base",
        choices=ASYMMETRIC_BASES,
        default="fitted",
        help="the pair the asymmetric outliers are added to (default fitted)",
    )
    parser.add_argument(
        "--min-variance",
        type=parse_min_variance,
        default=MIN_VARIANCE,
        metavar="V",
        help=f"the EM's floor on the noise variance (default {MIN_VARIANCE:g}; the authors' code: 1e-6)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        help="the variants attacked (default: symmetric asymmetric)",
    )
    parser.add_argument(
        "--attacks",
        nargs="+",
        default=list(DEFAULT_ATTACKS),
        metavar="A",
        help=f"attacks, each sample keeps its smallest (default: {' '.join(DEFAULT_ATTACKS)}; "
        f"valid: {', '.join(ATTACKS)})",
    )
    parser.add_argument(
        "--n-attack", type=int, default=None, help="samples attacked per variant (default: the profile's)"
    )
    parser.add_argument("--profile", default="paper", help="sizes of the MFA pair, attacks (default paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="real images (default $NBHELPERS_DATA_DIR)")
    parser.add_argument("--latent-dim", type=int, default=None, metavar="L", help="MFA latent dimension")
    parser.add_argument(
        "--components", type=int, default=None, metavar="K", help="MFA components per class (MNIST)"
    )
    parser.add_argument(
        "--max-images-per-class", type=int, default=None, metavar="N", help="fit on <= N images per class"
    )
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"record folder (default {DEFAULT_OUT_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        args.dataset, args.attribute = canonical_task(args.dataset, args.attribute)
        get_profile(args.profile)
    except ValueError as err:
        parser.error(str(err))
    unknown = [a for a in args.attacks if a not in ATTACKS]
    if unknown:
        parser.error(f"unknown attack(s) {', '.join(unknown)}: valid attacks are {', '.join(ATTACKS)}")
    for option in ("attacks", "variants"):
        if len(set(getattr(args, option))) < len(getattr(args, option)):
            parser.error(f"--{option} repeats a name: {' '.join(getattr(args, option))}")
    for option in ("n_attack", "latent_dim", "components", "max_images_per_class"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.components is not None and args.dataset != "mnist":
        parser.error("--components sets the MNIST component count; CelebA has one per 1000 faces")
    args.variants = [v for v in VARIANTS if v in args.variants]  # the chapter's order

    profile = derived_profile(args)
    n_attack = ch3_bayes.resolve_n_attack(args.n_attack, profile)
    out = args.out_dir / record_name(args, profile, n_attack)
    start, load_start = time.perf_counter(), os.getloadavg()
    log(
        f"{args.dataset}/{args.attribute}, asymmetric base {args.asymmetric_base}, variance floor "
        f"{args.min_variance:g}, profile {profile}: building the models (or loading them from the cache)"
    )
    models = build_task_models(
        args.dataset,
        args.attribute,
        profile,
        args.seed,
        args.device,
        data_dir=args.data_dir,
        asymmetric_base=args.asymmetric_base,
        min_variance=args.min_variance,
    )
    models_seconds = time.perf_counter() - start
    log(
        f"models ready in {models_seconds:.0f} s (their fit took "
        f"{'?' if models.fit_seconds is None else f'{models.fit_seconds:.0f}'} s): components "
        f"{[m.K for m in models.fitted]}, latent dimension {models.fitted[0].l}"
    )
    quantiles = noise_quantiles(models)
    for name, values in quantiles.items():
        log(f"fitted noise std, {name}: " + ", ".join(f"{k} {v:.4g}" for k, v in values.items()))

    # the record's own checkpoints: a kill resumes after the last finished attack
    checkpoints = Checkpoints(cache_dir() / "fidelity" / out.stem)
    variants = {
        variant: variant_numbers(models, variant, args, n_attack, checkpoints) for variant in args.variants
    }
    record = {
        "command": command(args),
        "dataset": args.dataset,
        "attribute": args.attribute,
        "profile": profile,
        "seed": args.seed,
        "source": source_label(models.source),
        "setting": {"asymmetric_base": models.asymmetric_base, "min_variance": models.min_variance},
        "n_attack": n_attack,
        "attacks": list(args.attacks),
        "mfa": {
            "components": [m.K for m in models.fitted],
            "latent_dim": models.fitted[0].l,
            "n_train_images": list(models.n_train_images),
            "em_iterations": get_profile(profile).mfa.em_iterations,
            "noise_std": quantiles,
        },
        "outlier": {
            "step": models.outlier_step,
            "weight": models.outlier_weight,
            "sigma": OUTLIER_SIGMA,
        },
        "variants": variants,
        "seconds": {
            "models": models_seconds,
            "mfa_fit": models.fit_seconds,
            **{variant: numbers["seconds"] for variant, numbers in variants.items()},
            "total": time.perf_counter() - start,
        },
        # the machine's 1/5/15-minute load averages at the start and the end: wall times on a shared CPU
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "code_version": code_version(),
        **machine_fields(args.device),
    }
    write_json_atomic(out, record)
    checkpoints.clear()
    log(f"wrote {out} ({record['seconds']['total']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
