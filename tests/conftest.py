"""Shared test fixtures."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("MPLBACKEND", "Agg")
# scripts/run_tests.sh runs the tests in two pytest-xdist workers. Each worker, and everything it starts
# (the book's kernels, the sweeps' workers), takes its share of the cores: two processes that each spin
# every core's OpenMP threads run slower together than one alone. Set before any test imports torch.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))
# Chapter checkpoints made while fixtures are built (before any test's own folder is set) go to a
# temporary folder, never into the project's cache.
_CHECKPOINTS = tempfile.mkdtemp(prefix="nbhelpers-test-checkpoints-")
os.environ["NBHELPERS_CHECKPOINTS_DIR"] = _CHECKPOINTS
atexit.register(shutil.rmtree, _CHECKPOINTS, ignore_errors=True)


@pytest.fixture(autouse=True)
def private_checkpoints(tmp_path, monkeypatch):
    """Each test keeps chapter checkpoints of its own: one test's finished attacks never feed another's."""
    monkeypatch.setenv("NBHELPERS_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))


@pytest.fixture
def root() -> Path:
    return ROOT


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (the scripts folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The book's build first: it is the longest test by far, so the other worker runs the rest meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("book") is None)
