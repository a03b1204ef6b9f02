"""The gold-standard benchmark: any classifier's robustness measured against the Bayes-optimal one.

On the book's datasets the Bayes-optimal classifier is known, so a model's robustness has a yardstick: the
mean L2 of the smallest perturbation that flips the model, over the mean L2 that flips the Bayes-optimal
classifier on the same samples with the same attacks (``ratio_to_bayes``). A ratio near 1 is as robust as
an accurate classifier of this data can be (chapter 3); the paper's CNNs and linear SVMs reach a fraction
of it, its RBF SVMs come close (chapter 4). Above 1 means the model gave up accuracy, or the attacks
failed on it (look at its clean accuracy and its attacked count).

``score_against_bayes`` scores one model on one task; ``benchmark_table`` lays scores side by side;
``plot_l2_distributions`` shows the two distributions of perturbation sizes. The leaderboard chapter
(``ch7_leaderboard``) ranks the book's models and submitted scores by the ratio; ``nbhelpers.runs.benchmark``
writes the score files and is the ``score`` command.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from nbhelpers.chapters.evaluation import DEFAULT_ATTACKS, as_view, evaluate_models, input_view
from nbhelpers.chapters.learned import symmetric_data
from nbhelpers.chapters.plotting import MODEL_COLORS
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.resultset import Task, task_label
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.core.device import resolve_device
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import canonical_task
from nbhelpers.science.datasets import VARIANTS, TaskModels
from nbhelpers.science.models import fit_classifier
from nbhelpers.science.report import RobustnessReport

#: What a score file says of itself (``kind``), so that the leaderboard can tell it from other JSON.
SCORE_KIND = "nbhelpers score"
SCORE_VERSION = 1
#: How to read the ratio, for ``--help``, the score files and the leaderboard.
RATIO_HELP = (
    "ratio_to_bayes = (mean L2 of the smallest perturbation that flips your model) / (the same for the "
    "Bayes-optimal classifier, on the same samples with the same attacks). 1 is the robustness the data "
    "allows an accurate classifier; CNNs and linear SVMs reach a fraction of it (0.06-0.6 in the book's "
    "paper-size runs, 0.27 and 0.18 in the paper's Figure 7), RBF SVMs come closer (0.6-0.9; the paper's "
    "0.71). Read it beside the clean accuracy: a model that gave up accuracy, or one the attacks could not "
    "flip, can score above 1."
)


@dataclass
class BenchmarkScore:
    """One model scored on one task: its robustness report and the Bayes-optimal classifier's, attacked on
    the same ``n_attack`` test samples of ``variant`` with ``attacks``."""

    name: str
    task: Task
    variant: str
    profile: str
    seed: int
    attacks: list[str]
    model: RobustnessReport
    bayes: RobustnessReport
    test_accuracy: dict[str, float] = field(default_factory=dict)
    trained: bool = False

    @property
    def ratio_to_bayes(self) -> float:
        """The model's mean L2 over the Bayes-optimal classifier's (NaN when either is undefined)."""
        if not (math.isfinite(self.model.mean_l2) and math.isfinite(self.bayes.mean_l2)):
            return math.nan
        return self.model.mean_l2 / self.bayes.mean_l2

    def row(self) -> dict[str, Any]:
        """The score as a row of ``benchmark_table``."""
        return {
            "model": self.name,
            "task": task_label(*self.task),
            "variant": self.variant,
            "clean acc.": self.model.clean_accuracy,
            "adv. acc.": self.model.adversarial_accuracy,
            "mean L2": self.model.mean_l2,
            "median L2": self.model.median_l2,
            "evaluated": self.model.n_evaluated,
            "Bayes clean acc.": self.bayes.clean_accuracy,
            "Bayes mean L2": self.bayes.mean_l2,
            "Bayes median L2": self.bayes.median_l2,
            "ratio to Bayes": self.ratio_to_bayes,
        }

    def to_dict(self) -> dict[str, Any]:
        """The score's JSON (one entry of a score file's "scores", see ``score_file``); ``from_dict`` reads
        it back."""
        ratio = self.ratio_to_bayes
        return {
            "name": self.name,
            "dataset": self.task[0],
            "attribute": self.task[1],
            "variant": self.variant,
            "profile": self.profile,
            "seed": self.seed,
            "attacks": list(self.attacks),
            "trained_by_the_book": self.trained,
            "ratio_to_bayes": ratio if math.isfinite(ratio) else None,
            "test_accuracy": dict(self.test_accuracy),
            "model": self.model.to_dict(),
            "bayes": self.bayes.to_dict(),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> BenchmarkScore:
        """A score from its JSON; raises ``ValueError`` naming what is missing."""
        missing = [
            k for k in ("name", "dataset", "attribute", "variant", "model", "bayes") if k not in payload
        ]
        if missing:
            raise ValueError(f"the score lacks {missing}")
        return cls(
            name=str(payload["name"]),
            task=(str(payload["dataset"]), str(payload["attribute"])),
            variant=str(payload["variant"]),
            profile=str(payload.get("profile", "")),
            seed=int(payload.get("seed", 0)),
            attacks=list(payload.get("attacks", [])),
            model=report_from_dict(payload["model"]),
            bayes=report_from_dict(payload["bayes"]),
            test_accuracy=dict(payload.get("test_accuracy", {})),
            trained=bool(payload.get("trained_by_the_book", False)),
        )


def score_file(scores: Sequence[BenchmarkScore]) -> dict[str, Any]:
    """The JSON of a score file: the model's name, ``ratio_to_bayes`` (a number for one task; with several,
    one per task "dataset:attribute" and their mean in ``mean_ratio_to_bayes``), how to read it, and every
    score (``BenchmarkScore.to_dict``). ``scores_from_file`` reads it back."""
    if not scores:
        raise ValueError("no scores to write")
    ratios = {f"{s.task[0]}:{s.task[1]}": s.to_dict()["ratio_to_bayes"] for s in scores}
    payload: dict[str, Any] = {"kind": SCORE_KIND, "version": SCORE_VERSION, "name": scores[0].name}
    if len(scores) == 1:
        payload["ratio_to_bayes"] = next(iter(ratios.values()))
    else:
        payload["ratio_to_bayes"] = ratios
        finite = [r for r in ratios.values() if r is not None]
        payload["mean_ratio_to_bayes"] = float(np.mean(finite)) if finite else None
    payload["how_to_read"] = RATIO_HELP
    payload["scores"] = [s.to_dict() for s in scores]
    return payload


def scores_from_file(payload: Mapping[str, Any], name: str = "the score file") -> list[BenchmarkScore]:
    """The scores of a score file's JSON (``score_file``); anything else raises naming ``name``."""
    if not isinstance(payload, Mapping) or payload.get("kind") != SCORE_KIND:
        kind = payload.get("kind") if isinstance(payload, Mapping) else type(payload).__name__
        raise ValueError(f"{name} is not a score file: its 'kind' is {kind!r}, not {SCORE_KIND!r}")
    try:
        return [BenchmarkScore.from_dict(entry) for entry in payload["scores"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{name} is a damaged score file: {err}") from err


def report_from_dict(payload: Mapping[str, Any]) -> RobustnessReport:
    """A ``RobustnessReport`` from its ``to_dict`` (null means NaN)."""

    def num(key: str) -> float:
        value = payload.get(key)
        return math.nan if value is None else float(value)

    return RobustnessReport(
        n=int(payload["n"]),
        n_correct=int(payload["n_correct"]),
        n_evaluated=int(payload["n_evaluated"]),
        clean_accuracy=num("clean_accuracy"),
        adversarial_accuracy=num("adversarial_accuracy"),
        mean_l2=num("mean_l2"),
        median_l2=num("median_l2"),
        frac_pixels_above_5=num("frac_pixels_above_5"),
        l2=np.asarray(payload.get("l2", []), dtype=np.float64),
        pixel_hist=np.asarray(payload.get("pixel_hist", [0] * 256), dtype=np.int64),
    )


def parse_task(task: str | Sequence[str]) -> Task:
    """ "mnist:0_vs_6" or ("celeba", "Male") as the canonical (dataset, attribute); unknown ones raise with
    the valid choices."""
    if isinstance(task, str):
        if task.count(":") != 1:
            raise ValueError(f"a task is DATASET:ATTRIBUTE, e.g. mnist:0_vs_6 or celeba:Male; got {task!r}")
        task = tuple(task.split(":"))
    if len(task) != 2:
        raise ValueError(f"a task is (dataset, attribute), got {task!r}")
    return canonical_task(*task)


def as_module(model: nn.Module | Callable[[], nn.Module], train: bool, what: str = "model") -> nn.Module:
    """The torch module to score: ``model`` itself, or with ``train=True`` what the factory ``model()``
    returns (a fresh, untrained module); anything else raises naming the problem."""
    if train:
        if isinstance(model, nn.Module) or not callable(model):
            raise TypeError(
                f"train=True needs a factory: a function that returns a new torch module, got {what} of type "
                f"{type(model).__name__}"
            )
        module = model()
        if not isinstance(module, nn.Module):
            raise TypeError(f"the factory {what} returned {type(module).__name__}, not a torch nn.Module")
        return module
    if not isinstance(model, nn.Module):
        hint = " (a factory: pass train=True to train what it returns)" if callable(model) else ""
        raise TypeError(f"{what} must be a trained torch nn.Module{hint}, got {type(model).__name__}")
    return model


def train_on_task(
    module: nn.Module,
    models: TaskModels,
    variant: str,
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> nn.Module:
    """Train ``module`` with the book's training loop (Adam, cross-entropy, the profile's CNN epochs and batch
    size) on the training samples of ``variant`` that chapter 4's models see (``symmetric_data``)."""
    data = symmetric_data(models, variant, seed=seed)
    dev = resolve_device(device)
    x = torch.as_tensor(data.x_train)
    view = input_view(module.to(dev), x, data.image_shape, dev)
    sizes = get_profile(profile).models
    return fit_classifier(
        module,
        as_view(x, view, data.image_shape),
        data.y_train,
        epochs=sizes.cnn_epochs,
        batch_size=sizes.cnn_batch_size,
        seed=seed,
        device=dev,
        progress=progress,
    )


def score_against_bayes(
    model: nn.Module | Callable[[], nn.Module],
    task: str | Sequence[str] | TaskModels,
    *,
    variant: str = "symmetric",
    profile: str = "quick",
    train: bool = False,
    n_attack: int | None = None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    seed: int = 0,
    device: str | torch.device = "auto",
    data_dir: str | None = None,
    name: str | None = None,
    progress: bool = False,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> BenchmarkScore:
    """Score ``model`` on one task against the Bayes-optimal classifier of the same data.

    ``model``: a trained torch module mapping x [n, d] or [n, C, H, W] (pixels in [0, 1]) to 2 logits [n, 2]
    (class 1 is the attribute, or the second digit), or with ``train=True`` a factory returning an untrained
    one, which is trained first (``train_on_task``). ``task``: "mnist:0_vs_6", ("celeba", "Male") or a
    task's ``TaskModels``. Both classifiers are attacked on the same ``n_attack`` test samples of
    ``variant`` with ``attacks`` (the Bayes-optimal one also with the paper's gradient attack), as chapter 4
    attacks its models (``evaluate_models``).
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}: valid variants are {', '.join(map(repr, VARIANTS))} (real images "
            "have no known Bayes-optimal classifier to score against)"
        )
    if isinstance(task, TaskModels):
        models = task
        profile = models.profile or profile
    else:
        dataset, attribute = parse_task(task)
        models = build_task_models(
            dataset, attribute, profile, seed, resolve_device(device).type, data_dir=data_dir, progress=False
        )
    label = name or (
        "your model" if isinstance(model, nn.Module) else getattr(model, "__name__", "your model")
    )
    module = as_module(model, train, label)
    if train:
        module = train_on_task(
            module, models, variant, profile=profile, seed=seed, device=device, progress=progress
        )
    data = symmetric_data(models, variant, seed=seed)
    evaluation = evaluate_models(
        {"model": module, "bayes": BayesClassifier(*models.pair(variant))},
        data.x_test,
        data.y_test,
        data.image_shape,
        attacks=attacks,
        n_attack=n_attack,
        profile=profile,
        seed=seed,
        device=device,
        progress=progress,
        checkpoints=checkpoints,
    )
    return BenchmarkScore(
        name=label,
        task=(models.dataset, models.attribute),
        variant=variant,
        profile=profile,
        seed=seed,
        attacks=list(evaluation.attacks["model"]),
        model=evaluation.reports["model"],
        bayes=evaluation.reports["bayes"],
        test_accuracy=dict(evaluation.test_accuracy),
        trained=train,
    )


def benchmark_table(scores: Sequence[BenchmarkScore]) -> pd.DataFrame:
    """One row per score (``BenchmarkScore.row``), and with several tasks a last row "mean over tasks"
    per model: its mean ratio (the leaderboard's ranking number)."""
    table = pd.DataFrame([score.row() for score in scores])
    if table.empty or table["task"].nunique() < 2:
        return table
    means = table.groupby("model", sort=False)["ratio to Bayes"].mean()
    extra = pd.DataFrame(
        [{"model": m, "task": "mean over tasks", "ratio to Bayes": r} for m, r in means.items()]
    )
    return pd.concat([table, extra], ignore_index=True)


def plot_l2_distributions(score: BenchmarkScore, ax: plt.Axes | None = None) -> Figure:
    """The perturbation sizes that flip the model and the Bayes-optimal classifier, side by side (one box and
    its points each), titled with the ratio of their means."""
    own = ax is None
    fig = plt.figure(figsize=(5.2, 3.6)) if own else ax.figure
    ax = fig.add_subplot() if own else ax
    samples = [score.model.l2, score.bayes.l2]
    labels = [
        f"{score.name}\n({score.model.n_evaluated} flipped)",
        f"Bayes-optimal\n({score.bayes.n_evaluated})",
    ]
    colors = ["tab:purple", MODEL_COLORS["bayes"]]
    ax.boxplot([s if len(s) else [np.nan] for s in samples], widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (values, color) in enumerate(zip(samples, colors, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=10, color=color, alpha=0.7, zorder=3)
    ax.set_xticks([1, 2], labels, fontsize=8)
    ax.set_ylabel("L2 of the smallest flipping perturbation")
    ax.set_ylim(bottom=0)
    ratio = score.ratio_to_bayes
    ratio_text = f"{ratio:.2f}" if math.isfinite(ratio) else "undefined"
    ax.set_title(f"{task_label(*score.task)}, {score.variant}: ratio to Bayes {ratio_text}", fontsize=9)
    if own:
        fig.tight_layout()
    return fig
