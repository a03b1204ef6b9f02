"""The project's folders, from the environment or the book's root.

``$NBHELPERS_DATA_DIR`` (full data sets), ``$NBHELPERS_RESULTS_DIR`` (result files), ``$NBHELPERS_CACHE_DIR``
(fitted models) and ``$NBHELPERS_CHECKPOINTS_DIR`` (finished steps of unfinished runs); unset, they default to
folders of the book's root (the folder holding ``_toc.yml``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "NBHELPERS_DATA_DIR"
RESULTS_DIR_ENV = "NBHELPERS_RESULTS_DIR"
CACHE_DIR_ENV = "NBHELPERS_CACHE_DIR"
CHECKPOINTS_DIR_ENV = "NBHELPERS_CHECKPOINTS_DIR"
FOLDER_ENVIRONMENT = (DATA_DIR_ENV, CACHE_DIR_ENV, CHECKPOINTS_DIR_ENV, RESULTS_DIR_ENV)


def project_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder at or above ``start`` (default: cwd) holding ``_toc.yml``.

    Chapters execute inside ``book/``; this lets them find the shared results and cache
    folders. Falls back to ``start`` itself outside a checkout.
    """
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").exists():
            return folder
    return start


def results_dir() -> Path:
    """Where chapters write their JSON results (``$NBHELPERS_RESULTS_DIR`` or ``<root>/results``)."""
    env = os.environ.get(RESULTS_DIR_ENV)
    return Path(env) if env else project_root() / "results"


def cache_dir() -> Path:
    """Where trained models are cached between chapters (``$NBHELPERS_CACHE_DIR`` or ``<root>/.cache``)."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else project_root() / ".cache"


def checkpoints_dir() -> Path:
    """Where interrupted chapter runs keep their finished steps (``nbhelpers.runs.checkpoints``):
    ``$NBHELPERS_CHECKPOINTS_DIR`` or ``<cache>/checkpoints``."""
    env = os.environ.get(CHECKPOINTS_DIR_ENV)
    return Path(env) if env else cache_dir() / "checkpoints"


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data folder: ``explicit`` if given, else ``$NBHELPERS_DATA_DIR``, else None (sample)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to anything but "" or "0"."""
    return os.environ.get(name, "").strip() not in ("", "0")
