"""Chapter 3: is the Bayes-optimal classifier robust? (paper section 2.1, appendices C.1-C.2, D.1-D.2).

``evaluate_bayes`` attacks the Bayes-optimal classifier of one dataset variant on a fresh test sample
with every attack asked for, keeps the smallest successful perturbation per sample, and builds the
robustness report (``nbhelpers.report``); for the symmetric variant it adds the per-sample bounds of
``nbhelpers.bounds`` (distance to the other class's component subspaces, certified radius). The rest
of the module turns two such evaluations into the chapter's figures (Figures 4/12 and 11, the
lower/upper-bound sandwich), tables (ours beside the paper's, the attacks compared, the step-halving
check, the learned noise) and its result file.

Choices of ours (the paper leaves them open):

- the attacked samples are drawn with seed ``ATTACK_SEED_OFFSET + seed``, apart from the seeds of
  chapter 2's accuracy check (``seed + 100``) and of the train/test sets (``2 seed``, ``2 seed + 1``);
- the gradient attack's step defaults to ``DEFAULT_GRADIENT_STEP`` (see ``nbhelpers.attacks.gradient``)
  and its step budget grows as the step shrinks, so every step size may walk ``GRADIENT_PATH_LENGTH``;
- FMN's largest step is ``fmn_max_stepsize(profile)`` instead of the 0.1 the attack module picks for
  learned classifiers: its path before the first adversarial is at most ``max_stepsize * steps / 2``
  long (cosine-annealed steps), 5 for 0.1 and the quick profile's 100 steps, too short for symmetric
  CelebA samples (boundaries up to ~10 away). We give FMN the gradient attack's budget,
  ``GRADIENT_PATH_LENGTH``; larger steps (foolbox's default 1.0) overshoot the asymmetric MNIST
  boundaries (~0.5 away) and end 30% above the gradient attack there.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from nbhelpers import paper_values as pv
from nbhelpers.attacks import ATTACKS, AttackResult, L2ComponentGradientAttack, run_attacks
from nbhelpers.bounds import SubspaceDistances, certified_radius, nearest_subspace_distances
from nbhelpers.bounds import plot_figure11 as plot_distance_histogram
from nbhelpers.checkpoints import Checkpoints, run_checkpoints
from nbhelpers.classifier import BayesClassifier
from nbhelpers.config import get_device, get_profile
from nbhelpers.data import to_hwc
from nbhelpers.dataset_plots import show_image
from nbhelpers.datasets import (
    OUTLIER_SIGMA,
    SYMMETRIC_SIGMA,
    TaskModels,
    make_asymmetric,
    make_symmetric,
    sample_dataset,
)
from nbhelpers.display import Markdown
from nbhelpers.report import PERCEPTIBLE_LEVELS, PIXEL_BINS, RobustnessReport, report_from_attacks
from nbhelpers.results import save_result

CHAPTER = "03_bayes_robustness"
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

    @property
    def evaluated(self) -> np.ndarray:
        """``[n]`` bool: correctly classified and successfully attacked (what the mean L2 averages over)."""
        return ((self.result.clean_pred == self.y) & self.result.success).numpy()

    @property
    def l2(self) -> np.ndarray:
        """``[n]`` float64 best-attack L2, ``inf`` where the sample is not evaluated."""
        return np.where(self.evaluated, self.result.l2.numpy(), np.inf)

    def outlier_share(self) -> float | None:
        """Asymmetric variant: share of the evaluated samples whose adversarial is held by the other
        class's outlier component (its last; Lemma 1's route). None for other variants or none evaluated."""
        if self.variant != "asymmetric" or not self.evaluated.any():
            return None
        other = 1 - self.y.numpy()
        outlier = np.asarray(self.n_components)[other] - 1
        return float((self.adv_component == outlier)[self.evaluated].mean())

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


def _check_attacks(attacks: Sequence[str] | str) -> tuple[str, ...]:
    names = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    unknown = [a for a in names if a not in ATTACKS]
    valid = ", ".join(repr(a) for a in ATTACKS)
    if unknown:
        raise ValueError(f"unknown attack name(s) {unknown}: valid names are {valid}")
    if not names:
        raise ValueError(f"no attack given: pass a list of one or more of {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"attack names repeat in {list(names)}: list each once")
    return names


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


def _checkpoints(dataset: str, attribute: str, profile: str, seed: int, resume: bool) -> Checkpoints:
    return run_checkpoints(CHAPTER, dataset, attribute, profile, seed) if resume else Checkpoints(None)


def evaluate_bayes(
    models: TaskModels,
    variant: str,
    n_attack: int | None = None,
    attacks: Sequence[str] | str = ("gradient", "cw", "fmn"),
    seed: int = 0,
    device: str = "auto",
    gradient_step: float | None = None,
    progress: bool = True,
    resume: bool = True,
) -> BayesEvaluation:
    """Attack the Bayes-optimal classifier of ``models.pair(variant)`` on ``n_attack`` fresh samples.

    Args:
        models: the task's models (``nbhelpers.datasets.build_task_models``); the variant's two MFAs
            are moved to ``device`` in place.
        variant: "symmetric", "asymmetric" (or "fitted").
        n_attack: samples attacked (half per class, an odd count drops one at random); None: the
            profile's ``attacks.n_attack``.
        attacks: names from ``nbhelpers.attacks.ATTACKS``; each sample keeps its smallest perturbation.
        seed: the samples are drawn with seed ``ATTACK_SEED_OFFSET + seed``.
        device: "auto", "cpu" or "cuda".
        gradient_step: L2 step of the gradient attack (None: ``DEFAULT_GRADIENT_STEP``).
        progress: show progress bars.
        resume: keep each finished attack (and the bounds) in the run's checkpoints
            (``run_checkpoints(CHAPTER, ...)``) and reuse those an interrupted run left; False: compute all.
    """
    names = _check_attacks(attacks)
    step = _check_step(gradient_step)
    n = resolve_n_attack(n_attack, models.profile)
    pair = models.pair(variant)
    dev = get_device(device)
    start = time.perf_counter()
    x_np, y_np = sample_dataset(pair, math.ceil(n / 2), seed=ATTACK_SEED_OFFSET + seed)
    x, y = torch.from_numpy(x_np[:n]), torch.from_numpy(y_np[:n])
    classifier = BayesClassifier(*pair).to(dev)
    checkpoints = _checkpoints(models.dataset, models.attribute, models.profile, seed, resume)
    result = run_attacks(
        classifier,
        x,
        y,
        names,
        profile=models.profile,
        device=device,
        gradient_kwargs=_gradient_kwargs(step),
        foolbox_kwargs={"fmn": {"max_stepsize": fmn_max_stepsize(models.profile)}},
        progress=progress,
        checkpoints=checkpoints,
        checkpoint_tag=variant,
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

        def bounds() -> tuple[np.ndarray, SubspaceDistances]:
            radius = certified_radius(classifier, x, y).cpu().numpy()
            return radius, nearest_subspace_distances(classifier, x, y)

        code = ["nbhelpers.bounds"]
        certified, distances = checkpoints.cached("bounds_symmetric", (classifier, x, y), bounds, code=code)
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
    )


def plot_symmetric_vs_asymmetric(
    symmetric: BayesEvaluation, asymmetric: BayesEvaluation, n_show: int = 5
) -> Figure:
    """Figures 4 and 12: per variant, ``n_show`` originals, their best adversarials and the perturbations
    (magnified by the factor in the row label), with the histogram of per-pixel changes on the right."""
    if n_show < 1:
        raise ValueError(f"n_show must be at least 1, got {n_show}")
    fig = plt.figure(figsize=(1.5 * n_show + 4.2, 9.0), layout="constrained")
    grid = fig.add_gridspec(6, n_show + 3)
    for block, ev in enumerate((asymmetric, symmetric)):
        shown = np.flatnonzero(ev.evaluated)[:n_show]
        hist_ax = fig.add_subplot(grid[3 * block : 3 * block + 3, n_show:])
        rep = ev.report
        hist_ax.stairs(rep.pixel_hist, PIXEL_BINS, fill=True, alpha=0.7)
        hist_ax.axvline(PERCEPTIBLE_LEVELS, color="k", ls=":", lw=1, label="5/255")
        hist_ax.set_yscale("log")
        hist_ax.set_xlabel("absolute pixel change (0-255 levels)")
        hist_ax.set_ylabel("pixels")
        hist_ax.set_title(
            f"{ev.variant}: mean L2 {rep.mean_l2:.2f}\n"
            f"{100 * rep.frac_pixels_above_5:.0f}% of pixels changed by > 5/255",
            fontsize=10,
        )
        hist_ax.legend(fontsize=8)
        if shown.size == 0:
            continue
        x = ev.x[shown].numpy().astype(np.float64)
        x_adv = ev.result.x_adv[shown].numpy().astype(np.float64)
        delta = x_adv - x
        peak = np.abs(delta).max()
        magnify = 0.5 / peak if peak > 0 else 1.0
        images = [to_hwc(a, ev.image_shape) for a in (x, x_adv, 0.5 + magnify * delta)]
        labels = ("original", "adversarial", f"perturbation\nx{magnify:.2g}")
        for col, index in enumerate(shown):
            axes = [fig.add_subplot(grid[3 * block + row, col]) for row in range(3)]
            for row, ax in enumerate(axes):
                show_image(ax, images[row][col])
                if col == 0:
                    ax.set_ylabel(labels[row], fontsize=9)
            axes[0].set_title(f"{ev.class_names[int(ev.y[index])]}, L2 {ev.result.l2[index]:.2f}", fontsize=9)
    fig.suptitle(
        f"Bayes-optimal classifier, {symmetric.dataset}/{symmetric.attribute}: asymmetric (top) vs symmetric "
        "(bottom) dataset"
    )
    return fig


def paper_table(symmetric: BayesEvaluation, asymmetric: BayesEvaluation) -> pd.DataFrame:
    """Our numbers beside the paper's printed ones (Figures 4, 11, 12; Table 1) for this task.

    Rows: quantities; columns "ours", "paper" (NaN where the paper prints none for the task) and
    "paper source". Distances and radii average over the symmetric evaluated samples.
    """
    task = (symmetric.dataset, symmetric.attribute)
    figure = pv.FIGURE4_12_MEAN_L2.get(task, {})
    figure_source = pv.FIGURE4_12_SOURCES.get(task, "")
    distance, radius = symmetric.bound_means()
    s, a = symmetric.report, asymmetric.report
    paper_distance = pv.FIGURE11_SUBSPACE_DISTANCE_MEAN if task == pv.FIGURE11_TASK else math.nan
    table1 = pv.TABLE1.get(task, {}).get("bayes")
    paper_ratio = figure["symmetric"] / figure["asymmetric"] if figure else math.nan
    rows = [
        (
            "clean accuracy, symmetric",
            s.clean_accuracy,
            table1[0] if table1 else math.nan,
            pv.TABLE1_SOURCE if table1 else "",
        ),
        ("clean accuracy, asymmetric", a.clean_accuracy, math.nan, ""),
        ("mean L2, asymmetric", a.mean_l2, figure.get("asymmetric", math.nan), figure_source),
        ("mean L2, symmetric", s.mean_l2, figure.get("symmetric", math.nan), figure_source),
        (
            "ratio symmetric / asymmetric",
            s.mean_l2 / a.mean_l2,
            paper_ratio,
            f"{figure_source} (ratio of its labels)" if figure else "",
        ),
        ("pixels changed > 5/255, asymmetric", a.frac_pixels_above_5, math.nan, ""),
        ("pixels changed > 5/255, symmetric", s.frac_pixels_above_5, math.nan, ""),
        (
            "mean distance to the other class's subspaces",
            distance,
            paper_distance,
            pv.FIGURE11_SOURCE if task == pv.FIGURE11_TASK else "",
        ),
        ("half of it (Lemma 3, sigma -> 0)", distance / 2, math.nan, ""),
        ("mean certified radius, symmetric", radius, math.nan, ""),
    ]
    table = pd.DataFrame(rows, columns=["quantity", "ours", "paper", "paper source"]).set_index("quantity")
    table.attrs["title"] = f"{symmetric.dataset}/{symmetric.attribute}, {s.n} samples per variant"
    return table


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
            variant, "asymmetric", n_attack, ["gradient"], seed, device, gradient_step, progress, resume=False
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


def noise_table(models: TaskModels) -> pd.DataFrame:
    """The noise standard deviations behind the two variants, per class: the fitted models' learned
    diagonal noise (min, median, max over components and pixels), the symmetric sigma and the outlier's."""
    rows = []
    for label, mfa in enumerate(models.fitted):
        sigma = torch.exp(0.5 * mfa.log_D).double().cpu().numpy().ravel()
        rows.append(
            {
                "class": models.class_names[label],
                "components K": mfa.K,
                "latent dim l": mfa.l,
                "learned sigma: min": sigma.min(),
                "median": float(np.median(sigma)),
                "max": sigma.max(),
                "share at the floor sigma = 0.01": float((sigma <= SYMMETRIC_SIGMA * 1.001).mean()),
                "symmetric sigma": SYMMETRIC_SIGMA,
                "outlier sigma": OUTLIER_SIGMA,
                "outlier / median learned": OUTLIER_SIGMA / float(np.median(sigma)),
            }
        )
    return pd.DataFrame(rows).set_index("class")


