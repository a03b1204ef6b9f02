"""Our numbers beside the paper's: every number the paper prints (``paper_values.paper_numbers``) with
ours from a ``ResultSet``, as a table (``compare_with_paper``) and a picture (``plot_comparison``)."""

from __future__ import annotations

import dataclasses
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.ch5_real import paper_table3, table3_drops_of
from nbhelpers.chapters.ids import BAYES, LEARNED, REAL
from nbhelpers.chapters.paper_values import adversarial_accuracy
from nbhelpers.chapters.plotting import empty_note
from nbhelpers.chapters.resultset import (
    ResultSet,
    Task,
    adversarial,
    clean_accuracy,
    report_value,
    task_label,
)


def _our_number(
    results: ResultSet, number: pv.PaperNumber, convention: str
) -> tuple[float, str, pv.PaperNumber]:
    """Our counterpart of one paper number, the task label to show (an average names its tasks), and the
    paper's number to set beside it: ``number``, or for an average over fewer tasks than the paper's, the
    paper's average over the same tasks (value and source replaced)."""
    task = (number.dataset, number.attribute)
    label = task_label(*task)
    quantity = number.quantity
    if quantity == "table3_drop":
        drops = table3_drops_of(results)
        if not drops:
            return math.nan, label, number
        if set(drops) >= set(pv.TABLE3):
            return float(np.mean(list(drops.values()))), f"{label} (all {len(pv.TABLE3)} tasks)", number
        # like for like: the paper's Table 3 drops of our tasks, not its text's average over all five
        paper = [real - symmetric for real, symmetric in map(paper_table3, drops)]
        tasks = f"{len(drops)} task{'s' if len(drops) != 1 else ''}"
        same = dataclasses.replace(
            number, value=float(np.nanmean(paper)), source="Table 3 (appendix D.4.2), the same tasks"
        )
        return float(np.mean(list(drops.values()))), f"{label} (the same {tasks})", same
    return _our_value(results, number, convention, task), label, number


def _our_value(results: ResultSet, number: pv.PaperNumber, convention: str, task: Task) -> float:
    quantity = number.quantity
    if quantity.endswith(("clean_accuracy", "adversarial_accuracy")):
        chapter = REAL if quantity.startswith("real_") else LEARNED
        if quantity.endswith("clean_accuracy"):
            return clean_accuracy(results, chapter, task, number.model)
        return adversarial(results, chapter, task, number.model, convention)
    if quantity == "table3_accuracy":
        return results.value(REAL, *task, f"table3.{number.model}")
    if quantity == "bayes_mean_l2":
        return results.value(BAYES, *task, f"bayes_{number.model}.mean_l2")
    if quantity == "mean_l2":
        return report_value(results, LEARNED, task, number.model, "mean_l2")
    if quantity == "subspace_distance_mean":
        return results.value(BAYES, *task, "subspace_distance_mean")
    raise ValueError(f"no rule for the quantity {quantity!r}: valid ones are {', '.join(pv.QUANTITIES)}")


_COMPARISON_MODEL_LABELS = {
    **pv.MODEL_LABELS,
    "symmetric": "Bayes-optimal, symmetric",
    "asymmetric": "Bayes-optimal, asymmetric",
    "real_train": "CNN trained on real",
    "symmetric_train": "CNN trained on symmetric",
}


def compare_with_paper(results: ResultSet, convention: str = "paper", only_ours: bool = True) -> pd.DataFrame:
    """Each of the paper's numbers (:func:`nbhelpers.chapters.paper_values.paper_numbers`) beside ours.

    Returns [n, 8]: quantity (a key of ``paper_values.QUANTITIES``), what (its description), task, model,
    paper, ours, difference (ours minus paper) and source (table or figure of the paper). ``only_ours``
    keeps the rows where we have a number; otherwise every paper number appears, ours NaN where missing.
    """
    adversarial_accuracy(1.0, 0.0, convention)  # reject a bad convention even when no row needs it
    rows = []
    for number in pv.paper_numbers():
        ours, label, paper = _our_number(results, number, convention)
        rows.append(
            {
                "quantity": number.quantity,
                "what": pv.QUANTITIES[number.quantity],
                "task": label,
                "model": _COMPARISON_MODEL_LABELS.get(number.model, number.model),
                "paper": paper.value,
                "ours": ours,
                "difference": ours - paper.value,
                "source": paper.source,
            }
        )
    table = pd.DataFrame(rows)
    if only_ours:
        table = table[table["ours"].notna()].reset_index(drop=True)
    return table


def plot_comparison(comparison: pd.DataFrame, results: ResultSet | None = None) -> Figure:
    """Ours against the paper's, one point per row of :func:`compare_with_paper` (accuracies left, L2 norms
    and distances right); on the grey diagonal we agree. ``results``: the results compared, named in the
    title (profile and seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    have = comparison.dropna(subset=["ours"])
    is_accuracy = have["quantity"].str.contains("accuracy|table3", regex=True).to_numpy(bool)
    panels = ((axes[0], have[is_accuracy], "accuracy"), (axes[1], have[~is_accuracy], "L2 norm"))
    for ax, part, unit in panels:
        if part.empty:
            empty_note(ax, f"no {unit} of ours to compare yet")
            continue
        for what, group in part.groupby("what", sort=False):
            ax.plot(group["paper"], group["ours"], "o", alpha=0.7, label=what)
        low = min(part["paper"].min(), part["ours"].min(), 0.0)
        high = max(part["paper"].max(), part["ours"].max()) * 1.05
        ax.plot([low, high], [low, high], color="grey", lw=1)
        ax.set_xlabel(f"paper, {unit}")
        ax.set_ylabel(f"ours, {unit}")
        ax.legend(fontsize=7)
    scope = f" ({results.scope()})" if results is not None else ""
    fig.suptitle(f"Our numbers against the paper's{scope}")
    fig.tight_layout()
    return fig
