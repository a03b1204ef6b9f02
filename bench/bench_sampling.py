"""Fresh training samples for Figure 8's train-size sweep: the host's generator against the device's.

Each row times one training step's worth of fresh samples (the paper profile's CNN batch, 64) from a model
pair of the paper profile's sizes, side by side in one run:

- **host generator**: ``sample_dataset`` (a CPU generator, so the same samples on every device; float64
  noise drawn on the host, then copied to the device), as the sweep drew them before ``fresh_sampler``;
- **device generator**: ``fresh_sampler`` (``nbhelpers.science.datasets``), everything on the device.

The pair is random with the paper profile's sizes (MNIST: 25 components of 6 factors per class in 784
pixels; CelebA: Male's 9 and 6 components of 10 factors in 12,288 pixels; float64 like the fitted models):
the cost of sampling depends on those sizes only. The projection is the sweep's 3 million fresh samples per
task (200,000 to 1,000,000 in steps of 200,000), sampling only, the CNN's training not counted.

    python bench/bench_sampling.py --device cpu
    python bench/bench_sampling.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform

import torch

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.timing import calls_per_second
from nbhelpers.science.datasets import fresh_sampler, sample_dataset
from nbhelpers.science.mfa import MFA

#: (components of class 0, of class 1, factors, pixels) of the paper profile's models.
PAIR_SIZES = {"mnist": (25, 25, 6, 784), "celeba": (9, 6, 10, 3 * 64 * 64)}


def random_pair(dataset: str, device: torch.device, seed: int = 0) -> tuple[MFA, MFA]:
    """Two float64 MFAs of ``dataset``'s paper-profile sizes, pixels around 0.5."""
    k0, k1, latent, d = PAIR_SIZES[dataset]
    gen = torch.Generator().manual_seed(seed)
    pair = []
    for k in (k0, k1):
        mu = 0.5 + 0.1 * torch.randn(k, d, generator=gen, dtype=torch.float64)
        loadings = 0.05 * torch.randn(k, d, latent, generator=gen, dtype=torch.float64)
        noise = torch.full((k, d), 0.01**2, dtype=torch.float64)
        pair.append(MFA.from_parameters(mu, loadings, noise).to(device))
    return pair[0], pair[1]


def measure(dataset: str, device: torch.device, batch: int, seconds: float, total: int) -> list[dict]:
    """One row per way of drawing: seconds per step of ``batch`` samples and projected for ``total``."""
    pair = random_pair(dataset, device)
    host_seeds = iter(range(10**9))

    def host() -> None:
        x, y = sample_dataset(pair, -(-batch // 2), seed=next(host_seeds))
        torch.as_tensor(x[:batch]).to(device), torch.as_tensor(y[:batch]).to(device)

    sampler, loop_generator = fresh_sampler(pair, device), torch.Generator().manual_seed(0)

    def on_device() -> None:
        sampler(batch, loop_generator)

    rows = []
    ways = {"host generator (sample_dataset)": host, "device generator (fresh_sampler)": on_device}
    for way, fn in ways.items():
        step = 1 / calls_per_second(fn, device, seconds)
        rows.append(
            {
                "dataset": dataset,
                "way": way,
                "ms_per_step": 1000 * step,
                "us_per_sample": 1e6 * step / batch,
                "projected_s": step * total / batch,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "celeba"], choices=sorted(PAIR_SIZES))
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each row")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if not args.seconds > 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    device = resolve_device(args.device)
    models = get_profile("paper").models
    batch, total = models.cnn_batch_size, sum(models.train_sizes)
    threads = torch.get_num_threads()
    print(f"device {device}, torch {torch.__version__}, {threads} threads, {platform.processor() or '?'}")
    print(f"{batch} samples per step; projection: {total:,} fresh samples (one task's train-size sweep)\n")
    print("| dataset | drawn with | ms per step | us per sample | projected sampling (s) |")
    print("| --- | --- | --- | --- | --- |")
    rows = []
    for dataset in args.datasets:
        for row in measure(dataset, device, batch, args.seconds, total):
            rows.append(row)
            print(
                f"| {dataset} | {row['way']} | {row['ms_per_step']:.2f} | {row['us_per_sample']:.1f} "
                f"| {row['projected_s']:,.0f} |"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "threads": threads, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
