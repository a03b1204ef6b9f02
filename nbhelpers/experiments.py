"""Chapters 4 and 5: learned classifiers on the symmetric datasets and on real CelebA images.

Paper section 3 and appendices B.3-B.5, C.1, D.3, D.4. The chapters call these steps in order:

1. data: ``symmetric_data`` (samples of a dataset's model pair) or ``real_task`` (real CelebA faces);
2. ``train_classifiers``: the CNN, the linear SVM and the RBF SVM (with its gamma search), all as torch
   modules mapping x [n, d] to logits [n, 2];
3. ``evaluate_models``: clean accuracy on the whole test set, then the unlimited-budget minimum-L2 attacks
   on a seeded subset of it, one ``RobustnessReport`` per model (the Bayes-optimal classifier also gets
   the paper's gradient attack);
4. ``run_sweeps`` (Figure 8): training-set size, CNN width and depth, and TRADES' beta;
5. tables, figures and the metrics dict for ``nbhelpers.results.save_result``.

``score_classifier`` wraps steps 1 and 3 for any torch module, so a reader can score their own
classifier on exactly the samples the chapter uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from nbhelpers import paper_values
from nbhelpers.attacks import ATTACKS, FOOLBOX_ATTACKS, AttackResult, run_attacks
from nbhelpers.checkpoints import Checkpoints
from nbhelpers.classifier import BayesClassifier
from nbhelpers.config import get_profile
from nbhelpers.data import REAL_DATA_ATTRIBUTES, TaskData, canonical_task, load_task, source_label, to_hwc
from nbhelpers.datasets import VARIANTS, TaskModels, build_task_models, sample_dataset
from nbhelpers.mfa import MFA
from nbhelpers.models import (
    CNN,
    RBFSVM,
    LinearSVM,
    balanced_sampler,
    fit_classifier,
    fit_trades,
    search_gamma,
)
from nbhelpers.models.training import resolve_device
from nbhelpers.paper_values import adversarial_accuracy
from nbhelpers.progress import tqdm
from nbhelpers.report import PIXEL_BINS, RobustnessReport, report_from_attacks

#: The paper's five real-data attributes (section 3, appendix D.4); chapter 5 accepts only these.
REAL_ATTRIBUTES: tuple[str, ...] = REAL_DATA_ATTRIBUTES
#: ``score_classifier``'s test sets: the generative variants of chapter 2, or the real test images.
SCORE_VARIANTS: tuple[str, ...] = (*VARIANTS, "real")
LEARNED: tuple[str, ...] = ("cnn", "linear_svm", "rbf_svm")
DEFAULT_ATTACKS: tuple[str, ...] = ("cw", "fmn", "ddn")
#: Paper B.5 takes "the highest gamma that still provided a high classification accuracy": ours is the
#: largest gamma whose validation accuracy is within this many points of the best one (on real data the
#: best is far below 100%, so an absolute threshold would not do).
GAMMA_TOLERANCE = 0.02
#: Share of the SVM training set held out to choose gamma.
VAL_FRACTION = 0.2
SWEEP_NAMES: tuple[str, ...] = ("train_size", "width", "depth", "trades")
SWEEP_LABELS = {
    "train_size": "training examples (fresh samples)",
    "width": "CNN width (filters of the first layer)",
    "depth": "CNN depth (convolution layers)",
}


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class SampledData:
    """A labelled train/test split with its image shape.

    ``x_*`` [n, d] float32 in [0, 1] (flattened (C, H, W)), ``y_*`` [n] int64. ``pair`` holds the
    (class 0, class 1) models the samples came from (None for real images), so that more samples can
    be drawn (the training-set sweep).
    """

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    image_shape: tuple[int, int, int]
    class_names: tuple[str, str]
    pair: tuple[MFA, MFA] | None = field(default=None, repr=False)
    description: str = ""


def symmetric_data(
    models: TaskModels,
    variant: str = "symmetric",
    *,
    n_train_per_class: int | None = None,
    n_test_per_class: int | None = None,
    seed: int = 0,
) -> SampledData:
    """Fresh train and test samples of a dataset (sizes default to ``models.profile``'s ``datasets``).

    Train and test are drawn with seeds ``2 * seed`` and ``2 * seed + 1``, as in
    ``datasets.export_dataset``: the exported dataset of the same seed and sizes holds these samples.
    """
    sizes = get_profile(models.profile).datasets
    n_train = sizes.n_train_per_class if n_train_per_class is None else n_train_per_class
    n_test = sizes.n_test_per_class if n_test_per_class is None else n_test_per_class
    pair = models.pair(variant)
    x_train, y_train = sample_dataset(pair, n_train, seed=2 * seed)
    x_test, y_test = sample_dataset(pair, n_test, seed=2 * seed + 1)
    return SampledData(
        x_train,
        y_train,
        x_test,
        y_test,
        tuple(models.image_shape),
        tuple(models.class_names),
        pair,
        f"{variant} {models.dataset}/{models.attribute}: {len(y_train)} train, {len(y_test)} test samples",
    )


def check_real_attribute(attribute: str, dataset: str = "celeba") -> str:
    """The canonical name of one of the paper's five real-data attributes; anything else raises."""
    if not isinstance(dataset, str) or dataset.strip().lower() != "celeba":
        raise ValueError(
            f"the real-data chapter uses CelebA only, got dataset {dataset!r}: set dataset='celeba'"
        )
    valid = ", ".join(REAL_ATTRIBUTES)
    try:
        _, name = canonical_task("celeba", attribute)
    except ValueError:
        name = None
    if name not in REAL_ATTRIBUTES:
        raise ValueError(
            f"attribute {attribute!r} is not one of the paper's real-data attributes: "
            f"valid attributes are {valid}"
        )
    return name


def real_task(
    attribute: str,
    profile: str = "quick",
    seed: int = 0,
    data_dir: str | None = None,
    max_per_class: int | None = None,
) -> TaskData:
    """Real CelebA faces of one of ``REAL_ATTRIBUTES`` with the official split.

    At most ``max_per_class`` images of each class in each split (default: the profile's
    ``datasets.n_train_per_class``, the per-class size of the symmetric training sets), drawn by ``seed``.
    """
    attribute = check_real_attribute(attribute)
    cap = get_profile(profile).datasets.n_train_per_class if max_per_class is None else max_per_class
    return load_task("celeba", attribute, data_dir=data_dir, max_per_class=cap, seed=seed)


def real_data(task: TaskData) -> SampledData:
    """A ``TaskData`` as ``SampledData`` (no generating models)."""
    return SampledData(
        task.x_train,
        task.y_train,
        task.x_test,
        task.y_test,
        tuple(task.image_shape),
        tuple(task.class_names),
        None,
        f"real {task.dataset}/{task.attribute} ({source_label(task.source)}): {len(task.y_train)} train, "
        f"{len(task.y_test)} test images",
    )


def class_balance_table(
    attributes: Sequence[str] = REAL_ATTRIBUTES, data_dir: str | None = None, max_per_class: int | None = None
) -> pd.DataFrame:
    """Per attribute and split: images, positives, positive share and the majority-class accuracy.

    The majority baseline is what a classifier that always answers the larger class scores.
    """
    rows = []
    for attribute in attributes:
        task = load_task("celeba", attribute, data_dir=data_dir, max_per_class=max_per_class)
        for split, counts in task.class_balance().items():
            share = counts["positive_fraction"]
            rows.append(
                {
                    "attribute": task.attribute,
                    "split": split,
                    "images": counts["n"],
                    "positives": counts["n_1"],
                    "positive %": round(100 * share, 1),
                    "majority baseline %": round(100 * max(share, 1 - share), 1),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


@dataclass
class TrainedClassifiers:
    """The three learned classifiers of one training set.

    ``modules``: "cnn", "linear_svm", "rbf_svm" -> torch module, x [n, d] -> logits [n, 2].
    ``gamma``: the RBF SVM's kernel coefficient; ``gamma_search``: one row per candidate gamma
    ("gamma", "train_accuracy", "val_accuracy", "n_support", "selected").
    ``n_train``: training examples per model; ``seconds``: fit time per model.
    """

    modules: dict[str, nn.Module]
    gamma: float
    gamma_search: list[dict]
    n_train: dict[str, int]
    seconds: dict[str, float]


def _cached(checkpoints: Checkpoints | None, step: str, inputs: tuple[Any, ...], compute: Any) -> Any:
    """``compute()``, through ``checkpoints`` when given (see ``nbhelpers.checkpoints``)."""
    return compute() if checkpoints is None else checkpoints.cached(step, inputs, compute, code=[__name__])


def train_cnn(
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    width: int | None = None,
    depth: int | None = None,
    epochs: int | None = None,
    beta: float = 0.0,
    progress: bool = False,
) -> CNN:
    """The paper's CNN (B.3) trained with Adam on x [n, d], y [n]; sizes default to the profile.

    ``beta > 0`` trains with TRADES (``fit_trades``: the profile's ``trades_eps`` and ``trades_steps``);
    beta = 0 is plain cross-entropy training and gives the same weights as ``fit_classifier``.
    """
    sizes = get_profile(profile).models
    width = sizes.cnn_width if width is None else width
    depth = sizes.cnn_depth if depth is None else depth
    model = CNN(image_shape, width, depth, seed=seed)
    common = {
        "epochs": sizes.cnn_epochs if epochs is None else epochs,
        "batch_size": sizes.cnn_batch_size,
        "seed": seed,
        "device": device,
        "progress": progress,
    }
    if beta == 0:
        return fit_classifier(model, x, y, **common)
    return fit_trades(model, x, y, beta, eps=sizes.trades_eps, steps=sizes.trades_steps, **common)


def matched_epochs(n_train: int, profile: str = "quick", symmetric_epochs: int | None = None) -> int:
    """Epochs over ``n_train`` examples that give the CNN the training budget of chapter 4's CNN.

    Chapter 4 trains for the profile's ``cnn_epochs`` (or ``symmetric_epochs``) over 2 *
    ``n_train_per_class`` symmetric samples; a smaller real training set gets proportionally more
    epochs, so that both CNNs see (at least) as many examples, i.e. make as many Adam steps.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    sizes = get_profile(profile)
    epochs = sizes.models.cnn_epochs if symmetric_epochs is None else symmetric_epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ValueError(f"symmetric_epochs must be a positive integer, got {epochs!r}")
    budget = epochs * 2 * sizes.datasets.n_train_per_class
    return max(1, math.ceil(budget / n_train))


def gamma_split(n: int, val_fraction: float = VAL_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``select_gamma``'s split of n rows: (validation rows, fitting rows), seeded."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_fraction * n))
    return order[:n_val], order[n_val:]


def select_gamma(
    x: np.ndarray,
    y: np.ndarray,
    gammas: Sequence[float],
    *,
    tolerance: float = GAMMA_TOLERANCE,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> tuple[float, list[dict]]:
    """The largest gamma whose validation accuracy is within ``tolerance`` of the best (paper B.5).

    x [n, d], y [n] are split at random (by ``seed``) into ``val_fraction`` validation and the rest for
    fitting; returns (gamma, table) with the table of ``models.search_gamma`` and "selected" set.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance is an accuracy difference in [0, 1), got {tolerance}")
    val, fit = gamma_split(len(y), val_fraction, seed)
    # min_accuracy=0 keeps search_gamma from warning: the selection rule is ours, applied below.
    _, table = search_gamma(
        x[fit], y[fit], x[val], y[val], gammas, min_accuracy=0.0, device=resolve_device(device).type
    )
    best = max(row["val_accuracy"] for row in table)
    chosen = max(row["gamma"] for row in table if row["val_accuracy"] >= best - tolerance - 1e-12)
    for row in table:
        row["selected"] = row["gamma"] == chosen
    return chosen, table


def train_classifiers(
    x_train: np.ndarray,
    y_train: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    width: int | None = None,
    depth: int | None = None,
    epochs: int | None = None,
    svm_max_train: int | None = None,
    gammas: Sequence[float] | None = None,
    gamma_tolerance: float = GAMMA_TOLERANCE,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> TrainedClassifiers:
    """Train the CNN (B.3) on all of x_train [n, d], and the linear (B.4) and RBF (B.5) SVMs on at most
    ``svm_max_train`` of its rows (a seeded random subset); sizes default to the profile's ``models``.

    The RBF SVM's gamma comes from ``select_gamma`` over ``gammas`` (default: the profile's
    ``svm_gammas``); both SVMs use C = 1, as in the paper. ``checkpoints``: keep each trained model
    there (steps ``train_<model>``) and reuse those an interrupted run of the same inputs left.
    ``progress``: a bar over the three models and one over the CNN's training steps.
    """
    sizes = get_profile(profile).models
    x_train = np.asarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train)
    cap = sizes.svm_max_train if svm_max_train is None else svm_max_train
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 2:
        raise ValueError(f"svm_max_train must be an integer >= 2 (both classes), got {cap!r}")
    svm_rows = np.sort(np.random.default_rng(seed).permutation(len(y_train))[:cap])
    x_svm, y_svm = x_train[svm_rows], y_train[svm_rows]
    steps = ("cnn", "linear_svm", "rbf_svm")
    modules: dict[str, nn.Module] = {}
    seconds: dict[str, float] = {}
    gamma, table = float("nan"), []
    settings = (x_train, y_train, tuple(image_shape), sizes, seed, width, depth, epochs, cap, gammas)

    def fit(name: str) -> dict[str, Any]:
        start = time.perf_counter()
        gamma, table = float("nan"), []
        if name == "cnn":
            module = train_cnn(
                x_train,
                y_train,
                image_shape,
                profile=profile,
                seed=seed,
                device=device,
                width=width,
                depth=depth,
                epochs=epochs,
                progress=progress,
            )
        elif name == "linear_svm":
            module = LinearSVM(device=resolve_device(device).type).fit(x_svm, y_svm).to_torch()
        else:
            gamma, table = select_gamma(
                x_svm,
                y_svm,
                sizes.svm_gammas if gammas is None else gammas,
                tolerance=gamma_tolerance,
                seed=seed,
                device=device,
            )
            module = RBFSVM(gamma, device=resolve_device(device).type).fit(x_svm, y_svm).to_torch()
        return {"module": module, "gamma": gamma, "table": table, "seconds": time.perf_counter() - start}

    for name in tqdm(steps, desc="training", disable=not progress, leave=False):
        inputs = (*settings, gamma_tolerance) if name == "rbf_svm" else settings
        fitted = _cached(checkpoints, f"train_{name}", inputs, lambda name=name: fit(name))
        modules[name], seconds[name] = fitted["module"], fitted["seconds"]
        if name == "rbf_svm":
            gamma, table = fitted["gamma"], fitted["table"]
    n_train = {"cnn": len(y_train), "linear_svm": len(y_svm), "rbf_svm": len(y_svm)}
    return TrainedClassifiers(modules, gamma, table, n_train, seconds)


def gamma_table(trained: TrainedClassifiers) -> pd.DataFrame:
    """The RBF SVM's gamma search as a table (accuracies in %)."""
    frame = pd.DataFrame(trained.gamma_search)
    for column in ("train_accuracy", "val_accuracy"):
        frame[column] = (100 * frame[column]).round(1)
    return frame.rename(
        columns={
            "train_accuracy": "train accuracy %",
            "val_accuracy": "validation accuracy %",
            "n_support": "support vectors",
        }
    )


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """Clean accuracy and attacks of several models on the same test set.

    ``x`` [m, d] and ``y`` [m]: the attacked samples (the same for every model), ``indices`` [m] their
    rows in the test set; ``results`` and ``reports``: per model, the ``run_attacks`` outcome (best
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


def _input_view(model: nn.Module, x: Tensor, image_shape: tuple[int, int, int], device: torch.device) -> str:
    """The input layout ``model`` takes: "flat" if it maps x [n, d] to logits [n, 2], else "image" if it
    does so for x [n, C, H, W]; raises when neither works."""
    errors = []
    for view in ("flat", "image"):
        probe = _as_view(x[:2], view, image_shape).to(device)
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


def _as_view(x: Tensor, view: str, image_shape: tuple[int, int, int]) -> Tensor:
    return x.reshape(x.shape[0], *image_shape) if view == "image" else x.reshape(x.shape[0], -1)


def _accuracy(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    view: str,
    image_shape: tuple[int, int, int],
    device: torch.device,
    batch: int = 256,
) -> float:
    """Share of x [n, d] (fed as ``view``) whose argmax logit equals y [n]."""
    correct = int((_logits(model, x, view, image_shape, device, batch).argmax(1) == y.cpu()).sum())
    return correct / x.shape[0]


@torch.no_grad()
def _logits(
    model: nn.Module,
    x: Tensor,
    view: str,
    image_shape: tuple[int, int, int],
    device: torch.device,
    batch: int = 256,
) -> Tensor:
    """``model``'s logits [n, 2] (on the CPU) for x [n, d] fed as ``view``."""
    parts = [
        model(_as_view(x[start : start + batch], view, image_shape).to(device)).cpu()
        for start in range(0, x.shape[0], batch)
    ]
    return torch.cat(parts)


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
    checkpoints: Checkpoints | None = None,
) -> Evaluation:
    """Accuracy of each model on x_test [N, d] / y_test [N], then minimum-L2 attacks on ``n_attack`` rows.

    Every model is attacked on the same rows (``attacked_indices(N, n_attack, seed)``) with ``attacks``
    (foolbox, iteration counts from ``profile``); a ``BayesClassifier`` also gets the gradient attack.
    Per sample the smallest successful perturbation counts (``attacks.run_attacks``). Models may take
    x [n, d] or [n, C, H, W]; ``n_attack`` defaults to the profile's ``attacks.n_attack``.
    ``checkpoints``: keep each finished attack there (steps ``attack_<model>_<attack>``) and reuse those an
    interrupted run of the same models and samples left. ``progress``: a bar over the models and one over
    each attack's batches.
    """
    learned_attacks = check_attacks(attacks)
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
    n_attack = get_profile(profile).attacks.n_attack if n_attack is None else n_attack
    if isinstance(n_attack, bool) or not isinstance(n_attack, int | np.integer) or n_attack < 1:
        raise ValueError(f"n_attack must be a positive integer (or None for the profile's), got {n_attack!r}")
    indices = attacked_indices(len(y_all), int(n_attack), seed)
    x, y = x_all[indices], y_all[indices]
    results, reports, test_accuracy, used, seconds = {}, {}, {}, {}, {}
    for name, model in tqdm(modules.items(), desc="attacks", disable=not progress, leave=False):
        start = time.perf_counter()
        model = model.to(dev).eval()
        view = _input_view(model, x, image_shape, dev)
        test_accuracy[name] = _accuracy(model, x_all, y_all, view, image_shape, dev)
        used[name] = _attacks_for(model, learned_attacks)
        xv = _as_view(x, view, image_shape)
        results[name] = run_attacks(
            model,
            xv,
            y,
            used[name],
            profile=profile,
            device=dev.type,
            progress=progress,
            checkpoints=checkpoints,
            checkpoint_tag=name,
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

    ``TaskModels`` + a generative variant: the test samples of ``symmetric_data`` (seed ``2 * seed + 1``).
    ``TaskData`` (variant "real"): its real test images. A ``(dataset, attribute)`` pair: the task's
    models (``build_task_models``, cached) or, for "real", its real images as in ``real_task``.
    """
    if variant not in SCORE_VARIANTS:
        raise ValueError(
            f"unknown variant {variant!r}: valid variants are {', '.join(map(repr, SCORE_VARIANTS))}"
        )
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
    checkpoints: Checkpoints | None = None,
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


# --------------------------------------------------------------------------------------------------
# Figure 8 sweeps
# --------------------------------------------------------------------------------------------------


@dataclass
class SweepPoint:
    """One trained CNN of a sweep: the swept ``value``, its test accuracy (all test samples), its report
    on the attacked samples and its training time."""

    value: float
    test_accuracy: float
    report: RobustnessReport
    seconds: float

    def to_dict(self, key: str = "value") -> dict[str, Any]:
        """JSON-ready: {key: value, "test_accuracy", "seconds", "report": ``RobustnessReport.to_dict()``}."""
        return {
            key: self.value,
            "test_accuracy": self.test_accuracy,
            "seconds": self.seconds,
            "report": self.report.to_dict(),
        }


def run_sweeps(
    data: SampledData,
    base_cnn: CNN | None = None,
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    attacks: Sequence[str] = ("ddn",),
    n_attack: int | None = None,
    train_sizes: Sequence[int] | None = None,
    widths: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    betas: Sequence[float] | None = None,
    skip: bool = False,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
) -> dict[str, list[SweepPoint]]:
    """Figure 8: CNNs trained with one setting changed, each evaluated like ``evaluate_models``.

    - "train_size": a base-sized CNN trained on n fresh samples of ``data.pair`` drawn during training
      (each seen once, as the paper grows the training set up to 1M examples);
    - "width" / "depth": the CNN with that width / depth, trained on ``data``'s training set;
    - "trades": TRADES with that beta (``train_cnn(beta=...)``), on the same training set.

    Values default to the profile's ``train_sizes``, ``cnn_widths``, ``cnn_depths`` and
    ``trades_betas``. A point equal to the base setting (profile width and depth, beta = 0) reuses
    ``base_cnn`` when given (the same training, so the same weights) and is attacked once.
    The train-size sweep needs ``data.pair``; with ``train_sizes=()`` it is skipped. ``skip=True`` trains
    nothing and returns every sweep empty (chapter 4's ``figure8=False``). ``checkpoints``: keep each
    finished point there (steps ``sweep_<name>_<value>``), and within a point its trained CNN (step
    ``sweep_<name>_<value>_train``) and each attack, and reuse those an interrupted run left.
    """
    if skip:
        return {name: [] for name in SWEEP_NAMES}
    sizes = get_profile(profile).models
    attacks = check_attacks(attacks)
    plan: dict[str, list[float]] = {
        "train_size": list(sizes.train_sizes if train_sizes is None else train_sizes),
        "width": list(sizes.cnn_widths if widths is None else widths),
        "depth": list(sizes.cnn_depths if depths is None else depths),
        "trades": list(sizes.trades_betas if betas is None else betas),
    }
    if plan["train_size"] and data.pair is None:
        raise ValueError(
            "the train-size sweep samples fresh data from data.pair: pass train_sizes=() for real data"
        )
    if base_cnn is not None and (base_cnn.width, base_cnn.depth) != (sizes.cnn_width, sizes.cnn_depth):
        raise ValueError(
            f"base_cnn has width {base_cnn.width} and depth {base_cnn.depth} but profile {profile!r} uses "
            f"{sizes.cnn_width} and {sizes.cnn_depth}: pass the CNN trained with the profile's sizes"
        )
    common = {"profile": profile, "seed": seed, "device": device}
    done: dict[tuple, SweepPoint] = {}
    out: dict[str, list[SweepPoint]] = {name: [] for name in SWEEP_NAMES}
    jobs = [(name, value) for name in SWEEP_NAMES for value in plan[name]]
    for name, value in tqdm(jobs, desc="Figure 8 sweeps", disable=not progress, leave=False):
        # Points with the base setting share one key, so the base CNN is trained and attacked once.
        width = int(value) if name == "width" else sizes.cnn_width
        depth = int(value) if name == "depth" else sizes.cnn_depth
        beta = float(value) if name == "trades" else 0.0
        key = ("train_size", int(value)) if name == "train_size" else ("fixed", width, depth, beta)
        if key not in done:
            base = key == ("fixed", sizes.cnn_width, sizes.cnn_depth, 0.0) and base_cnn is not None
            step = f"sweep_{name}_{int(value) if float(value).is_integer() else value}"

            def train(
                name: str = name,
                value: float = value,
                width: int = width,
                depth: int = depth,
                beta: float = beta,
            ) -> dict[str, Any]:
                start = time.perf_counter()
                if name == "train_size":
                    pair = data.pair
                    sampler = balanced_sampler(lambda k, s, pair=pair: sample_dataset(pair, k, seed=s))
                    model = fit_classifier(
                        CNN(data.image_shape, width, depth, seed=seed),
                        sampler=sampler,
                        n_examples=int(value),
                        epochs=1,
                        batch_size=sizes.cnn_batch_size,
                        seed=seed,
                        device=device,
                    )
                else:
                    model = train_cnn(
                        data.x_train,
                        data.y_train,
                        data.image_shape,
                        width=width,
                        depth=depth,
                        beta=beta,
                        **common,
                    )
                return {"model": model, "seconds": time.perf_counter() - start}

            def train_and_attack(
                key: tuple = key, step: str = step, base: bool = base, value: float = value
            ) -> SweepPoint:
                # Training and attack are kept apart too: a run killed during a long attack (the widest
                # CNNs take longest) keeps the point's trained CNN.
                if base:
                    trained = {"model": base_cnn, "seconds": 0.0}
                else:
                    inputs = (key, data.x_train, data.y_train, data.pair, sizes, seed)
                    trained = _cached(checkpoints, f"{step}_train", inputs, train)
                evaluation = evaluate_models(
                    {step: trained["model"]},
                    data.x_test,
                    data.y_test,
                    data.image_shape,
                    attacks=attacks,
                    n_attack=n_attack,
                    progress=False,
                    checkpoints=checkpoints,
                    **common,
                )
                return SweepPoint(
                    value, evaluation.test_accuracy[step], evaluation.reports[step], trained["seconds"]
                )

            inputs = (key, data.x_train, data.y_train, data.x_test, data.y_test, data.pair, attacks, n_attack)
            inputs += (sizes, get_profile(profile).attacks, seed, base_cnn if base else None)
            done[key] = _cached(checkpoints, step, inputs, train_and_attack)
        point = done[key]
        out[name].append(SweepPoint(value, point.test_accuracy, point.report, point.seconds))
    return out


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------


def _label(name: str) -> str:
    return paper_values.MODEL_LABELS.get(name, name)


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
                "model": _label(name),
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


def results_table(
    evaluation: Evaluation,
    paper_accuracy: Mapping[str, tuple[float, float]] | None = None,
    paper_l2: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``compare_reports`` of an evaluation plus the test accuracy on all test samples and, where given,
    the paper's (clean, adversarial) accuracy and mean L2 per model."""
    frame = compare_reports(evaluation.reports)
    names = list(evaluation.reports)
    frame.insert(
        0,
        f"test acc. % (of {evaluation.n_test})",
        [round(100 * evaluation.test_accuracy[n], 1) for n in names],
    )
    if paper_accuracy:
        frame["paper: clean (adv.) %"] = [
            f"{100 * paper_accuracy[n][0]:.1f} ({100 * paper_accuracy[n][1]:.1f})"
            if n in paper_accuracy
            else ""
            for n in names
        ]
    if paper_l2:
        frame["paper: mean L2"] = [paper_l2.get(n, float("nan")) for n in names]
    return frame


def paper_mean_l2(dataset: str, attribute: str) -> dict[str, float] | None:
    """The paper's mean L2 per model on a symmetric task (Figure 7 gives them for CelebA / Smiling only)."""
    return dict(paper_values.FIGURE7_MEAN_L2) if (dataset, attribute) == paper_values.FIGURE7_TASK else None


def table1(evaluation: Evaluation, dataset: str, attribute: str) -> pd.DataFrame:
    """Our row of Table 1 (symmetric data) as ``results_table``, beside the paper's Table 1 row and the
    Figure 7 mean L2 where the paper gives them."""
    return results_table(
        evaluation, paper_values.TABLE1.get((dataset, attribute)), paper_mean_l2(dataset, attribute)
    )


def table2(evaluation: Evaluation, attribute: str) -> pd.DataFrame:
    """Our row of Table 2 (real CelebA images) as ``results_table``, beside the paper's."""
    return results_table(evaluation, paper_values.TABLE2.get(("celeba", attribute)))


def attack_table(evaluation: Evaluation) -> pd.DataFrame:
    """Per model and attack, over the correctly classified attacked samples: how many the attack flipped,
    their mean L2, and how often it found the smallest perturbation ("best"). Counts are nullable
    integers, missing (like the mean L2 of an attack that flipped none) where a model has no such attack."""
    rows = []
    for name, result in evaluation.results.items():
        correct = (result.clean_pred == evaluation.y).numpy()
        row: dict[str, Any] = {"model": _label(name), "correct": int(correct.sum())}
        for attack, l2 in result.per_attack_l2.items():
            l2 = l2.numpy()[correct]
            flipped = np.isfinite(l2)
            row[f"{attack}: flipped"] = int(flipped.sum())
            row[f"{attack}: mean L2"] = round(float(l2[flipped].mean()), 3) if flipped.any() else float("nan")
            row[f"{attack}: best"] = sum(
                1 for i in np.flatnonzero(correct) if result.attack[i] == attack and bool(result.success[i])
            )
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    # counts stay integers where a model has no such attack (the gradient attack needs MFA densities)
    counts = [c for c in table.columns if c == "correct" or c.endswith((": flipped", ": best"))]
    return table.astype(dict.fromkeys(counts, "Int64"))


def sweep_table(sweeps: Mapping[str, Sequence[SweepPoint]]) -> pd.DataFrame:
    """Every sweep point: sweep, value, test accuracy %, attacked/evaluated counts, mean L2, adv. acc. %."""
    rows = []
    columns = ["sweep", "value", "test acc. %", "evaluated / attacked", "mean L2", "adv. acc. %", "train s"]
    for name, points in sweeps.items():
        for point in points:
            rep = point.report
            rows.append(
                {
                    "sweep": "TRADES beta" if name == "trades" else name.replace("_", " "),
                    "value": point.value,
                    "test acc. %": round(100 * point.test_accuracy, 1),
                    "evaluated / attacked": f"{rep.n_evaluated} / {rep.n}",
                    "mean L2": round(rep.mean_l2, 3),
                    "adv. acc. %": round(100 * rep.adversarial_accuracy, 1),
                    "train s": round(point.seconds, 1),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def symmetric_vs_real(
    models: TaskModels,
    task: TaskData,
    real_cnn: nn.Module,
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    epochs: int | None = None,
    checkpoints: Checkpoints | None = None,
) -> dict[str, float]:
    """Table 3: real-test accuracy of ``real_cnn`` (trained on the real images) and of a CNN trained on the
    symmetric dataset's training samples (``symmetric_data`` + ``train_cnn``: chapter 4's CNN).

    Returns {"real_train": accuracy, "symmetric_train": accuracy} on ``task``'s test images, and for
    each of the two CNNs the accuracy on each class's test images ("<cnn>_class0", "<cnn>_class1").
    The symmetric dataset has equal class priors by construction while the real faces do not, so
    "symmetric_train_prior_corrected" is the symmetric CNN's accuracy once the log prior odds of the real
    *training* set are added to its logit difference (no test label is used): the part of the drop
    that a different prior explains is gone from it.
    ``epochs``: the symmetric CNN's epochs (None: the profile's, as in chapter 4).
    ``checkpoints``: keep the symmetric-data CNN there (step ``train_symmetric_cnn``) and reuse it.
    """
    if tuple(models.image_shape) != tuple(task.image_shape):
        raise ValueError(f"the models make {models.image_shape} images but the task has {task.image_shape}")
    data = symmetric_data(models, seed=seed)

    def train() -> nn.Module:
        return train_cnn(
            data.x_train,
            data.y_train,
            data.image_shape,
            profile=profile,
            seed=seed,
            device=device,
            epochs=epochs,
        )

    inputs = (data.x_train, data.y_train, tuple(data.image_shape), get_profile(profile).models, seed)
    if epochs is not None:  # the default's inputs stay as they were, so existing checkpoints still match
        inputs = (*inputs, epochs)
    symmetric_cnn = _cached(checkpoints, "train_symmetric_cnn", inputs, train)
    prior = float(np.mean(task.y_train == 1))
    y = torch.as_tensor(task.y_test).long()
    out = table3_accuracies(
        _test_logits(real_cnn, task, device), _test_logits(symmetric_cnn, task, device), y, prior
    )
    return {**out, **bayes_real_accuracy(models, task)}


def bayes_real_accuracy(models: TaskModels, task: TaskData, batch: int = 256) -> dict[str, float]:
    """Real-test accuracy of the Bayes-optimal classifiers of ``models``' fitted and symmetric MFA pairs.

    Returns {"bayes_fitted": accuracy, "bayes_symmetric": accuracy} on ``task``'s test images (equal
    class priors, as in the symmetric dataset), and the same with the real training set's log prior odds
    added to the log-density difference ("bayes_fitted_prior_corrected", "bayes_symmetric_prior_corrected").
    The symmetric pair is the model the symmetric samples come from, so its accuracy on real faces says
    how well its own densities tell the real classes apart. A CNN trained on its samples need not score
    the same on real faces, which lie off the pair's components.
    """
    if tuple(models.image_shape) != tuple(task.image_shape):
        raise ValueError(f"the models make {models.image_shape} images but the task has {task.image_shape}")
    log_odds = _log_prior_odds(float(np.mean(task.y_train == 1)))
    # float64 inputs keep the log-density differences exact (the classifier returns the input's dtype)
    x, y = torch.as_tensor(task.x_test).double(), torch.as_tensor(task.y_test).long()
    out = {}
    for variant in ("fitted", "symmetric"):
        classifier = BayesClassifier(*models.pair(variant))
        logits = _logits(classifier, x, "flat", task.image_shape, classifier.device, batch)
        difference = logits[:, 1] - logits[:, 0]
        out[f"bayes_{variant}"] = _margin_accuracy(difference, y)
        out[f"bayes_{variant}_prior_corrected"] = _margin_accuracy(difference + log_odds, y)
    return out


def _log_prior_odds(train_prior: float) -> float:
    """log(p / (1 - p)) of the share p of class 1 among the real training images."""
    if not 0 < train_prior < 1:
        raise ValueError(
            f"train_prior is the share of class 1 in the real training set, in (0, 1); got {train_prior}: "
            "training labels of one class only have no prior odds"
        )
    return math.log(train_prior / (1 - train_prior))


def _margin_accuracy(difference: Tensor, y: Tensor) -> float:
    """Accuracy of deciding class 1 where the logit difference [n] (class 1 - class 0) is > 0 (ties: 0)."""
    return float(((difference > 0).long() == y).double().mean())


def _class_accuracies(logits: Tensor, y: Tensor, name: str) -> dict[str, float]:
    """{name: accuracy, name_class0: accuracy on class 0, name_class1: on class 1} of logits [n, 2], y [n]."""
    if logits.shape != (len(y), 2):
        raise ValueError(f"{name} logits must be [{len(y)}, 2], got {list(logits.shape)}")
    correct = logits.argmax(1) == y
    out = {name: float(correct.double().mean())}
    for label in (0, 1):
        of_class = y == label
        out[f"{name}_class{label}"] = float(correct[of_class].double().mean()) if of_class.any() else math.nan
    return out


def real_test_accuracy(
    model: nn.Module, task: TaskData, name: str = "accuracy", device: str | torch.device = "auto"
) -> dict[str, float]:
    """Accuracy of ``model`` on ``task``'s test images, overall and per class (keys as ``table3_accuracies``
    gives them for each CNN: ``name``, ``name_class0``, ``name_class1``)."""
    y = torch.as_tensor(task.y_test).long()
    return _class_accuracies(_test_logits(model, task, device).double(), y, name)


def _test_logits(model: nn.Module, task: TaskData, device: str | torch.device) -> Tensor:
    """``model``'s logits [n, 2] (on the CPU) for ``task``'s test images x [n, d], in the layout it takes."""
    dev = resolve_device(device)
    x = torch.as_tensor(task.x_test)
    model = model.to(dev).eval()
    return _logits(model, x, _input_view(model, x, task.image_shape, dev), task.image_shape, dev)


def table3_accuracies(
    real_logits: Tensor, symmetric_logits: Tensor, y: Tensor, train_prior: float
) -> dict[str, float]:
    """Table 3's accuracies from the two CNNs' logits [n, 2] on the real test images y [n].

    ``train_prior``: share of class 1 among the real training images, in (0, 1); it shifts the
    symmetric CNN's decision to that prior ("symmetric_train_prior_corrected"; see ``symmetric_vs_real``).
    """
    log_odds = _log_prior_odds(train_prior)
    y = torch.as_tensor(y).long().cpu()
    out: dict[str, float] = {}
    as_double = {
        name: torch.as_tensor(t).detach().cpu().double()
        for name, t in (("real_train", real_logits), ("symmetric_train", symmetric_logits))
    }
    for name, logits in as_double.items():
        out.update(_class_accuracies(logits, y, name))
    sym = as_double["symmetric_train"]
    out["symmetric_train_prior_corrected"] = _margin_accuracy(sym[:, 1] - sym[:, 0] + log_odds, y)
    return out


def table3_frame(table3: Mapping[str, float], attribute: str) -> pd.DataFrame:
    """Table 3 row, ours beside the paper's (accuracies %, and the drop from real to symmetric training).

    When ``table3`` has "symmetric_train_prior_corrected" (``symmetric_vs_real``), two more columns give
    the symmetric CNN's accuracy with the real training prior and the drop that is left; when it has
    "bayes_symmetric" (``bayes_real_accuracy``), one more gives that pair's Bayes-optimal classifier's.
    """
    rows = {"ours": table3}
    paper = paper_values.TABLE3.get(("celeba", attribute))
    if paper:
        rows["paper"] = paper

    def points(acc: Mapping[str, float], key: str, minus: str | None = None) -> float:
        value = acc.get(key, math.nan) - (0.0 if minus is None else acc.get(minus, math.nan))
        return round(100 * value, 1)

    columns = {}
    for who, acc in rows.items():
        columns[who] = {
            "real training %": points(acc, "real_train"),
            "symmetric training %": points(acc, "symmetric_train"),
            "drop (points)": points(acc, "real_train", "symmetric_train"),
        }
        if "symmetric_train_prior_corrected" in table3:
            columns[who]["symmetric, real prior %"] = points(acc, "symmetric_train_prior_corrected")
            columns[who]["drop with the prior (points)"] = points(
                acc, "real_train", "symmetric_train_prior_corrected"
            )
        if "bayes_symmetric" in table3:
            columns[who]["Bayes-optimal, symmetric pair %"] = points(acc, "bayes_symmetric")
    frame = pd.DataFrame(columns).T
    frame.index.name = f"CelebA / {attribute}"
    return frame


def table3_per_class(table3: Mapping[str, float], class_names: Sequence[str]) -> pd.DataFrame:
    """Each Table 3 CNN's accuracy (%) on the real test images of each class: where the drop comes from."""
    missing = [f"{who}_class{label}" for who in ("real_train", "symmetric_train") for label in (0, 1)]
    missing = [key for key in missing if key not in table3]
    if missing:
        raise ValueError(f"table3 lacks {missing}: make it with symmetric_vs_real")
    frame = pd.DataFrame(
        {
            name: {
                "CNN trained on real images": round(100 * table3[f"real_train_class{label}"], 1),
                "CNN trained on symmetric samples": round(100 * table3[f"symmetric_train_class{label}"], 1),
            }
            for label, name in enumerate(class_names)
        }
    )
    frame.columns = [f"{name} %" for name in class_names]
    return frame


# --------------------------------------------------------------------------------------------------
# Result files
# --------------------------------------------------------------------------------------------------


def _timings(evaluation: Evaluation, trained: TrainedClassifiers | None) -> dict[str, dict[str, float]]:
    """Wall seconds per model: "train" (each fit, as first made: a checkpoint keeps its time) and
    "evaluate" (accuracy and attacks in this run), so a result says where a run's time went."""
    out = {"evaluate": dict(evaluation.seconds)}
    if trained is not None:
        out["train"] = dict(trained.seconds)
    return out


def chapter4_metrics(
    evaluation: Evaluation,
    sweeps: Mapping[str, Sequence[SweepPoint]],
    trained: TrainedClassifiers | None = None,
) -> dict[str, Any]:
    """The metrics of ``save_result("04_learned_classifiers", ...)``.

    "bayes", "cnn", "linear_svm", "rbf_svm": ``RobustnessReport.to_dict()``; "sweeps": train_size /
    width / depth -> list of {"value", "test_accuracy", "seconds", "report"}; "trades": list of
    {"beta", "test_accuracy", "seconds", "report"}; "test_accuracy": per model on all test samples;
    "seconds": wall seconds per model ("evaluate", and "train" when ``trained`` is given); "rbf_gamma" and
    "gamma_search" when ``trained`` is given.
    """
    metrics: dict[str, Any] = {name: rep.to_dict() for name, rep in evaluation.reports.items()}
    metrics["test_accuracy"] = dict(evaluation.test_accuracy)
    metrics["n_test"] = evaluation.n_test
    metrics["attacks"] = dict(evaluation.attacks)
    metrics["sweeps"] = {
        name: [p.to_dict() for p in points] for name, points in sweeps.items() if name != "trades"
    }
    metrics["trades"] = [p.to_dict("beta") for p in sweeps.get("trades", [])]
    metrics["seconds"] = _timings(evaluation, trained)
    if trained is not None:
        metrics["rbf_gamma"] = trained.gamma
        metrics["gamma_search"] = trained.gamma_search
    return metrics


def chapter5_metrics(
    evaluation: Evaluation,
    table3: Mapping[str, float],
    trained: TrainedClassifiers | None = None,
    task: TaskData | None = None,
) -> dict[str, Any]:
    """The metrics of ``save_result("05_real_data", ...)``: "cnn", "linear_svm", "rbf_svm" reports,
    "table3" (``symmetric_vs_real``), "test_accuracy", "seconds" (as in ``chapter4_metrics``), and the gamma /
    class balance if given."""
    metrics: dict[str, Any] = {name: rep.to_dict() for name, rep in evaluation.reports.items()}
    metrics["table3"] = dict(table3)
    metrics["test_accuracy"] = dict(evaluation.test_accuracy)
    metrics["n_test"] = evaluation.n_test
    metrics["attacks"] = dict(evaluation.attacks)
    metrics["seconds"] = _timings(evaluation, trained)
    if trained is not None:
        metrics["rbf_gamma"] = trained.gamma
        metrics["gamma_search"] = trained.gamma_search
    if task is not None:
        metrics["class_balance"] = task.class_balance()
        metrics["source"] = source_label(task.source)
    return metrics


# --------------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------------


def plot_mean_l2(
    evaluation: Evaluation,
    paper_l2: Mapping[str, float] | None = None,
    title: str = "",
    ax: plt.Axes | None = None,
) -> Figure:
    """Figure 6 (one task's group) and Figure 9 (right): mean attack L2 per model, with the paper's
    values as black marks where given and the imperceptibility level of section 2.1 (dotted)."""
    own_figure = ax is None
    fig = plt.figure(figsize=(5, 3.4)) if own_figure else ax.figure
    ax = fig.add_subplot() if own_figure else ax
    names = list(evaluation.reports)
    means = [evaluation.reports[n].mean_l2 for n in names]
    bars = ax.bar(range(len(names)), means, color=[f"C{i}" for i in range(len(names))], label="ours")
    for bar, name in zip(bars, names, strict=True):
        rep = evaluation.reports[name]
        ax.annotate(
            f"{rep.mean_l2:.2f}\n({rep.n_evaluated}/{rep.n})",
            (bar.get_x() + bar.get_width() / 2, np.nan_to_num(rep.mean_l2)),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    if paper_l2:
        xs = [i for i, n in enumerate(names) if n in paper_l2]
        ax.scatter(
            xs, [paper_l2[names[i]] for i in xs], marker="_", s=600, color="k", zorder=3, label="paper"
        )
    ax.axhline(paper_values.IMPERCEPTIBLE_L2, color="k", ls=":", lw=1, label="almost imperceptible below")
    ax.set_xticks(range(len(names)), [_label(n) for n in names], rotation=20, fontsize=8)
    ax.set_ylabel("mean L2 of the attack")
    top = max([m for m in means if np.isfinite(m)] + list((paper_l2 or {}).values()) + [1.6])
    ax.set_ylim(0, 1.5 * top)  # room for the legend above the bars
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    if title:
        ax.set_title(title)
    if own_figure:
        fig.tight_layout()
    return fig


def _shown_samples(evaluation: Evaluation, n_show: int) -> list[int]:
    """Attacked rows to draw: those evaluated for every model first, alternating the two classes."""
    evaluated = np.ones(len(evaluation.y), dtype=bool)
    for result in evaluation.results.values():
        correct = (result.clean_pred == evaluation.y).numpy()
        evaluated &= correct & result.success.numpy()
    y = evaluation.y.numpy()
    ranked = []
    for pool in (np.flatnonzero(evaluated), np.flatnonzero(~evaluated)):
        by_class = [list(pool[y[pool] == c]) for c in (0, 1)]
        while by_class[0] or by_class[1]:
            for queue in by_class:
                if queue:
                    ranked.append(int(queue.pop(0)))
    return ranked[:n_show]


def plot_examples(
    evaluation: Evaluation,
    n_show: int = 3,
    class_names: tuple[str, str] | None = None,
    paper_l2: Mapping[str, float] | None = None,
    side: str = "histograms",
) -> Figure:
    """Figures 7 and 9: originals (top row), then per model each adversarial beside its magnified
    perturbation 0.5 + k * delta (k per model, so that its largest change fills the grey range).

    ``side``: "histograms" adds per model the histogram of per-pixel changes over all its evaluated
    samples (0-255 levels, log counts), titled with our mean L2 and the paper's where given (Figure 7);
    "bars" adds one panel of mean L2 per model (``plot_mean_l2``, Figure 9 right); "none" adds nothing.
    """
    if side not in ("histograms", "bars", "none"):
        raise ValueError(f"unknown side panel {side!r}: valid choices are 'histograms', 'bars', 'none'")
    names = list(evaluation.reports)
    shown = _shown_samples(evaluation, n_show)
    if not shown:
        raise ValueError("nothing to show: the evaluation attacked no samples or n_show < 1")
    n_img, n_rows, has_side = 2 * len(shown), len(names) + 1, side != "none"
    height = 1.3 * n_rows + 0.6
    fig = plt.figure(figsize=(1.2 * n_img + 4.2 * has_side, height))
    ratios = [n_img, 3.6] if has_side else [n_img]
    outer = fig.add_gridspec(1, len(ratios), width_ratios=ratios, wspace=0.22, left=0.05, right=0.98,
                             top=1 - 0.45 / height, bottom=0.1)  # fmt: skip
    grid = outer[0].subgridspec(n_rows, n_img, wspace=0.08, hspace=0.35)
    side_grid = outer[1].subgridspec(n_rows, 1, hspace=0.6) if has_side else None
    x = evaluation.x.numpy()
    originals = to_hwc(x[shown], evaluation.image_shape)

    def show(ax: plt.Axes, image: np.ndarray) -> None:
        image = np.clip(image, 0, 1)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])

    for j, sample in enumerate(shown):
        show(fig.add_subplot(grid[0, 2 * j]), originals[j])
        label = fig.add_subplot(grid[0, 2 * j + 1])
        label.axis("off")
        if class_names is not None:
            label.text(0.05, 0.5, class_names[int(evaluation.y[sample])], fontsize=8, va="center", wrap=True)
    fig.axes[0].set_ylabel("original", fontsize=8)
    for r, name in enumerate(names, start=1):
        result = evaluation.results[name]
        adversarial = to_hwc(result.x_adv.reshape(len(x), -1).numpy()[shown], evaluation.image_shape)
        deltas = adversarial - originals
        peak = float(np.abs(deltas).max())
        magnify = 0.5 / peak if peak > 0 else 1.0
        for j, sample in enumerate(shown):
            ax = fig.add_subplot(grid[r, 2 * j])
            show(ax, adversarial[j])
            l2 = float(result.l2[sample])
            flipped = bool(result.success[sample]) and bool(result.clean_pred[sample] == evaluation.y[sample])
            ax.set_title(f"L2 {l2:.2f}" if flipped else "not evaluated", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(_label(name), fontsize=8)
            ax = fig.add_subplot(grid[r, 2 * j + 1])
            show(ax, 0.5 + magnify * deltas[j])
            ax.set_title(f"x{magnify:.0f}", fontsize=7, pad=2)
        if side == "histograms":
            rep = evaluation.reports[name]
            ax = fig.add_subplot(side_grid[r, 0])
            ax.stairs(rep.pixel_hist, PIXEL_BINS, color=f"C{r - 1}")
            ax.axvline(paper_values.PERCEPTIBLE_PIXEL_LEVELS, color="k", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_xlim(0, 128)
            paper = f", paper {paper_l2[name]:.2f}" if paper_l2 and name in paper_l2 else ""
            ax.set_title(f"mean L2 {rep.mean_l2:.2f}{paper}", fontsize=8, pad=2)
            ax.tick_params(labelsize=7)
            if r == len(names):
                ax.set_xlabel("|pixel change| (0-255 levels)", fontsize=8)
    if side == "bars":
        plot_mean_l2(evaluation, paper_l2, ax=fig.add_subplot(side_grid[1:, 0]))
    return fig


def plot_figure6(evaluation: Evaluation, dataset: str, attribute: str) -> Figure:
    """Figure 6, this task's group: mean attack L2 per model (the paper's values where it gives them)."""
    return plot_mean_l2(
        evaluation, paper_mean_l2(dataset, attribute), title=f"symmetric {dataset} / {attribute}"
    )


def plot_figure7(
    evaluation: Evaluation,
    class_names: tuple[str, str] | None = None,
    dataset: str = "",
    attribute: str = "",
    n_show: int = 3,
) -> Figure:
    """Figure 7: adversarial examples, magnified perturbations and pixel-change histograms of every model,
    with the paper's mean L2 in the titles for its task (CelebA / Smiling)."""
    fig = plot_examples(evaluation, n_show, class_names, paper_mean_l2(dataset, attribute), side="histograms")
    fig.suptitle("adversarial examples and magnified perturbations; right: per-pixel changes", fontsize=10)
    return fig


def plot_figure9(
    evaluation: Evaluation, class_names: tuple[str, str] | None = None, n_show: int = 3
) -> Figure:
    """Figure 9: adversarial examples of the models trained on real images (left) and their mean
    perturbation sizes (right)."""
    fig = plot_examples(evaluation, n_show, class_names, side="bars")
    fig.suptitle("real CelebA test images: adversarial examples, perturbations, mean L2", fontsize=10)
    return fig


def plot_figure8(sweeps: Mapping[str, Sequence[SweepPoint]], evaluation: Evaluation) -> Figure:
    """Figure 8: mean attack L2 against training examples, CNN width and depth (Bayes-optimal dashed),
    and TRADES' accuracy against mean L2 with the Bayes-optimal classifier and the RBF SVM as references.

    ``evaluation`` supplies the references ("bayes", "rbf_svm" where present); with no sweep points (the
    chapter's ``figure8=False``) the figure says so."""
    if not any(sweeps.values()):
        fig, ax = plt.subplots(figsize=(7, 1.6))
        ax.text(0.5, 0.5, "Figure 8: sweeps skipped in this run (figure8=False)", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    bayes = evaluation.reports.get("bayes")
    for ax, name in zip(axes[:3], ("train_size", "width", "depth"), strict=True):
        points = sweeps.get(name, [])
        xs = [p.value for p in points]
        ax.plot(xs, [p.report.mean_l2 for p in points], "o-", color="C1", label="CNN")
        for p in points:
            ax.annotate(
                f"{100 * p.test_accuracy:.0f}%",
                (p.value, np.nan_to_num(p.report.mean_l2)),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=7,
            )
        if bayes is not None:
            ax.axhline(bayes.mean_l2, color="C0", ls="--", label="Bayes-optimal")
        if name == "train_size" and len(xs) > 1:
            ax.set_xscale("log")
            ax.minorticks_off()
        if xs:
            ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.set_xlabel(SWEEP_LABELS[name])
        ax.set_ylabel("mean L2 of the attack")
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8, title="labels: test accuracy", title_fontsize=7)
    ax = axes[3]
    trades = sweeps.get("trades", [])
    ax.plot(
        [p.report.mean_l2 for p in trades],
        [100 * p.test_accuracy for p in trades],
        "o-",
        color="C1",
        label="CNN + TRADES",
    )
    for p in trades:
        ax.annotate(
            f"beta={p.value:g}",
            (np.nan_to_num(p.report.mean_l2), 100 * p.test_accuracy),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
        )
    for ref, marker in (("bayes", "*"), ("rbf_svm", "s")):
        if ref in evaluation.reports:
            ax.scatter(
                evaluation.reports[ref].mean_l2,
                100 * evaluation.test_accuracy[ref],
                marker=marker,
                s=120 if marker == "*" else 50,
                color="C0" if ref == "bayes" else "C3",
                label=_label(ref),
                zorder=3,
            )
    ax.set_xlabel("mean L2 of the attack (robustness)")
    ax.set_ylabel("test accuracy %")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
