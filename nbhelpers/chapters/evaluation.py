"""Models under attack, as chapters 3-5 measure them (paper section 2.1, "Evaluating the robustness").

- ``attack_model``: the chapters' attacks on one model, each attack a step that a run keeps
  (``nbhelpers.chapters.steps``), the smallest successful perturbation per sample kept;
- ``evaluate_models``: clean accuracy on a whole test set, then those attacks on a seeded subset of it, the
  same samples for every model, one ``RobustnessReport`` each (the Bayes-optimal classifier also gets the
  paper's gradient attack);
- ``score_classifier``: the same for any torch module on the test samples the chapters use, so a reader can
  set their own classifier beside the book's;
- ``compare_reports`` and ``attack_table``: the tables that read them.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from nbhelpers.chapters.paper_values import adversarial_accuracy
from nbhelpers.chapters.params import check_seed
from nbhelpers.chapters.plotting import model_label
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.device import resolve_device
from nbhelpers.core.progress import tqdm
from nbhelpers.science.attacks import (
    ATTACKS,
    FOOLBOX_ATTACKS,
    AttackBudget,
    AttackResult,
    check_attack_names,
    run_attack,
    smallest_per_sample,
)
from nbhelpers.science.attacks.best_of import attack_settings, check_inputs, clean_predictions
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import TaskData, canonical_task, load_task
from nbhelpers.science.datasets import VARIANTS, TaskModels, sample_dataset
from nbhelpers.science.report import RobustnessReport, report_from_attacks

#: ``score_classifier``'s test sets: the generative variants of chapter 2, or the real test images.
SCORE_VARIANTS: tuple[str, ...] = (*VARIANTS, "real")
DEFAULT_ATTACKS: tuple[str, ...] = ("cw", "fmn", "ddn")


def attack_model(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    attacks: Sequence[str] | str,
    *,
    budget: AttackBudget,
    gradient_kwargs: Mapping[str, Any] | None = None,
    foolbox_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
    checkpoints: Steps = NO_CHECKPOINTS,
    tag: str = "",
) -> AttackResult:
    """Attack x [n, ...] (true labels y [n]) with each of ``attacks`` and keep the best per sample.

    Each attack runs as the step ``attack_<tag>_<name>`` of ``checkpoints`` (``science.attacks.run_attack``
    with these settings), so a run killed during a long attack keeps the ones that finished.
    """
    names = check_attack_names(attacks)
    x, y = check_inputs(x, y)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    outcomes = {}
    for name in names:
        step = "_".join(part for part in ("attack", tag, name) if part)
        outcomes[name] = checkpoints.run(
            step,
            run_attack,
            model=model,
            x=x,
            y=y,
            name=name,
            budget=budget,
            settings=attack_settings(name, gradient_kwargs, foolbox_kwargs),
            batch_size=batch_size,
            device=dev,
            progress=progress,
        )
    return smallest_per_sample(x, clean_predictions(model, x, dev), outcomes)


@dataclass
class Evaluation:
    """Clean accuracy and attacks of several models on the same test set.

    ``x`` [m, d] and ``y`` [m]: the attacked samples (the same for every model), ``indices`` [m] their
    rows in the test set; ``results`` and ``reports``: per model, the attacks' outcome (best
    adversarial per sample) and its ``RobustnessReport``; ``test_accuracy``: per model, the accuracy on
    all ``n_test`` test samples; ``attacks``: per model, the attacks run; ``seconds``: per model, the wall
    time of its evaluation in this run (attacks reused from checkpoints take almost none).
    """

    x: Tensor
    y: Tensor
    indices: np.ndarray
    image_shape: tuple[int, int, int]
    results: dict[str, AttackResult]
    reports: dict[str, RobustnessReport]
    test_accuracy: dict[str, float]
    attacks: dict[str, list[str]]
    n_test: int
    seconds: dict[str, float] = field(default_factory=dict)


def check_attacks(attacks: Sequence[str] | str) -> list[str]:
    """Validate the attack list of the learned models: foolbox attacks, each once ("gradient" is ignored:
    it only applies to the Bayes-optimal classifier, which always gets it)."""
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack name(s) {unknown}: valid names are {', '.join(map(repr, ATTACKS))}")
    if len(set(attacks)) != len(attacks):
        raise ValueError(f"attack names repeat in {attacks}: list each once")
    learned = [a for a in attacks if a != "gradient"]
    if not learned:
        raise ValueError(
            f"attacks={attacks} holds no attack for learned models: "
            f"add one of {', '.join(map(repr, FOOLBOX_ATTACKS))}"
        )
    return learned


def _attacks_for(model: nn.Module, attacks: list[str]) -> list[str]:
    """The paper's gradient attack (C.2) first for a Bayes-optimal classifier, then the foolbox ones."""
    return ["gradient", *attacks] if isinstance(model, BayesClassifier) else list(attacks)


