"""Chapter 4's attacks one at a time on one task's SVM, beside their best-of, kept as one record.

    python scripts/svm_attacks.py --dataset mnist --attribute 0_vs_6 --model rbf_svm --data-dir DATA

The paper attacked its SVMs with CleverHans' CW-L2 alone (appendix C.1: 500 iterations, 3 binary-search
steps, learning rate 0.01) and reports adversarial accuracies of 4-8% for the RBF SVM on MNIST (Table 1);
chapter 4 keeps, per sample, the smallest perturbation of CW-L2, FMN and DDN and finds almost none left.
This script shows which of the two the attack decides: it builds the task's models and chapter 4's
symmetric samples (``--profile``, default ``paper``), trains the SVM as chapter 4 does (its rows by
``learned.svm_training_rows``, then ``fit_rbf_svm`` / ``fit_linear_svm``), attacks the chapter's
attacked samples with each attack alone (``evaluation.evaluate_models``) and with CW-L2 at more
binary-search steps (``--cw-binary-search-steps``), and writes one JSON record into ``--out-dir`` (default
``results/paper/svm_attacks``): per attack its success rate, adversarial accuracy and mean L2, and the same
for the best of the chapter's attacks.

Every finished fit and attack is kept in checkpoints of the record's own (in the cache folder, deleted once
the record is written): the same command run again after a kill resumes where it stopped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nbhelpers.chapters.evaluation import DEFAULT_ATTACKS, attack_table, evaluate_models
from nbhelpers.chapters.learned import fit_linear_svm, fit_rbf_svm, svm_training_rows, symmetric_data
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.io import json_number, write_json_atomic
from nbhelpers.core.paths import cache_dir
from nbhelpers.core.versions import code_version
from nbhelpers.runs.checkpoints import Checkpoints
from nbhelpers.runs.manifest import machine_fields
from nbhelpers.science.attacks import run_attack
from nbhelpers.science.data import canonical_task, source_label

MODELS = ("rbf_svm", "linear_svm")
DEFAULT_OUT_DIR = Path("results/paper/svm_attacks")
DEFAULT_CW_SEARCHES = (9,)  # beside the paper's 3: the binary search's weight reaches 10^(steps - 3)


def log(message: str) -> None:
    print(f"[svm attacks {time.strftime('%H:%M:%S')}] {message}", flush=True)


def numbers(l2: torch.Tensor, clean_pred: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """One attack (or the best of several) from its L2 per attacked sample (``inf`` where it failed): the
    success rate over the correctly classified samples, the adversarial accuracy over all (correct and not
    flipped, as chapter 4 counts it) and the mean and median L2 of the flips."""
    l2 = l2.double().numpy()
    correct = (clean_pred == y).numpy()
    flipped = correct & np.isfinite(l2)
    return {
        "clean_accuracy": float(correct.mean()),
        "adversarial_accuracy": float((correct & ~flipped).mean()),
        "success_rate": float(flipped.sum() / correct.sum()) if correct.any() else None,
        "mean_l2": json_number(float(l2[flipped].mean())) if flipped.any() else None,
        "median_l2": json_number(float(np.median(l2[flipped]))) if flipped.any() else None,
        "n": int(len(l2)),
        "n_evaluated": int(flipped.sum()),
    }


def command(args: argparse.Namespace) -> str:
    """The command line of ``args``, with the data folder written DATA (a record names no local path)."""
    parts = [
        "python scripts/svm_attacks.py",
        f"--dataset {args.dataset} --attribute {args.attribute} --model {args.model}",
        "--cw-binary-search-steps " + " ".join(str(s) for s in args.cw_binary_search_steps),
    ]
    if args.n_attack is not None:
        parts.append(f"--n-attack {args.n_attack}")
    parts.append(f"--profile {args.profile} --seed {args.seed} --device {args.device}")
    if args.data_dir is not None:
        parts.append("--data-dir DATA")
    return " ".join(parts)


def record_name(args: argparse.Namespace, n_attack: int) -> str:
    parts = [args.dataset, args.attribute, args.model, "attacks"]
    if args.profile != "paper":
        parts.append(args.profile)
    if n_attack != get_profile(args.profile).attacks.n_attack:
        parts.append(f"n{n_attack}")
    if args.seed != 0:
        parts.append(f"seed{args.seed}")
    return "__".join(parts) + ".json"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="mnist", help="celeba or mnist (default mnist)")
    parser.add_argument("--attribute", default="0_vs_6", help="attribute or digit pair (default 0_vs_6)")
    parser.add_argument("--model", default="rbf_svm", choices=MODELS, help="the SVM (default rbf_svm)")
    parser.add_argument(
        "--cw-binary-search-steps",
        type=positive_int,
        nargs="*",
        default=list(DEFAULT_CW_SEARCHES),
        metavar="STEPS",
        help="CW-L2 also with these binary-search steps (default 9; none: only the paper's 3)",
    )
    parser.add_argument(
        "--n-attack", type=positive_int, default=None, help="samples attacked (default: the profile's)"
    )
    parser.add_argument("--profile", default="paper", help="data, SVM and attack sizes (default paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="real images (default $NBHELPERS_DATA_DIR)")
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"record folder (default {DEFAULT_OUT_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        args.dataset, args.attribute = canonical_task(args.dataset, args.attribute)
        sizes = get_profile(args.profile)
    except ValueError as err:
        parser.error(str(err))
    budget = sizes.attacks.budget
    searches = sorted(set(args.cw_binary_search_steps) - {budget.cw_binary_search_steps})
    args.cw_binary_search_steps = searches
    n_attack = sizes.attacks.n_attack if args.n_attack is None else args.n_attack
    out = args.out_dir / record_name(args, n_attack)
    checkpoints = Checkpoints(cache_dir() / "svm_attacks" / out.stem)
    start, load_start = time.perf_counter(), os.getloadavg()

    log(f"{args.dataset}/{args.attribute}, profile {args.profile}: the models and chapter 4's samples")
    models = build_task_models(
        args.dataset, args.attribute, args.profile, args.seed, args.device, data_dir=args.data_dir
    )
    data = symmetric_data(models, "symmetric", seed=args.seed)
    rows = svm_training_rows(len(data.y_train), sizes.models.svm_max_train, args.seed)
    x_svm, y_svm = data.x_train[rows].astype(np.float32), data.y_train[rows]
    log(f"training the {args.model} on {len(rows)} samples")
    if args.model == "rbf_svm":
        fitted = checkpoints.run(
            "train",
            fit_rbf_svm,
            x=x_svm,
            y=y_svm,
            gammas=tuple(sizes.models.svm_gammas),
            seed=args.seed,
            device=args.device,
        )
    else:
        fitted = checkpoints.run("train", fit_linear_svm, x=x_svm, y=y_svm, device=args.device)
    gamma = f", gamma {fitted.gamma:g}" if args.model == "rbf_svm" else ""
    log(f"trained in {fitted.seconds:.0f} s{gamma}")

    evaluation = evaluate_models(
        {args.model: fitted.module},
        data.x_test,
        data.y_test,
        data.image_shape,
        attacks=DEFAULT_ATTACKS,
        n_attack=n_attack,
        profile=args.profile,
        seed=args.seed,
        device=args.device,
        checkpoints=checkpoints,
    )
    x, y, best = evaluation.x, evaluation.y, evaluation.results[args.model]
    table = attack_table(evaluation.results, y)
    attacks: dict[str, Any] = {}
    for name in DEFAULT_ATTACKS:
        attacks[name] = {
            **numbers(best.per_attack_l2[name], best.clean_pred, y),
            "best_on": int(table.xs(name, level="attack")["best on"].iloc[0]),
        }
    for steps in searches:
        log(f"CW-L2 with {steps} binary-search steps")
        outcome = checkpoints.run(
            f"attack_cw_{steps}_searches",
            run_attack,
            model=fitted.module,
            x=x,
            y=y,
            name="cw",
            budget=budget,
            settings={"binary_search_steps": steps},
            device=args.device,
        )
        attacks[f"cw_{steps}_searches"] = numbers(outcome.l2, best.clean_pred, y)
    for name, values in attacks.items():
        log(
            f"{name}: success rate {values['success_rate']}, adversarial accuracy "
            f"{values['adversarial_accuracy']:.3f}, mean L2 {values['mean_l2']}"
        )
    record = {
        "command": command(args),
        "dataset": args.dataset,
        "attribute": args.attribute,
        "profile": args.profile,
        "seed": args.seed,
        "source": source_label(models.source),
        "model": args.model,
        "n_train": int(len(rows)),
        "gamma": json_number(fitted.gamma),
        "gamma_search": fitted.gamma_search,
        "n_support": int(getattr(fitted.module, "support_vectors", torch.empty(0)).shape[0]) or None,
        "test_accuracy": evaluation.test_accuracy[args.model],
        "n_attack": len(y),
        "budget": {
            "cw_steps": budget.cw_steps,
            "cw_binary_search_steps": budget.cw_binary_search_steps,
            "cw_stepsize": budget.cw_stepsize,
            "min_norm_steps": budget.min_norm_steps,
        },
        "best_of": {**numbers(best.l2, best.clean_pred, y), "attacks": list(DEFAULT_ATTACKS)},
        "attacks": attacks,
        "seconds": {"train": fitted.seconds, "total": time.perf_counter() - start},
        "load_average": {"start": list(load_start), "end": list(os.getloadavg())},
        "code_version": code_version(),
        **machine_fields(args.device),
    }
    write_json_atomic(out, record)
    checkpoints.clear()
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
