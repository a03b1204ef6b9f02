"""Figure helpers shared by the chapters: one colour and one label per model, the paper's perceptibility
yardsticks, grouped bars, images, and the small figure that says what is missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from nbhelpers.chapters import paper_values as pv
from nbhelpers.science.data import to_hwc
from nbhelpers.science.report import PIXEL_BINS

if TYPE_CHECKING:
    from nbhelpers.chapters.evaluation import Evaluation

#: One colour per model in every figure of the book.
MODEL_COLORS = {"bayes": "tab:green", "cnn": "tab:red", "linear_svm": "tab:orange", "rbf_svm": "tab:blue"}


def model_label(name: str) -> str:
    """ "Bayes-optimal", "CNN", ...: the paper's name of a model key (other names unchanged)."""
    return pv.MODEL_LABELS.get(name, name)


def model_color(name: str, index: int = 0) -> str:
    """The model's colour, or the ``index``-th of matplotlib's cycle for a model of the reader's."""
    return MODEL_COLORS.get(name, f"C{index}")


def show_image(ax: plt.Axes, image: np.ndarray) -> None:
    """Draw one [H, W, C] image in [0, 1] (grey when C == 1)."""
    image = np.clip(image, 0.0, 1.0)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def grouped_bars(ax: plt.Axes, table: pd.DataFrame, models: Sequence[str]) -> np.ndarray:
    """Bars of ``table`` [tasks, model labels], one colour per model; returns the x centres [tasks]."""
    x = np.arange(len(table))
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        label = pv.MODEL_LABELS[model]
        heights = table[label].to_numpy(float) if label in table else np.full(len(table), np.nan)
        ax.bar(
            x + (j - (len(models) - 1) / 2) * width,
            np.nan_to_num(heights),
            width,
            color=MODEL_COLORS[model],
            label=label,
        )
    ax.set_xticks(x, [str(label).split(" / ")[-1] for label in table.index], rotation=45, ha="right")
    return x


def yardsticks(ax: plt.Axes) -> None:
    """The paper's perceptibility yardsticks for faces (section 2.1)."""
    ax.axhline(
        pv.IMPERCEPTIBLE_L2, color="grey", ls=":", lw=1, label=f"imperceptible below {pv.IMPERCEPTIBLE_L2}"
    )
    ax.axhline(
        pv.PERCEPTIBLE_L2, color="grey", ls="--", lw=1, label=f"perceptible near {pv.PERCEPTIBLE_L2:g}"
    )


def empty_figure(text: str) -> Figure:
    """A small figure that only says ``text`` (what is missing and the command that makes it)."""
    fig, ax = plt.subplots(figsize=(7, 1.8))
    empty_note(ax, text)
    return fig


def empty_note(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def legend_right(ax: plt.Axes, axes: Sequence[plt.Axes]) -> None:
    """One legend beside ``ax`` with the entries of all ``axes`` (each label once)."""
    entries: dict[str, Any] = {}
    for a in axes:
        for handle, label in zip(*a.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    ax.legend(entries.values(), entries.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


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
    "none" adds nothing.
    """
    if side not in ("histograms", "none"):
        raise ValueError(f"unknown side panel {side!r}: valid choices are 'histograms', 'none'")
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

    for j, sample in enumerate(shown):
        show_image(fig.add_subplot(grid[0, 2 * j]), originals[j])
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
            show_image(ax, adversarial[j])
            l2 = float(result.l2[sample])
            flipped = bool(result.success[sample]) and bool(result.clean_pred[sample] == evaluation.y[sample])
            ax.set_title(f"L2 {l2:.2f}" if flipped else "not evaluated", fontsize=7, pad=2)
            if j == 0:
                ax.set_ylabel(model_label(name), fontsize=8)
            ax = fig.add_subplot(grid[r, 2 * j + 1])
            show_image(ax, 0.5 + magnify * deltas[j])
            ax.set_title(f"x{magnify:.0f}", fontsize=7, pad=2)
        if side == "histograms":
            rep = evaluation.reports[name]
            ax = fig.add_subplot(side_grid[r, 0])
            ax.stairs(rep.pixel_hist, PIXEL_BINS, color=f"C{r - 1}")
            ax.axvline(pv.PERCEPTIBLE_PIXEL_LEVELS, color="k", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_xlim(0, 128)
            paper = f", paper {paper_l2[name]:.2f}" if paper_l2 and name in paper_l2 else ""
            ax.set_title(f"mean L2 {rep.mean_l2:.2f}{paper}", fontsize=8, pad=2)
            ax.tick_params(labelsize=7)
            if r == len(names):
                ax.set_xlabel("|pixel change| (0-255 levels)", fontsize=8)
    return fig
