"""Chapter 3's figures and tables: the attacked images of both variants (Figures 4 and 12), their mean L2
beside the paper's across tasks (``symmetric_vs_asymmetric``, ``plot_figure4``), the distances to the other
class's subspaces (Figure 11), the bound sandwich, the step-halving check, the asymmetric noise study and
the chapter's findings in words.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.ch3_bayes import BayesEvaluation, StepHalving, _require_bounds, sandwich_violations
from nbhelpers.chapters.display import Markdown
from nbhelpers.chapters.ids import BAYES
from nbhelpers.chapters.plotting import empty_note, legend_right, show_image, yardsticks
from nbhelpers.chapters.resultset import ResultSet, task_label, task_labels, task_order
from nbhelpers.science.bounds import SubspaceDistances
from nbhelpers.science.data import to_hwc
from nbhelpers.science.datasets import ASYMMETRIC_BASE, MIN_VARIANCE, OUTLIER_SIGMA, SYMMETRIC_SIGMA
from nbhelpers.science.report import PERCEPTIBLE_LEVELS, PIXEL_BINS


def plot_figure4_examples(symmetric: BayesEvaluation, asymmetric: BayesEvaluation, n_show: int = 5) -> Figure:
    """Figures 4 and 12 (the images): per variant, ``n_show`` originals, their best adversarials and the
    perturbations (magnified by the factor in the row label), with the histogram of per-pixel changes on the
    right. Their numbers across tasks: :func:`plot_figure4`."""
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
    regular = asymmetric.outlier_share(regular_only=True)
    sigma = _learned_sigma(asymmetric)
    median = float(np.median(sigma))
    floor = float((sigma <= SYMMETRIC_SIGMA * 1.001).mean())
    if share is not None:
        lines.append(
            f"On the asymmetric dataset {100 * share:.0f}% of the adversarials are held by the other "
            f"class's broad outlier component (sigma = {OUTLIER_SIGMA}), the route of Lemma 1"
            + (
                ""
                if regular is None
                else f"; among the samples drawn from the regular components, {100 * regular:.0f}%"
            )
            + ". "
            + (
                f"The fitted components keep their learned noise: median sigma {median:.3f}, "
                f"{OUTLIER_SIGMA / median:.1f} times below the outlier's, with {100 * floor:.0f}% of the "
                f"values at the floor sigma = {SYMMETRIC_SIGMA}."
                if asymmetric.asymmetric_base == "fitted"
                else f"The regular components carry the symmetric pair's noise, sigma = {SYMMETRIC_SIGMA}, "
                f"{OUTLIER_SIGMA / SYMMETRIC_SIGMA:.0f} times below the outlier's (the 'symmetric' reading "
                "of appendix B.2, chapter 2)."
            )
        )
        if (share if regular is None else regular) < 0.5:
            lines.append(
                "Most adversarials instead cross to a regular component of the other class: with noise this "
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


def _learned_sigma(asymmetric: BayesEvaluation) -> np.ndarray:
    """Noise sigmas of the asymmetric pair's fitted components (every component but the outlier), flat."""
    return np.concatenate(
        [torch.exp(0.5 * mfa.log_D[:-1]).double().cpu().numpy().ravel() for mfa in asymmetric.classifier.mfas]
    )


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


def plot_figure11(evaluation: BayesEvaluation) -> Figure:
    """Figure 11: histogram of each symmetric sample's distance to the nearest subspace of the other class
    (the paper's mean for Male/Female as a dotted line), and half of it beside the best attack's L2 and the
    certified radius (right)."""
    certified, distances = _require_bounds(evaluation)
    fig = _plot_distance_histogram(distances, attack_l2=evaluation.l2, certified=certified)
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


