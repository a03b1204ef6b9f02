"""The benchmark scripts run, and count what they claim to count."""

from __future__ import annotations

import importlib.util
import re
import sys

import torch
from torch import nn

from tests.conftest import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _forward_flops(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """2 x multiply-adds of the convolutions and the linear layer (biases and activations not counted)."""
    flops, (_, h, w) = 0, shape
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            s = layer.stride[0]
            h, w = -(-h // s), -(-w // s)
            flops += 2 * h * w * layer.out_channels * layer.in_channels * 9
        elif isinstance(layer, nn.Linear):
            flops += 2 * layer.in_features * layer.out_features
    return flops


def test_cnn_bench_counts_a_forward_and_an_input_backward_per_attack_step():
    bench = _load("bench_cnn")
    shape = bench.SHAPES["mnist"]
    model = bench.CNN(shape, width=8, depth=4, seed=0).requires_grad_(False)
    x, y = torch.rand(5, *shape), torch.tensor([0, 1, 0, 1, 1])
    per_sample = bench.flops_per_sample(lambda: bench.attack_step(model, x, y), 5)
    # weights frozen: the backward pass computes input gradients only, as many flops as the forward
    assert per_sample == 2 * _forward_flops(model, shape)
    grad = bench.attack_step(model, x, y)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_cnn_bench_prints_a_row_per_dataset_with_positive_rates(capsys):
    bench = _load("bench_cnn")
    bench.main(["--profile", "quick", "--device", "cpu", "--seconds", "0.05", "--datasets", "mnist"])
    out = capsys.readouterr().out
    assert "attacks (16 + 16) samples x 500 steps, batch 128" in out
    (row,) = [line for line in out.splitlines() if line.startswith("| mnist 1x28x28")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert all(float(c.replace(",", "")) > 0 for c in cells[1:5])
    assert all(re.fullmatch(r"(\d+ h )?\d+ min \d+ s|\d+ h \d+ min", c) for c in cells[5:])


def test_cnn_bench_figure8_times_each_sweep_cnn_that_the_chapter_trains(capsys):
    bench = _load("bench_cnn")
    # quick: base CNN width 8, depth 4; 2 x 500 samples x 6 epochs; TRADES beta 0 is the base CNN (reused)
    assert bench.figure8_points("quick") == [
        ("train_size", 1000.0, 8, 4, 0.0, 1000),
        ("train_size", 4000.0, 8, 4, 0.0, 4000),
        ("width", 4.0, 4, 4, 0.0, 6000),
        ("width", 16.0, 16, 4, 0.0, 6000),
        ("depth", 2.0, 8, 2, 0.0, 6000),
        ("depth", 6.0, 8, 6, 0.0, 6000),
        ("trades", 2.0, 8, 4, 2.0, 6000),
        ("trades", 10.0, 8, 4, 10.0, 6000),
    ]
    bench.main(
        ["--profile", "quick", "--device", "cpu", "--seconds", "0.05", "--datasets", "mnist", "--figure8"]
    )
    out = capsys.readouterr().out
    assert "DDN 100 steps on 16 samples, batch 128" in out
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| mnist")
    ]
    assert [row[1] for row in rows] == [
        "train_size 1000", "train_size 4000", "width 4", "width 16", "depth 2", "depth 6",
        "trades 2", "trades 10", "all points",
    ]  # fmt: skip
    flops = {row[1]: float(row[3]) for row in rows[:-1]}
    assert flops["width 16"] > 2 * flops["width 4"]
    # TRADES adds 3 PGD steps (a forward and an input backward each) and a forward of the attacked batch
    assert flops["trades 2"] > 2 * flops["train_size 1000"] and flops["trades 2"] == flops["trades 10"]
    assert all(float(row[4].replace(",", "")) > 0 and float(row[5].replace(",", "")) > 0 for row in rows[:-1])
    assert [row[6] for row in rows[:2]] == ["1,000", "4,000"]


def test_mfa_bench_times_each_init_and_seed_side_by_side(capsys):
    bench = _load("bench_mfa")
    argv = ["--n", "400", "--d", "60", "--K", "3", "--l", "2", "--iters", "2", "--device", "cpu"]
    bench.main([*argv, "--inits", "kmeans", "sklearn-kmeans", "--fit-seeds", "2"])
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| planted MFA")
    ]
    assert [row[5] for row in rows] == [
        "kmeans, seed 0",
        "sklearn-kmeans, seed 0",
        "kmeans, seed 1",
        "sklearn-kmeans, seed 1",
    ]
    for row in rows:
        assert float(row[6]) >= 0 and float(row[9]) > 0  # init and EM iteration seconds
        start, end = re.fullmatch(
            r"(-?[\d.]+) -> (-?[\d.]+) after 2 \(planted model: -?[\d.]+\)", row[11]
        ).groups()
        assert float(end) >= float(start) - 1e-9  # EM never lowers the likelihood
