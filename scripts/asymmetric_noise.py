"""Is the asymmetric dataset as fragile as the paper's once its components are as thin? (Lemma 1)

    python scripts/asymmetric_noise.py --attribute Male --data-dir DATA --out celeba__Male.json

Chapter 3's asymmetric pair is the fitted pair, with the noise the EM learned, plus one broad outlier
(sigma = 0.5) per class. Lemma 1 makes its Bayes-optimal classifier fragile when the outlier of one class
lies over *thin* components of the other: the thinner they are, the smaller the push. This script rebuilds
the asymmetric pair with every fitted component's noise std set to each ``--sigmas`` value ("fitted" keeps
the learned noise: the chapter's own pair) and attacks each with the gradient attack
(``nbhelpers.chapters.ch3_bayes.asymmetric_noise_study``). The MFA pair, the outliers and the attacked
samples' seed are the chapter's own (``--profile``, default ``paper``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from nbhelpers.chapters.ch3_bayes import asymmetric_noise_study
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.io import write_json_atomic
from nbhelpers.runs.manifest import machine_fields
from nbhelpers.science.data import canonical_task, source_label

FITTED = "fitted"


def parse_sigma(text: str) -> float | None:
    """A ``--sigmas`` value: "fitted" (None) or a positive noise std."""
    if text == FITTED:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is neither {FITTED!r} nor a positive noise std")
    return value


def command(args: argparse.Namespace) -> str:
    """The command line of ``args``, with the data folder written DATA (a record names no local path)."""
    parts = [
        "python scripts/asymmetric_noise.py",
        f"--dataset {args.dataset} --attribute {args.attribute}",
        "--sigmas " + " ".join(FITTED if s is None else f"{s:g}" for s in args.sigmas),
        f"--n-attack {args.n_attack} --profile {args.profile} --seed {args.seed} --device {args.device}",
    ]
    if args.data_dir is not None:
        parts.append("--data-dir DATA")
    if args.out is not None:
        parts.append(f"--out {args.out.name}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="celeba", help="celeba or mnist (default celeba)")
    parser.add_argument(
        "--attribute", default="Male", help="a CelebA attribute or an MNIST pair (default Male)"
    )
    parser.add_argument(
        "--sigmas",
        type=parse_sigma,
        nargs="+",
        default=[None, 0.02, 0.01, 0.005, 0.002],
        metavar="S",
        help=f"noise stds to set, or {FITTED!r} for the learned one (default: fitted 0.02 0.01 0.005 0.002)",
    )
    parser.add_argument("--n-attack", type=int, default=100, help="samples attacked per sigma (default 100)")
    parser.add_argument("--profile", default="paper", help="sizes of the MFA pair (default paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", default=None, help="real images (default $NBHELPERS_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=None, help="write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.n_attack < 1:
        parser.error(f"--n-attack must be at least 1, got {args.n_attack}")
    try:
        dataset, attribute = canonical_task(args.dataset, args.attribute)
    except ValueError as err:
        parser.error(str(err))
    args.dataset, args.attribute = dataset, attribute  # the record names the task as the book does

    start = time.perf_counter()
    models = build_task_models(
        dataset, attribute, args.profile, args.seed, args.device, data_dir=args.data_dir
    )
    fitted = time.perf_counter()
    table = asymmetric_noise_study(models, args.sigmas, args.n_attack, args.seed, args.device)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out is not None:
        record = {
            "command": command(args),
            "dataset": dataset,
            "attribute": attribute,
            "profile": args.profile,
            "seed": args.seed,
            "n_attack": args.n_attack,
            "components": [mfa.K for mfa in models.fitted],
            "latent_dim": models.fitted[0].l,
            "n_mfa_train": list(models.n_train_images),
            "outlier_step": models.outlier_step,
            "outlier_weight": models.outlier_weight,
            "source": source_label(models.source),
            "rows": table.to_dict(orient="records"),
            "seconds": {"models": fitted - start, "attacks": time.perf_counter() - fitted},
            **machine_fields(args.device),
        }
        write_json_atomic(args.out, record)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
