"""Rich output that degrades to text where IPython is not installed.

Chapters show Markdown built by ``nbhelpers``; on a machine without Jupyter (a GPU host running the
sweep's ``python`` engine) the same objects must still import and print.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

try:
    from IPython.display import Markdown
except ImportError:  # no IPython: a plain-text stand-in with the same ``data`` attribute

    class Markdown:  # type: ignore[no-redef]
        """Markdown text; prints as itself."""

        def __init__(self, data: str = "") -> None:
            self.data = data

        def __repr__(self) -> str:
            return self.data

        def _repr_markdown_(self) -> str:
            return self.data


MISSING = "—"  # how a table shows a number it does not have


def table(frame: pd.DataFrame, decimals: int = 3) -> Styler:
    """``frame`` for reading: floats to ``decimals`` places, whole-number columns as integers and a
    missing number as a dash, not NaN. Prints as text too (``Styler.to_string``), where Jupyter is absent."""
    return frame.style.format(precision=decimals, na_rep=MISSING)


__all__ = ["MISSING", "Markdown", "table"]
