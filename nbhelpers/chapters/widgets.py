"""Widgets that keep working in the static HTML book (no kernel behind the page).

A kernel-backed ``interact`` redraws nothing once the notebook is rendered to HTML. Instead, every
picture is rendered up front and stacked; the slider is linked to the stack in the browser
(``jslink``), so moving it swaps pictures client-side, offline.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def figure_to_png(fig: Figure, dpi: int = 72) -> bytes:
    """PNG bytes of a matplotlib figure; the figure is closed (so notebooks do not show it twice)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


class ImageSlider(widgets.VBox):
    """A slider above a stack of pictures; ``slider.index`` is linked to ``stack.selected_index``
    in the browser. Build it with :func:`image_slider`."""

    def __init__(self, pngs: Sequence[bytes], labels: Sequence[str], description: str):
        images = [widgets.Image(value=png, format="png") for png in pngs]
        self.stack = widgets.Stack(children=images, selected_index=0)
        self.slider = widgets.SelectionSlider(
            options=[(str(label), i) for i, label in enumerate(labels)],
            value=0,
            description=description,
            continuous_update=True,
            layout=widgets.Layout(width="60%"),
            style={"description_width": "initial"},
        )
        self.link = widgets.jslink((self.slider, "index"), (self.stack, "selected_index"))
        super().__init__([self.slider, self.stack])


def image_slider(
    figures_or_pngs: Sequence[Figure | bytes], labels: Sequence[str], description: str, dpi: int = 72
) -> ImageSlider:
    """A slider that shows one of several precomputed pictures, entirely in the browser.

    Args:
        figures_or_pngs: matplotlib Figures (rendered to PNG and closed) or PNG bytes, one per
            slider position.
        labels: one distinct label per picture, shown on the slider.
        description: the slider's caption.
        dpi: resolution used for Figures.

    Returns:
        An :class:`ImageSlider` (a ``VBox`` of a ``SelectionSlider`` and a ``Stack`` of ``Image``).
    """
    n = len(figures_or_pngs)
    if n == 0:
        raise ValueError("image_slider needs at least one figure or PNG")
    if len(labels) != n:
        raise ValueError(f"need one label per picture: {len(labels)} labels for {n} pictures")
    if len({str(label) for label in labels}) != n:
        raise ValueError(f"slider labels must be distinct, got {list(labels)}")
    pngs = []
    for i, item in enumerate(figures_or_pngs):
        if isinstance(item, Figure):
            pngs.append(figure_to_png(item, dpi))
        elif isinstance(item, bytes | bytearray) and bytes(item[:8]) == _PNG_MAGIC:
            pngs.append(bytes(item))
        else:
            kind = type(item).__name__
            raise ValueError(f"picture {i} is neither a matplotlib Figure nor PNG bytes (got {kind})")
    return ImageSlider(pngs, labels, description)
