"""Result files: one JSON per (chapter, dataset, attribute, profile, seed), written atomically.

A chapter run builds its ``Result`` (``nbhelpers.chapters.resultset``, the schema) and saves it here; the
sweep and the summary chapter read them back (``load_results``, ``collect_results``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from nbhelpers.chapters.resultset import Result, ResultSet, is_result
from nbhelpers.core.io import write_json_atomic
from nbhelpers.core.paths import checkpoints_dir, env_flag
from nbhelpers.core.paths import results_dir as default_results_dir
from nbhelpers.core.versions import code_version


def result_path(
    chapter: str,
    dataset: str,
    attribute: str,
    profile: str,
    seed: int,
    results_dir: str | os.PathLike | None = None,
) -> Path:
    """``<results_dir>/<profile>/<chapter>__<dataset>__<attribute>__seed<seed>.json``."""
    base = Path(results_dir) if results_dir else default_results_dir()
    return base / profile / f"{chapter}__{dataset}__{attribute}__seed{seed}.json"


#: Set (to anything but "" or "0") by the sweep for the chapters it runs: ``save_result`` then keeps the run's
#: checkpoints, and the sweep deletes them once the result has left its staging folder, so that a sweep
#: killed in between resumes from them instead of from nothing.
KEEP_CHECKPOINTS_ENV = "NBHELPERS_KEEP_CHECKPOINTS"


def run_checkpoints_dir(chapter: str, dataset: str, attribute: str, profile: str, seed: int) -> Path:
    """Where one chapter run keeps its finished steps (``nbhelpers.runs.checkpoints``) until its result is
    saved: ``<checkpoints_dir()>/<chapter>__<dataset>__<attribute>__<profile>__seed<seed>``."""
    return checkpoints_dir() / f"{chapter}__{dataset}__{attribute}__{profile}__seed{seed}"


def save_result(result: Result, results_dir: str | os.PathLike | None = None) -> Path:
    """Save one run's result, stamped with the code version and the time, then delete the run's checkpoints
    (``run_checkpoints_dir``): the result now holds what they were kept for (unless
    ``$NBHELPERS_KEEP_CHECKPOINTS`` says that a sweep will, see :data:`KEEP_CHECKPOINTS_ENV`)."""
    stamped = replace(
        result, code_version=code_version(), created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    key = (stamped.chapter, stamped.dataset, stamped.attribute, stamped.profile, stamped.seed)
    path = write_json_atomic(result_path(*key, results_dir), stamped.to_dict())
    if not env_flag(KEEP_CHECKPOINTS_ENV):
        shutil.rmtree(run_checkpoints_dir(*key), ignore_errors=True)
    return path


def load_results(profile: str, results_dir: str | os.PathLike | None = None) -> list[Result]:
    """Every result file of ``profile``, sorted by file name; unreadable files raise with their path.

    Other JSON files in the folder (e.g. a ``manifest.json`` of committed results) are not results: a
    result names its chapter and holds its metrics."""
    base = (Path(results_dir) if results_dir else default_results_dir()) / profile
    out = []
    for path in sorted(base.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"result file {path} is not valid JSON ({err}); delete it and re-run") from err
        if is_result(payload):
            try:
                out.append(Result.from_dict(payload))
            except ValueError as err:
                raise ValueError(f"result file {path} is not a result of this book ({err})") from err
    return out


def collect_results(
    profile: str = "quick", results_dir: str | os.PathLike | None = None, seed: int | None = 0
) -> ResultSet:
    """The results in ``<results_dir>/<profile>/`` (default folder: ``nbhelpers.core.paths.results_dir()``).

    ``seed`` keeps that seed's files only; None averages over every seed found. A missing folder gives an
    empty result set (the tables then say which command writes their numbers).
    """
    base = Path(results_dir) if results_dir else default_results_dir()
    return ResultSet.from_results(load_results(profile, base), profile, base, seed)
