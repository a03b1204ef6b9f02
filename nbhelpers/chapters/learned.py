"""The learned classifiers of chapters 4 and 5: their training data and their training (paper section 3,
appendices B.3-B.5).

1. data: ``symmetric_data`` draws a dataset's train and test samples from its model pair (chapter 5 uses
   the real faces, ``ch5_real.real_task``);
2. ``train_classifiers``: the CNN, the linear SVM and the RBF SVM (with its gamma search), all as torch
   modules mapping x [n, d] to logits [n, 2], each training a step that a run keeps.

``nbhelpers.chapters.evaluation`` then attacks them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch import nn

from nbhelpers.chapters.profiles import ModelSizes, get_profile
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.core.device import resolve_device
from nbhelpers.core.progress import tqdm
from nbhelpers.science.data import TaskData
from nbhelpers.science.datasets import TaskModels, sample_dataset
from nbhelpers.science.models import CNN, RBFSVM, LinearSVM, fit_classifier, fit_trades, select_gamma
from nbhelpers.science.models.svm import GAMMA_TOLERANCE

if TYPE_CHECKING:
    from nbhelpers.chapters.evaluation import Evaluation

LEARNED: tuple[str, ...] = ("cnn", "linear_svm", "rbf_svm")


def symmetric_data(
    models: TaskModels,
    variant: str = "symmetric",
    *,
    n_train_per_class: int | None = None,
    n_test_per_class: int | None = None,
    seed: int = 0,
) -> TaskData:
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
    return TaskData(
        dataset=models.dataset,
        attribute=models.attribute,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        image_shape=tuple(models.image_shape),
        class_names=tuple(models.class_names),
        source=models.source,
        variant=variant,
        pair=pair,
    )


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


@dataclass
class Fitted:
    """One trained model as a step keeps it: the module, its fit time and, for the RBF SVM, its gamma and
    gamma search."""

    module: nn.Module
    seconds: float
    gamma: float = float("nan")
    gamma_search: list[dict] = field(default_factory=list)


def fit_cnn(
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    sizes: ModelSizes,
    width: int,
    depth: int,
    epochs: int,
    beta: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> CNN:
    """The paper's CNN (B.3) of ``width`` and ``depth`` trained with Adam on x [n, d], y [n] for ``epochs``
    (batch size from ``sizes``). ``beta > 0`` trains with TRADES (``fit_trades``: ``sizes.trades_eps`` and
    ``sizes.trades_steps``); beta = 0 is plain cross-entropy training (``fit_classifier``)."""
    model = CNN(image_shape, width, depth, seed=seed)
    common = {
        "epochs": epochs,
        "batch_size": sizes.cnn_batch_size,
        "seed": seed,
        "device": device,
        "progress": progress,
    }
    if beta == 0:
        return fit_classifier(model, x, y, **common)
    return fit_trades(model, x, y, beta, eps=sizes.trades_eps, steps=sizes.trades_steps, **common)


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
    """``fit_cnn`` with the profile's width, depth and epochs where not given."""
    sizes = get_profile(profile).models
    return fit_cnn(
        x,
        y,
        image_shape,
        sizes=sizes,
        width=sizes.cnn_width if width is None else width,
        depth=sizes.cnn_depth if depth is None else depth,
        epochs=sizes.cnn_epochs if epochs is None else epochs,
        beta=beta,
        seed=seed,
        device=device,
        progress=progress,
    )


def fit_cnn_timed(
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int, int],
    *,
    sizes: ModelSizes,
    width: int,
    depth: int,
    epochs: int,
    beta: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
) -> Fitted:
    """``fit_cnn`` and the seconds it took (a step of ``train_classifiers`` and of the Figure 8 sweeps)."""
    start = time.perf_counter()
    module = fit_cnn(
        x,
        y,
        image_shape,
        sizes=sizes,
        width=width,
        depth=depth,
        epochs=epochs,
        beta=beta,
        seed=seed,
        device=device,
        progress=progress,
    )
    return Fitted(module, time.perf_counter() - start)


def fit_linear_svm(x: np.ndarray, y: np.ndarray, *, device: str | torch.device = "auto") -> Fitted:
    """The linear SVM (B.4, C = 1) on x [n, d], y [n], as a torch module, and its fit time."""
    start = time.perf_counter()
    module = LinearSVM(device=resolve_device(device).type).fit(x, y).to_torch()
    return Fitted(module, time.perf_counter() - start)


