"""Chapter 4: learned classifiers on the symmetric datasets (paper section 3, appendices B.3-B.5, C.1, D.3).

The chapter trains the CNN and the SVMs (``learned.train_classifiers``) on a symmetric dataset's samples,
attacks them beside the Bayes-optimal classifier (``evaluation.evaluate_models``), runs the Figure 8 sweeps
(``run_sweeps``: training-set size, CNN width and depth, TRADES' beta) and writes its metrics
(``chapter4_metrics``). Table 1 and Figures 6 and 8 are drawn from results (``ResultSet``), one task's in
the chapter and every task's in the summary; Figure 7 from the attacked images.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.display import sweep_command
from nbhelpers.chapters.evaluation import Evaluation, check_attacks, evaluate_models
from nbhelpers.chapters.ids import BAYES, LEARNED
from nbhelpers.chapters.learned import Fitted, TrainedClassifiers, fit_cnn, timings
from nbhelpers.chapters.plotting import (
    MODEL_COLORS,
    empty_figure,
    empty_note,
    grouped_bars,
    legend_right,
    model_label,
    plot_examples,
    yardsticks,
)
from nbhelpers.chapters.profiles import ModelSizes, get_profile
from nbhelpers.chapters.resultset import (
    TASK_RANK,
    Result,
    ResultSet,
    Task,
    accuracy_table,
    clean_accuracy,
    mean_l2_table,
    report_value,
    task_label,
)
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.core.progress import tqdm
from nbhelpers.science.data import TaskData
from nbhelpers.science.datasets import fresh_sampler
from nbhelpers.science.mfa import MFA
from nbhelpers.science.models import CNN, fit_classifier
from nbhelpers.science.report import RobustnessReport

CHAPTER = LEARNED
SWEEP_NAMES: tuple[str, ...] = ("train_size", "width", "depth", "trades")
#: Figure 8's axes: what each sweep changes.
SWEEPS: dict[str, str] = {
    "train_size": "training examples (fresh samples)",
    "width": "CNN width (filters of the first layer)",
    "depth": "CNN depth (convolution layers)",
    "trades": "TRADES beta",
}


# --------------------------------------------------------------------------------------------------
# The Figure 8 sweeps


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


def fit_sweep_cnn(
    *,
    sweep: str,
    value: float,
    x: np.ndarray,
    y: np.ndarray,
    pair: tuple[MFA, MFA] | None,
    image_shape: tuple[int, int, int],
    sizes: ModelSizes,
    width: int,
    depth: int,
    beta: float,
    seed: int,
    device: str | torch.device = "auto",
) -> Fitted:
    """One CNN of the Figure 8 sweeps and its training time: for "train_size", a CNN of ``width`` and
    ``depth`` trained on ``value`` fresh samples of ``pair`` drawn during training (each seen once, as the
    paper grows the training set up to 1M examples); otherwise the CNN of ``width``, ``depth`` and TRADES'
    ``beta`` trained on x [n, d], y [n] for the profile's epochs."""
    start = time.perf_counter()
    if sweep == "train_size":
        model = fit_classifier(
            CNN(image_shape, width, depth, seed=seed),
            sampler=fresh_sampler(pair, device),
            n_examples=int(value),
            epochs=1,
            batch_size=sizes.cnn_batch_size,
            seed=seed,
            device=device,
        )
    else:
        model = fit_cnn(
            x,
            y,
            image_shape,
            sizes=sizes,
            width=width,
            depth=depth,
            epochs=sizes.cnn_epochs,
            beta=beta,
            seed=seed,
            device=device,
        )
    return Fitted(model, time.perf_counter() - start)


