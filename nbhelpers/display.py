"""Rich output that degrades to text where IPython is not installed.

Chapters show Markdown built by ``nbhelpers``; on a machine without Jupyter (a GPU host running the
sweep's ``python`` engine) the same objects must still import and print.
"""

from __future__ import annotations

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


__all__ = ["Markdown"]
