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
