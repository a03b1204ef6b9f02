"""Chapter 6, the summary: the paper's tables and figures rebuilt from every result file of a profile, our
numbers beside the paper's, and which runs exist.

Each table and figure is the one its chapter draws for one task, here drawn from every task's results
(``nbhelpers.runs.results.collect_results``): Figures 4/12 and 11 (``ch3_figures``), Table 1 and Figures 6
and 8 (``ch4_learned``), Tables 2 and 3 and Figure 9 (``ch5_real``), ours beside the paper's
(``comparison``). This module adds what only the summary shows: which runs the results hold
(``coverage``) and the commands that make the missing ones (``missing_runs``).

The metrics of each chapter, as its result file holds them:

- chapter 03 (Bayes-optimal robustness): ``bayes_symmetric`` and ``bayes_asymmetric`` robustness reports,
  ``subspace_distance_mean``, ``certified_radius_mean``;
- chapter 04 (learned classifiers, symmetric data): reports ``bayes``, ``cnn``, ``linear_svm``, ``rbf_svm``,
  ``test_accuracy`` (per model, on the whole test set), and the Figure 8 sweeps: ``sweeps`` =
  {``train_size``/``width``/``depth``: [{``value``, ``test_accuracy``, ``report``}]} and ``trades`` =
  [{``beta``, ``test_accuracy``, ``report``}];
- chapter 05 (real CelebA data): reports ``cnn``, ``linear_svm``, ``rbf_svm`` and
  ``table3`` = {``real_train``, ``symmetric_train``} (real-test accuracies) and ``test_accuracy``.

A report is :meth:`nbhelpers.science.report.RobustnessReport.to_dict`. The Bayes-optimal column of Table 1
and Figure 6 comes from chapter 04 and falls back to chapter 03's ``bayes_symmetric``. Clean accuracies are
over the whole test set (``test_accuracy``) where a chapter saved it, else over the attacked samples (the
report's); adversarial accuracies are over the attacked samples.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nbhelpers.chapters.ch4_learned import figure8_tasks
from nbhelpers.chapters.display import Markdown, display_path
from nbhelpers.chapters.ids import LEARNED, REAL, RESULT_CHAPTERS
from nbhelpers.chapters.resultset import ResultSet, Task, task_labels, task_order
from nbhelpers.core.paths import results_dir as default_results_dir
from nbhelpers.science.data import REAL_DATA_ATTRIBUTES, TASKS

COVERED, MISSING = "yes", "missing"
NOT_TAKEN = "n/a"  # the chapter does not take the task (chapter 5: only its five real-data attributes)
NO_FIGURE8 = "yes, no Figure 8"  # a chapter 04 result made with figure8=False (no Figure 8 sweeps)


def _chapter_takes(chapter: str, task: Task) -> bool:
    return chapter != REAL or (task[0] == "celeba" and task[1] in REAL_DATA_ATTRIBUTES)


def _coverage_cells(results: ResultSet) -> tuple[list[Task], list[list[str]]]:
    have = {chapter: set(results.tasks(chapter)) for chapter in RESULT_CHAPTERS}
    with_sweeps = figure8_tasks(results)

    def cell(chapter: str, task: Task) -> str:
        if task in have[chapter]:
            return NO_FIGURE8 if chapter == LEARNED and task not in with_sweeps else COVERED
        return MISSING if _chapter_takes(chapter, task) else NOT_TAKEN

    tasks = task_order(set(TASKS).union(*have.values()))
    return tasks, [[cell(chapter, task) for chapter in RESULT_CHAPTERS] for task in tasks]


def coverage(results: ResultSet) -> pd.DataFrame:
    """Which runs ``results`` holds: [tasks, 3], a column per result chapter (03, 04, 05) and a row per task
    of the paper (Table 1's order, then any other task found). A cell reads "yes" when a result file exists
    ("yes, no Figure 8" for a chapter 04 result without the Figure 8 sweeps, i.e. made with
    ``figure8=False``), "missing" when the chapter takes the task and has none, and "n/a" where the
    chapter does not take the task (chapter 5 takes only the five real-data attributes)."""
    tasks, cells = _coverage_cells(results)
    return pd.DataFrame(
        cells, index=task_labels(tasks), columns=[f"chapter {c.number}" for c in RESULT_CHAPTERS]
    )


def missing_runs(results: ResultSet) -> Markdown:
    """A line per result chapter: how many of the tasks it takes have a result in ``results`` and, when some
    have none, the sweep command that runs those (the sweep skips finished runs, so re-running it is safe);
    for chapter 04, also the results without Figure 8's sweeps and the command that re-runs them with it."""
    tasks, cells = _coverage_cells(results)

    def command(chapter: str, chosen: list[Task]) -> str:
        text = (
            f"python -m nbhelpers sweep --chapters {chapter.number} "
            f"--tasks {' '.join(f'{d}:{a}' for d, a in chosen)} --profile {results.profile}"
        )
        if (
            results.results_dir is not None
            and Path(results.results_dir).resolve() != default_results_dir().resolve()
        ):
            text += f" --results-dir {display_path(results.results_dir)}"
        return text

    lines = []
    for column, chapter in enumerate(RESULT_CHAPTERS):
        taken = [task for task, row in zip(tasks, cells, strict=True) if row[column] != NOT_TAKEN]
        missing = [task for task, row in zip(tasks, cells, strict=True) if row[column] == MISSING]
        partial = [task for task, row in zip(tasks, cells, strict=True) if row[column] == NO_FIGURE8]
        line = (
            f"- **chapter {chapter.number}**: {len(taken) - len(missing)} of {len(taken)} tasks have a result"
        )
        if missing:
            line += f"; the missing ones: `{command(chapter, missing)}`"
        if partial:
            line += (
                f"; {len(partial)} of the results have no Figure 8 sweeps (made with `-p figure8=False`), "
                f"which this re-runs with them: `{command(chapter, partial)}`"
            )
        lines.append(line)
    return Markdown("\n".join(lines))
