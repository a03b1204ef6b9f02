"""Progress bars: a loop that ends before its total is shown complete, not stopped."""

from __future__ import annotations

import io

import pytest

from nbhelpers.core.progress import finish_early, tqdm


def test_finish_early_shows_a_converged_loop_as_complete():
    out = io.StringIO()
    bar = tqdm(total=10, file=out, ascii=True, leave=True, mininterval=0)
    for _ in range(4):
        bar.update()
    finish_early(bar)
    bar.close()
    assert (bar.n, bar.total) == (4, 4)
    assert out.getvalue().rstrip().endswith("]") and "100%|##########| 4/4" in out.getvalue()


def test_finish_early_leaves_a_full_or_disabled_bar_alone():
    full = tqdm(total=3, file=io.StringIO(), mininterval=0)
    full.update(3)
    finish_early(full)
    assert (full.n, full.total) == (3, 3)
    off = tqdm(total=5, disable=True)
    finish_early(off)
    assert (off.n, off.total) == (0, 5)


def test_finish_early_ends_a_notebook_bar_green():
    pytest.importorskip("ipywidgets")
    from tqdm.notebook import tqdm as notebook_tqdm

    bar = notebook_tqdm(total=10)
    bar.update(4)
    finish_early(bar)
    bar.close()
    _, widget, _ = bar.container.children
    assert (widget.max, widget.value, widget.bar_style) == (4, 4, "success")  # not "danger" at 40%