def input_view(model: nn.Module, x: Tensor, image_shape: tuple[int, int, int], device: torch.device) -> str:
    """The input layout ``model`` takes: "flat" if it maps x [n, d] to logits [n, 2], else "image" if it
    does so for x [n, C, H, W]; raises when neither works."""
    errors = []
    for view in ("flat", "image"):
        probe = as_view(x[:2], view, image_shape).to(device)
        try:
            with torch.no_grad():
                out = model(probe)
        except Exception as err:  # any failure means: try the other layout
            errors.append(f"{view} input {list(probe.shape)}: {type(err).__name__}: {err}")
            continue
        if isinstance(out, Tensor) and tuple(out.shape) == (probe.shape[0], 2):
            return view
        shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
        errors.append(f"{view} input {list(probe.shape)} gave {shape}")
    raise ValueError(
        "the model must map x [n, d] or [n, C, H, W] (floats in [0, 1]) to logits [n, 2]; tried "
        + "; ".join(errors)
    )


def as_view(x: Tensor, view: str, image_shape: tuple[int, int, int]) -> Tensor:
    """x [n, ...] as [n, C, H, W] ("image") or [n, d] ("flat")."""
    return x.reshape(x.shape[0], *image_shape) if view == "image" else x.reshape(x.shape[0], -1)


@torch.no_grad()
def model_logits(
    model: nn.Module,
    x: Tensor,
    view: str,
    image_shape: tuple[int, int, int],
    device: torch.device,
    batch: int = 256,
) -> Tensor:
    """``model``'s logits [n, 2] (on the CPU) for x [n, d] fed as ``view``."""
    parts = [
        model(as_view(x[start : start + batch], view, image_shape).to(device)).cpu()
        for start in range(0, x.shape[0], batch)
    ]
    return torch.cat(parts)


def _accuracy(
    name: str,
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    view: str,
    image_shape: tuple[int, int, int],
    device: torch.device,
) -> float:
    """Share of x [n, d] (fed as ``view``) whose argmax logit equals y [n]; non-finite logits raise, naming
    the model ``name`` (a model that returns NaN would otherwise score as a constant guess)."""
    logits = model_logits(model, x, view, image_shape, device)
    broken = ~torch.isfinite(logits).all(1)
    if broken.any():
        first = int(broken.nonzero()[0, 0])
        raise ValueError(
            f"model {name!r} ({type(model).__name__}) returned NaN or inf logits for {int(broken.sum())} of "
            f"{x.shape[0]} test samples (first: row {first}, logits {logits[first].tolist()}): it cannot be "
            "scored; check its weights (a diverged training?) and that it takes inputs in [0, 1]"
        )
    correct = int((logits.argmax(1) == y.cpu()).sum())
    return correct / x.shape[0]


def attacked_indices(n_test: int, n_attack: int, seed: int) -> np.ndarray:
    """The ``n_attack`` test rows attacked, [n_attack] sorted: a seeded random subset of ``range(n_test)``."""
    return np.sort(np.random.default_rng(seed).permutation(n_test)[:n_attack])


