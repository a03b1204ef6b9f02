"""Chapter 3: is the Bayes-optimal classifier robust? (paper section 2.1, appendices C.1-C.2, D.1-D.2).

``evaluate_bayes`` attacks the Bayes-optimal classifier of one dataset variant on a fresh test sample
with every attack asked for, keeps the smallest successful perturbation per sample, and builds the
robustness report (``nbhelpers.science.report``); for the symmetric variant it adds the per-sample bounds of
``nbhelpers.science.bounds`` (distance to the other class's component subspaces, certified radius). The rest
of the module checks the attacks (the step-halving check, the sandwich of certified radius and attack),
measures how thin the asymmetric components must be (``asymmetric_noise_study``) and writes the chapter's
metrics; ``ch3_figures`` draws its figures and tables.

Choices of ours (the paper leaves them open):

- the attacked samples are drawn with seed ``ATTACK_SEED_OFFSET + seed``, apart from the seeds of
  chapter 2's accuracy check (``seed + 100``) and of the train/test sets (``2 seed``, ``2 seed + 1``);
- the gradient attack's step defaults to ``DEFAULT_GRADIENT_STEP`` (see
  ``nbhelpers.science.attacks.gradient``) and its step budget grows as the step shrinks, so every step
  size may walk ``GRADIENT_PATH_LENGTH``;
- FMN's largest step is ``fmn_max_stepsize(profile)`` instead of the 0.1 the attack module picks for
  learned classifiers: its path before the first adversarial is at most ``max_stepsize * steps / 2``
  long (cosine-annealed steps), 5 for 0.1 and the quick profile's 100 steps, too short for symmetric
  CelebA samples (boundaries up to ~10 away). We give FMN the gradient attack's budget,
  ``GRADIENT_PATH_LENGTH``; larger steps (foolbox's default 1.0) overshoot the asymmetric MNIST
  boundaries (~0.5 away) and end 30% above the gradient attack there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from nbhelpers.chapters.evaluation import attack_model
from nbhelpers.chapters.ids import BAYES
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.resultset import Result
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import json_number
from nbhelpers.science.attacks import AttackResult, L2ComponentGradientAttack, check_attack_names
from nbhelpers.science.bounds import SubspaceDistances, certified_radius, nearest_subspace_distances
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.datasets import (
    ASYMMETRIC_BASE,
    MIN_VARIANCE,
    TaskModels,
    make_asymmetric,
    make_symmetric,
    sample_dataset,
)
from nbhelpers.science.report import RobustnessReport, report_from_attacks

CHAPTER = BAYES
ATTACK_SEED_OFFSET = 1000
DEFAULT_GRADIENT_STEP = 0.05  # L2ComponentGradientAttack's default: 2-5% of the symmetric perturbations
GRADIENT_PATH_LENGTH = 20.0  # L2 the gradient attack may walk (400 steps of 0.05)
SANDWICH_RTOL = 1e-5  # float32 adversarials round their L2 by ~1e-6 relative


@dataclass
class BayesEvaluation:
    """One variant's Bayes-optimal classifier under attack.

    x: ``[n, d]`` float32 attacked samples (CPU), y: ``[n]`` int64 labels; result: the per-sample best
    attack (``result.per_attack_l2`` holds each attack's L2); report: the robustness report of it;
    adv_component: ``[n]`` int64, the other class's most likely component at the adversarial (-1 where
    the sample is not evaluated); n_components: (K of class 0, K of class 1). Symmetric variant only
    (else None): certified ``[n]`` (rigorous radius, 0 where misclassified) and distances (to the
    nearest component subspace of each class). seconds: wall time of the attacks and bounds.
    asymmetric_base and min_variance: the models' reading of appendix B.2 and the EM's variance floor.
    drawn_component: ``[n]`` int64, the component (of its own class's model) each sample was drawn from.
    """

    dataset: str
    attribute: str
    profile: str
    seed: int
    variant: str
    class_names: tuple[str, str]
    image_shape: tuple[int, ...]
    classifier: BayesClassifier
    x: torch.Tensor
    y: torch.Tensor
    attacks: tuple[str, ...]
    gradient_step: float
    result: AttackResult
    report: RobustnessReport
    adv_component: np.ndarray
    n_components: tuple[int, int]
    certified: np.ndarray | None
    distances: SubspaceDistances | None
    seconds: float
    asymmetric_base: str = ASYMMETRIC_BASE
    min_variance: float = MIN_VARIANCE
    drawn_component: np.ndarray | None = None

    @property
    def evaluated(self) -> np.ndarray:
        """``[n]`` bool: correctly classified and successfully attacked (what the mean L2 averages over)."""
        return ((self.result.clean_pred == self.y) & self.result.success).numpy()

    @property
    def l2(self) -> np.ndarray:
        """``[n]`` float64 best-attack L2, ``inf`` where the sample is not evaluated."""
        return np.where(self.evaluated, self.result.l2.numpy(), np.inf)

    def outlier_share(self, regular_only: bool = False) -> float | None:
        """Asymmetric variant: share of the evaluated samples whose adversarial is held by the other
        class's outlier component (its last; Lemma 1's route). ``regular_only``: among the samples drawn
        from the regular components only (a sample drawn from its own class's outlier reaches the other
        outlier whatever the route of the rest). None for other variants or none evaluated."""
        mask = self.evaluated
        if regular_only:
            if self.drawn_component is None:
                return None
            own_outlier = np.asarray(self.n_components)[self.y.numpy()] - 1
            mask = mask & (self.drawn_component != own_outlier)
        if self.variant != "asymmetric" or not mask.any():
            return None
        other = 1 - self.y.numpy()
        outlier = np.asarray(self.n_components)[other] - 1
        return float((self.adv_component == outlier)[mask].mean())

    def bound_means(self) -> tuple[float, float]:
        """(mean distance to the other class's nearest subspace, mean certified radius) over the evaluated
        samples, the same samples as the mean L2; NaN where there are no bounds or no evaluated sample."""
        if self.distances is None or self.certified is None or not self.evaluated.any():
            return math.nan, math.nan
        mask = self.evaluated
        return float(self.distances.other[mask].mean()), float(self.certified[mask].mean())


def resolve_n_attack(n_attack: int | None, profile: str) -> int:
    """``n_attack`` checked, or the profile's ``attacks.n_attack`` for None."""
    if n_attack is None:
        return get_profile(profile).attacks.n_attack
    if isinstance(n_attack, bool) or not isinstance(n_attack, (int, np.integer)) or n_attack < 1:
        default = get_profile(profile).attacks.n_attack
        raise ValueError(
            f"n_attack must be a positive integer (test samples attacked per variant) or None for the "
            f"{profile!r} profile's {default}, got {n_attack!r}"
        )
    return int(n_attack)


def _check_step(gradient_step: float | None) -> float:
    if gradient_step is None:
        return DEFAULT_GRADIENT_STEP
    if (
        isinstance(gradient_step, bool)
        or not isinstance(gradient_step, (int, float))
        or not (math.isfinite(gradient_step) and gradient_step > 0)
    ):
        raise ValueError(
            "gradient_step must be a positive number (the L2 length of each gradient-attack step, "
            f"default {DEFAULT_GRADIENT_STEP}) or None, got {gradient_step!r}"
        )
    return float(gradient_step)


def _gradient_kwargs(step: float) -> dict[str, float | int]:
    """The gradient attack's step ``step`` and enough steps to walk ``GRADIENT_PATH_LENGTH``."""
    return {"step_size": step, "max_steps": max(400, math.ceil(GRADIENT_PATH_LENGTH / step))}


def fmn_max_stepsize(profile: str) -> float:
    """FMN's largest step for the profile's step count: its path may then be ``GRADIENT_PATH_LENGTH`` long."""
    return 2 * GRADIENT_PATH_LENGTH / get_profile(profile).attacks.min_norm_steps


def evaluate_bayes(
    models: TaskModels,
    variant: str,
    n_attack: int | None = None,
    attacks: Sequence[str] | str = ("gradient", "cw", "fmn"),
    seed: int = 0,
    device: str = "auto",
    gradient_step: float | None = None,
    progress: bool = True,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> BayesEvaluation:
    """Attack the Bayes-optimal classifier of ``models.pair(variant)`` on ``n_attack`` fresh samples.

    Args:
        models: the task's models (``nbhelpers.science.datasets.build_task_models``); the variant's two MFAs
            are moved to ``device`` in place.
        variant: "symmetric", "asymmetric" (or "fitted").
        n_attack: samples attacked (half per class, an odd count drops one at random); None: the
            profile's ``attacks.n_attack``.
        attacks: names from ``nbhelpers.science.attacks.ATTACKS``; each sample keeps its smallest
            perturbation.
        seed: the samples are drawn with seed ``ATTACK_SEED_OFFSET + seed``.
        device: "auto", "cpu" or "cuda".
        gradient_step: L2 step of the gradient attack (None: ``DEFAULT_GRADIENT_STEP``).
        progress: show progress bars.
        checkpoints: keep each finished attack (and the bounds) there (the run's checkpoints) and reuse
            those an interrupted run left; by default every step is computed.
    """
    names = check_attack_names(attacks)
    step = _check_step(gradient_step)
    n = resolve_n_attack(n_attack, models.profile)
    pair = models.pair(variant)
    dev = resolve_device(device)
    start = time.perf_counter()
    x_np, y_np, drawn = sample_dataset(
        pair, math.ceil(n / 2), seed=ATTACK_SEED_OFFSET + seed, components=True
    )
    x, y = torch.from_numpy(x_np[:n]), torch.from_numpy(y_np[:n])
    classifier = BayesClassifier(*pair).to(dev)
    result = attack_model(
        classifier,
        x,
        y,
        names,
        budget=get_profile(models.profile).attacks.budget,
        gradient_kwargs=_gradient_kwargs(step),
        foolbox_kwargs={"fmn": {"max_stepsize": fmn_max_stepsize(models.profile)}},
        device=dev,
        progress=progress,
        checkpoints=checkpoints,
        tag=variant,
    )
    report = report_from_attacks(x, y, result)
    evaluated = ((result.clean_pred == y) & result.success).numpy()

    adv_component = np.full(n, -1, dtype=np.int64)
    if evaluated.any():
        with torch.no_grad():
            lp0, lp1 = classifier.class_component_log_probs(result.x_adv[evaluated].to(dev))
        other_is_0 = torch.from_numpy(y_np[:n][evaluated] == 1).to(lp0.device)
        adv_component[evaluated] = torch.where(other_is_0, lp0.argmax(dim=1), lp1.argmax(dim=1)).cpu().numpy()

    certified, distances = None, None
    if variant == "symmetric":
        certified, distances = checkpoints.run(
            "bounds_symmetric", symmetric_bounds, classifier=classifier, x=x, y=y
        )
    return BayesEvaluation(
        dataset=models.dataset,
        attribute=models.attribute,
        profile=models.profile,
        seed=seed,
        variant=variant,
        class_names=tuple(models.class_names),
        image_shape=tuple(models.image_shape),
        classifier=classifier,
        x=x,
        y=y,
        attacks=names,
        gradient_step=step,
        result=result,
        report=report,
        adv_component=adv_component,
        n_components=(pair[0].K, pair[1].K),
        certified=certified,
        distances=distances,
        seconds=time.perf_counter() - start,
        asymmetric_base=models.asymmetric_base,
        min_variance=models.min_variance,
        drawn_component=drawn[:n],
    )


def symmetric_bounds(
    classifier: BayesClassifier, x: torch.Tensor, y: torch.Tensor
) -> tuple[np.ndarray, SubspaceDistances]:
    """The symmetric variant's bounds on each sample x [n, d] (labels y [n]): its certified radius [n] and its
    distances to the nearest component subspace of each class (Lemma 3)."""
    radius = certified_radius(classifier, x, y).cpu().numpy()
    return radius, nearest_subspace_distances(classifier, x, y)


def gradient_attack_l2(
    classifier: BayesClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: dict[str, float | int],
    progress: bool = True,
) -> torch.Tensor:
    """L2 [n] (CPU, ``inf`` where it failed) of the gradient attack with ``settings`` on x [n, d], y [n]."""
    return L2ComponentGradientAttack(**settings)(classifier, x, y, progress=progress).l2.cpu()


def fitted_noise_std(models: TaskModels) -> float:
    """The median over both classes' fitted components of each one's median per-pixel noise std."""
    medians = [torch.exp(0.5 * mfa.log_D).double().median(dim=1).values.cpu() for mfa in models.fitted]
    return float(torch.cat(medians).median())


def asymmetric_noise_study(
    models: TaskModels,
    sigmas: Sequence[float | None],
    n_attack: int | None = None,
    seed: int = 0,
    device: str = "auto",
    gradient_step: float | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """How the asymmetric dataset's fragility depends on how thin its components are (Lemma 1).

    For each of ``sigmas`` the asymmetric pair is rebuilt from the fitted pair with every component's
    noise std set to sigma (``datasets.make_symmetric``; None keeps the fitted noise: the chapter's own
    asymmetric pair), the same outliers added (``datasets.make_asymmetric``), and its Bayes-optimal
    classifier attacked with the gradient attack on ``n_attack`` fresh samples (seed ``seed``).

    Returns one row per sigma: "noise" ("fitted" or "set"), "noise std" (sigma, or
    :func:`fitted_noise_std`), clean accuracy, mean and median L2 over the evaluated samples, their count,
    "outlier share" (the share of them whose adversarial the other class's outlier holds: Lemma 1's route)
    and the seconds the attack took.
    """
    if not sigmas:
        raise ValueError("sigmas is empty: give noise stds (e.g. 0.01) and/or None for the fitted noise")
    for sigma in sigmas:
        if sigma is not None and (isinstance(sigma, bool) or not (math.isfinite(sigma) and sigma > 0)):
            raise ValueError(
                f"each sigma must be a positive noise std or None (the fitted noise), got {sigma!r}"
            )
    rows = []
    for sigma in sigmas:
        pair = models.fitted if sigma is None else tuple(make_symmetric(mfa, sigma) for mfa in models.fitted)
        asymmetric = make_asymmetric(
            pair, models.data_mean, models.outlier_direction, models.outlier_step, models.outlier_weight
        )
        variant = replace(models, asymmetric=asymmetric)
        evaluation = evaluate_bayes(
            variant, "asymmetric", n_attack, ["gradient"], seed, device, gradient_step, progress
        )
        report = evaluation.report
        rows.append(
            {
                "noise": "fitted" if sigma is None else "set",
                "noise std": fitted_noise_std(models) if sigma is None else float(sigma),
                "clean accuracy": report.clean_accuracy,
                "mean L2": report.mean_l2,
                "median L2": report.median_l2,
                "evaluated": report.n_evaluated,
                "outlier share": evaluation.outlier_share(),
                "seconds": evaluation.seconds,
            }
        )
    return pd.DataFrame(rows)


@dataclass
class StepHalving:
    """The gradient attack's mean L2 at ``step`` and at ``step / 2`` over the ``n`` correctly classified
    samples both runs broke."""

    variant: str
    step: float
    mean_l2: float
    mean_l2_half: float
    n: int

    @property
    def relative_change(self) -> float:
        """(half-step mean - mean) / mean."""
        return (self.mean_l2_half - self.mean_l2) / self.mean_l2


def step_halving_check(
    evaluation: BayesEvaluation,
    device: str = "auto",
    progress: bool = True,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> StepHalving:
    """Rerun the gradient attack on ``evaluation``'s samples with half its step; return both mean L2s.

    The full-step run is reused when the evaluation ran the gradient attack, otherwise it runs too.
    ``checkpoints``: keep the reruns there (the run's checkpoints), and reuse those an interrupted run left.
    """
    dev = resolve_device(device)
    classifier = evaluation.classifier.to(dev)
    x, y = evaluation.x.to(dev), evaluation.y.to(dev)
    step = evaluation.gradient_step

    def gradient_l2(step: float) -> torch.Tensor:
        return checkpoints.run(
            f"step_halving_{evaluation.variant}",
            gradient_attack_l2,
            classifier=classifier,
            x=x,
            y=y,
            settings=_gradient_kwargs(step),
            progress=progress,
        )

    full = evaluation.result.per_attack_l2.get("gradient")
    full = gradient_l2(step) if full is None else full.cpu()
    half = gradient_l2(step / 2)
    correct = evaluation.result.clean_pred == evaluation.y
    keep = (correct & torch.isfinite(full) & torch.isfinite(half)).numpy()
    full_np, half_np = full.numpy()[keep], half.numpy()[keep]
    mean = float(full_np.mean()) if keep.any() else math.nan
    mean_half = float(half_np.mean()) if keep.any() else math.nan
    return StepHalving(evaluation.variant, step, mean, mean_half, int(keep.sum()))


def _require_bounds(evaluation: BayesEvaluation) -> tuple[np.ndarray, SubspaceDistances]:
    if evaluation.certified is None or evaluation.distances is None:
        raise ValueError(
            f"the {evaluation.variant!r} evaluation has no bounds: they are computed for the symmetric "
            "variant only, pass evaluate_bayes(models, 'symmetric', ...)"
        )
    return evaluation.certified, evaluation.distances


def sandwich_violations(evaluation: BayesEvaluation, rtol: float = SANDWICH_RTOL) -> int:
    """Evaluated samples whose best attack L2 lies below their certified radius (a bug if ever > 0)."""
    certified, _ = _require_bounds(evaluation)
    mask = evaluation.evaluated
    return int((evaluation.l2[mask] < certified[mask] * (1 - rtol)).sum())


def chapter3_metrics(
    symmetric: BayesEvaluation, asymmetric: BayesEvaluation, step_halving: Sequence[StepHalving] = ()
) -> dict[str, Any]:
    """The metrics of the chapter's result: ``bayes_symmetric`` and ``bayes_asymmetric`` (report dicts),
    ``subspace_distance_mean`` and ``certified_radius_mean`` (symmetric, over the evaluated samples),
    ``asymmetric_outlier_share`` (over all evaluated samples and, ``asymmetric_outlier_share_regular``, over
    those drawn from the regular components) and, per checked variant, ``step_halving.<variant>.{mean_l2,
    mean_l2_half_step}``."""
    if symmetric.variant != "symmetric" or asymmetric.variant != "asymmetric":
        raise ValueError(
            "pass the symmetric then the asymmetric evaluation, got "
            f"{symmetric.variant!r} and {asymmetric.variant!r}"
        )
    keys = ("dataset", "attribute", "profile", "seed")
    if any(getattr(symmetric, k) != getattr(asymmetric, k) for k in keys):
        raise ValueError(
            "the two evaluations come from different tasks, profiles or seeds: evaluate both on one task"
        )
    distance, radius = symmetric.bound_means()
    return {
        "bayes_symmetric": symmetric.report.to_dict(),
        "bayes_asymmetric": asymmetric.report.to_dict(),
        "subspace_distance_mean": json_number(distance),
        "certified_radius_mean": json_number(radius),
        "asymmetric_outlier_share": asymmetric.outlier_share(),
        "asymmetric_outlier_share_regular": asymmetric.outlier_share(regular_only=True),
        "step_halving": {
            c.variant: {"mean_l2": json_number(c.mean_l2), "mean_l2_half_step": json_number(c.mean_l2_half)}
            for c in step_halving
        },
    }


def chapter3_result(
    symmetric: BayesEvaluation, asymmetric: BayesEvaluation, step_halving: Sequence[StepHalving] = ()
) -> Result:
    """The chapter's result (``chapter3_metrics``), with the attacks and gradient step it ran with, the
    reading of appendix B.2 the asymmetric pair was built by and the EM's variance floor."""
    metrics = chapter3_metrics(symmetric, asymmetric, step_halving)
    params = {
        "attacks": list(symmetric.attacks),
        "gradient_step": symmetric.gradient_step,
        "asymmetric_base": asymmetric.asymmetric_base,
        "min_variance": asymmetric.min_variance,
    }
    return Result(
        CHAPTER, symmetric.dataset, symmetric.attribute, symmetric.profile, symmetric.seed, metrics, params
    )


def attack_results(*evaluations: BayesEvaluation) -> tuple[dict[str, AttackResult], dict[str, torch.Tensor]]:
    """Per variant, the attacks' outcome and the labels of ``evaluations``: the arguments of
    ``evaluation.attack_table`` (with ``index="variant"``)."""
    return {ev.variant: ev.result for ev in evaluations}, {ev.variant: ev.y for ev in evaluations}
