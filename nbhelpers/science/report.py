"""The robustness report of paper section 2.1 ("Evaluating the robustness").

Definitions (``n`` attacked samples, true labels ``y``):

- clean accuracy: fraction of the ``n`` samples the model labels correctly.
- the evaluated subset: samples that are correctly classified AND successfully attacked
  (the adversarial's label differs from ``y``). The attacks have an unlimited budget, and
  "the mean is calculated only over successful attacks, when the original sample was
  correctly classified and the adversarial example was not".
- mean / median L2: of ``||x_adv - x||`` over that subset.
- adversarial accuracy (the bracketed numbers of the paper's Tables 1-2): fraction of the
  ``n`` samples that are correctly classified and that no attack could flip, i.e. the accuracy
  left after the unlimited-budget attack. Misclassified samples count as errors.
- pixel changes: ``|x_adv - x| * 255`` per pixel (0-255 scale) over the subset, with the fraction
  of pixels changed by more than 5/255 (the paper's perceptibility yardstick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nbhelpers.science.attacks.best_of import AttackResult

# histogram bins of the pixel changes on the 0-255 scale: one per intensity level
PIXEL_BINS = np.arange(0, 257, dtype=float)
PERCEPTIBLE_LEVELS = 5.0


def _numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if torch.is_tensor(a) else np.asarray(a)


@dataclass
class RobustnessReport:
    """Numbers of one attacked model (see the module docstring for the definitions).

    l2: ``[m]`` L2 norms over the evaluated subset (``m = n_evaluated``);
    pixel_hist: ``[256]`` counts of per-pixel absolute changes in bins ``[k, k + 1)`` on the 0-255
    scale (the last bin includes 256).
    """

    n: int
    n_correct: int
    n_evaluated: int
    clean_accuracy: float
    adversarial_accuracy: float
    mean_l2: float
    median_l2: float
    frac_pixels_above_5: float
    l2: np.ndarray
    pixel_hist: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready metrics for ``nbhelpers.runs.results.save_result`` (NaN -> None)."""

        def num(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            "n": self.n,
            "n_correct": self.n_correct,
            "n_evaluated": self.n_evaluated,
            "clean_accuracy": num(self.clean_accuracy),
            "adversarial_accuracy": num(self.adversarial_accuracy),
            "mean_l2": num(self.mean_l2),
            "median_l2": num(self.median_l2),
            "frac_pixels_above_5": num(self.frac_pixels_above_5),
            "l2": [float(v) for v in self.l2],
            "pixel_hist": [int(v) for v in self.pixel_hist],
        }


def robustness_report(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    clean_pred: torch.Tensor | np.ndarray,
    x_adv: torch.Tensor | np.ndarray,
    success: torch.Tensor | np.ndarray,
) -> RobustnessReport:
    """Report from clean inputs ``x`` ``[n, ...]`` in [0, 1], labels ``y`` ``[n]``, clean predictions ``[n]``,
    adversarials ``x_adv`` (x's shape) and per-sample attack ``success`` ``[n]`` (label at x_adv != y)."""
    x, x_adv = _numpy(x).astype(np.float64), _numpy(x_adv).astype(np.float64)
    y, clean_pred = _numpy(y).reshape(-1), _numpy(clean_pred).reshape(-1)
    success = _numpy(success).reshape(-1).astype(bool)
    n = x.shape[0]
    if n == 0:
        raise ValueError("no samples: the report needs at least one attacked sample")
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv has shape {x_adv.shape} but x has {x.shape}: pass the adversarials of x")
    for name, arr in (("y", y), ("clean_pred", clean_pred), ("success", success)):
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} entries for {n} samples")
    correct = clean_pred == y
    evaluated = correct & success
    delta = (x_adv - x).reshape(n, -1)[evaluated]  # [m, d]
    l2 = np.linalg.norm(delta, axis=1)
    changes = np.abs(delta).ravel() * 255.0
    hist, _ = np.histogram(changes, bins=PIXEL_BINS)
    return RobustnessReport(
        n=n,
        n_correct=int(correct.sum()),
        n_evaluated=int(evaluated.sum()),
        clean_accuracy=float(correct.mean()),
        adversarial_accuracy=float((correct & ~success).mean()),
        mean_l2=float(l2.mean()) if l2.size else float("nan"),
        median_l2=float(np.median(l2)) if l2.size else float("nan"),
        frac_pixels_above_5=float((changes > PERCEPTIBLE_LEVELS).mean()) if changes.size else float("nan"),
        l2=l2,
        pixel_hist=hist,
    )


def report_from_attacks(x: torch.Tensor, y: torch.Tensor, result: AttackResult) -> RobustnessReport:
    """``robustness_report`` of ``run_attacks``' best adversarials of ``x`` ``[n, ...]`` (labels ``y``)."""
    return robustness_report(x, y, result.clean_pred, result.x_adv, result.success)