def _plot_distance_histogram(
    distances: SubspaceDistances,
    attack_l2: np.ndarray | torch.Tensor | None = None,
    certified: np.ndarray | torch.Tensor | None = None,
    bins: int = 30,
) -> plt.Figure:
    """Figure 11: histogram of the distance to the nearest other-class subspace.

    With ``attack_l2`` ``[n]`` (the best attack per sample; ``inf`` = failed, left out) a second
    panel sets it beside the Lemma 3 half-distance and, if given, the ``certified`` radius ``[n]``.
    """
    panels = 1 if attack_l2 is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6), squeeze=False)
    ax = axes[0, 0]
    ax.hist(distances.other, bins=bins, color="tab:blue", alpha=0.8)
    ax.axvline(distances.other.mean(), color="k", ls="--", label=f"mean {distances.other.mean():.2f}")
    ax.set_xlabel(r"$\ell_2$ distance to the nearest subspace of the other class")
    ax.set_ylabel("samples")
    ax.legend()
    if attack_l2 is not None:
        l2 = np.asarray(torch.as_tensor(attack_l2).cpu(), dtype=float)
        ok = np.isfinite(l2)
        ax = axes[0, 1]
        ax.scatter(distances.half_other[ok], l2[ok], s=10, label="best attack", color="tab:red")
        if certified is not None:
            cert = np.asarray(torch.as_tensor(certified).cpu(), dtype=float)
            ax.scatter(
                distances.half_other, cert, s=10, marker="x", label="certified radius", color="tab:green"
            )
        top = max(distances.half_other.max(), l2[ok].max() if ok.any() else 0.0)
        ax.plot([0, top], [0, top], color="k", lw=1, label="y = x")
        ax.set_xlabel("half the distance to the other class's nearest subspace")
        ax.set_ylabel(r"perturbation $\ell_2$")
        ax.legend()
    fig.tight_layout()
    return fig


def symmetric_vs_asymmetric(results: ResultSet) -> pd.DataFrame:
    """Figures 4, 11 and 12: [tasks, 7] the Bayes-optimal classifier's mean attack L2 on the asymmetric and
    the symmetric dataset, the mean distance to the other class's component subspaces (Figure 11; Lemma 3
    puts the symmetric mean L2 near half of it) and our mean certified radius; ours beside the paper's.

    Rows: the tasks with a chapter 03 result and the paper's three tasks of Figures 4 and 12.
    """
    tasks = task_order(set(results.tasks(BAYES)) | set(pv.FIGURE4_12_MEAN_L2) | {pv.FIGURE11_TASK})
    rows = []
    for task in tasks:
        paper = pv.FIGURE4_12_MEAN_L2.get(task, {})
        rows.append(
            [
                results.value(BAYES, *task, "bayes_asymmetric.mean_l2"),
                paper.get("asymmetric", math.nan),
                results.value(BAYES, *task, "bayes_symmetric.mean_l2"),
                paper.get("symmetric", math.nan),
                results.value(BAYES, *task, "subspace_distance_mean"),
                pv.FIGURE11_SUBSPACE_DISTANCE_MEAN if task == pv.FIGURE11_TASK else math.nan,
                results.value(BAYES, *task, "certified_radius_mean"),
            ]
        )
    columns = pd.MultiIndex.from_tuples(
        [
            ("mean L2, asymmetric", "ours"),
            ("mean L2, asymmetric", "paper"),
            ("mean L2, symmetric", "ours"),
            ("mean L2, symmetric", "paper"),
            ("distance to other class", "ours"),
            ("distance to other class", "paper"),
            ("certified radius", "ours"),
        ]
    )
    return pd.DataFrame(rows, index=task_labels(tasks), columns=columns, dtype=float)


def plot_figure4(results: ResultSet) -> Figure:
    """Figures 4/12: the Bayes-optimal classifier's mean attack L2 on the asymmetric and the symmetric
    dataset of each task (bars: ours; black marks: the paper's), with half the mean distance to the other
    class's subspaces (Lemma 3's prediction for the symmetric case; the paper's Figure 11 for Male)."""
    table = symmetric_vs_asymmetric(results)
    fig, ax = plt.subplots(figsize=(4.5 + 1.1 * len(table), 4.0))
    x = np.arange(len(table))
    width = 0.38
    for offset, variant, color in ((-0.5, "asymmetric", "tab:purple"), (0.5, "symmetric", "tab:green")):
        column = f"mean L2, {variant}"
        ax.bar(
            x + offset * width,
            np.nan_to_num(table[(column, "ours")].to_numpy(float)),
            width,
            color=color,
            alpha=0.8,
            label=f"ours, {variant}",
        )
        ax.plot(
            x + offset * width,
            table[(column, "paper")].to_numpy(float),
            "k_",
            ms=16,
            mew=2,
            label="paper (Figures 4, 12)",
        )
    for source, marker, label in (("ours", "o", "ours"), ("paper", "s", "paper (Figure 11)")):
        half = table[("distance to other class", source)].to_numpy(float) / 2
        ax.plot(
            x + 0.5 * width,
            half,
            marker,
            mfc="none",
            mec="black",
            ls="none",
            label=f"half the distance to the other class, {label}",
        )
    yardsticks(ax)
    ax.set_xticks(x, list(table.index), rotation=30, ha="right")
    ax.set_ylabel("mean L2 of the attack")
    have = results.tasks(BAYES)
    note = results.scope() if have else "no results of ours yet: the paper's marks only"
    ax.set_title(f"Bayes-optimal classifier, asymmetric vs symmetric\n({note})")
    legend_right(ax, [ax])
    fig.tight_layout()
    return fig