def _learned_sigma(asymmetric: BayesEvaluation) -> np.ndarray:
    """Noise sigmas of the asymmetric pair's fitted components (every component but the outlier), flat."""
    return np.concatenate(
        [torch.exp(0.5 * mfa.log_D[:-1]).double().cpu().numpy().ravel() for mfa in asymmetric.classifier.mfas]
    )


def findings(symmetric: BayesEvaluation, asymmetric: BayesEvaluation) -> Markdown:
    """What this run measured, in sentences computed from its numbers (shown as Markdown)."""
    task = (symmetric.dataset, symmetric.attribute)
    s, a = symmetric.report, asymmetric.report
    ratio = s.mean_l2 / a.mean_l2
    lines = [
        f"**What we measure** ({task[0]}/{task[1]}, profile `{symmetric.profile}`, {s.n} samples per "
        f"variant, attacks {', '.join(symmetric.attacks)}): the Bayes-optimal classifier of the symmetric "
        f"dataset needs a mean L2 of **{s.mean_l2:.2f}** ({100 * s.frac_pixels_above_5:.0f}% of the attacked "
        f"samples' pixels move by more than 5/255), that of the asymmetric dataset **{a.mean_l2:.2f}** "
        f"({100 * a.frac_pixels_above_5:.0f}%): the symmetric one is {ratio:.1f} times as robust."
    ]
    paper = pv.FIGURE4_12_MEAN_L2.get(task)
    if paper:
        lines.append(
            f"The paper prints {paper['symmetric']} and {paper['asymmetric']} for this task "
            f"({pv.FIGURE4_12_SOURCES[task]}), a ratio of {paper['symmetric'] / paper['asymmetric']:.1f}."
        )
    contrast = "clear" if ratio >= 2 else "weak"
    lines.append(f"The contrast between the variants is **{contrast}** in this run.")
    share = asymmetric.outlier_share()
    sigma = _learned_sigma(asymmetric)
    median = float(np.median(sigma))
    floor = float((sigma <= SYMMETRIC_SIGMA * 1.001).mean())
    if share is not None:
        lines.append(
            f"On the asymmetric dataset {100 * share:.0f}% of the adversarials are held by the other "
            f"class's broad outlier component (sigma = {OUTLIER_SIGMA}), the route of Lemma 1. The fitted "
            f"components keep their learned noise: median sigma {median:.3f}, {OUTLIER_SIGMA / median:.1f} "
            f"times below the outlier's, with {100 * floor:.0f}% of the values at the floor sigma = "
            f"{SYMMETRIC_SIGMA}."
        )
        if share < 0.5:
            lines.append(
                "Most adversarials instead cross to a fitted component of the other class: with noise this "
                "broad there is no thin direction for the outlier to exploit, so the asymmetric dataset is "
                "nearly as hard to attack as the symmetric one."
            )
    distance, radius = symmetric.bound_means()
    if math.isfinite(distance):
        lines.append(
            f"Symmetric dataset, Lemma 3: the mean distance to the nearest component subspace of the other "
            f"class is {distance:.2f}, half of it {distance / 2:.2f}, against the attacks' {s.mean_l2:.2f}; "
            f"the mean certified radius is {radius:.2f}, and {sandwich_violations(symmetric)} of "
            f"{s.n_evaluated} samples have a best attack below their certified radius."
        )
    return Markdown("\n\n".join(lines))


