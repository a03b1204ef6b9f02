"""How the chapters show tables: rich output that degrades to text where IPython is not installed, and
the titled views of the paper's tables, which say what is missing and the command that makes it.

Chapters show Markdown built by ``nbhelpers``; on a machine without Jupyter (a GPU host running the
sweep's ``python`` engine) the same objects must still import and print.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from nbhelpers.chapters.ids import BAYES, LEARNED, REAL, ChapterId
from nbhelpers.core.paths import project_root
from nbhelpers.core.paths import results_dir as default_results_dir

if TYPE_CHECKING:
    import pandas as pd
    from pandas.io.formats.style import Styler

    from nbhelpers.chapters.resultset import ResultSet

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


#: Each table's title and the chapters that write its numbers.
TABLES: dict[str, tuple[str, tuple[ChapterId, ...]]] = {
    "table1": ("Table 1: clean (adversarial) accuracy on the symmetric datasets", (BAYES, LEARNED)),
    "figure6": ("Figure 6: mean L2 of the attacks on the symmetric datasets", (BAYES, LEARNED)),
    "figure4": ("Figures 4, 11 and 12: the Bayes-optimal attack, asymmetric vs symmetric", (BAYES,)),
    "table2": ("Table 2: clean (adversarial) accuracy on real CelebA images", (REAL,)),
    "figure8": ("Figure 8: CNN sweeps and the TRADES trade-off, symmetric datasets", (LEARNED,)),
    "figure9": ("Figure 9 (right): mean L2 of the attacks on real CelebA images", (REAL,)),
    "table3": ("Table 3: real-test accuracy of CNNs trained on real vs symmetric data", (REAL,)),
    "comparison": ("Our numbers beside the paper's", (BAYES, LEARNED, REAL)),
}


# These tables also hold the paper's numbers, so they are worth showing before we have ours.
_PAPER_ONLY_OK = ("figure4", "table3")


def format_accuracy_pairs(table: pd.DataFrame, decimals: int = 0) -> pd.DataFrame:
    """[tasks, models] strings "clean% (adversarial%)" from a :func:`table1` or :func:`table2` frame, as the
    paper prints them. A model without numbers is blank; one without an adversarial number shows its
    clean accuracy alone."""

    def pair(clean: float, adversarial: float) -> str:
        if math.isnan(clean):
            return ""
        text = f"{clean:.{decimals}%}"
        return text if math.isnan(adversarial) else f"{text} ({adversarial:.{decimals}%})"

    import pandas as pd

    from nbhelpers.chapters.resultset import ADVERSARIAL, CLEAN

    models = list(dict.fromkeys(table.columns.get_level_values(0)))
    data = {
        model: [pair(c, a) for c, a in zip(table[(model, CLEAN)], table[(model, ADVERSARIAL)], strict=True)]
        for model in models
    }
    return pd.DataFrame(data, index=table.index, columns=models)


def sweep_command(name: str, results: ResultSet) -> str:
    """The command that writes the result files behind table ``name`` (a key of :data:`TABLES`)."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: valid tables are {', '.join(TABLES)}")
    chapters = " ".join(chapter.number for chapter in TABLES[name][1])
    command = f"python -m nbhelpers sweep --chapters {chapters} --profile {results.profile}"
    if (
        results.results_dir is not None
        and Path(results.results_dir).resolve() != default_results_dir().resolve()
    ):
        command += f" --results-dir {display_path(results.results_dir)}"
    return command


def show(table: pd.DataFrame, name: str, results: ResultSet, decimals: int = 2) -> Styler | Markdown:
    """A titled view of ``table``, built by the function of table ``name`` (a key of :data:`TABLES`) from
    ``results``. Blank cells are numbers we do not have. When none of the table's chapters has a result,
    the caption (or, for a table with nothing else to show, a note in its place) names the command that
    writes them."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: valid tables are {', '.join(TABLES)}")
    title, chapters = TABLES[name]
    have = results.tasks(*chapters)
    missing = (
        f"no results of ours yet ({results.scope()}); {_chapters(chapters)} them: run "
        f"`{sweep_command(name, results)}` (add `--tasks celeba:Smiling` for one task), "
        "then re-run this chapter"
    )
    if table.empty or (not have and name not in _PAPER_ONLY_OK):
        return Markdown(f"**{title}**: {missing}.")
    count = f"{len(have)} task{'s' if len(have) != 1 else ''} with results"
    caption = f"{title} ({results.scope()}; {count})"
    if not have:
        caption = f"{title}: the paper's numbers only; {missing}"
    styler = table.style.set_caption(caption).format(precision=decimals, na_rep="")
    if "quantity" in table.columns:  # the key is for code; the "what" column says it in words
        styler = styler.hide(["quantity"], axis="columns")
    if name == "comparison":
        styler = styler.hide(axis="index")
    return styler


def _chapters(chapters: Sequence[ChapterId]) -> str:
    """ "chapter 03 writes" / "chapters 03 and 04 write"."""
    numbers = [chapter.number for chapter in chapters]
    if len(numbers) == 1:
        return f"chapter {numbers[0]} writes"
    return f"chapters {', '.join(numbers[:-1])} and {numbers[-1]} write"


def display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when inside it (output must not name this machine's folders)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(project_root().resolve()).as_posix()
    except ValueError:
        return str(path)


__all__ = [
    "MISSING",
    "TABLES",
    "Markdown",
    "display_path",
    "format_accuracy_pairs",
    "show",
    "sweep_command",
    "table",
]
