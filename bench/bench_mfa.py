"""Benchmark of MFA EM (nbhelpers.science.mfa.MFA.fit): initialisation and EM iterations, side by side
per init.

Data: a planted MFA at a CelebA-like size (default), or real images with ``--data-dir``: ``--n`` faces
(or digits) of one class or of both (``--classes``), or, with ``--profile``, each class of the task at
that profile's fit sizes (images per class, K, l, EM iterations, batch size and seed, as
``nbhelpers.chapters.task_models.build_task_models`` fits them).

For every init in ``--inits`` (in one run, one after another) it reports the initialisation time, that
time in EM iterations of the same fit, the time of one EM iteration (E-step pass with sufficient
statistics plus M-step), its rate in GFLOP/s over the five matrix products that read the data,
2 N K d (2 l + 4) flops (see bench/README.md), and the log-likelihood per sample after the init and
after ``--iters`` iterations from it. With --peak-tflops it gives the fraction of the device's float64
peak (the E-step always computes in float64; --dtype only sets how the parameters are stored).

    OMP_NUM_THREADS=2 python bench/bench_mfa.py --iters 3 --device cpu
    python bench/bench_mfa.py --iters 10 --device cuda --peak-tflops 67
    python bench/bench_mfa.py --data-dir DATA --attribute Male --classes 0 --n 4000 --K 10 --l 10 --iters 10
    python bench/bench_mfa.py --data-dir DATA --dataset mnist --attribute 0_vs_6 --profile quick
"""

from __future__ import annotations

import argparse
import copy
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.timing import synchronize
from nbhelpers.science.mfa import MFA, VALID_INITS


@dataclass
class Fit:
    """One data set to fit: x [N, d] and the fit's sizes."""

    name: str
    x: torch.Tensor
    K: int
    l: int  # noqa: E741 (the paper's symbol)
    iters: int
    batch_size: int
    seed: int
    reference: float | None = None  # log-likelihood per sample of a planted model


def planted_model(K: int, d: int, l: int, dtype: str, device: torch.device, seed: int) -> MFA:  # noqa: E741
    """Image-like MFA: means in [0.2, 0.8], loadings of norm ~3, noise std 0.03-0.1 (pixels in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.2 + 0.6 * torch.rand(K, d, generator=g, dtype=torch.float64)
    A = torch.randn(K, d, l, generator=g, dtype=torch.float64) * (3.0 / d**0.5)
    D = (0.03 + 0.07 * torch.rand(K, d, generator=g, dtype=torch.float64)) ** 2
    return MFA.from_parameters(mu, A, D, dtype=dtype, device=device)


def timed(fn, device: torch.device) -> float:
    """Wall-clock seconds of fn()."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def best_time(fn: Callable[[], object], device: torch.device, repeats: int = 3, enough: float = 1.0) -> float:
    """The shortest wall-clock seconds of up to ``repeats`` calls of fn(), one call when it takes ``enough``
    seconds: the init and the EM iteration are differences of these times, and at small sizes a single
    timing's noise (another process, a slow call) is as large as the difference."""
    best = math.inf
    for _ in range(repeats):
        best = min(best, timed(fn, device))
        if best >= enough:
            break
    return best


def real_fits(args: argparse.Namespace) -> list[Fit]:
    """The fits of real images: ``--n`` images of ``--classes``, or each class at ``--profile``'s sizes."""
    from nbhelpers.science.data import load_task

    if args.profile:
        sizes = get_profile(args.profile).mfa
        task = load_task(
            args.dataset, args.attribute, data_dir=args.data_dir, max_per_class=sizes.max_images_per_class
        )
        fits = []
        for label in (0, 1):
            x = task.x_train[task.y_train == label]
            K, l = sizes.components(task.dataset, len(x))  # noqa: E741
            iters = sizes.em_iterations if args.iters is None else args.iters
            name = f"{task.dataset}/{task.attribute} class {label} ({args.profile})"
            fits.append(Fit(name, torch.from_numpy(x), K, l, iters, sizes.batch_size, args.seed + label))
        return fits
    task = load_task(args.dataset, args.attribute, data_dir=args.data_dir)
    keep = np.ones(len(task.y_train), bool) if args.classes == "all" else task.y_train == int(args.classes)
    x = task.x_train[keep]
    if args.n < len(x):
        x = x[np.sort(np.random.default_rng(args.seed).choice(len(x), size=args.n, replace=False))]
    name = f"{task.dataset}/{task.attribute} class {args.classes}"
    iters = 3 if args.iters is None else args.iters
    return [Fit(name, torch.from_numpy(x), args.K, args.l, iters, args.batch_size, args.seed)]


