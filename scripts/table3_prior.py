"""How much of Table 3's drop is the class prior? Train chapter 5's two CNNs with a smaller budget and
report their real-test accuracies per class and with the real prior (``ch5_real.symmetric_vs_real``).

    python scripts/table3_prior.py --attribute Male --epochs 4 --data-dir DATA --out table3_Male.json

Chapter 5 trains the symmetric-sample CNN for the profile's epochs (20 in ``paper``) and the real-image CNN
for as many examples (``ch5_real.matched_epochs``); that is hours on a CPU. Here both get the budget of
``--epochs`` epochs over the symmetric samples, so the chapter's question can be asked on a CPU: is the
gap between the two CNNs a matter of the prior, or of the images? The MFA pair, the samples and the real
faces are the chapter's own (``--profile``, default ``paper``).

Where does the gap come from, if not the prior? ``--bayes-only`` trains no CNN and measures the MFA pairs'
own Bayes-optimal accuracy on the real test faces (``ch5_real.bayes_real_accuracy``): how well the
densities the symmetric samples come from tell the real classes apart. Three options change the MFA fit
(the profile's sizes otherwise): ``--images-per-component N`` (one component per N training faces;
``paper``: 1000, as in the paper), ``--max-images-per-class N`` (fit on at most N faces per class;
``paper``: all) and ``--latent-dim L`` (``paper``: 10, as in the paper).

How much does the symmetric CNN's real-test accuracy move by chance? ``--symmetric-cnn-seeds S [S ...]``
trains no real-image CNN and one symmetric-sample CNN per seed S (its initialisation and batch order; the MFA
pair, the samples and the real faces stay those of ``--seed``), and records each one's real-test accuracy.

A CNN takes 10-30 minutes on a CPU. With ``--out``, each one is kept as soon as it is trained
(``nbhelpers.runs.checkpoints``, in the cache folder, until the record is written): the same command run
again after a crash or a kill resumes after the last finished CNN (``python -m nbhelpers checkpoints``
lists what is kept).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nbhelpers.chapters import ch5_real, learned
from nbhelpers.chapters.profiles import PROFILES, get_profile
from nbhelpers.chapters.resultset import Result, ResultSet, task_label
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.io import write_json_atomic
from nbhelpers.core.paths import checkpoints_dir
from nbhelpers.runs.checkpoints import Checkpoints
from nbhelpers.runs.manifest import machine_fields
from nbhelpers.science.data import TaskData, source_label
from nbhelpers.science.datasets import TaskModels

# Options that change how the MFA pair is fitted: (argument, MFASizes field, profile name suffix).
MFA_OPTIONS = (
    ("images_per_component", "celeba_images_per_component", "{}-per-component"),
    ("max_images_per_class", "max_images_per_class", "{}-per-class"),
    ("latent_dim", "celeba_latent_dim", "latent{}"),
)


def derived_profile(args: argparse.Namespace) -> str:
    """``args.profile``, or when an MFA option is given, that profile with the option's MFA sizes
    registered under a name of its own (which also gives the MFA pair its own place in the model cache)."""
    base = get_profile(args.profile)
    given = [(field, suffix, getattr(args, arg)) for arg, field, suffix in MFA_OPTIONS]
    given = [(field, suffix, value) for field, suffix, value in given if value is not None]
    if not given:
        return base.name
    name = "-".join([base.name, *(suffix.format(value) for _, suffix, value in given)])
    mfa = dataclasses.replace(base.mfa, **{field: value for field, _, value in given})
    changes = ", ".join(f"{field} = {value}" for field, _, value in given)
    PROFILES[name] = dataclasses.replace(
        base, name=name, description=f"{base.description} MFA: {changes}.", mfa=mfa
    )
    return name


def command(args: argparse.Namespace) -> str:
    """The command line of ``args``, with the data folder written DATA (a record names no local path)."""
    parts = ["python scripts/table3_prior.py", f"--attribute {args.attribute}"]
    parts.append("--bayes-only" if args.bayes_only else f"--epochs {args.epochs}")
    if args.symmetric_cnn_seeds is not None:
        parts.append("--symmetric-cnn-seeds " + " ".join(map(str, args.symmetric_cnn_seeds)))
    parts += [f"--profile {args.profile}", f"--seed {args.seed}", f"--device {args.device}"]
    for arg, _, _ in MFA_OPTIONS:
        if getattr(args, arg) is not None:
            parts.append(f"--{arg.replace('_', '-')} {getattr(args, arg)}")
    if args.data_dir is not None:
        parts.append("--data-dir DATA")
    if args.out is not None:
        parts.append(f"--out {args.out.name}")
    return " ".join(parts)


def run_checkpoints(args: argparse.Namespace, attribute: str, profile: str) -> Checkpoints:
    """Where this command keeps its trained CNNs until its record is written: a folder of its own named
    after the task and ``--out`` (its steps are keyed by all their inputs, so a changed option retrains).
    Without ``--out`` nothing is kept: there is no record to resume towards."""
    if args.out is None:
        return Checkpoints(None)
    name = f"table3_prior__{attribute}__{profile}__seed{args.seed}__{args.out.stem}"
    return Checkpoints(checkpoints_dir() / name)


def _timed_cnn(
    checkpoints: Checkpoints,
    step: str,
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    profile: str,
    seed: int,
    epochs: int,
    device: str,
) -> tuple[torch.nn.Module, float]:
    """Chapter 4's CNN (``learned.fit_cnn_timed``: the profile's width and depth) trained for ``epochs`` on
    x [n, d], y [n] through ``checkpoints`` (step ``step``): the trained CNN and the seconds its training took
    (those of the run that trained it, when it was resumed)."""
    sizes = get_profile(profile).models
    fitted = checkpoints.run(
        step,
        learned.fit_cnn_timed,
        x=x,
        y=y,
        image_shape=tuple(image_shape),
        sizes=sizes,
        width=sizes.cnn_width,
        depth=sizes.cnn_depth,
        epochs=epochs,
        seed=seed,
        device=device,
        progress=True,
    )
    return fitted.module, fitted.seconds


def _write(
    args: argparse.Namespace, attribute: str, profile: str, models: TaskModels, task: TaskData, **fields: Any
) -> None:
    """With ``--out``, write the record: the fields every record has (the command, the task, the MFA pair,
    the machine), then ``fields``."""
    if args.out is None:
        return
    record = {
        "command": command(args),
        "attribute": attribute,
        "profile": args.profile,
        "images_per_component": get_profile(profile).mfa.celeba_images_per_component,
        "latent_dim": models.fitted[0].l,
        "n_mfa_train": list(models.n_train_images),
        "components": [mfa.K for mfa in models.fitted],
        "seed": args.seed,
        "n_real_train": len(task.y_train),
        "real_train_prior": float((task.y_train == 1).mean()),
        "class_balance": task.class_balance(),
        "source": source_label(task.source),
        **machine_fields(args.device),
    }
    write_json_atomic(args.out, {**record, **fields})
    print(f"wrote {args.out}")


def _symmetric_seeds(
    args: argparse.Namespace,
    attribute: str,
    profile: str,
    models: TaskModels,
    task: TaskData,
    fit_seconds: float,
    checkpoints: Checkpoints,
) -> int:
    """``--symmetric-cnn-seeds``: one symmetric-sample CNN per seed, each scored on the real test faces."""
    data = learned.symmetric_data(models, seed=args.seed)  # the samples symmetric_vs_real trains on
    accuracies, losses, seconds = {}, {}, {}
    for cnn_seed in args.symmetric_cnn_seeds:
        cnn, seconds[str(cnn_seed)] = _timed_cnn(
            checkpoints,
            f"train_symmetric_cnn_seed{cnn_seed}",
            data.x_train,
            data.y_train,
            data.image_shape,
            profile=profile,
            seed=cnn_seed,
            epochs=args.epochs,
            device=args.device,
        )
        accuracies[str(cnn_seed)] = ch5_real.real_test_accuracy(cnn, task, "symmetric_train", args.device)
        # the mean training loss of each epoch: a spike (Adam near zero loss) shows here
        losses[str(cnn_seed)] = [float(loss) for loss in cnn.history_["loss"]]
        shares = ", ".join(f"{key} {100 * value:.1f}%" for key, value in accuracies[str(cnn_seed)].items())
        print(f"CNN seed {cnn_seed}: {shares}", flush=True)
    overall = np.array([entry["symmetric_train"] for entry in accuracies.values()])
    spread = {"mean": float(overall.mean()), "std": float(overall.std(ddof=1)) if len(overall) > 1 else None}
    spread |= {"min": float(overall.min()), "max": float(overall.max())}
    described = ", ".join(f"{key} {value}" for key, value in spread.items())
    print(f"real-test accuracy over {len(overall)} seeds: {described}")
    _write(
        args,
        attribute,
        profile,
        models,
        task,
        symmetric_epochs=args.epochs,
        symmetric_cnn_seeds=accuracies,
        symmetric_train_over_seeds=spread,
        training_loss_per_epoch=losses,
        seconds={"models": fit_seconds, "symmetric_cnn": seconds},
    )
    checkpoints.clear()  # the record now holds what they were kept for
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attribute", default="Male", help=f"one of {', '.join(ch5_real.REAL_ATTRIBUTES)}")
    parser.add_argument("--epochs", type=int, default=4, help="epochs over the symmetric samples (default 4)")
    parser.add_argument("--profile", default="paper", help="sizes of the data and models (default paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--data-dir", default=None, help="folder of celeba64.npz (default $NBHELPERS_DATA_DIR)"
    )
    parser.add_argument(
        "--images-per-component",
        type=int,
        default=None,
        metavar="N",
        help="fit the MFA pair with one component per N faces (default: the profile's)",
    )
    parser.add_argument(
        "--max-images-per-class",
        type=int,
        default=None,
        metavar="N",
        help="fit each class's MFA on at most N training faces (default: the profile's; paper: all)",
    )
    parser.add_argument(
        "--latent-dim",
        type=int,
        default=None,
        metavar="L",
        help="MFA latent dimension (default: the profile's; paper: 10, as in the paper)",
    )
    parser.add_argument(
        "--bayes-only",
        action="store_true",
        help="train no CNN: only the real-test accuracy of the MFA pairs' Bayes-optimal classifiers",
    )
    parser.add_argument(
        "--symmetric-cnn-seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="S",
        help="train only symmetric-sample CNNs, one per seed S (the data stay those of --seed)",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    for arg, _, _ in MFA_OPTIONS:
        if getattr(args, arg) is not None and getattr(args, arg) < 1:
            parser.error(f"--{arg.replace('_', '-')} must be at least 1, got {getattr(args, arg)}")
    if args.bayes_only and args.symmetric_cnn_seeds is not None:
        parser.error("--bayes-only trains no CNN and --symmetric-cnn-seeds trains some: give one of them")
    seeds = args.symmetric_cnn_seeds
    if seeds is not None and len(set(seeds)) < len(seeds):
        parser.error(f"--symmetric-cnn-seeds repeats a seed: {args.symmetric_cnn_seeds}")
    profile = derived_profile(args)

    start = time.perf_counter()
    attribute = ch5_real.check_real_attribute(args.attribute)
    task = ch5_real.real_task(attribute, profile, args.seed, args.data_dir)
    models = build_task_models("celeba", attribute, profile, args.seed, args.device, data_dir=args.data_dir)
    fitted = time.perf_counter()
    if args.bayes_only:
        bayes = ch5_real.bayes_real_accuracy(models, task)
        for name, accuracy in bayes.items():
            print(f"{name}: {100 * accuracy:.1f}% of {len(task.y_test)} real test faces")
        seconds = {"models": fitted - start, "bayes": time.perf_counter() - fitted}
        _write(args, attribute, profile, models, task, table3=bayes, seconds=seconds)
        return 0
    checkpoints = run_checkpoints(args, attribute, profile)
    if args.symmetric_cnn_seeds is not None:
        return _symmetric_seeds(args, attribute, profile, models, task, fitted - start, checkpoints)
    real_epochs = ch5_real.matched_epochs(len(task.y_train), profile, symmetric_epochs=args.epochs)
    real_cnn, real_seconds = _timed_cnn(
        checkpoints,
        "train_real_cnn",
        task.x_train,
        task.y_train,
        task.image_shape,
        profile=profile,
        seed=args.seed,
        epochs=real_epochs,
        device=args.device,
    )
    real_trained = time.perf_counter()
    table3 = ch5_real.symmetric_vs_real(
        models,
        task,
        real_cnn,
        profile=profile,
        seed=args.seed,
        device=args.device,
        epochs=args.epochs,
        checkpoints=checkpoints,
    )
    done = time.perf_counter()

    # this attribute's row of Table 3 as chapter 5 shows it (in %), ours beside the paper's
    result = Result(ch5_real.CHAPTER, "celeba", attribute, profile, args.seed, {"table3": table3})
    row = ch5_real.table3(ResultSet.of(result)).loc[[task_label("celeba", attribute)]]
    print((100 * row).round(1).to_string())
    print(ch5_real.table3_per_class(table3, task.class_names).to_string())
    _write(
        args,
        attribute,
        profile,
        models,
        task,
        symmetric_epochs=args.epochs,
        real_epochs=real_epochs,
        table3=table3,
        seconds={
            "models": fitted - start,
            "real_cnn": real_seconds,
            "symmetric_cnn_and_evaluation": done - real_trained,
        },
    )
    checkpoints.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