def run_sweeps(
    data: TaskData,
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
    checkpoints: Steps = NO_CHECKPOINTS,
) -> dict[str, list[SweepPoint]]:
    """Figure 8: CNNs trained with one setting changed (``fit_sweep_cnn``), each evaluated like
    ``evaluate_models``.

    - "train_size": a base-sized CNN trained on n fresh samples of ``data.pair``;
    - "width" / "depth": the CNN with that width / depth, trained on ``data``'s training set;
    - "trades": TRADES with that beta, on the same training set.

    Values default to the profile's ``train_sizes``, ``cnn_widths``, ``cnn_depths`` and
    ``trades_betas``. A point equal to the base setting (profile width and depth, beta = 0) reuses
    ``base_cnn`` when given (the same training, so the same weights) and is attacked once.
    The train-size sweep needs ``data.pair``; with ``train_sizes=()`` it is skipped. ``skip=True`` trains
    nothing and returns every sweep empty (chapter 4's ``figure8=False``). ``checkpoints``: keep each
    point's trained CNN (step ``sweep_<name>_<value>_train``) and each of its attacks, and reuse those an
    interrupted run left.
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
            step = f"sweep_{name}_{int(value) if float(value).is_integer() else value}"
            if key == ("fixed", sizes.cnn_width, sizes.cnn_depth, 0.0) and base_cnn is not None:
                fitted = Fitted(base_cnn, 0.0)
            else:
                # Training and attack are kept apart: a run killed during a long attack (the widest CNNs
                # take longest) keeps the point's trained CNN.
                fitted = checkpoints.run(
                    f"{step}_train",
                    fit_sweep_cnn,
                    sweep=key[0] if key[0] == "train_size" else "fixed",
                    value=float(value) if name == "train_size" else 0.0,
                    x=data.x_train,
                    y=data.y_train,
                    pair=data.pair if name == "train_size" else None,
                    image_shape=tuple(data.image_shape),
                    sizes=sizes,
                    width=width,
                    depth=depth,
                    beta=beta,
                    seed=seed,
                    device=device,
                )
            evaluation = evaluate_models(
                {step: fitted.module},
                data.x_test,
                data.y_test,
                data.image_shape,
                attacks=attacks,
                n_attack=n_attack,
                progress=False,
                checkpoints=checkpoints,
                profile=profile,
                seed=seed,
                device=device,
            )
            done[key] = SweepPoint(
                value, evaluation.test_accuracy[step], evaluation.reports[step], fitted.seconds
            )
        point = done[key]
        out[name].append(SweepPoint(value, point.test_accuracy, point.report, point.seconds))
    return out


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


# --------------------------------------------------------------------------------------------------
# The chapter's result


def chapter4_metrics(
    evaluation: Evaluation,
    sweeps: Mapping[str, Sequence[SweepPoint]] | None = None,
    trained: TrainedClassifiers | None = None,
) -> dict[str, Any]:
    """The metrics of the chapter's result.

    "bayes", "cnn", "linear_svm", "rbf_svm": ``RobustnessReport.to_dict()``; "sweeps": train_size /
    width / depth -> list of {"value", "test_accuracy", "seconds", "report"}; "trades": list of
    {"beta", "test_accuracy", "seconds", "report"}; "test_accuracy": per model on all test samples;
    "seconds": wall seconds per model ("evaluate", and "train" when ``trained`` is given); "rbf_gamma" and
    "gamma_search" when ``trained`` is given.
    """
    sweeps = sweeps or {}
    metrics: dict[str, Any] = {name: rep.to_dict() for name, rep in evaluation.reports.items()}
    metrics["test_accuracy"] = dict(evaluation.test_accuracy)
    metrics["n_test"] = evaluation.n_test
    metrics["attacks"] = dict(evaluation.attacks)
    metrics["sweeps"] = {
        name: [p.to_dict() for p in points] for name, points in sweeps.items() if name != "trades"
    }
    metrics["trades"] = [p.to_dict("beta") for p in sweeps.get("trades", [])]
    metrics["seconds"] = timings(evaluation, trained)
    if trained is not None:
        metrics["rbf_gamma"] = trained.gamma
        metrics["gamma_search"] = trained.gamma_search
    return metrics


def chapter4_result(
    dataset: str,
    attribute: str,
    profile: str,
    seed: int,
    evaluation: Evaluation,
    sweeps: Mapping[str, Sequence[SweepPoint]] | None = None,
    trained: TrainedClassifiers | None = None,
    figure8: bool = True,
) -> Result:
    """The chapter's result (``chapter4_metrics``), with the ``figure8`` parameter it ran with."""
    metrics = chapter4_metrics(evaluation, sweeps, trained)
    return Result(CHAPTER, dataset, attribute, profile, seed, metrics, {"figure8": figure8})


