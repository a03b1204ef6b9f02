"""The SVM fits of chapters 4 and 5 at the paper's size: what a GPU takes over, and what stays on the host.

Each fit is a torch matrix product (a Gram matrix or squared distances, on the GPU in a GPU run) followed by
libsvm solves, which run single-threaded on the host's CPU whatever the device. This script makes the
chapters' own calls on the chapters' own SVM training sets and splits each fit's time into the two:

- linear SVM: ``LinearSVM(C=1).fit`` (``learned.fit_linear_svm``): its Gram matrix, then libsvm;
- RBF SVM, gamma search: ``select_gamma`` over the profile's gammas: its two squared-distance matrices
  (timed as it computes them), then the host's part: a kernel matrix and a libsvm fit per gamma, in
  threads, as many at once as ``gamma_workers`` allows;
- RBF SVM, final fit: ``RBFSVM(gamma).fit`` on all rows: its Gram matrix, then libsvm.

Chapter 5 fits on the real training faces of the attribute (the paper profile's cap per class); chapter 4
on the symmetric samples of the task's MFA pair (``symmetric_data``; the pair from the model cache, or
fitted first). ``--liblinear N`` also fits scikit-learn's ``LinearSVC`` (liblinear, dual coordinate
descent: a lever for the linear SVM's libsvm time) beside ``LinearSVM`` on N of chapter 5's rows, and
compares the two classifiers.

    OMP_NUM_THREADS=2 python bench/bench_svm_host.py --data-dir DATA --attribute Male --chapters 5 4
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from nbhelpers.chapters import learned
from nbhelpers.chapters.ch5_real import REAL_ATTRIBUTES, real_task
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.device import resolve_device
from nbhelpers.science.models import RBFSVM, LinearSVM, svm
from nbhelpers.science.models.svm import gamma_split, gamma_workers, select_gamma

PAPER = get_profile("paper")


def training_set(chapter: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The chapter's SVM training set at the paper's size: x [n, d] float32, y [n]."""
    if chapter == "5":
        task = real_task(args.attribute, profile="paper", data_dir=args.data_dir)
        x, y = task.x_train, task.y_train
    else:
        models = build_task_models(
            "celeba", args.attribute, "paper", device=args.device, data_dir=args.data_dir
        )
        data = learned.symmetric_data(models)
        x, y = data.x_train, data.y_train
    rows = learned.svm_training_rows(len(y), PAPER.models.svm_max_train, seed=0)
    return np.asarray(x[rows], dtype=np.float32), y[rows]


@contextmanager
def timed_calls(module: ModuleType, name: str) -> Iterator[list[float]]:
    """The seconds of every call of ``module.name`` made inside the block (by the code that looks it up
    there), without changing what it returns."""
    original = getattr(module, name)
    seconds: list[float] = []

    def timed(*args: object, **kwargs: object) -> object:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - start)

    setattr(module, name, timed)
    try:
        yield seconds
    finally:
        setattr(module, name, original)


def fit_stages(x: np.ndarray, y: np.ndarray, device: str) -> list[dict]:
    """Each fit of the chapter, its device seconds (torch) and host seconds (libsvm)."""
    start = time.perf_counter()
    linear = LinearSVM(device=device).fit(x, y)
    rows = [
        {
            "stage": "linear SVM",
            "wall_s": time.perf_counter() - start,
            "device_s": linear.timings_["gram_s"],
            "host_s": linear.timings_["svc_s"],
            "support_vectors": int(linear.support_.shape[0]),
        }
    ]

    with timed_calls(svm, "squared_distances") as distances:
        start = time.perf_counter()
        gamma, table = select_gamma(x, y, PAPER.models.svm_gammas, device=device)
        search_s = time.perf_counter() - start
    val, fit = gamma_split(len(y))
    workers = gamma_workers(len(fit), len(val), len(table))
    rows.append(
        {
            "stage": f"RBF SVM gamma search ({len(table)} gammas, {workers} at once)",
            "wall_s": search_s,
            "device_s": sum(distances),
            "host_s": search_s - sum(distances),
            "support_vectors": [row["n_support"] for row in table],
        }
    )

    start = time.perf_counter()
    rbf = RBFSVM(gamma, device=device).fit(x, y)
    rows.append(
        {
            "stage": f"RBF SVM final fit (gamma {gamma:g})",
            "wall_s": time.perf_counter() - start,
            "device_s": rbf.timings_["gram_s"],
            "host_s": rbf.timings_["svc_s"],
            "support_vectors": int(rbf.support_.shape[0]),
        }
    )
    return rows


