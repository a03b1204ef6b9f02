"""Benchmark of the attacks on the Bayes-optimal classifier at the CelebA size (d = 3 x 64 x 64).

Times the paper's gradient attack (nbhelpers.science.attacks.L2ComponentGradientAttack, default
hyperparameters) and foolbox's CW-L2 (the profile's steps and binary-search steps) on samples of
a random image-like MFA pair with K components of latent dimension l per class (real fitted
models are not needed for timing), and reports the success rate and mean L2 of each.

    OMP_NUM_THREADS=2 python bench/bench_attacks.py --n 100 --cw-n 20 --cw-steps 50 --device cpu
    python bench/bench_attacks.py --n 1000 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.timing import synchronize
from nbhelpers.science.attacks import L2ComponentGradientAttack, make_foolbox_attack, run_foolbox_attack
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.mfa import MFA


def random_pair(K: int, d: int, l: int, sigma: float, device: torch.device, seed: int) -> BayesClassifier:  # noqa: E741
    """Two image-like MFAs sharing a base image: component means 0.02 * N(0, 1) per pixel around it
    (means ~3 apart in L2; attacks then need L2 ~2.5, as on the paper's symmetric CelebA pairs),
    loadings of norm ~1 per latent factor, isotropic noise ``sigma``."""
    g = torch.Generator().manual_seed(seed)
    base = 0.3 + 0.4 * torch.rand(d, generator=g, dtype=torch.float64)
    mfas = []
    for _ in range(2):
        mu = base + 0.02 * torch.randn(K, d, generator=g, dtype=torch.float64)
        A = torch.randn(K, d, l, generator=g, dtype=torch.float64) / d**0.5
        mfas.append(MFA.from_parameters(mu, A, torch.full((K,), sigma**2), isotropic=True, device=device))
    return BayesClassifier(*mfas)


def timed(fn, device: torch.device) -> tuple[float, float, object]:
    """Wall-clock and process CPU seconds of fn() (CPU time ignores a busy machine), and its result."""
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = fn()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - cpu_start, out


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--n", type=int, default=1000, help="samples attacked by the gradient attack")
    parser.add_argument("--cw-n", type=int, default=None, help="samples attacked by CW-L2 (default: --n)")
    parser.add_argument("--d", type=int, default=12_288, help="data dimension (64 x 64 x 3)")
    parser.add_argument("--K", type=int, default=10, help="components per class")
    parser.add_argument("--l", type=int, default=10, help="latent dimension")
    parser.add_argument("--sigma", type=float, default=0.01, help="isotropic noise std of every component")
    parser.add_argument("--profile", default="paper", help="attack sizes: quick or paper (CW 500 x 3)")
    parser.add_argument("--cw-steps", type=int, default=None, help="override the profile's CW steps")
    parser.add_argument("--batch-size", type=int, default=256, help="samples per attack batch")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1 or args.d < 2 or args.K < 1 or not 1 <= args.l < args.d:
        parser.error("need --n >= 1, --K >= 1 and 1 <= --l < --d")
    device = resolve_device(args.device)
    cw_n = args.n if args.cw_n is None else args.cw_n
    sizes = get_profile(args.profile).attacks
    cw_steps = sizes.cw_steps if args.cw_steps is None else args.cw_steps

    model = random_pair(args.K, args.d, args.l, args.sigma, device, args.seed)
    gen = torch.Generator().manual_seed(args.seed + 1)  # a CPU generator: same samples on any device
    xs = [mfa.sample((args.n + 1) // 2, generator=gen)[0] for mfa in model.mfas]
    x = torch.cat(xs)[: args.n].clamp(0, 1).float().to(device)
    y = torch.arange(2).repeat_interleave((args.n + 1) // 2)[: args.n].to(device)
    accuracy = (model.predict(x) == y).float().mean().item()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device     {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}\n"
        f"model      2 x MFA(K={args.K}, d={args.d}, l={args.l}), sigma {args.sigma}, "
        f"clean accuracy {accuracy:.3f}"
    )

    attack = L2ComponentGradientAttack(batch_size=args.batch_size)
    seconds, cpu, out = timed(lambda: attack(model, x, y), device)
    ok = out.success
    print(
        f"gradient   {args.n} samples in {seconds:.2f} s wall, {cpu:.2f} s CPU "
        f"({1e3 * seconds / args.n:.1f} ms/sample wall); "
        f"{attack!r}\n           success {ok.float().mean():.3f}, mean L2 {out.l2[ok].mean():.3f}, "
        f"mean steps {out.steps.float().mean():.1f}"
    )

    if cw_n > 0:
        cw = make_foolbox_attack("cw", sizes.budget, steps=cw_steps)
        seconds, cpu, res = timed(
            lambda: run_foolbox_attack(model, x[:cw_n], y[:cw_n], cw, batch_size=args.batch_size), device
        )
        ok = res.success
        print(
            f"cw-l2      {cw_n} samples in {seconds:.2f} s wall, {cpu:.2f} s CPU "
            f"({1e3 * seconds / cw_n:.1f} ms/sample wall); "
            f"{cw_steps} steps x {sizes.cw_binary_search_steps} binary-search steps\n"
            f"           success {ok.float().mean():.3f}, mean L2 {res.l2[ok].mean():.3f}, "
            f"gradient/cw L2 on the same samples {(out.l2[:cw_n][ok] / res.l2[ok]).mean():.3f}"
        )


if __name__ == "__main__":
    main()