def bench_init(fit: Fit, init: str, dtype: str, device: torch.device, offset: int = 0) -> dict[str, float]:
    """Times of the init, of one log-likelihood pass and of the EM iterations from that init, for the
    fit's seed plus ``offset``."""
    model = MFA(fit.K, fit.x.shape[1], fit.l, dtype=dtype, device=device)
    common = {"batch_size": fit.batch_size, "seed": fit.seed + offset, "progress": False}
    # n_iter=0: initialisation plus one log-likelihood pass (each call starts afresh from the seed)
    t_init_pass = best_time(lambda: model.fit(fit.x, n_iter=0, init=init, **common), device)

    def one_pass() -> None:
        model.fit(fit.x, n_iter=0, init="current", **common)

    t_pass = best_time(one_pass, device)
    # every timed EM run starts from its own copy of the initialised model, so that all start alike
    starts = [copy.deepcopy(model) for _ in range(3)]
    fitted: list[MFA] = []

    def em() -> None:
        fitted.append(starts[len(fitted)])
        fitted[-1].fit(fit.x, n_iter=fit.iters, init="current", **common)

    t_fit = best_time(em, device, repeats=len(starts))
    t_iter = (t_fit - t_pass) / fit.iters  # each fit ends with one extra log-likelihood pass
    t_init = t_init_pass - t_pass
    history = fitted[-1].history_
    return {"init": t_init, "pass": t_pass, "iter": t_iter, "start": history[0], "end": history[-1]}


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=10_000, help="training samples N")
    parser.add_argument("--d", type=int, default=12_288, help="data dimension of the planted model")
    parser.add_argument("--K", type=int, default=20, help="components")
    parser.add_argument("--l", type=int, default=10, help="latent dimension")
    parser.add_argument(
        "--iters",
        type=int,
        default=None,
        help="timed EM iterations (default 3; the profile's with --profile)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="parameter storage"
    )
    fresh = [name for name in VALID_INITS if name != "current"]
    parser.add_argument(
        "--inits",
        "--init",
        nargs="+",
        default=["kmeans"],
        choices=fresh,
        help="inits timed one after another",
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device float64 peak, TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit-seeds", type=int, default=1, help="fits per init: seeds seed, seed + 1, ...")
    parser.add_argument("--data-dir", default=None, help="folder with celeba64.npz / mnist.npz: real images")
    parser.add_argument("--dataset", default="celeba", choices=["celeba", "mnist"])
    parser.add_argument("--attribute", default="Male", help="CelebA attribute or MNIST pair (e.g. 0_vs_6)")
    parser.add_argument(
        "--classes", default="0", choices=["0", "1", "all"], help="images fitted (no --profile)"
    )
    parser.add_argument(
        "--profile", default=None, choices=["quick", "paper"], help="fit each class as it does"
    )
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error("--iters must be >= 1")
    if args.fit_seeds < 1:
        parser.error("--fit-seeds must be >= 1")
    if args.profile and not args.data_dir:
        parser.error("--profile needs --data-dir (the real images)")
    device = resolve_device(args.device)

    if args.data_dir:
        fits = real_fits(args)
    else:
        truth = planted_model(args.K, args.d, args.l, args.dtype, device, args.seed)
        x, _ = truth.sample(args.n, generator=torch.Generator().manual_seed(args.seed + 1))
        iters = 3 if args.iters is None else args.iters
        reference = truth.log_prob(x).mean().item()
        fits = [Fit("planted MFA", x, args.K, args.l, iters, args.batch_size, args.seed, reference)]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device        {device} ({name}), dtype {args.dtype}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(
        "| data | N | d | K | l | init | init (s) | init / EM iteration | log-lik pass (s) "
        "| EM iteration (s) | GFLOP/s | log-lik / sample: init -> after iters |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for init in args.inits:  # imports and thread pools start here, not in the first timed init
        MFA(2, fits[0].x.shape[1], 1, device=device).fit(fits[0].x[:50], n_iter=0, init=init, progress=False)
    for fit in fits:
        n, d = fit.x.shape
        flops = 2 * n * fit.K * d * (2 * fit.l + 4)
        for offset in range(args.fit_seeds):
            for init in args.inits:
                row(fit, init, offset, flops, args, device)


def row(
    fit: Fit, init: str, offset: int, flops: float, args: argparse.Namespace, device: torch.device
) -> None:
    """Fit once from ``init`` with the fit's seed + ``offset`` and print the table row."""
    n, d = fit.x.shape
    r = bench_init(fit, init, args.dtype, device, offset)
    gflops = flops / r["iter"] / 1e9
    peak = f" ({100 * gflops / (1e3 * args.peak_tflops):.1f}% of peak)" if args.peak_tflops else ""
    planted = "" if fit.reference is None else f" (planted model: {fit.reference:.1f})"
    seed = f", seed {fit.seed + offset}" if args.fit_seeds > 1 else ""
    print(
        f"| {fit.name} | {n} | {d} | {fit.K} | {fit.l} | {init}{seed} | {r['init']:.3g} | "
        f"{r['init'] / r['iter']:.1f} | {r['pass']:.3g} | {r['iter']:.3g} | {gflops:.1f}{peak} | "
        f"{r['start']:.2f} -> {r['end']:.2f} after {fit.iters}{planted} |",
        flush=True,
    )


if __name__ == "__main__":
    main()