def liblinear_lever(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, device: str
) -> list[dict]:
    """``LinearSVM`` (libsvm) and ``LinearSVC`` (liblinear, hinge loss, C = 1) on the same rows, compared
    on the test set: accuracy, agreement with libsvm, cosine of the weights, mean distance of the right
    predictions to the boundary (the smallest L2 that flips a linear classifier, without the pixel box)."""

    def summary(name: str, seconds: float, w: np.ndarray, b: float, note: str) -> dict:
        f = x_test.astype(np.float64) @ w + b
        right = (f > 0) == (y_test == 1)
        return {
            "solver": name,
            "seconds": seconds,
            "test_accuracy": float(right.mean()),
            "mean_distance": float((np.abs(f) / np.linalg.norm(w))[right].mean()),
            "f": f,
            "w": w,
            "note": note,
        }

    start = time.perf_counter()
    svm = LinearSVM(device=device).fit(x, y)
    rows = [summary("libsvm (LinearSVM)", time.perf_counter() - start, svm.coef_, float(svm.intercept_), "")]
    for max_iter in (1000, 5000):
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            lin = LinearSVC(C=1.0, loss="hinge", dual=True, max_iter=max_iter).fit(x, y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        note = f"{lin.n_iter_} iterations, " + ("converged" if converged else "not converged")
        w = lin.coef_[0].astype(np.float64)
        rows.append(
            summary("liblinear (LinearSVC)", time.perf_counter() - start, w, float(lin.intercept_[0]), note)
        )
    for row in rows:
        row["agreement"] = float(((row["f"] > 0) == (rows[0]["f"] > 0)).mean())
        row["cosine"] = float(
            row["w"] @ rows[0]["w"] / np.linalg.norm(row["w"]) / np.linalg.norm(rows[0]["w"])
        )
    return [{k: v for k, v in row.items() if k not in ("f", "w")} for row in rows]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", default=None, help="folder with celeba64.npz (default: $NBHELPERS_DATA_DIR)"
    )
    parser.add_argument("--attribute", default="Male", help="CelebA attribute (chapter 5: one of its five)")
    parser.add_argument("--chapters", nargs="+", choices=["4", "5"], default=["5", "4"])
    parser.add_argument(
        "--device", default="auto", help="where the Gram matrices are computed: auto, cpu, cuda"
    )
    parser.add_argument(
        "--liblinear", type=int, default=0, metavar="N", help="also the liblinear lever on N rows"
    )
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if "5" in args.chapters and args.attribute not in REAL_ATTRIBUTES:
        parser.error(f"--attribute {args.attribute!r}: chapter 5 takes {', '.join(REAL_ATTRIBUTES)}")
    if args.liblinear < 0:
        parser.error(f"--liblinear must be a number of rows >= 0, got {args.liblinear}")
    device = resolve_device(args.device).type
    gpu = torch.cuda.get_device_name() if device == "cuda" else "none"
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, gpu {gpu}")
    report: dict = {"args": vars(args), "device": device, "gpu": gpu, "chapters": {}}

    print("| chapter | stage | n | wall (s) | Gram / distances (s) | libsvm, host (s) | support vectors |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for chapter in args.chapters:
        x, y = training_set(chapter, args)
        rows = fit_stages(x, y, device)
        report["chapters"][chapter] = {"n": len(y), "stages": rows}
        for row in rows:
            print(
                f"| {chapter} | {row['stage']} | {len(y)} | {row['wall_s']:.1f} | {row['device_s']:.1f} | "
                f"{row['host_s']:.1f} | {row['support_vectors']} |",
                flush=True,
            )
        host = sum(row["host_s"] for row in rows)
        print(f"| {chapter} | **host total** | | | | **{host:.1f}** | |", flush=True)

    if args.liblinear:
        task = real_task(args.attribute, profile="paper", data_dir=args.data_dir)
        rows = np.random.default_rng(0).permutation(len(task.y_train))[: args.liblinear]
        lever = liblinear_lever(task.x_train[rows], task.y_train[rows], task.x_test, task.y_test, device)
        report["liblinear"] = {"n": len(rows), "rows": lever}
        print(
            f"\nThe linear SVM two ways on {len(rows)} real training faces, {len(task.y_test)} test faces:\n"
        )
        columns = [
            "solver",
            "seconds",
            "test accuracy",
            "agreement with libsvm",
            "cosine of w",
            "mean distance",
        ]
        print("| " + " | ".join([*columns, "note"]) + " |")
        print("| --- " * (len(columns) + 1) + "|")
        for row in lever:
            numbers = [row[k] for k in ("test_accuracy", "agreement", "cosine", "mean_distance")]
            cells = [row["solver"], f"{row['seconds']:.1f}", *(f"{v:.4f}" for v in numbers), row["note"]]
            print("| " + " | ".join(cells) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return report


if __name__ == "__main__":
    main()