def attack_table(evaluations: Sequence[BayesEvaluation]) -> pd.DataFrame:
    """The attacks compared, per variant: success rate (on the correctly classified samples), mean L2 over the
    samples every attack broke, mean ratio to the per-sample best, and on how many samples each was best."""
    rows = []
    for ev in evaluations:
        correct = (ev.result.clean_pred == ev.y).numpy()
        per = {name: ev.result.per_attack_l2[name].numpy() for name in ev.attacks}
        common = correct & np.all([np.isfinite(l2) for l2 in per.values()], axis=0)
        best = ev.result.l2.numpy()
        winners = np.array(ev.result.attack)
        for name, l2 in per.items():
            ok = correct & np.isfinite(l2) & (best > 0)
            rows.append(
                {
                    "variant": ev.variant,
                    "attack": name,
                    "success rate": float(np.isfinite(l2)[correct].mean()) if correct.any() else math.nan,
                    "mean L2 (all attacks broke)": float(l2[common].mean()) if common.any() else math.nan,
                    "mean L2 / best": float((l2[ok] / best[ok]).mean()) if ok.any() else math.nan,
                    "best on": int((winners[ev.evaluated] == name).sum()),
                    "of": int(ev.evaluated.sum()),
                }
            )
    return pd.DataFrame(rows).set_index(["variant", "attack"])


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
    evaluation: BayesEvaluation, device: str = "auto", progress: bool = True, resume: bool = True
) -> StepHalving:
    """Rerun the gradient attack on ``evaluation``'s samples with half its step; return both mean L2s.

    The full-step run is reused when the evaluation ran the gradient attack, otherwise it runs too.
    ``resume``: keep the reruns in the run's checkpoints, and reuse those an interrupted run left.
    """
    dev = get_device(device)
    classifier = evaluation.classifier.to(dev)
    x, y = evaluation.x.to(dev), evaluation.y.to(dev)
    step = evaluation.gradient_step
    checkpoints = _checkpoints(
        evaluation.dataset, evaluation.attribute, evaluation.profile, evaluation.seed, resume
    )

    def gradient_l2(step: float) -> torch.Tensor:
        def attack() -> torch.Tensor:
            return L2ComponentGradientAttack(**_gradient_kwargs(step))(
                classifier, x, y, progress=progress
            ).l2.cpu()

        inputs = (classifier, x, y, _gradient_kwargs(step))
        code = ["nbhelpers.attacks.gradient", "nbhelpers.classifier"]
        return checkpoints.cached(f"step_halving_{evaluation.variant}", inputs, attack, code=code)

    full = evaluation.result.per_attack_l2.get("gradient")
    full = gradient_l2(step) if full is None else full.cpu()
    half = gradient_l2(step / 2)
    correct = evaluation.result.clean_pred == evaluation.y
    keep = (correct & torch.isfinite(full) & torch.isfinite(half)).numpy()
    full_np, half_np = full.numpy()[keep], half.numpy()[keep]
    mean = float(full_np.mean()) if keep.any() else math.nan
    mean_half = float(half_np.mean()) if keep.any() else math.nan
    return StepHalving(evaluation.variant, step, mean, mean_half, int(keep.sum()))


