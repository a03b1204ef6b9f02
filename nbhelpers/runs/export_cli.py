"""``python -m nbhelpers export-dataset``: release one (or all 15) of the paper's datasets.

Fits (or loads from the cache) the class MFAs of a task with
:func:`nbhelpers.chapters.task_models.build_task_models`,
then writes labelled train/test samples of one variant, the models that generated them and a card with
:func:`nbhelpers.science.release.export_dataset` into ``OUT/<dataset>_<attribute>_<variant>/``, which
``nbhelpers.load_dataset`` reads back.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import VALID_DEVICES
from nbhelpers.core.io import check_writable_folder
from nbhelpers.core.progress import tqdm

HELP = "export a symmetric/asymmetric/fitted dataset and its models (one task or all 15)"
# datasets.VARIANTS, repeated so that building the command line imports neither torch nor the data module
VARIANTS = ("fitted", "symmetric", "asymmetric")

EPILOG = (
    "Writes one folder per dataset, OUT/DATASET_ATTRIBUTE_VARIANT/: data.npz (x_train, y_train, x_test, "
    "y_test as float32 in [0, 1], flattened (C, H, W); image_shape; class_names; provenance), models/ (the "
    "fitted, symmetric and asymmetric MFA pairs as safetensors, the outlier geometry and the fits' "
    "log-likelihood), README.md and dataset.json (the card: construction, MFA sizes, the Bayes-optimal "
    "classifier's accuracy and mean L2, licence, the checksum of every file). Read it back with "
    "nbhelpers.load_dataset(folder). Models are cached between runs ($NBHELPERS_CACHE_DIR). Exit status: 0 "
    "written, 2 bad input."
)


class ExportError(ValueError):
    """Bad export input; the message names the problem and how to fix it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nbhelpers export-dataset``."""
    parser.epilog = EPILOG
    parser.add_argument("--dataset", help="celeba or mnist")
    parser.add_argument("--attribute", help="a CelebA attribute (e.g. Male) or an MNIST pair (e.g. 0_vs_6)")
    parser.add_argument("--all", action="store_true", help="export all 15 tasks (no --dataset/--attribute)")
    parser.add_argument("--variant", default="symmetric", help=f"{', '.join(VARIANTS)} (default: symmetric)")
    parser.add_argument(
        "--profile",
        default="quick",
        help="run profile of the MFA fit and sizes: quick or paper (default: quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fit and of the samples (default: 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write into (made if needed)")
    parser.add_argument("--n-train", type=int, metavar="N", help="train samples per class (default: profile)")
    parser.add_argument("--n-test", type=int, metavar="N", help="test samples per class (default: profile)")
    parser.add_argument(
        "--n-attack",
        type=int,
        default=100,
        metavar="N",
        help="test samples the card's Bayes-optimal robustness is measured on (gradient attack; 0: skip)",
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="real images (default: $NBHELPERS_DATA_DIR, else the sample)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resolve_tasks(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The tasks to export, validated; raises :class:`ExportError` with the valid choices."""
    from nbhelpers.science.data import TASKS, canonical_task  # lazy: not needed to build the command line

    if args.all:
        if args.dataset or args.attribute:
            raise ExportError("--all exports every task: drop --dataset and --attribute, or drop --all")
        return list(TASKS)
    if not args.dataset or not args.attribute:
        raise ExportError(
            "give --dataset and --attribute (e.g. --dataset celeba --attribute Male), or --all for all tasks"
        )
    try:
        return [canonical_task(args.dataset, args.attribute)]
    except ValueError as err:
        raise ExportError(str(err)) from None


def validate(args: argparse.Namespace) -> None:
    """Check the cheap options before any model is fitted; raises :class:`ExportError`."""
    if args.variant not in VARIANTS:
        raise ExportError(f"unknown variant {args.variant!r}: valid variants are {', '.join(VARIANTS)}")
    try:
        get_profile(args.profile)
    except ValueError as err:
        raise ExportError(str(err)) from None
    if args.device not in VALID_DEVICES:
        raise ExportError(f"unknown device {args.device!r}: valid devices are {', '.join(VALID_DEVICES)}")
    if args.seed < 0:
        raise ExportError(f"--seed must be a non-negative integer, got {args.seed}")
    for option, value in (("--n-train", args.n_train), ("--n-test", args.n_test)):
        if value is not None and value < 1:
            raise ExportError(f"{option} must be at least 1 sample per class, got {value}")
    if getattr(args, "n_attack", 0) < 0:
        raise ExportError(f"--n-attack must be 0 (no robustness on the card) or more, got {args.n_attack}")
    try:
        check_writable_folder(args.out)
    except OSError as err:
        raise ExportError(f"--out {args.out}: {err}; pass a folder to write into") from None


def run(args: argparse.Namespace) -> int:
    """Carry out parsed ``export-dataset`` arguments, printing the paths written; 0 ok, 2 bad input."""
    try:
        tasks = resolve_tasks(args)
        validate(args)
        import numpy as np

        # imports torch: after validation
        from nbhelpers.chapters.task_models import build_task_models
        from nbhelpers.science.release import export_dataset

        quiet = args.no_progress or len(tasks) == 1
        for dataset, attribute in tqdm(tasks, desc="export", unit="task", disable=quiet):
            models = build_task_models(
                dataset,
                attribute,
                args.profile,
                args.seed,
                args.device,
                data_dir=args.data_dir,
                progress=not args.no_progress,
            )
            sizes = get_profile(args.profile).datasets
            folder = export_dataset(
                models,
                args.out,
                args.variant,
                n_train_per_class=sizes.n_train_per_class if args.n_train is None else args.n_train,
                n_test_per_class=sizes.n_test_per_class if args.n_test is None else args.n_test,
                seed=args.seed,
                n_attack=args.n_attack,
                device=args.device,
            )
            print(folder)
            with np.load(folder / "data.npz") as written:  # on stderr: stdout lists only the folders
                per_class = f"{len(written['y_train']) // 2} train and {len(written['y_test']) // 2} test"
                print(
                    f"{models.dataset}:{models.attribute}, {args.variant}, profile {args.profile}, seed "
                    f"{args.seed}: {per_class} samples per class; MFAs fitted to the {written['source']}; "
                    f"card {folder / 'README.md'}",
                    file=sys.stderr,
                )
    # ValueError: e.g. cuda without a GPU, too few images; OSError: a missing or unreadable data folder
    except (ExportError, ValueError, OSError) as err:
        print(f"nbhelpers export-dataset: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``nbhelpers export-dataset`` alone: parse ``argv`` and run."""
    parser = argparse.ArgumentParser(prog="nbhelpers export-dataset", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))
