"""The chapters' CNN training loop (``fit_classifier``) against its bare Adam step and the loop before.

On a GPU a small CNN's step at batch 64 takes about as long as the host needs to launch it, so what the loop
does around the step counts. Three ways to train the profile's CNN on one fixed training set, side by side in
one run, on random images of the MNIST or CelebA shape held on the host (as the chapters hold them):

- **Adam step alone**: one batch already on the device, nothing read back (``bench_cnn.py``'s rate, the
  ceiling);
- **loop before**: ``train_with_loss`` as it was: each batch gathered on the host and copied to the device,
  the loss and the accuracy read back after every step (each read waits for the device);
- **fit_classifier**: the loop now: the training set moved to the device once, the running loss and
  accuracy kept there and read once per epoch (and every half second for a progress bar).

Each row is samples per second over whole epochs of ``--n`` samples, and the projected training of a
chapter 4 task (20,000 samples x the profile's epochs). Both loops give the same weights on a CPU.

    OMP_NUM_THREADS=1 python bench/bench_training_loop.py --device cpu --n 512 --seconds 20
    python bench/bench_training_loop.py --device cuda
"""

from __future__ import annotations

import argparse
import platform

import numpy as np
import torch
from torch.nn import functional as F

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.timing import calls_per_second
from nbhelpers.runs.manifest import format_duration
from nbhelpers.science.data.files import CELEBA_SHAPE, MNIST_SHAPE
from nbhelpers.science.models import CNN, fit_classifier

SHAPES = {"mnist": MNIST_SHAPE, "celeba": CELEBA_SHAPE}
WAYS = ("Adam step alone", "loop before", "fit_classifier")


def loop_before(model: CNN, x: np.ndarray, y: np.ndarray, batch: int, device: torch.device) -> CNN:
    """One epoch of ``train_with_loss`` as it was: batches gathered on the host, copied, read each step."""
    x, y = torch.as_tensor(x), torch.as_tensor(y).long()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    loss_sum, correct = 0.0, 0
    for start in range(0, len(y), batch):
        idx = order[start : start + batch]
        xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(idx)
        correct += int((logits.detach().argmax(1) == yb).sum())
    return model.eval()


def measure(dataset: str, profile: str, device: torch.device, n: int, seconds: float) -> dict[str, float]:
    """Samples per second of each of ``WAYS`` on ``n`` random images of ``dataset``'s shape."""
    m = get_profile(profile).models
    shape, batch = SHAPES[dataset], m.cnn_batch_size
    rng = np.random.default_rng(0)
    x = rng.random((n, int(np.prod(shape))), dtype=np.float32)
    y = rng.integers(0, 2, n)

    def new_cnn() -> CNN:
        return CNN(shape, m.cnn_width, m.cnn_depth, seed=0)

    step_model = new_cnn().to(device).train()
    optimizer = torch.optim.Adam(step_model.parameters(), lr=1e-3)
    xb = torch.as_tensor(x[:batch]).to(device)
    yb = torch.as_tensor(y[:batch]).long().to(device)

    def step_epoch() -> None:  # as many bare steps as an epoch has batches
        for _ in range(-(-n // batch)):
            loss = F.cross_entropy(step_model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    epochs = (
        step_epoch,
        lambda: loop_before(new_cnn(), x, y, batch, device),
        lambda: fit_classifier(new_cnn(), x, y, epochs=1, batch_size=batch, device=device),
    )
    return {way: n * calls_per_second(fn, device, seconds) for way, fn in zip(WAYS, epochs, strict=True)}


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--datasets", nargs="+", choices=sorted(SHAPES), default=["mnist", "celeba"])
    parser.add_argument("--profile", default="paper", help="the CNN's sizes and epochs: quick or paper")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--n", type=int, default=4096, help="training samples per epoch")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each way")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.n < 1:
        parser.error(f"--seconds must be > 0 and --n >= 1, got {args.seconds} and {args.n}")
    sizes = get_profile(args.profile)
    device = resolve_device(args.device)
    m = sizes.models
    n_chapter = 2 * sizes.datasets.n_train_per_class * m.cnn_epochs
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(
        f"profile {args.profile}: CNN width {m.cnn_width}, depth {m.cnn_depth}, batch {m.cnn_batch_size}; "
        f"epochs of {args.n} samples; projection: {n_chapter:,} samples (chapter 4's training)\n"
    )
    print("| dataset | training | samples/s | projected chapter 4 training |")
    print("| --- | --- | --- | --- |")
    rates = {}
    for dataset in args.datasets:
        rates[dataset] = measure(dataset, args.profile, device, args.n, args.seconds)
        for way, rate in rates[dataset].items():
            print(f"| {dataset} | {way} | {rate:,.0f} | {format_duration(n_chapter / rate)} |", flush=True)
    return rates


if __name__ == "__main__":
    main()
