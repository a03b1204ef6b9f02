"""Benchmark of MFA EM (nbhelpers.science.mfa.MFA.fit) at a CelebA-like size, on data from a planted MFA.

Reports the initialisation time, the time of one EM iteration (E-step pass with sufficient
statistics plus M-step), its rate in GFLOP/s over the five matrix products that read the data,
2 N K d (2 l + 4) flops (see bench/README.md), and, with --peak-tflops, the fraction of the device's
float64 peak (the E-step always computes in float64; --dtype only sets how the parameters are stored).

    OMP_NUM_THREADS=2 python bench/bench_mfa.py --iters 3 --device cpu
    python bench/bench_mfa.py --iters 10 --device cuda --peak-tflops 67
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nbhelpers.core.device import resolve_device
from nbhelpers.science.mfa import MFA


def planted_model(K: int, d: int, l: int, dtype: str, device: torch.device, seed: int) -> MFA:  # noqa: E741
    """Image-like MFA: means in [0.2, 0.8], loadings of norm ~3, noise std 0.03-0.1 (pixels in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.2 + 0.6 * torch.rand(K, d, generator=g, dtype=torch.float64)
    A = torch.randn(K, d, l, generator=g, dtype=torch.float64) * (3.0 / d**0.5)
    D = (0.03 + 0.07 * torch.rand(K, d, generator=g, dtype=torch.float64)) ** 2
    return MFA.from_parameters(mu, A, D, dtype=dtype, device=device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Wall-clock seconds of fn()."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=10_000, help="training samples N")
    parser.add_argument("--d", type=int, default=12_288, help="data dimension (64 x 64 x 3)")
    parser.add_argument("--K", type=int, default=20, help="components")
    parser.add_argument("--l", type=int, default=10, help="latent dimension")
    parser.add_argument("--iters", type=int, default=3, help="timed EM iterations")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--dtype", default="float64", choices=["float32", "float64"], help="parameter storage"
    )
    parser.add_argument("--init", default="kmeans", choices=["kmeans", "random"])
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device float64 peak, TFLOP/s")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error("--iters must be >= 1")
    device = resolve_device("auto") if args.device == "auto" else torch.device(args.device)

    truth = planted_model(args.K, args.d, args.l, args.dtype, device, args.seed)
    x, _ = truth.sample(args.n, generator=torch.Generator().manual_seed(args.seed + 1))
    true_loglik = truth.log_prob(x).mean().item()

    model = MFA(args.K, args.d, args.l, dtype=args.dtype, device=device)
    common = {"batch_size": args.batch_size, "seed": args.seed, "progress": False}
    # n_iter=0: initialisation plus one log-likelihood pass; the pass alone is timed next
    t_init_pass = timed(lambda: model.fit(x, n_iter=0, init=args.init, **common), device)
    t_pass = timed(lambda: model.fit(x, n_iter=0, init="current", **common), device)
    t_fit = timed(lambda: model.fit(x, n_iter=args.iters, init="current", **common), device)
    t_iter = (t_fit - t_pass) / args.iters  # each fit ends with one extra log-likelihood pass

    flops = 2 * args.n * args.K * args.d * (2 * args.l + 4)
    gflops = flops / t_iter / 1e9
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device        {device} ({name}), dtype {args.dtype}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"size          N={args.n} d={args.d} K={args.K} l={args.l}, batch {args.batch_size}")
    print(f"init          {t_init_pass - t_pass:.2f} s ({args.init})")
    print(f"loglik pass   {t_pass:.2f} s")
    print(f"EM iteration  {t_iter:.2f} s  (mean of {args.iters})")
    print(f"throughput    {gflops:.1f} GFLOP/s  (2 N K d (2 l + 4) = {flops / 1e9:.1f} GFLOP per iteration)")
    if args.peak_tflops:
        print(f"of peak       {100 * gflops / (1e3 * args.peak_tflops):.1f} % of {args.peak_tflops} TFLOP/s")
    print(
        f"loglik/sample {model.history_[0]:.1f} -> {model.history_[-1]:.1f} "
        f"(planted model: {true_loglik:.1f})"
    )


if __name__ == "__main__":
    main()
