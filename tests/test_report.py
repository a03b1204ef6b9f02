"""The robustness report counts only correctly classified, successfully attacked samples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nbhelpers.core.io import write_json_atomic
from nbhelpers.science.attacks import run_attacks
from nbhelpers.science.report import report_from_attacks, robustness_report
from tests.test_classifier import subspace_pair


def hand_made_case():
    """Four 4-pixel samples: two evaluated, one that resisted, one misclassified with a big change."""
    x = torch.full((4, 4), 0.25, dtype=torch.float64)
    delta = torch.tensor(
        [
            [0.3, 0.41, 0.0, 0.0],  # correct, attacked: L2 0.508
            [0.0, 0.0, 0.01, 0.0],  # correct, attacked: L2 0.01, one pixel changed by 2.55 levels
            [0.0, 0.0, 0.0, 0.0],  # correct, attack failed
            [0.7, 0.7, 0.7, 0.7],  # misclassified: must not count
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 1, 0, 1])
    clean_pred = torch.tensor([0, 1, 0, 0])
    success = torch.tensor([True, True, False, True])
    return x, y, clean_pred, x + delta, success, delta


def test_hand_made_report():
    x, y, clean_pred, x_adv, success, delta = hand_made_case()
    rep = robustness_report(x, y, clean_pred, x_adv, success)
    l2 = [np.hypot(0.3, 0.41), 0.01]
    assert (rep.n, rep.n_correct, rep.n_evaluated) == (4, 3, 2)
    assert rep.clean_accuracy == 0.75
    assert rep.adversarial_accuracy == 0.25  # only sample 2 is correct and unbroken
    np.testing.assert_allclose(rep.l2, l2)
    np.testing.assert_allclose([rep.mean_l2, rep.median_l2], [np.mean(l2), np.median(l2)])
    # 8 pixels of the two evaluated samples: changes 76.5, 104.55, 2.55 and five zeros
    assert rep.frac_pixels_above_5 == 2 / 8
    assert rep.pixel_hist.sum() == 8
    assert (
        rep.pixel_hist[0] == 5
        and rep.pixel_hist[2] == 1
        and rep.pixel_hist[76] == 1
        and rep.pixel_hist[104] == 1
    )


def test_report_is_json_ready(tmp_path):
    x, y, clean_pred, x_adv, success, _ = hand_made_case()
    metrics = robustness_report(x, y, clean_pred, x_adv, success).to_dict()
    path = write_json_atomic(tmp_path / "report.json", metrics)
    back = json.loads(path.read_text())
    assert (
        back["n_evaluated"] == 2 and back["adversarial_accuracy"] == 0.25 and len(back["pixel_hist"]) == 256
    )
    # nothing evaluated: undefined means become null, not NaN
    none = robustness_report(x, y, clean_pred, x, torch.zeros(4, dtype=torch.bool)).to_dict()
    assert none["mean_l2"] is None and none["n_evaluated"] == 0 and none["adversarial_accuracy"] == 0.75
    json.dumps(none, allow_nan=False)


def test_report_from_attacks_on_a_model():
    model, x, y = subspace_pair(n=4)
    result = run_attacks(model, x, y, ["gradient"], progress=False)
    rep = report_from_attacks(x, y, result)
    assert rep.clean_accuracy == 1.0 and rep.adversarial_accuracy == 0.0 and rep.n_evaluated == 8
    np.testing.assert_allclose(rep.l2, result.l2.numpy())


def test_bad_inputs_raise():
    x, y, clean_pred, x_adv, success, _ = hand_made_case()
    with pytest.raises(ValueError, match="x_adv has shape"):
        robustness_report(x, y, clean_pred, x_adv[:, :2], success)
    with pytest.raises(ValueError, match="success has 2 entries"):
        robustness_report(x, y, clean_pred, x_adv, success[:2])
    with pytest.raises(ValueError, match="no samples"):
        robustness_report(x[:0], y[:0], clean_pred[:0], x_adv[:0], success[:0])