# --------------------------------------------------------------------------------------------------
# Table 1 and Figures 6, 7 and 8


def table1(results: ResultSet, convention: str = "paper") -> pd.DataFrame:
    """Table 1: [tasks, (model, clean/adversarial)] accuracies on the symmetric datasets, NaN where missing.

    Rows: the tasks with a chapter 03 or 04 result. The Bayes-optimal columns fall back to chapter 03.
    """
    tasks = results.tasks(BAYES, LEARNED)
    return accuracy_table(results, LEARNED, tasks, pv.MODELS, convention)


def figure6_table(results: ResultSet) -> pd.DataFrame:
    """Figure 6's numbers: [tasks, models] mean L2 of the attacks on the symmetric datasets."""
    return mean_l2_table(results, LEARNED, results.tasks(BAYES, LEARNED), pv.MODELS)


def plot_figure6(results: ResultSet) -> Figure:
    """Figure 6: grouped bars of the mean attack L2 per model and symmetric dataset (CelebA and MNIST
    panels), with the paper's Figure 7 values for CelebA / Smiling as black marks and the paper's
    perceptibility yardsticks. Without results it shows the paper's Figure 7 values alone."""
    table = figure6_table(results)
    tasks = results.tasks(BAYES, LEARNED)
    panels = [(d, [task_label(*t) for t in tasks if t[0] == d]) for d in ("celeba", "mnist")]
    panels = [(d, labels) for d, labels in panels if labels]
    if not panels:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        reference = pd.DataFrame(
            [[pv.FIGURE7_MEAN_L2[m] for m in pv.MODELS]],
            columns=[pv.MODEL_LABELS[m] for m in pv.MODELS],
            index=[task_label(*pv.FIGURE7_TASK)],
        )
        grouped_bars(ax, reference, pv.MODELS)
        yardsticks(ax)
        ax.set_title(f"No results of ours yet ({results.scope()}):\nthe paper's {pv.FIGURE7_SOURCE} values")
        ax.set_ylabel("mean L2 of the attack")
        legend_right(ax, [ax])
        fig.tight_layout()
        return fig
    counts = [len(labels) for _, labels in panels]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4 + 0.9 * sum(counts), 4.2),
        sharey=True,
        gridspec_kw={"width_ratios": counts},
        squeeze=False,
    )
    reference_label = task_label(*pv.FIGURE7_TASK)
    width = 0.8 / len(pv.MODELS)
    for ax, (dataset, labels) in zip(axes[0], panels, strict=True):
        x = grouped_bars(ax, table.loc[labels], pv.MODELS)
        if reference_label in labels:
            centre = x[labels.index(reference_label)]
            for j, model in enumerate(pv.MODELS):
                ax.plot(
                    centre + (j - (len(pv.MODELS) - 1) / 2) * width,
                    pv.FIGURE7_MEAN_L2[model],
                    "k_",
                    ms=14,
                    mew=2,
                    label="paper (Figure 7)",
                )
        yardsticks(ax)
        ax.set_title({"celeba": "CelebA", "mnist": "MNIST"}[dataset])
    axes[0, 0].set_ylabel("mean L2 of the attack")
    legend_right(axes[0, -1], axes[0])
    fig.suptitle(f"Figure 6, symmetric datasets ({results.scope()})")
    fig.tight_layout()
    return fig


def paper_mean_l2(dataset: str, attribute: str) -> dict[str, float] | None:
    """The paper's mean L2 per model on a symmetric task (Figure 7 gives them for CelebA / Smiling only)."""
    return dict(pv.FIGURE7_MEAN_L2) if (dataset, attribute) == pv.FIGURE7_TASK else None


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


