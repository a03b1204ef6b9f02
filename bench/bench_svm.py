"""RBF SVM fit time: sklearn's ``SVC(kernel="rbf")`` against torch Gram + ``SVC(kernel="precomputed")``.

Both paths solve the same libsvm problem; the table also reports how far apart their decision
functions are on held-out points. Data: real CelebA faces of one attribute (``--data-dir``, a folder
``nbhelpers.science.data.load_task`` reads), or else two classes of synthetic "images" in [0, 1], each a
low-rank Gaussian (a one-component factor analyzer, like the paper's MFA classes), d pixels.

    python bench/bench_svm.py --sizes 500 1000 2000 --device cpu --data-dir DATA --attribute Male
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from nbhelpers.core.device import resolve_device
from nbhelpers.science.data import load_task
from nbhelpers.science.models.svm import RBFSVM


def make_data(n: int, dim: int, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x float32 [n, dim] in [0, 1] and y int64 [n]: two low-rank-plus-noise Gaussian classes."""
    rng = np.random.default_rng(seed)
    # Fixed class models (seed 0) so train and test sets of every size share them.
    model_rng = np.random.default_rng(0)
    means = model_rng.uniform(0.3, 0.7, size=(2, dim))
    loadings = model_rng.normal(0.0, 0.6 / np.sqrt(rank), size=(2, dim, rank))
    y = rng.integers(0, 2, size=n)
    z = rng.normal(size=(n, rank))
    x = means[y] + np.einsum("ndr,nr->nd", loadings[y], z) + rng.normal(0.0, 0.05, size=(n, dim))
    return np.clip(x, 0.0, 1.0).astype(np.float32), y.astype(np.int64)


def load_data(n: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x_train float32 [n, d], y_train int64 [n] and x_test [n_test, d]."""
    if args.data_dir is None:
        x, y = make_data(n, args.dim, args.rank, seed=args.seed)
        return x, y, make_data(args.n_test, args.dim, args.rank, seed=args.seed + 1)[0]
    task = load_task("celeba", args.attribute, data_dir=args.data_dir, max_per_class=n // 2, seed=args.seed)
    if task.y_train.shape[0] != n:
        raise SystemExit(
            f"{args.attribute}: only {task.y_train.shape[0]} balanced training faces, {n} asked for"
        )
    return task.x_train, task.y_train, task.x_test[: args.n_test]


def run_size(n: int, args: argparse.Namespace) -> dict:
    """Fit both paths on n training samples; timings in seconds."""
    x, y, x_test = load_data(n, args)
    dim = x.shape[1]
    gamma = args.gamma / dim  # per-pixel scale: exp(-gamma ||a - b||^2) with ||a - b||^2 ~ dim
    row: dict = {"n": n, "dim": dim, "gamma": gamma}

    t0 = time.perf_counter()
    pre = RBFSVM(gamma, precomputed=True, device=args.device, chunk_size=args.chunk_size).fit(x, y)
    row["precomputed_total_s"] = time.perf_counter() - t0
    row["gram_s"] = pre.timings_["gram_s"]
    row["precomputed_svc_s"] = pre.timings_["svc_s"]
    row["n_support"] = int(pre.support_.shape[0])

    if args.skip_sklearn_above is not None and n > args.skip_sklearn_above:
        row["sklearn_s"] = None
        return row
    t0 = time.perf_counter()
    ref = RBFSVM(gamma, precomputed=False, device=args.device).fit(x, y)
    row["sklearn_s"] = time.perf_counter() - t0
    row["speedup"] = row["sklearn_s"] / row["precomputed_total_s"]
    row["max_abs_decision_diff"] = float(
        np.abs(pre.decision_function(x_test) - ref.svc_.decision_function(x_test.astype(np.float64))).max()
    )
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000])
    parser.add_argument("--data-dir", default=None, help="folder with celeba64.npz (default: synthetic data)")
    parser.add_argument("--attribute", default="Male", help="CelebA attribute with --data-dir")
    parser.add_argument(
        "--dim", type=int, default=3 * 64 * 64, help="synthetic pixels per image (CelebA: 12288)"
    )
    parser.add_argument("--rank", type=int, default=10, help="latent dimension of each class")
    parser.add_argument("--gamma", type=float, default=1.0, help="gamma * dim (gamma = this / dim)")
    parser.add_argument("--device", default="auto", help="Gram matrix device: auto, cpu or cuda")
    parser.add_argument("--chunk-size", type=int, default=1024, help="Gram rows per torch block")
    parser.add_argument("--n-test", type=int, default=200, help="held-out points for the agreement check")
    parser.add_argument(
        "--skip-sklearn-above", type=int, default=None, help="time only the Gram path above n"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(
        f"# torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, gpu {gpu}"
    )
    print(
        "| n | d | sklearn rbf (s) | Gram (s) | SVC precomputed (s) | Gram path total (s) | speedup | "
        "support vectors | max abs f diff |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for n in args.sizes:
        row = run_size(n, args)
        rows.append(row)
        sk = "skipped" if row["sklearn_s"] is None else f"{row['sklearn_s']:.1f}"
        speedup = f"{row['speedup']:.1f}x" if "speedup" in row else "-"
        diff = f"{row['max_abs_decision_diff']:.1e}" if "max_abs_decision_diff" in row else "-"
        print(
            f"| {n} | {row['dim']} | {sk} | {row['gram_s']:.1f} | {row['precomputed_svc_s']:.1f} | "
            f"{row['precomputed_total_s']:.1f} | {speedup} | {row['n_support']} | {diff} |",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "device": str(device), "gpu": gpu, "rows": rows}, handle, indent=2)
    return rows


if __name__ == "__main__":
    main()
