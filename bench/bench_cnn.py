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

``--precision float32 bfloat16`` measures training both ways side by side (``fit_classifier``'s ``precision``:
bfloat16 autocast, float32 weights), one row each (with ``--figure8``, one block of rows each); the attack
steps stay float32 (measured once per dataset).

With ``--figure8`` it times instead each CNN of chapter 4's Figure 8 sweeps (``ch4_learned.run_sweeps``) and
projects each point: training (one pass over ``n`` fresh samples for the train-size points; the profile's
epochs over the symmetric training set for the others, with the TRADES loss for beta > 0) and the sweep's DDN
attack (``min_norm_steps`` steps on ``n_attack`` samples). The point with the base CNN's settings is left out
(the chapter reuses its CNN), as is the time to draw the fresh samples (`bench_sampling.py`).

    OMP_NUM_THREADS=1 python bench/bench_cnn.py --device cpu
    python bench/bench_cnn.py --device cuda
    python bench/bench_cnn.py --device cuda --precision float32 bfloat16
    python bench/bench_cnn.py --device cuda --figure8 --seconds 2
"""

from __future__ import annotations

import argparse
import platform

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.timing import calls_per_second
from nbhelpers.runs.manifest import format_duration
from nbhelpers.science.attacks.foolbox_attacks import default_batch_size
from nbhelpers.science.data.files import CELEBA_SHAPE, MNIST_SHAPE
from nbhelpers.science.models import CNN
from nbhelpers.science.models.trades import trades_batch_loss
from nbhelpers.science.models.training import PRECISIONS, precision_context

SHAPES = {"mnist": MNIST_SHAPE, "celeba": CELEBA_SHAPE}


def train_step(
    model: CNN, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, loss_fn=None
) -> None:
    """One Adam step on the cross-entropy of x [b, C, H, W], labels y [b] (or on ``loss_fn(model, x, y)``,
    a ``batch_loss`` such as TRADES')."""
    loss = F.cross_entropy(model(x), y) if loss_fn is None else loss_fn(model, x, y)[0]
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


def rate(fn, batch: int, seconds: float, device: torch.device) -> float:
    """Samples per second of ``fn`` (``batch`` samples a call), repeated for about ``seconds``."""
    return batch * calls_per_second(fn, device, seconds, warmup=2)


def cnn_rates(
    shape: tuple[int, int, int],
    width: int,
    depth: int,
    device: torch.device,
    *,
    train_batch: int,
    attack_batch: int,
    seconds: float,
    loss_fn=None,
    precision: str = "float32",
    attack: bool = True,
) -> dict[str, float]:
    """FLOPs per sample and samples per second of training (Adam steps at ``train_batch``, on
    ``loss_fn`` or the cross-entropy, in ``precision`` as ``fit_classifier`` runs them) and, if ``attack``,
    of attack steps (at ``attack_batch``, float32) for one CNN."""
    model = CNN(shape, width, depth, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    xt = torch.rand(train_batch, *shape, generator=gen).to(device)
    yt = torch.randint(0, 2, (train_batch,), generator=gen).to(device)
    xa = torch.rand(attack_batch, *shape, generator=gen).to(device)
    ya = torch.randint(0, 2, (attack_batch,), generator=gen).to(device)

    mixed_precision = precision_context(precision, device)

    def train() -> None:
        with mixed_precision:
            train_step(model, optimizer, xt, yt, loss_fn)

    def attack() -> None:
        attack_step(model, xa, ya)

    out = {"train_flops": flops_per_sample(train, train_batch)}
    out["train_rate"] = rate(train, train_batch, seconds, device)
    if not attack:
        return out
    model.eval().requires_grad_(False)
    out["attack_flops"] = flops_per_sample(attack, attack_batch)
    out["attack_rate"] = rate(attack, attack_batch, seconds, device)
    return out


def measure(
    dataset: str,
    profile: str,
    device: torch.device,
    attack_batch: int,
    seconds: float,
    n_score: int,
    precisions: tuple[str, ...] = ("float32",),
) -> list[str]:
    """Markdown table rows, one per training precision: the rates on ``dataset``'s image shape and the
    projected chapter 4 CNN time (the attack steps measured once, in float32)."""
    sizes = get_profile(profile)
    m = sizes.models
    rows, attack_rates = [], {}
    for precision in precisions:
        r = cnn_rates(
            SHAPES[dataset], m.cnn_width, m.cnn_depth, device,
            train_batch=m.cnn_batch_size, attack_batch=attack_batch, seconds=seconds,
            precision=precision, attack=not attack_rates,
        )  # fmt: skip
        attack_rates = attack_rates or {k: r[k] for k in ("attack_flops", "attack_rate")}
        rows.append(_measure_row(dataset, precision, {**r, **attack_rates}, sizes, n_score))
    return rows


def _measure_row(dataset: str, precision: str, r: dict[str, float], sizes, n_score: int) -> str:
    m, a = sizes.models, sizes.attacks
    shape = SHAPES[dataset]
    steps_per_sample = a.cw_steps * a.cw_binary_search_steps + 2 * a.min_norm_steps
    train_seconds = 2 * sizes.datasets.n_train_per_class * m.cnn_epochs / r["train_rate"]
    attack_seconds = (a.n_attack + min(n_score, a.n_attack)) * steps_per_sample / r["attack_rate"]
    cells = [
        f"{dataset} {'x'.join(map(str, shape))}",
        precision,
        f"{r['train_rate']:,.0f}",
        f"{r['train_rate'] * r['train_flops'] / 1e9:,.1f}",
        f"{r['attack_rate']:,.0f}",
        f"{r['attack_rate'] * r['attack_flops'] / 1e9:,.1f}",
        format_duration(train_seconds),
        format_duration(attack_seconds),
        format_duration(train_seconds + attack_seconds),
    ]
    return "| " + " | ".join(cells) + " |"


def _samples_per_second(rate: float) -> str:
    """A rate as a table cell: whole numbers from 100 up, three significant digits below (the widest CNNs
    run at a few samples per second on a CPU)."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def figure8_points(profile: str) -> list[tuple[str, float, int, int, float, int]]:
    """Chapter 4's Figure 8 CNNs at ``profile``'s sizes that the chapter trains besides its own CNN:
    (sweep, value, width, depth, TRADES beta, training samples), as ``ch4_learned.run_sweeps`` makes them."""
    sizes = get_profile(profile)
    m = sizes.models
    per_epoch = 2 * sizes.datasets.n_train_per_class
    base = (m.cnn_width, m.cnn_depth, 0.0)
    points = [("train_size", float(n), *base, int(n)) for n in m.train_sizes]
    settings = [("width", w, (w, m.cnn_depth, 0.0)) for w in m.cnn_widths]
    settings += [("depth", d, (m.cnn_width, d, 0.0)) for d in m.cnn_depths]
    settings += [("trades", b, (m.cnn_width, m.cnn_depth, b)) for b in m.trades_betas]
    points += [(name, float(v), *cnn, per_epoch * m.cnn_epochs) for name, v, cnn in settings if cnn != base]
    return points


def measure_figure8(
    dataset: str,
    profile: str,
    device: torch.device,
    attack_batch: int,
    seconds: float,
    precision: str = "float32",
) -> list[str]:
    """Markdown rows, one per Figure 8 point on ``dataset``'s shape and a total: the rates of its CNN (trained
    in ``precision``) and its projected training and DDN attack time."""
    sizes = get_profile(profile)
    m, a = sizes.models, sizes.attacks
    rows, measured = [], {}
    total = 0.0
    label = dataset if precision == "float32" else f"{dataset} ({precision} training)"
    for name, value, width, depth, beta, n_train in figure8_points(profile):
        if (width, depth, beta) not in measured:
            loss_fn = None
            if beta > 0:
                loss_fn = trades_batch_loss(beta, eps=m.trades_eps, steps=m.trades_steps)
            measured[width, depth, beta] = cnn_rates(
                SHAPES[dataset], width, depth, device,
                train_batch=m.cnn_batch_size, attack_batch=attack_batch, seconds=seconds, loss_fn=loss_fn,
                precision=precision,
            )  # fmt: skip
        r = measured[width, depth, beta]
        train_seconds = n_train / r["train_rate"]
        attack_seconds = a.n_attack * a.min_norm_steps / r["attack_rate"]
        total += train_seconds + attack_seconds
        cells = [
            label,
            f"{name} {value:.10g}",
            f"{width} / {depth} / {beta:g}",
            f"{r['train_flops'] / 1e9:.3g}",
            _samples_per_second(r["train_rate"]),
            _samples_per_second(r["attack_rate"]),
            f"{n_train:,}",
            format_duration(train_seconds),
            format_duration(attack_seconds),
            format_duration(train_seconds + attack_seconds),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    rows.append(f"| {label} | all points | | | | | | | | **{format_duration(total)}** |")
    return rows


def main(argv: list[str] | None = None) -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--datasets", nargs="+", choices=sorted(SHAPES), default=["mnist", "celeba"])
    parser.add_argument("--profile", default="paper", help="sizes: quick or paper")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="time spent on each measurement")
    parser.add_argument("--attack-batch", type=int, default=None, help="default: the device's foolbox batch")
    parser.add_argument("--n-score", type=int, default=100, help="samples the chapter's demo attacks again")
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=["float32"],
        help="training arithmetic, one row each (bfloat16: mixed precision; attacks stay float32)",
    )
    parser.add_argument(
        "--figure8", action="store_true", help="time and project each CNN of the Figure 8 sweeps instead"
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.n_score < 0:
        parser.error("--seconds must be positive and --n-score >= 0")
    sizes = get_profile(args.profile)
    device = resolve_device(args.device)
    m, a = sizes.models, sizes.attacks
    attack_batch = args.attack_batch or default_batch_size(device)
    n_train = 2 * sizes.datasets.n_train_per_class
    n_scored = min(args.n_score, a.n_attack)
    steps_per_sample = a.cw_steps * a.cw_binary_search_steps + 2 * a.min_norm_steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    precisions = tuple(dict.fromkeys(args.precision))
    if args.figure8:
        print(
            f"profile {args.profile}: Figure 8 CNNs besides the base (width {m.cnn_width}, depth"
            f" {m.cnn_depth}); DDN {a.min_norm_steps} steps on {a.n_attack} samples, batch {attack_batch}\n"
        )
        print(
            "| dataset | point | width / depth / beta | train: GFLOP/sample | train: samples/s "
            "| attack step: samples/s | training samples | projected training | projected attack "
            "| projected point |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for dataset in args.datasets:
            for precision in precisions:
                rows = measure_figure8(dataset, args.profile, device, attack_batch, args.seconds, precision)
                print("\n".join(rows), flush=True)
        return
    print(
        f"profile {args.profile}: CNN width {m.cnn_width}, depth {m.cnn_depth}; training {n_train} samples x "
        f"{m.cnn_epochs} epochs, batch {m.cnn_batch_size}; attacks ({a.n_attack} + {n_scored}) samples x"
        f" {steps_per_sample} steps, batch {attack_batch}\n"
    )
    print(
        "| dataset | training precision | train: samples/s | train: GFLOP/s | attack step: samples/s "
        "| attack: GFLOP/s | projected training | projected attacks | projected CNN total |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for dataset in args.datasets:
        rows = measure(dataset, args.profile, device, attack_batch, args.seconds, args.n_score, precisions)
        print("\n".join(rows), flush=True)


if __name__ == "__main__":
    main()
