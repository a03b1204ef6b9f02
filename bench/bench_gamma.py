"""The RBF SVM's gamma search (``nbhelpers.science.models.search_gamma``): gammas fitted one at a time
against several at once in threads (libsvm is single-threaded and releases the GIL).

Data: real CelebA faces of one attribute, split as ``nbhelpers.science.models.svm.select_gamma`` splits
them (a seeded 20% for validation), or synthetic two-class data without ``--data-dir``. The gammas are the
``paper`` profile's. Each row is one full search (the squared distances, then every gamma); the tables of all
rows must be identical.

    python bench/bench_gamma.py --n 6000 --n-jobs 1 0 --data-dir DATA --attribute Male
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.science.data import load_task
from nbhelpers.science.models.svm import gamma_split, gamma_workers, search_gamma, squared_distances


def load(args: argparse.Namespace) -> tuple[np.ndarray, ...]:
    """x_fit [n_fit, d], y_fit, x_val [n_val, d], y_val: the first ``args.n`` faces, split 80/20."""
    if args.data_dir is None:
        rng = np.random.default_rng(args.seed)
        y = rng.integers(0, 2, size=args.n)
        means = rng.uniform(0.4, 0.6, size=(2, 1024))  # two noisy blobs of 1024 "pixels"
        x = np.clip(means[y] + rng.normal(0.0, 0.2, size=(args.n, 1024)), 0.0, 1.0).astype(np.float32)
    else:
        task = load_task("celeba", args.attribute, data_dir=args.data_dir, seed=args.seed)
        x, y = task.x_train[: args.n], task.y_train[: args.n]
    val, fit = gamma_split(len(y), seed=args.seed)
    return x[fit], y[fit], x[val], y[val]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=6000, help="faces searched over (fit + validation)")
    parser.add_argument(
        "--n-jobs", type=int, nargs="+", default=[1, 0], help="threads per row; 0: automatic (gamma_workers)"
    )
    parser.add_argument("--data-dir", default=None, help="folder with celeba64.npz (default: synthetic data)")
    parser.add_argument("--attribute", default="Male")
    parser.add_argument("--device", default="auto", help="squared distances on auto, cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    gammas = get_profile("paper").models.svm_gammas
    x_fit, y_fit, x_val, y_val = load(args)
    device = resolve_device(args.device).type
    start = time.perf_counter()
    squared_distances(torch.as_tensor(x_fit), torch.as_tensor(x_fit), device=device)
    squared_distances(torch.as_tensor(x_val), torch.as_tensor(x_fit), device=device)
    distances = time.perf_counter() - start
    print(
        f"{len(y_fit)} fit + {len(y_val)} validation samples, d = {x_fit.shape[1]}, gammas {gammas}, "
        f"device {device}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{platform.processor() or platform.machine()}; the squared distances alone: {distances:.1f} s"
    )
    print("| threads | search (s) | validation accuracy per gamma | support vectors per gamma |")
    print("| --- | --- | --- | --- |")
    rows, first_table = [], None
    for n_jobs in args.n_jobs:
        threads = gamma_workers(len(y_fit), len(y_val), len(gammas), n_jobs or None)
        start = time.perf_counter()
        _, table = search_gamma(
            x_fit, y_fit, x_val, y_val, gammas, min_accuracy=0.0, device=device, n_jobs=threads
        )
        seconds = time.perf_counter() - start
        first_table = table if first_table is None else first_table
        if table != first_table:
            raise SystemExit(
                f"the search with {threads} threads gave another table: {table} != {first_table}"
            )
        accuracy = [round(row["val_accuracy"], 3) for row in table]
        support = [row["n_support"] for row in table]
        print(f"| {threads} | {seconds:.1f} | {accuracy} | {support} |", flush=True)
        rows.append({"threads": threads, "seconds": seconds, "distances_seconds": distances, "table": table})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