def evaluate_models(
    modules: Mapping[str, nn.Module],
    x_test: np.ndarray | Tensor,
    y_test: np.ndarray | Tensor,
    image_shape: tuple[int, int, int],
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    n_attack: int | None = None,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> Evaluation:
    """Accuracy of each model on x_test [N, d] / y_test [N], then minimum-L2 attacks on ``n_attack`` rows.

    Every model is attacked on the same rows (``attacked_indices(N, n_attack, seed)``) with ``attacks``
    (foolbox, iteration counts from ``profile``); a ``BayesClassifier`` also gets the gradient attack.
    Per sample the smallest successful perturbation counts (``attack_model``). Models may take
    x [n, d] or [n, C, H, W]; ``n_attack`` defaults to the profile's ``attacks.n_attack``.
    ``checkpoints``: keep each finished attack there (steps ``attack_<model>_<attack>``) and reuse those an
    interrupted run of the same models and samples left. ``progress``: a bar over the models and one over
    each attack's batches.
    """
    learned_attacks = check_attacks(attacks)
    seed = check_seed(seed)
    if not modules:
        raise ValueError("no models to evaluate: pass a dict name -> torch module")
    dev = resolve_device(device)
    x_all = torch.as_tensor(np.asarray(x_test, dtype=np.float32)).reshape(len(y_test), -1)
    y_all = torch.as_tensor(np.asarray(y_test)).long()
    if x_all.shape[1] != math.prod(image_shape):
        raise ValueError(
            f"x_test has {x_all.shape[1]} features but image_shape {tuple(image_shape)} needs "
            f"{math.prod(image_shape)}"
        )
    sizes = get_profile(profile).attacks
    n_attack = sizes.n_attack if n_attack is None else n_attack
    if isinstance(n_attack, bool) or not isinstance(n_attack, int | np.integer) or n_attack < 1:
        raise ValueError(f"n_attack must be a positive integer (or None for the profile's), got {n_attack!r}")
    if n_attack > len(y_all):
        warnings.warn(
            f"n_attack={n_attack} exceeds the {len(y_all)} test samples: all {len(y_all)} are attacked "
            "(the report counts those)",
            UserWarning,
            stacklevel=2,
        )
        n_attack = len(y_all)
    indices = attacked_indices(len(y_all), int(n_attack), seed)
    x, y = x_all[indices], y_all[indices]
    results, reports, test_accuracy, used, seconds = {}, {}, {}, {}, {}
    for name, model in tqdm(modules.items(), desc="attacks", disable=not progress, leave=False):
        start = time.perf_counter()
        model = model.to(dev).eval()
        view = input_view(model, x, image_shape, dev)
        test_accuracy[name] = _accuracy(name, model, x_all, y_all, view, image_shape, dev)
        used[name] = _attacks_for(model, learned_attacks)
        xv = as_view(x, view, image_shape)
        results[name] = attack_model(
            model,
            xv,
            y,
            used[name],
            budget=sizes.budget,
            device=dev,
            progress=progress,
            checkpoints=checkpoints,
            tag=name,
        )
        reports[name] = report_from_attacks(xv, y, results[name])
        seconds[name] = time.perf_counter() - start
    return Evaluation(
        x, y, indices, tuple(image_shape), results, reports, test_accuracy, used, len(y_all), seconds
    )


def score_test_set(
    models_or_task: TaskModels | TaskData | tuple[str, str],
    variant: str = "symmetric",
    seed: int = 0,
    *,
    profile: str | None = None,
    device: str | torch.device = "auto",
    data_dir: str | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int], str]:
    """The test set ``score_classifier`` uses: (x [N, d], y [N], image_shape, profile).

    ``TaskModels`` + a generative variant: the test samples of ``learned.symmetric_data`` (seed
    ``2 * seed + 1``). ``TaskData`` (variant "real"): its real test images. A ``(dataset, attribute)`` pair:
    the task's models (``build_task_models``, cached) or, for "real", its real images as chapter 5 loads them.
    """
    if variant not in SCORE_VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}: valid variants are {', '.join(map(repr, SCORE_VARIANTS))}"
        )
    seed = check_seed(seed)
    if (
        isinstance(models_or_task, tuple)
        and len(models_or_task) == 2
        and all(isinstance(s, str) for s in models_or_task)
    ):
        profile = profile or "quick"
        dataset, attribute = canonical_task(*models_or_task)
        if variant == "real":
            if dataset != "celeba":
                raise ValueError(f"real test images exist here for CelebA only, got dataset {dataset!r}")
            models_or_task = load_task(
                dataset,
                attribute,
                data_dir=data_dir,
                max_per_class=get_profile(profile).datasets.n_train_per_class,
                seed=seed,
            )
        else:
            models_or_task = build_task_models(
                dataset,
                attribute,
                profile,
                seed,
                resolve_device(device).type,
                data_dir=data_dir,
                progress=False,
            )
    if isinstance(models_or_task, TaskData):
        if variant != "real":
            raise ValueError(f"a TaskData holds real images: use variant='real', not {variant!r}")
        task = models_or_task
        return task.x_test, task.y_test, tuple(task.image_shape), profile or "quick"
    if isinstance(models_or_task, TaskModels):
        if variant == "real":
            raise ValueError(
                "TaskModels give generated samples: pass a TaskData (load_task) for variant='real'"
            )
        profile = profile or models_or_task.profile
        n_test = get_profile(profile).datasets.n_test_per_class
        x, y = sample_dataset(models_or_task.pair(variant), n_test, seed=2 * seed + 1)
        return x, y, tuple(models_or_task.image_shape), profile
    raise TypeError(
        "models_or_task must be TaskModels (build_task_models), TaskData (load_task) or a "
        f"(dataset, attribute) pair, got {type(models_or_task).__name__}"
    )