def asymmetric_noise_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The records of ``scripts/asymmetric_noise.py`` in ``folder`` (``*.json``) as one table, a row per
    task and noise setting: task, "noise" ("fitted" or "set"), "noise std", clean accuracy, mean L2 of the
    gradient attack over the evaluated samples, "outlier share" (Lemma 1's route), the number evaluated, and
    the paper's asymmetric mean L2 of the task (Figures 4 and 12; NaN where it gives none). Sorted by task,
    then by noise std, largest first; empty when the folder holds no record."""
    columns = ["task", "noise", "noise std", "clean accuracy", "mean L2", "outlier share", "evaluated"]
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        task = (record["dataset"], record["attribute"])
        paper = pv.FIGURE4_12_MEAN_L2.get(task, {}).get("asymmetric", math.nan)
        for row in record["rows"]:
            rows.append(
                {"task": task_label(*task), **{c: row[c] for c in columns[1:]}, "paper: mean L2": paper}
            )
    if not rows:
        return pd.DataFrame(columns=[*columns, "paper: mean L2"])
    table = pd.DataFrame(rows).sort_values(["task", "noise std"], ascending=[True, False], kind="stable")
    return table.reset_index(drop=True)


def plot_asymmetric_noise(table: pd.DataFrame) -> Figure:
    """Mean L2 of the attack on the asymmetric pair against the components' noise std (log scale), a line
    per task of :func:`asymmetric_noise_table`; a filled marker for the fitted noise, the paper's value as a
    dashed line of the same colour."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if table.empty:
        empty_note(ax, "no records of scripts/asymmetric_noise.py yet")
        return fig
    for (task, group), color in zip(table.groupby("task", sort=False), plt.cm.tab10.colors, strict=False):
        ax.plot(group["noise std"], group["mean L2"], "-o", color=color, mfc="white", label=f"{task}: ours")
        fitted = group[group["noise"] == "fitted"]
        ax.plot(fitted["noise std"], fitted["mean L2"], "o", color=color, ms=9)
        paper = group["paper: mean L2"].iloc[0]
        if not math.isnan(paper):
            ax.axhline(paper, color=color, ls="--", lw=1, label=f"{task}: paper")
    ax.set_xscale("log")
    ax.set_xlabel("noise std of every component (filled: the fitted noise)")
    ax.set_ylabel("mean L2 of the gradient attack")
    ax.set_title("Asymmetric datasets: thinner components, smaller pushes (Lemma 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


READINGS_COLUMNS = [
    "task",
    "reading",
    "variance floor",
    "attacks",
    "source",
    "clean accuracy",
    "mean L2",
    "median L2",
    "outlier share",
    "outlier share, regular samples",
    "evaluated",
    "paper: mean L2",
]


def readings_table(folder: str | os.PathLike, results: ResultSet | None = None) -> pd.DataFrame:
    """The asymmetric dataset under both readings of appendix B.2, a row per task, reading, variance floor
    and set of attacks: the Bayes-optimal classifier's clean accuracy on its clipped samples, the mean and
    median L2 of the best attack over the evaluated samples, the share of them whose adversarial the other
    class's outlier holds (over all, and over the samples drawn from the regular components, which tells
    Lemma 1's route; NaN where not recorded), how many were evaluated, where the row comes from ("chapter 3"
    for a result of ``results``, else the record's file name) and the paper's mean L2 (Figures 4 and 12).

    Rows come from the records of ``scripts/fidelity_study.py`` in ``folder`` and, with ``results``, from
    chapter 3's results (their ``asymmetric_base`` parameter; results written before it existed are the
    "fitted" reading) of the tasks the paper prints a number for or a record holds. Sorted by task, then
    reading; empty when there is nothing to show.
    """
    records = {path.name: json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))}
    shown = set(pv.FIGURE4_12_MEAN_L2) | {(r["dataset"], r["attribute"]) for r in records.values()}
    rows = []
    for task in results.tasks(BAYES) if results is not None else []:
        if task not in shown:
            continue
        for result in results.results_of(BAYES, task):
            report = result.metrics["bayes_asymmetric"]
            rows.append(
                {
                    "task": task,
                    "reading": result.params.get("asymmetric_base", ASYMMETRIC_BASE),
                    "variance floor": result.params.get("min_variance", MIN_VARIANCE),
                    "attacks": "+".join(result.params.get("attacks", [])),
                    "source": "chapter 3",
                    "clean accuracy": report["clean_accuracy"],
                    "mean L2": report["mean_l2"],
                    "median L2": report["median_l2"],
                    "outlier share": result.metrics.get("asymmetric_outlier_share"),
                    "outlier share, regular samples": result.metrics.get("asymmetric_outlier_share_regular"),
                    "evaluated": report["n_evaluated"],
                }
            )
    for name, record in records.items():
        numbers = record["variants"].get("asymmetric")
        if numbers is None:
            continue
        outliers = numbers["outliers"]
        rows.append(
            {
                "task": (record["dataset"], record["attribute"]),
                "reading": record["setting"]["asymmetric_base"],
                "variance floor": record["setting"]["min_variance"],
                "attacks": "+".join(record["attacks"]),
                "source": name,
                "clean accuracy": numbers["clean_accuracy"],
                "mean L2": numbers["mean_l2"],
                "median L2": numbers["median_l2"],
                "outlier share": outliers["all"]["outlier_share"],
                "outlier share, regular samples": outliers["regular"]["outlier_share"],
                "evaluated": numbers["n_evaluated"],
            }
        )
    if not rows:
        return pd.DataFrame(columns=READINGS_COLUMNS)
    table = pd.DataFrame(rows)
    table["paper: mean L2"] = [
        pv.FIGURE4_12_MEAN_L2.get(task, {}).get("asymmetric", math.nan) for task in table["task"]
    ]
    order = {task: i for i, task in enumerate(task_order(set(table["task"])))}
    table["order"] = table["task"].map(order)
    table = table.sort_values(["order", "reading", "source"], kind="stable").drop(columns="order")
    table["task"] = [task_label(*task) for task in table["task"]]
    table["variance floor"] = [f"{floor:g}" for floor in table["variance floor"]]  # 0.0001, 1e-06
    return table[READINGS_COLUMNS].astype({c: float for c in READINGS_COLUMNS[5:10]}).reset_index(drop=True)


