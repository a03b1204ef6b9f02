"""Progress bars for long loops: ``from nbhelpers.core.progress import tqdm``.

In Jupyter the bars are widgets, elsewhere text. A widget leaves no trace in a log, so the sweep sets
``NBHELPERS_TEXT_PROGRESS=1`` for the notebooks it runs: their bars are then text on stderr, which lands in
the run's ``.stderr.log`` (updated at most every ``TQDM_MININTERVAL`` seconds, which the sweep sets too).
"""

from __future__ import annotations

from nbhelpers.core.paths import env_flag

TEXT_PROGRESS_ENV = "NBHELPERS_TEXT_PROGRESS"

if env_flag(TEXT_PROGRESS_ENV):
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm as _auto_tqdm

    class tqdm(_auto_tqdm):  # type: ignore[no-redef]
        """tqdm.auto's bar, drawn once more as it closes: a notebook widget that closes between two
        redraws would otherwise keep its previous text (e.g. "98% 94/96") in the saved notebook."""

        def close(self) -> None:
            if not self.disable:
                self.refresh()
            super().close()


def finish_early(bar: tqdm) -> None:
    """Mark a bar whose loop ended before its total (it converged, every sample was decided) as complete:
    a notebook widget closed short of its total turns red, as if the loop had failed."""
    done = bar.n
    if bar.disable or bar.total is None or done >= bar.total:
        return
    bar.total = done
    widgets = getattr(getattr(bar, "container", None), "children", None)
    if widgets:  # a notebook bar: (label, bar, text) widgets; the bar keeps its own maximum
        widgets[1].max = done
    bar.refresh()


__all__ = ["TEXT_PROGRESS_ENV", "finish_early", "tqdm"]