#: Rows of ``svm_attacks_table``: a record's attack key -> what it is.
SVM_ATTACK_ROWS: dict[str, str] = {
    "cw": "CW-L2 alone, the paper's settings",
    "fmn": "FMN alone",
    "ddn": "DDN alone",
    "best_of": "best of CW-L2, FMN, DDN (chapter 4)",
}


def svm_attacks_table(folder: str | os.PathLike) -> pd.DataFrame:
    """Each attack alone on an SVM, beside chapter 4's best-of, from the records of ``scripts/svm_attacks.py``
    in ``folder``: a row per record and attack (CW-L2 with the paper's 3 binary-search steps and with more,
    FMN, DDN, the best of the three) with the samples' clean accuracy, the attack's success rate on the
    correctly classified ones, the adversarial accuracy (correct and not flipped; with a clean accuracy of
    100% the paper's bracket in Table 1 counts the same) and the mean L2 of the flips, beside the paper's
    adversarial accuracy for the task and model (Table 1). Empty when there is no record."""
    columns = [
        "task", "model", "attack", "clean accuracy", "success rate", "adversarial accuracy", "mean L2",
        "paper: adversarial accuracy",
    ]  # fmt: skip
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        searches = record["budget"]["cw_binary_search_steps"]
        attacks = {**record["attacks"], "best_of": record["best_of"]}
        keys = [k for k in ("cw", *sorted(k for k in attacks if k.startswith("cw_"))) if k in attacks]
        keys += [k for k in ("fmn", "ddn", "best_of") if k in attacks]
        task = (record["dataset"], record["attribute"])
        paper = pv.TABLE1.get(task, {}).get(record["model"], (math.nan, math.nan))
        for key in keys:
            numbers = attacks[key]
            if key.startswith("cw_"):
                label = f"CW-L2 alone, {key.split('_')[1]} binary-search steps (paper: {searches})"
            else:
                label = SVM_ATTACK_ROWS[key]
            rows.append(
                {
                    "task": task_label(*task),
                    "model": model_label(record["model"]),
                    "attack": label,
                    "clean accuracy": numbers["clean_accuracy"],
                    "success rate": numbers["success_rate"],
                    "adversarial accuracy": numbers["adversarial_accuracy"],
                    "mean L2": numbers["mean_l2"],
                    "paper: adversarial accuracy": paper[1],
                }
            )
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows).astype({"success rate": float, "mean L2": float})


def figure8_table(results: ResultSet) -> pd.DataFrame:
    """Figure 8's numbers: one row per trained CNN of chapter 04's sweeps (averaged over seeds), [n, 5]:
    task, sweep (a key of :data:`SWEEPS`), value (training examples, width, depth or beta), test_accuracy,
    mean_l2."""
    columns = ["task", "sweep", "value", "test_accuracy", "mean_l2"]
    rows = []
    for result in results.results:
        if result.chapter != LEARNED:
            continue
        points = dict(result.metrics.get("sweeps") or {})
        points["trades"] = [{**p, "value": p.get("beta")} for p in result.metrics.get("trades") or []]
        for sweep, sweep_points in points.items():
            for index, point in enumerate(sweep_points):
                mean_l2 = (point.get("report") or {}).get("mean_l2")
                rows.append(
                    {
                        "rank": TASK_RANK.get(result.task, len(TASK_RANK)),
                        "task": task_label(*result.task),
                        "sweep": sweep,
                        "index": index,
                        "value": float(point["value"]),
                        "test_accuracy": float(point["test_accuracy"]),
                        "mean_l2": math.nan if mean_l2 is None else float(mean_l2),
                    }
                )
    if not rows:
        return pd.DataFrame(columns=columns)
    keys = ["rank", "task", "sweep", "index"]
    table = pd.DataFrame(rows).groupby(keys, sort=True)[["value", "test_accuracy", "mean_l2"]].mean()
    return table.reset_index().reindex(columns=columns)