def step_halving_table(checks: Sequence[StepHalving]) -> pd.DataFrame:
    """One row per check: the step, both mean L2s and the relative change."""
    return pd.DataFrame(
        [
            {
                "variant": c.variant,
                "step": c.step,
                "mean L2": c.mean_l2,
                "mean L2, half step": c.mean_l2_half,
                "relative change": c.relative_change,
                "samples": c.n,
            }
            for c in checks
        ]
    ).set_index("variant")


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


def plot_figure11(evaluation: BayesEvaluation) -> Figure:
    """Figure 11: histogram of each symmetric sample's distance to the nearest subspace of the other class
    (the paper's mean for Male/Female as a dotted line), and half of it beside the best attack's L2 and the
    certified radius (right)."""
    certified, distances = _require_bounds(evaluation)
    fig = plot_distance_histogram(distances, attack_l2=evaluation.l2, certified=certified)
    if (evaluation.dataset, evaluation.attribute) == pv.FIGURE11_TASK:
        ax = fig.axes[0]
        ax.axvline(
            pv.FIGURE11_SUBSPACE_DISTANCE_MEAN,
            color="tab:orange",
            ls=":",
            label=f"paper mean {pv.FIGURE11_SUBSPACE_DISTANCE_MEAN}",
        )
        ax.legend()
    fig.suptitle(f"Symmetric {evaluation.dataset}/{evaluation.attribute} (Figure 11)")
    fig.tight_layout()
    return fig


