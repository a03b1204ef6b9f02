"""nbhelpers.chapters.evaluation on bad input: broken models, negative seeds, more attacks than samples."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from nbhelpers.chapters.evaluation import evaluate_models, score_classifier, score_test_set
from nbhelpers.science.data import load_task


class Broken(nn.Module):
    """Logits [n, 2] of a fixed non-finite value (a diverged training)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], 2)
        logits[:, 0] = self.value
        return logits


@pytest.fixture(scope="module")
def small_task():
    """The sample's MNIST 0-vs-6 with 8 test images: real data, attacked in seconds."""
    task = load_task("mnist", "0_vs_6")
    return dataclasses.replace(task, x_test=task.x_test[:8], y_test=task.y_test[:8])


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 2))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_model_with_non_finite_logits_is_an_error_naming_it(small_task, value):
    x, y = small_task.x_test, small_task.y_test
    with pytest.raises(ValueError, match=r"model 'mine' \(Broken\) returned NaN or inf logits for 8 of 8"):
        evaluate_models({"mine": Broken(value)}, x, y, (1, 28, 28), n_attack=4, attacks=["ddn"], device="cpu")


def test_score_classifier_refuses_a_model_with_nan_logits(small_task):
    with pytest.raises(ValueError, match=r"\(Broken\) returned NaN or inf logits .*cannot be scored"):
        score_classifier(Broken(math.nan), small_task, "real", n_attack=4, attacks=["ddn"], device="cpu")


@pytest.mark.parametrize("call", ["score_classifier", "score_test_set", "evaluate_models"])
def test_a_negative_seed_is_named(small_task, call):
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0 \(a random seed\), got -1"):
        if call == "score_classifier":
            score_classifier(linear_model(), small_task, "real", n_attack=4, seed=-1, device="cpu")
        elif call == "score_test_set":
            score_test_set(small_task, "real", seed=-1)
        else:
            x, y = small_task.x_test, small_task.y_test
            evaluate_models({"mine": linear_model()}, x, y, (1, 28, 28), n_attack=4, seed=-1, device="cpu")


def test_more_attacked_samples_than_the_test_set_are_capped_with_a_warning(small_task):
    with pytest.warns(UserWarning, match=r"n_attack=1000000 exceeds the 8 test samples: all 8 are attacked"):
        report = score_classifier(
            linear_model(), small_task, "real", n_attack=10**6, attacks=["ddn"], device="cpu"
        )
    assert report.n == 8


def test_a_cap_changes_no_number(small_task, recwarn):
    """Capped at the test set's size, the attacked samples and the report are those of that n_attack."""
    x, y = small_task.x_test, small_task.y_test
    kwargs = {"attacks": ["ddn"], "device": "cpu", "progress": False}
    exact = evaluate_models({"m": linear_model()}, x, y, (1, 28, 28), n_attack=8, **kwargs)
    assert not recwarn.list
    with pytest.warns(UserWarning, match="exceeds"):
        capped = evaluate_models({"m": linear_model()}, x, y, (1, 28, 28), n_attack=50, **kwargs)
    np.testing.assert_array_equal(capped.indices, exact.indices)
    assert capped.reports["m"].to_dict() == exact.reports["m"].to_dict()
    np.testing.assert_array_equal(capped.reports["m"].l2, exact.reports["m"].l2)
