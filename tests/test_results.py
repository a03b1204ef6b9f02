"""Result files: atomic JSON writes and the result-path naming the sweep relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nbhelpers
from nbhelpers import results
from nbhelpers.results import load_results, result_path, save_result, write_json_atomic


def test_write_json_atomic_round_trips_numpy_and_ends_with_newline(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "r.json", {"l2": np.array([1.5, 2.0]), "n": np.int64(3)})
    text = path.read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {"l2": [1.5, 2.0], "n": 3}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]  # no temporary file left behind


def test_write_json_atomic_failure_keeps_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "r.json", {"value": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"value": object()})  # not serialisable: fails half-way through the dump
    assert json.loads(path.read_text()) == {"value": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_save_result_names_the_file_from_its_parameters(tmp_path):
    path = save_result("03_bayes_robustness", "celeba", "Smiling", "paper", 2, {"mean_l2": 3.04}, tmp_path)
    assert path == result_path("03_bayes_robustness", "celeba", "Smiling", "paper", 2, tmp_path)
    assert path.name == "03_bayes_robustness__celeba__Smiling__seed2.json"
    (loaded,) = load_results("paper", tmp_path)
    assert loaded["metrics"] == {"mean_l2": 3.04}
    assert (loaded["attribute"], loaded["seed"]) == ("Smiling", 2)
    # a committed results folder also holds its manifest: not a result
    write_json_atomic(
        tmp_path / "paper" / "manifest.json", {"runs": [{"command": "python -m nbhelpers sweep"}]}
    )
    assert [r["attribute"] for r in load_results("paper", tmp_path)] == ["Smiling"]


def test_save_result_deletes_the_runs_checkpoints_unless_a_sweep_keeps_them(tmp_path, monkeypatch):
    keys = ("04_learned_classifiers", "celeba", "Male", "quick", 0)
    folder = results.run_checkpoints_dir(*keys)
    folder.mkdir(parents=True)
    monkeypatch.setenv(results.KEEP_CHECKPOINTS_ENV, "1")
    save_result(*keys, {}, tmp_path)
    assert folder.is_dir()  # the sweep deletes them once the result has left its staging folder
    monkeypatch.setenv(results.KEEP_CHECKPOINTS_ENV, "0")
    save_result(*keys, {}, tmp_path)
    assert not folder.exists()


def test_source_modules_follow_imports_only():
    modules = results.source_modules("nbhelpers.datasets")
    assert {"nbhelpers", "nbhelpers.datasets", "nbhelpers.mfa", "nbhelpers.data", "nbhelpers.config"} <= set(
        modules
    )
    assert "nbhelpers.summary" not in modules and "nbhelpers.sweep" not in modules
    # a package import brings its __init__ and, through it, the submodules it imports
    assert {"nbhelpers.models", "nbhelpers.models.cnn"} <= set(
        results.source_modules("nbhelpers.experiments")
    )
    with pytest.raises(ValueError, match="not a module of the nbhelpers package"):
        results.source_modules("nbhelpers.nothing")
    with pytest.raises(ValueError, match="not a module"):
        results.source_modules("numpy")


def test_source_version_changes_with_imported_sources_only(tmp_path):
    package = tmp_path / "nbhelpers"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("X = 1\n")
    (package / "mid.py").write_text(
        "def f():\n    from nbhelpers.low import X  # a lazy import counts\n    return X\n"
    )
    (package / "top.py").write_text("from nbhelpers import mid\n")
    (package / "other.py").write_text("Y = 2\n")
    assert results.source_modules("nbhelpers.top", package) == [
        "nbhelpers",
        "nbhelpers.low",
        "nbhelpers.mid",
        "nbhelpers.top",
    ]
    version = results.source_version
    before = version("nbhelpers.top", package)
    (package / "other.py").write_text("Y = 3\n")
    assert version("nbhelpers.top", package) == before
    (package / "low.py").write_text("X = 2\n")
    changed = version("nbhelpers.top", package)
    assert changed != before and changed.startswith(f"{nbhelpers.__version__}+")
    # several modules: the union of what each runs, in any order
    both = version(["nbhelpers.top", "nbhelpers.other"], package)
    assert both == version(["nbhelpers.other", "nbhelpers.top"], package) != changed
    assert version(["nbhelpers.top", "nbhelpers.mid"], package) == changed  # mid is part of top's already
    with pytest.raises(ValueError, match="at least one module"):
        version([], package)


def test_notebook_modules_are_what_its_cells_import(tmp_path):
    package = tmp_path / "nbhelpers"
    (package / "sub").mkdir(parents=True)
    for name, text in {
        "__init__.py": "",
        "low.py": "X = 1\n",
        "mid.py": "from nbhelpers.low import X\n",
        "unused.py": "",
        "sub/__init__.py": "",
        "sub/leaf.py": "",
    }.items():
        (package / name).write_text(text)

    def notebook(*cells: str) -> Path:
        path = tmp_path / "chapter.ipynb"
        code = [{"cell_type": "code", "source": cell.splitlines(True), "outputs": []} for cell in cells]
        markdown = {"cell_type": "markdown", "source": ["import nbhelpers.unused"]}  # not code
        path.write_text(json.dumps({"cells": [markdown, *code]}))
        return path

    chapter = notebook("%matplotlib inline\nfrom nbhelpers import mid", "import numpy as np\n!ls")
    assert results.notebook_modules(chapter, package) == ["nbhelpers", "nbhelpers.low", "nbhelpers.mid"]
    before = results.notebook_source_version(chapter, package)
    (package / "unused.py").write_text("Y = 1\n")
    assert results.notebook_source_version(chapter, package) == before
    (package / "low.py").write_text("X = 2\n")
    assert results.notebook_source_version(chapter, package) != before
    assert results.notebook_modules(notebook("from nbhelpers.sub import leaf"), package) == [
        "nbhelpers",
        "nbhelpers.sub",
        "nbhelpers.sub.leaf",
    ]
    # a cell that is not Python even without its magics: the whole package, to be safe
    assert len(results.notebook_modules(notebook("from nbhelpers import mid", "x = ("), package)) == 6
