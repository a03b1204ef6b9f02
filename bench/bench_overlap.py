"""Chapter 5's three learned classifiers trained one after another and overlapped, side by side in one run.

``learned.train_classifiers`` trains the CNN, then the linear SVM, then the RBF SVM (gamma search and final
fit); with ``overlap=True`` (its default on a CUDA device) the two SVMs are fitted in a thread while the CNN
trains. On a GPU the CNN keeps the device busy and libsvm's single-threaded solves (57 s of host time for
chapter 5 at the paper's size, bench_svm_host.py) keep a host core busy, so the overlapped training should
take about the longer of the two rather than their sum. This trains on chapter 5's real training faces of
one attribute (no MFA to fit), both ways on the same data, checks that both give the same models, and prints
the seconds of each way and of each model.

    python bench/bench_overlap.py --data-dir DATA --attribute Male --device cuda
    OMP_NUM_THREADS=2 python bench/bench_overlap.py --data-dir DATA --device cpu \\
        --train-n 2000 --svm-n 2000 --epochs 2

Exit status: 0 when both ways gave the same models, 1 when not, 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from nbhelpers.chapters import learned
from nbhelpers.chapters.ch5_real import REAL_ATTRIBUTES, real_task
from nbhelpers.chapters.profiles import PROFILES, get_profile
from nbhelpers.core.device import resolve_device

WAYS = {"one after another": False, "overlapped": True}


def same_models(a: learned.TrainedClassifiers, b: learned.TrainedClassifiers) -> bool:
    """Whether ``a`` and ``b`` hold equal parameters and buffers in every model, and the same gamma."""
    if list(a.modules) != list(b.modules) or a.gamma != b.gamma:
        return False
    for name, module in a.modules.items():
        mine, theirs = module.state_dict(), b.modules[name].state_dict()
        if list(mine) != list(theirs) or not all(torch.equal(mine[k], theirs[k]) for k in mine):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default=None, help="folder with celeba64.npz (default: $NBHELPERS_DATA_DIR)"
    )
    parser.add_argument("--attribute", default="Male", help=f"one of {', '.join(REAL_ATTRIBUTES)}")
    parser.add_argument("--profile", default="paper", choices=list(PROFILES), help="sizes (default: paper)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--train-n", type=int, default=None, help="the CNN's training faces (default: all the profile loads)"
    )
    parser.add_argument(
        "--svm-n",
        type=int,
        default=None,
        help="the SVMs' training faces, a subset of the CNN's (default: the profile's cap)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="the CNN's epochs (default: the profile's)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train both ways this many times, in turn first (the first run of a process is often slower)",
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.attribute not in REAL_ATTRIBUTES:
        parser.error(f"--attribute {args.attribute!r}: chapter 5 takes {', '.join(REAL_ATTRIBUTES)}")
    for option, least in (("train_n", 2), ("svm_n", 2), ("epochs", 1), ("repeats", 1)):
        value = getattr(args, option)
        if value is not None and value < least:
            parser.error(f"--{option.replace('_', '-')} must be at least {least}, got {value}")
    device = resolve_device(args.device).type
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none"
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, gpu {gpu}")

    task = real_task(args.attribute, profile=args.profile, data_dir=args.data_dir)
    rows = np.arange(len(task.y_train))
    if args.train_n is not None:
        rows = np.sort(np.random.default_rng(0).permutation(len(rows))[: args.train_n])
    x, y = task.x_train[rows], task.y_train[rows]
    sizes = get_profile(args.profile).models
    settings = {
        "profile": args.profile,
        "device": device,
        "epochs": args.epochs,
        "svm_max_train": args.svm_n,
        "progress": False,
    }
    # warm-up: the device's first kernels and libsvm's first call are paid by neither way
    learned.train_classifiers(
        x[:64], y[:64], task.image_shape, **{**settings, "epochs": 1, "svm_max_train": 32}
    )

    models, report = [], []
    for repeat in range(args.repeats):
        order = list(WAYS) if repeat % 2 == 0 else list(reversed(WAYS))
        for way in order:
            start = time.perf_counter()
            trained = learned.train_classifiers(x, y, task.image_shape, overlap=WAYS[way], **settings)
            if device == "cuda":
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
            models.append(trained)
            report.append({"way": way, "repeat": repeat, "wall_s": wall, "models_s": trained.seconds})
    same = all(same_models(models[0], other) for other in models[1:])
    epochs = sizes.cnn_epochs if args.epochs is None else args.epochs
    print(
        f"\nchapter 5, {args.attribute}, profile {args.profile}: CNN on {models[0].n_train['cnn']} faces for "
        f"{epochs} epochs, SVMs on {models[0].n_train['linear_svm']} (gamma {models[0].gamma:g})\n"
    )
    print("| way | run | wall (s) | CNN (s) | linear SVM (s) | RBF SVM (s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in report:
        cells = [f"{row['models_s'][name]:.1f}" for name in learned.LEARNED]
        print(f"| {row['way']} | {row['repeat'] + 1} | {row['wall_s']:.1f} | " + " | ".join(cells) + " |")
    mean = {way: np.mean([row["wall_s"] for row in report if row["way"] == way]) for way in WAYS}
    serial, overlapped = mean.values()
    print(f"\noverlapped / one after another (mean wall): {overlapped / serial:.2f}; same models: {same}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"args": vars(args), "device": device, "gpu": gpu, "rows": report, "same": same}, handle
            )
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
