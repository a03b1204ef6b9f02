"""Benchmark of the CNN (paper appendix B.3) at a profile's size: training and attack throughput.

Times Adam training steps (cross-entropy, the profile's CNN batch size) and attack steps (one forward and
one backward pass to the input, the core of every CW-L2, FMN and DDN iteration; at the foolbox batch size
``run_foolbox_attack`` uses on the device) on random inputs of the MNIST (1 x 28 x 28) and CelebA
(3 x 64 x 64) shapes. FLOPs per sample come from torch's ``FlopCounterMode``. From the measured rates it
projects the CNN work of chapter 4 per task at the profile's sizes (the Figure 8 sweeps left out):

- training: 2 x n_train_per_class samples x cnn_epochs;
- attacks: (n_attack + n_score) samples x (cw_steps x cw_binary_search_steps + 2 x min_norm_steps): the
  evaluation, then the chapter's "score your own classifier" demo, which attacks ``n_score`` (default 100,
  as in the chapter) of the same samples again. CW's early abort shortens some rounds, so this is an upper
  bound.

    OMP_NUM_THREADS=1 python bench/bench_cnn.py --device cpu
    python bench/bench_cnn.py --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from nbhelpers.attacks.foolbox_attacks import default_batch_size
from nbhelpers.config import get_device, get_profile
from nbhelpers.models import CNN
from nbhelpers.summary import format_duration

SHAPES = {"mnist": (1, 28, 28), "celeba": (3, 64, 64)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: CNN, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One Adam step on the cross-entropy of x [b, C, H, W], labels y [b]."""
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def attack_step(model: CNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The gradient of the cross-entropy with respect to the inputs x [b, C, H, W] (weights frozen)."""
    x = x.detach().requires_grad_(True)
    # backward() rather than autograd.grad(): FlopCounterMode's module hooks reject the latter
    F.cross_entropy(model(x), y, reduction="sum").backward()
    return x.grad


def flops_per_sample(fn, batch: int) -> float:
    """FLOPs of one call of ``fn`` (which works on ``batch`` samples), per sample."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / batch


def rate(fn, batch: int, seconds: float, device: torch.device) -> tuple[float, int]:
    """Samples per second of ``fn`` (``batch`` samples a call), repeated for about ``seconds``."""
    for _ in range(2):  # warm-up: allocator, cuDNN algorithm choice
        fn()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * batch / elapsed, calls


def measure(
    dataset: str, profile: str, device: torch.device, attack_batch: int, seconds: float, n_score: int
) -> str:
    """One Markdown table row: the rates on ``dataset``'s image shape and the projected chapter 4 CNN time."""
    sizes = get_profile(profile)
    m, a = sizes.models, sizes.attacks
    shape = SHAPES[dataset]
    model = CNN(shape, m.cnn_width, m.cnn_depth, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    xt = torch.rand(m.cnn_batch_size, *shape, generator=gen).to(device)
    yt = torch.randint(0, 2, (m.cnn_batch_size,), generator=gen).to(device)
    xa = torch.rand(attack_batch, *shape, generator=gen).to(device)
    ya = torch.randint(0, 2, (attack_batch,), generator=gen).to(device)

    def train() -> None:
        train_step(model, optimizer, xt, yt)

    def attack() -> None:
        attack_step(model, xa, ya)

    train_flops = flops_per_sample(train, m.cnn_batch_size)
    train_rate, _ = rate(train, m.cnn_batch_size, seconds, device)
    model.eval().requires_grad_(False)
    attack_flops = flops_per_sample(attack, attack_batch)
    attack_rate, _ = rate(attack, attack_batch, seconds, device)

    steps_per_sample = a.cw_steps * a.cw_binary_search_steps + 2 * a.min_norm_steps
    train_seconds = 2 * sizes.datasets.n_train_per_class * m.cnn_epochs / train_rate
    attack_seconds = (a.n_attack + min(n_score, a.n_attack)) * steps_per_sample / attack_rate
    cells = [
        f"{dataset} {'x'.join(map(str, shape))}",
        f"{train_rate:,.0f}",
        f"{train_rate * train_flops / 1e9:,.1f}",
        f"{attack_rate:,.0f}",
        f"{attack_rate * attack_flops / 1e9:,.1f}",
        format_duration(train_seconds),
        format_duration(attack_seconds),
        format_duration(train_seconds + attack_seconds),
    ]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--datasets", nargs="+", choices=sorted(SHAPES), default=["mnist", "celeba"])
    parser.add_argument("--profile", default="paper", help="sizes: quick or paper")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="time spent on each measurement")
    parser.add_argument("--attack-batch", type=int, default=None, help="default: the device's foolbox batch")
    parser.add_argument("--n-score", type=int, default=100, help="samples the chapter's demo attacks again")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.n_score < 0:
        parser.error("--seconds must be positive and --n-score >= 0")
    sizes = get_profile(args.profile)
    device = get_device(args.device)
    m, a = sizes.models, sizes.attacks
    attack_batch = args.attack_batch or default_batch_size(device)
    n_train = 2 * sizes.datasets.n_train_per_class
    n_scored = min(args.n_score, a.n_attack)
    steps_per_sample = a.cw_steps * a.cw_binary_search_steps + 2 * a.min_norm_steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}\n"
        f"profile {args.profile}: CNN width {m.cnn_width}, depth {m.cnn_depth}; training {n_train} samples x "
        f"{m.cnn_epochs} epochs, batch {m.cnn_batch_size}; attacks ({a.n_attack} + {n_scored}) samples x"
        f" {steps_per_sample} steps, batch {attack_batch}\n"
    )
    print(
        "| dataset | train: samples/s | train: GFLOP/s | attack step: samples/s | attack: GFLOP/s "
        "| projected training | projected attacks | projected CNN total |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        print(measure(dataset, args.profile, device, attack_batch, args.seconds, args.n_score))


if __name__ == "__main__":
    main()