def plot_readings(table: pd.DataFrame) -> Figure:
    """Mean L2 of the best attack on the asymmetric pair, a group of bars per task of
    :func:`readings_table` and a bar per row (hatched: the "symmetric" reading), the paper's value as a
    black line over its task's group."""
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if table.empty:
        empty_note(ax, "no chapter 3 results or records of scripts/fidelity_study.py yet")
        return fig
    width, position, ticks = 0.8, 0.0, []
    colors = {"fitted": "tab:blue", "symmetric": "tab:orange"}
    labelled: set[str] = set()
    for task, group in table.groupby("task", sort=False):
        step = width / len(group)
        left = position - width / 2
        for i, row in enumerate(group.itertuples(index=False)):
            reading = row.reading
            label = None if reading in labelled else f"{reading} reading"
            labelled.add(reading)
            ax.bar(
                left + (i + 0.5) * step,
                row[6],
                step * 0.9,
                color=colors.get(reading, "grey"),
                hatch="//" if reading == "symmetric" else None,
                label=label,
            )
            ax.text(
                left + (i + 0.5) * step,
                row[6],
                ("3 attacks" if row.attacks.count("+") == 2 else row.attacks.replace("+", "\n"))
                + ("" if row[2] == "0.0001" else f"\nfloor {row[2]}"),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        paper = group["paper: mean L2"].iloc[0]
        if not math.isnan(paper):
            ax.hlines(
                paper, left, left + width, color="black", lw=2, label=None if "paper" in labelled else "paper"
            )
            labelled.add("paper")
        ticks.append((position, task))
        position += 1.0
    ax.set_xticks([p for p, _ in ticks], [t for _, t in ticks])
    ax.set_ylabel("mean L2 of the best attack (asymmetric dataset)")
    ax.set_title("The two readings of appendix B.2 beside the paper")
    legend_right(ax, [ax])
    fig.tight_layout()
    return fig
