"""Chapter 7, the leaderboard: every model ranked by its robustness relative to the Bayes-optimal classifier.

A model's entry on a task is its ``ratio_to_bayes`` (``chapters.benchmark``): the mean L2 of the smallest
perturbation that flips it over the Bayes-optimal classifier's, on the same attacked samples. The entries
come from result files: chapter 4's (the CNN, the linear and the RBF SVM, and every CNN of the Figure 8
sweeps: each width, depth, training-set size and TRADES beta) and score files that readers submit
(``python -m nbhelpers score``, placed in ``results/<profile>/leaderboard/``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.benchmark import BenchmarkScore
from nbhelpers.chapters.ids import LEARNED
from nbhelpers.chapters.plotting import MODEL_COLORS, empty_figure
from nbhelpers.chapters.resultset import TASK_RANK, ResultSet, Task, task_label

BOOK, SUBMITTED = "book", "submitted"
_SWEEP_NAMES = {
    "width": "CNN, width {value:g}",
    "depth": "CNN, depth {value:g}",
    "train_size": "CNN, {value:g} training samples",
    "trades": "CNN + TRADES, beta {value:g}",
}


@dataclass
class Entry:
    """One model on one task: its ratio to the Bayes-optimal classifier and what stands behind it."""

    model: str
    source: str  # BOOK or SUBMITTED
    task: Task
    ratio: float
    clean_accuracy: float
    mean_l2: float
    bayes_mean_l2: float
    attacks: str


def _ratio(mean_l2: float | None, bayes: float | None) -> float:
    if (
        mean_l2 is None
        or bayes is None
        or not (math.isfinite(mean_l2) and math.isfinite(bayes) and bayes > 0)
    ):
        return math.nan
    return mean_l2 / bayes


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def book_entries(results: ResultSet) -> list[Entry]:
    """The book's own models from chapter 4's results: the CNN and both SVMs, and each CNN of the Figure 8
    sweeps, each against the Bayes-optimal classifier attacked on the same samples (averaged over seeds)."""
    rows: dict[tuple[str, Task], list[Entry]] = {}
    for result in results.results:
        if result.chapter != LEARNED or "bayes" not in result.metrics:
            continue
        metrics = result.metrics
        bayes = _num(metrics["bayes"].get("mean_l2"))
        attacks = metrics.get("attacks", {})
        for model in pv.REAL_MODELS:
            if model not in metrics:
                continue
            report = metrics[model]
            entry = Entry(
                pv.MODEL_LABELS[model],
                BOOK,
                result.task,
                _ratio(_num(report.get("mean_l2")), bayes),
                _num(metrics.get("test_accuracy", {}).get(model, report.get("clean_accuracy"))),
                _num(report.get("mean_l2")),
                bayes,
                ", ".join(attacks.get(model, [])),
            )
            rows.setdefault((entry.model, entry.task), []).append(entry)
        sweep_points = [(name, p) for name, ps in (metrics.get("sweeps") or {}).items() for p in ps]
        sweep_points += [("trades", {**p, "value": p.get("beta")}) for p in metrics.get("trades") or []]
        for name, point in sweep_points:
            mean_l2 = _num((point.get("report") or {}).get("mean_l2"))
            label = _SWEEP_NAMES.get(name, f"CNN, {name} {{value:g}}").format(value=float(point["value"]))
            entry = Entry(
                label,
                BOOK,
                result.task,
                _ratio(mean_l2, bayes),
                _num(point.get("test_accuracy")),
                mean_l2,
                bayes,
                "ddn",
            )
            rows.setdefault((entry.model, entry.task), []).append(entry)
    return [_mean_entry(group) for group in rows.values()]


def _mean_entry(group: Sequence[Entry]) -> Entry:
    """One entry for several seeds of the same model and task: their means."""
    first = group[0]
    if len(group) == 1:
        return first

    def mean(field: str) -> float:
        values = [getattr(e, field) for e in group if math.isfinite(getattr(e, field))]
        return float(np.mean(values)) if values else math.nan

    ratio, clean, l2, bayes = (mean(f) for f in ("ratio", "clean_accuracy", "mean_l2", "bayes_mean_l2"))
    return Entry(first.model, first.source, first.task, ratio, clean, l2, bayes, first.attacks)


def submitted_entries(scores: Sequence[BenchmarkScore]) -> list[Entry]:
    """Entries of submitted score files (``nbhelpers.runs.benchmark.load_scores``)."""
    return [
        Entry(
            s.name,
            SUBMITTED,
            s.task,
            s.ratio_to_bayes,
            s.test_accuracy.get("model", s.model.clean_accuracy),
            s.model.mean_l2,
            s.bayes.mean_l2,
            ", ".join(s.attacks),
        )
        for s in scores
    ]


def leaderboard(entries: Sequence[Entry]) -> pd.DataFrame:
    """The models ranked by their mean ratio to the Bayes-optimal classifier over the tasks they were scored
    on (closest to 1 first), [models, 5 + tasks]: source, tasks scored, mean ratio, mean clean accuracy, the
    attacks, then the ratio per task (blank where a model has no score)."""
    columns = ["model", "source", "tasks", "mean ratio to Bayes", "mean clean acc.", "attacks"]
    if not entries:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame([e.__dict__ for e in entries])
    frame["task"] = [task_label(*t) for t in frame["task"]]
    task_order = sorted(frame["task"].unique(), key=lambda label: _task_rank(entries, label))
    per_task = frame.pivot_table(index="model", columns="task", values="ratio", aggfunc="mean")
    per_task = per_task.reindex(columns=task_order)
    summary = frame.groupby("model").agg(
        source=("source", "first"),
        tasks=("task", "nunique"),
        ratio=("ratio", "mean"),
        clean=("clean_accuracy", "mean"),
        attacks=("attacks", "first"),
    )
    table = summary.join(per_task).reset_index()
    table = table.rename(columns={"ratio": "mean ratio to Bayes", "clean": "mean clean acc."})
    # Closest to the Bayes-optimal robustness first; a ratio above 1 is ranked as far as its distance from 1.
    table = table.assign(_rank=(1 - table["mean ratio to Bayes"]).abs()).sort_values(["_rank", "model"])
    return table.drop(columns="_rank").reset_index(drop=True)


def _task_rank(entries: Sequence[Entry], label: str) -> int:
    tasks = {task_label(*e.task): e.task for e in entries}
    return TASK_RANK.get(tasks[label], len(TASK_RANK))


def plot_leaderboard(entries: Sequence[Entry], title: str = "") -> Figure:
    """The ratio to the Bayes-optimal classifier per model (one row each, ranked as in ``leaderboard``),
    one point per task, the mean as a bar; the dashed line at 1 is the Bayes-optimal robustness."""
    table = leaderboard(entries)
    if table.empty:
        return empty_figure(
            "No models to rank yet: run chapter 4, or add score files (python -m nbhelpers score)"
        )
    models = list(table["model"])
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.32 * len(models)))
    y = np.arange(len(models))[::-1]
    position = dict(zip(models, y, strict=True))
    ax.barh(
        y, np.nan_to_num(table["mean ratio to Bayes"].to_numpy(float)), color="0.85", label="mean over tasks"
    )
    tasks = sorted({e.task for e in entries}, key=lambda t: TASK_RANK.get(t, len(TASK_RANK)))
    for task, color in zip(tasks, plt.cm.tab10.colors * 2, strict=False):
        mine = [e for e in entries if e.task == task and math.isfinite(e.ratio)]
        ax.scatter(
            [e.ratio for e in mine],
            [position[e.model] for e in mine],
            s=18,
            color=color,
            label=task_label(*task),
        )
    ax.axvline(1.0, color=MODEL_COLORS["bayes"], ls="--", lw=1, label="Bayes-optimal")
    labels = [f"{m} ({s})" if s == SUBMITTED else m for m, s in zip(models, table["source"], strict=True)]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("mean L2 to flip the model / mean L2 to flip the Bayes-optimal classifier")
    ax.set_xlim(left=0)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title or "Robustness relative to the Bayes-optimal classifier", fontsize=10)
    fig.tight_layout()
    return fig


def paper_reference() -> pd.DataFrame:
    """The paper's own ratios where it prints the numbers (Figure 7, CelebA / Smiling): each model's mean L2
    over the Bayes-optimal classifier's."""
    bayes = pv.FIGURE7_MEAN_L2["bayes"]
    rows = [
        {
            "model": pv.MODEL_LABELS[m],
            "task": task_label(*pv.FIGURE7_TASK),
            "paper: ratio to Bayes": v / bayes,
        }
        for m, v in pv.FIGURE7_MEAN_L2.items()
        if m != "bayes"
    ]
    return pd.DataFrame(rows)