def plot_sandwich(evaluation: BayesEvaluation) -> Figure:
    """Per evaluated sample (sorted by the best attack's L2), the interval that holds its true distance to the
    decision boundary: from the certified radius (lower bound) to the best attack's L2 (upper bound), with
    half the distance to the other class's nearest subspace (Lemma 3 as sigma -> 0) for reference."""
    certified, distances = _require_bounds(evaluation)
    mask = evaluation.evaluated
    if not mask.any():
        raise ValueError("no evaluated sample: every attack failed or every sample was misclassified")
    upper, lower, half = evaluation.l2[mask], certified[mask], distances.half_other[mask]
    order = np.argsort(upper)
    rank = np.arange(order.size)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.vlines(rank, lower[order], upper[order], color="0.6", lw=2, label="true distance lies here")
    ax.scatter(rank, upper[order], s=14, color="tab:red", label="best attack (upper bound)", zorder=3)
    ax.scatter(rank, lower[order], s=14, color="tab:green", label="certified radius (lower bound)", zorder=3)
    ax.scatter(
        rank,
        half[order],
        s=14,
        marker="x",
        color="tab:blue",
        label="half distance to other-class subspace",
        zorder=3,
    )
    ax.set_xlabel("evaluated samples, sorted by the best attack's L2")
    ax.set_ylabel(r"$\ell_2$")
    ax.set_title(
        f"Symmetric {evaluation.dataset}/{evaluation.attribute}: certified radius / best attack = "
        f"{(lower / upper).mean():.2f} on average"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _finite(value: float) -> float | None:
    """JSON has no NaN: an undefined mean is stored as null."""
    return value if math.isfinite(value) else None


def save_bayes_result(
    symmetric: BayesEvaluation,
    asymmetric: BayesEvaluation,
    results_dir: str | os.PathLike | None = None,
    step_halving: Sequence[StepHalving] = (),
) -> Path:
    """Write the chapter's result file (``nbhelpers.results.save_result``) and return its path.

    metrics: ``bayes_symmetric`` and ``bayes_asymmetric`` (report dicts), ``subspace_distance_mean`` and
    ``certified_radius_mean`` (symmetric, over the evaluated samples), ``asymmetric_outlier_share`` and,
    per checked variant, ``step_halving.<variant>.{mean_l2, mean_l2_half_step}``.
    """
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
    metrics = {
        "bayes_symmetric": symmetric.report.to_dict(),
        "bayes_asymmetric": asymmetric.report.to_dict(),
        "subspace_distance_mean": _finite(distance),
        "certified_radius_mean": _finite(radius),
        "asymmetric_outlier_share": asymmetric.outlier_share(),
        "step_halving": {
            c.variant: {"mean_l2": _finite(c.mean_l2), "mean_l2_half_step": _finite(c.mean_l2_half)}
            for c in step_halving
        },
    }
    return save_result(
        CHAPTER,
        symmetric.dataset,
        symmetric.attribute,
        symmetric.profile,
        symmetric.seed,
        metrics,
        results_dir,
        attacks=list(symmetric.attacks),
        gradient_step=symmetric.gradient_step,
    )
