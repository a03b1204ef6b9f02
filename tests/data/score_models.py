"""Models for the tests of ``python -m nbhelpers score``: factories, a trained module and broken ones."""

import torch
from torch import nn


def make_mlp() -> nn.Module:
    """An untrained MLP for MNIST (x [n, 784] -> 2 logits)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 2))


def make_conv() -> nn.Module:
    """An untrained small CNN that takes images [n, 1, 28, 28]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 13 * 13, 2))


a_module = make_mlp()  # a module, not a factory


def not_a_module() -> str:
    return "not a model"


def three_logits() -> nn.Module:
    return nn.Linear(784, 3)


def nan_logits() -> nn.Module:
    class NaN(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((x.shape[0], 2), float("nan"))

    return NaN()