def fit_rbf_svm(
    x: np.ndarray,
    y: np.ndarray,
    *,
    gammas: Sequence[float],
    tolerance: float = GAMMA_TOLERANCE,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> Fitted:
    """The RBF SVM (B.5, C = 1) on x [n, d], y [n] with the gamma ``select_gamma`` picks from ``gammas``, as a
    torch module, with its fit time, gamma and gamma search."""
    start = time.perf_counter()
    gamma, table = select_gamma(x, y, gammas, tolerance=tolerance, seed=seed, device=device)
    module = RBFSVM(gamma, device=resolve_device(device).type).fit(x, y).to_torch()
    return Fitted(module, time.perf_counter() - start, gamma, table)


def svm_training_rows(n_train: int, cap: int, seed: int) -> np.ndarray:
    """The rows [min(n_train, cap)] of a training set the SVMs see: a seeded random subset, sorted."""
    return np.sort(np.random.default_rng(seed).permutation(n_train)[:cap])


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
    checkpoints: Steps = NO_CHECKPOINTS,
    overlap: bool | None = None,
) -> TrainedClassifiers:
    """Train the CNN (B.3) on all of x_train [n, d], and the linear (B.4) and RBF (B.5) SVMs on at most
    ``svm_max_train`` of its rows (a seeded random subset); sizes default to the profile's ``models``.

    The RBF SVM's gamma comes from ``select_gamma`` over ``gammas`` (default: the profile's
    ``svm_gammas``); both SVMs use C = 1, as in the paper. ``checkpoints``: keep each trained model
    there (steps ``train_<model>``) and reuse those an interrupted run of the same inputs left.
    ``progress``: a bar over the three models (one after another) and one over the CNN's training steps.
    ``overlap``: fit the two SVMs in a thread while the CNN trains (default: on a CUDA device, where the
    CNN keeps the GPU busy and libsvm's solves, which release the GIL, keep a host core busy; on a CPU
    both would want the same cores). The models are the same either way; each model's seconds are then
    its own wall time, which overlaps the others'.
    """
    sizes = get_profile(profile).models
    x_train = np.asarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train)
    cap = sizes.svm_max_train if svm_max_train is None else svm_max_train
    if isinstance(cap, bool) or not isinstance(cap, int | np.integer) or cap < 2:
        raise ValueError(f"svm_max_train must be an integer >= 2 (both classes), got {cap!r}")
    if overlap is not None and not isinstance(overlap, bool):
        raise ValueError(f"overlap must be True, False or None (True on a CUDA device), got {overlap!r}")
    svm_rows = svm_training_rows(len(y_train), cap, seed)
    x_svm, y_svm = x_train[svm_rows], y_train[svm_rows]
    steps: dict[str, Callable[[], Fitted]] = {
        "cnn": lambda: checkpoints.run(
            "train_cnn",
            fit_cnn_timed,
            x=x_train,
            y=y_train,
            image_shape=tuple(image_shape),
            sizes=sizes,
            width=sizes.cnn_width if width is None else width,
            depth=sizes.cnn_depth if depth is None else depth,
            epochs=sizes.cnn_epochs if epochs is None else epochs,
            seed=seed,
            device=device,
            progress=progress,
        ),
        "linear_svm": lambda: checkpoints.run(
            "train_linear_svm", fit_linear_svm, x=x_svm, y=y_svm, device=device
        ),
        "rbf_svm": lambda: checkpoints.run(
            "train_rbf_svm",
            fit_rbf_svm,
            x=x_svm,
            y=y_svm,
            gammas=tuple(sizes.svm_gammas if gammas is None else gammas),
            tolerance=gamma_tolerance,
            seed=seed,
            device=device,
        ),
    }
    if overlap is None:
        overlap = resolve_device(device).type == "cuda"
    fitted = _fit_overlapped(steps) if overlap else _fit_in_turn(steps, progress)
    rbf = fitted["rbf_svm"]
    return TrainedClassifiers(
        modules={name: f.module for name, f in fitted.items()},
        gamma=rbf.gamma,
        gamma_search=rbf.gamma_search,
        n_train={"cnn": len(y_train), "linear_svm": len(y_svm), "rbf_svm": len(y_svm)},
        seconds={name: f.seconds for name, f in fitted.items()},
    )


def _fit_in_turn(steps: dict[str, Callable[[], Fitted]], progress: bool) -> dict[str, Fitted]:
    return {name: steps[name]() for name in tqdm(LEARNED, desc="training", disable=not progress, leave=False)}


def _fit_overlapped(steps: dict[str, Callable[[], Fitted]]) -> dict[str, Fitted]:
    """The CNN here, the SVMs meanwhile in a thread. If the CNN fails, the thread still finishes (and keeps
    its checkpoints) while the error is raised at once."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="svm-fits")
    try:
        svms = pool.submit(lambda: {name: steps[name]() for name in LEARNED if name != "cnn"})
        cnn = steps["cnn"]()
        return {"cnn": cnn, **svms.result()}
    finally:
        pool.shutdown(wait=False)


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


def timings(evaluation: Evaluation, trained: TrainedClassifiers | None) -> dict[str, dict[str, float]]:
    """Wall seconds per model: "train" (each fit, as first made: a checkpoint keeps its time) and
    "evaluate" (accuracy and attacks in this run), so a result says where a run's time went."""
    out = {"evaluate": dict(evaluation.seconds)}
    if trained is not None:
        out["train"] = dict(trained.seconds)
    return out