def score_classifier(
    model: nn.Module,
    models_or_task: TaskModels | TaskData | tuple[str, str],
    variant: str = "symmetric",
    n_attack: int | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    seed: int = 0,
    device: str | torch.device = "auto",
    *,
    profile: str | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> RobustnessReport:
    """Robustness report of your own classifier on a dataset of the book, comparable with the chapters.

    ``model``: any torch module mapping x [n, d] or [n, C, H, W] (floats in [0, 1], flattened in
    (C, H, W) order) to 2 logits [n, 2]; class 1 is the attribute (or the second digit). It is attacked
    on the same samples as the chapters' models with the same ``seed`` (see ``score_test_set`` and
    ``evaluate_models``). The report counts, as the paper does, only the samples that the model
    classifies correctly and an attack flips; its ``adversarial_accuracy`` is the share of the
    ``n_attack`` samples that stay correct. ``checkpoints``: as in ``evaluate_models`` (steps
    ``attack_score_<attack>``).
    """
    x, y, image_shape, profile = score_test_set(
        models_or_task, variant, seed, profile=profile, device=device, data_dir=data_dir
    )
    evaluation = evaluate_models(
        {"score": model},
        x,
        y,
        image_shape,
        attacks=attacks,
        n_attack=n_attack,
        profile=profile,
        seed=seed,
        device=device,
        progress=progress,
        checkpoints=checkpoints,
    )
    return evaluation.reports["score"]


def compare_reports(reports: Mapping[str, RobustnessReport]) -> pd.DataFrame:
    """One row per report: attacked / correct / evaluated counts, accuracies (%), L2 and pixel changes.

    "adv. acc. %" is the share of attacked samples still correct after the attack (ours);
    "adv. acc., paper's reading %" counts misclassified samples as flipped to correct, which is how the
    paper's brackets in Tables 1-2 add up (``paper_values.adversarial_accuracy``): 100 - clean + ours.
    """
    rows = []
    for name, rep in reports.items():
        rows.append(
            {
                "model": model_label(name),
                "attacked": rep.n,
                "correct": rep.n_correct,
                "evaluated": rep.n_evaluated,
                "clean acc. %": round(100 * rep.clean_accuracy, 1),
                "adv. acc. %": round(100 * rep.adversarial_accuracy, 1),
                "adv. acc., paper's reading %": round(
                    100 * adversarial_accuracy(rep.clean_accuracy, rep.adversarial_accuracy, "paper"), 1
                ),
                "mean L2": round(rep.mean_l2, 3),
                "median L2": round(rep.median_l2, 3),
                "pixels > 5/255 %": round(100 * rep.frac_pixels_above_5, 2),
            }
        )
    return pd.DataFrame(rows).set_index("model")


def attack_table(
    results: Mapping[str, AttackResult], y: Tensor | Mapping[str, Tensor], index: str = "model"
) -> pd.DataFrame:
    """The attacks compared, per model (or variant: ``index``) and attack, over the correctly classified
    attacked samples (``y``: their labels, one tensor for all or one per key of ``results``).

    Columns: "correct" (samples), "flipped" (by this attack), "success rate" (flipped / correct), "mean L2"
    (of its flips), "mean L2, all broke" (over the samples every attack flipped, comparable across attacks),
    "mean L2 / best" (its L2 over the per-sample best, where both flipped) and "best on" (samples where it
    found the smallest perturbation).
    """
    rows = []
    for name, result in results.items():
        labels = y[name] if isinstance(y, Mapping) else y
        correct = (result.clean_pred == labels).numpy()
        per = {attack: l2.numpy() for attack, l2 in result.per_attack_l2.items()}
        every = correct & np.all([np.isfinite(l2) for l2 in per.values()], axis=0)
        best = result.l2.numpy()
        winners = np.array(result.attack)
        evaluated = correct & result.success.numpy()
        for attack, l2 in per.items():
            flipped = correct & np.isfinite(l2)
            ratio = flipped & (best > 0)
            rows.append(
                {
                    index: model_label(name),
                    "attack": attack,
                    "correct": int(correct.sum()),
                    "flipped": int(flipped.sum()),
                    "success rate": float(flipped.sum() / correct.sum()) if correct.any() else math.nan,
                    "mean L2": float(l2[flipped].mean()) if flipped.any() else math.nan,
                    "mean L2, all broke": float(l2[every].mean()) if every.any() else math.nan,
                    "mean L2 / best": float((l2[ratio] / best[ratio]).mean()) if ratio.any() else math.nan,
                    "best on": int((winners[evaluated] == attack).sum()),
                }
            )
    return pd.DataFrame(rows).set_index([index, "attack"])