def figure8_tasks(results: ResultSet) -> set[Task]:
    """The tasks whose chapter 04 results hold at least one Figure 8 sweep point."""
    return {
        r.task
        for r in results.results
        if r.chapter == LEARNED and (any((r.metrics.get("sweeps") or {}).values()) or r.metrics.get("trades"))
    }


def _has_number(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def plot_figure8(results: ResultSet) -> Figure:
    """Figure 8: mean attack L2 against training examples, CNN width and depth (one line per task; dashed:
    the Bayes-optimal classifier's mean over the tasks; labels: test accuracy when one task is shown), and
    the trade-off between test accuracy and mean L2 of TRADES-trained CNNs, the means over the tasks per
    beta, beside the other models' means. A chapter run made with ``figure8=False`` says so."""
    table = figure8_table(results)
    if table.empty:
        runs = [r for r in results.results if r.chapter == LEARNED]
        if results.results_dir is None and runs and all(r.params.get("figure8") is False for r in runs):
            return empty_figure("Figure 8: sweeps skipped in this run (figure8=False)")
        return empty_figure(
            f"Figure 8: no sweeps of chapter 04 yet ({results.scope()}):\n{sweep_command('figure8', results)}"
        )
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    tasks = results.tasks(LEARNED)
    bayes = [report_value(results, LEARNED, t, "bayes", "mean_l2") for t in tasks]
    bayes_mean = np.nanmean(bayes) if _has_number(bayes) else math.nan
    one_task = table["task"].nunique() == 1
    for ax, sweep in zip(axes[:3], ("train_size", "width", "depth"), strict=True):
        part = table[table["sweep"] == sweep]
        if part.empty:
            empty_note(ax, f"no {sweep.replace('_', ' ')} sweep yet")
            ax.set_xlabel(SWEEPS[sweep])
            continue
        for task, line in part.groupby("task", sort=False):
            ax.plot(line["value"], line["mean_l2"], "o-", label=task.split(" / ")[-1])
            if one_task:
                for _, point in line.iterrows():
                    ax.annotate(
                        f"{100 * point['test_accuracy']:.0f}%",
                        (point["value"], np.nan_to_num(point["mean_l2"])),
                        textcoords="offset points",
                        xytext=(0, 6),
                        ha="center",
                        fontsize=7,
                    )
        if not math.isnan(bayes_mean):
            ax.axhline(bayes_mean, color=MODEL_COLORS["bayes"], ls="--", label="Bayes-optimal (mean)")
        if sweep == "train_size":
            ax.set_xscale("log")
        ax.set_xlabel(SWEEPS[sweep])
        ax.set_ylabel("mean L2 of the attack")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, title="labels: test accuracy" if one_task else None, title_fontsize=7)
    ax = axes[3]
    trades = table[table["sweep"] == "trades"].groupby("value")[["test_accuracy", "mean_l2"]].mean()
    if trades.empty:
        empty_note(ax, "no TRADES runs yet")
    else:
        ax.plot(
            trades["mean_l2"], trades["test_accuracy"], "o-", color=MODEL_COLORS["cnn"], label="CNN + TRADES"
        )
        for beta, row in trades.iterrows():
            ax.annotate(
                f"beta={beta:g}",
                (row["mean_l2"], row["test_accuracy"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
        for model, marker in (("bayes", "*"), ("linear_svm", "D"), ("rbf_svm", "s")):
            l2 = [report_value(results, LEARNED, t, model, "mean_l2") for t in tasks]
            accuracy = [clean_accuracy(results, LEARNED, t, model) for t in tasks]
            if _has_number(l2) and _has_number(accuracy):
                ax.scatter(
                    np.nanmean(l2),
                    np.nanmean(accuracy),
                    marker=marker,
                    s=90,
                    color=MODEL_COLORS[model],
                    label=pv.MODEL_LABELS[model],
                    zorder=3,
                )
        ax.set_xlabel("mean L2 of the attack (robustness)")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    ax.set_title(
        "means over the tasks" if not one_task else "TRADES: accuracy against robustness", fontsize=9
    )
    fig.suptitle(f"Figure 8 ({results.scope()})")
    fig.tight_layout()
    return fig
