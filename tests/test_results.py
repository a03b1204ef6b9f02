"""Result files: atomic JSON writes and the result-path naming the sweep relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import nbhelpers
from nbhelpers.chapters.ids import BAYES, LEARNED
from nbhelpers.chapters.resultset import Result
from nbhelpers.core import versions
from nbhelpers.core.io import write_json_atomic
from nbhelpers.runs import results
from nbhelpers.runs.results import load_results, result_path, save_result


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
    result = Result(BAYES, "celeba", "Smiling", "paper", 2, {"mean_l2": 3.04}, {"gradient_step": 0.05})
    path = save_result(result, tmp_path)
    assert path == result_path("03_bayes_robustness", "celeba", "Smiling", "paper", 2, tmp_path)
    assert path.name == "03_bayes_robustness__celeba__Smiling__seed2.json"
    (loaded,) = load_results("paper", tmp_path)
    assert isinstance(loaded, Result) and loaded.chapter == "03_bayes_robustness"
    assert loaded.metrics == {"mean_l2": 3.04}
    assert (loaded.attribute, loaded.seed) == ("Smiling", 2)
    # stamped when saved; the parameters sit beside the envelope's fields in the file, as before
    assert loaded.code_version == versions.code_version() and loaded.created
    assert loaded.params == {"gradient_step": 0.05}
    assert json.loads(path.read_text())["gradient_step"] == 0.05
    # a committed results folder also holds its manifest: not a result
    write_json_atomic(
        tmp_path / "paper" / "manifest.json", {"runs": [{"command": "python -m nbhelpers sweep"}]}
    )
    assert [r.attribute for r in load_results("paper", tmp_path)] == ["Smiling"]


def test_a_result_is_its_file_and_refuses_what_is_not_one(tmp_path):
    result = Result(LEARNED, "mnist", "0_vs_6", "quick", 1, {"cnn": {"mean_l2": 1.5}}, {"figure8": False})
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.task == ("mnist", "0_vs_6") and result.chapter.number == "04"
    with pytest.raises(ValueError, match="would overwrite fields of the result file"):
        Result(LEARNED, "mnist", "0_vs_6", "quick", 1, {}, {"metrics": 1})
    with pytest.raises(ValueError, match="a chapter id is a notebook name"):
        Result("04", "mnist", "0_vs_6", "quick", 1, {})
    write_json_atomic(tmp_path / "quick" / "odd.json", {"chapter": "4", "metrics": {}})
    with pytest.raises(ValueError, match="odd.json is not a result of this book"):
        load_results("quick", tmp_path)
    (tmp_path / "quick" / "odd.json").write_text("{")
    with pytest.raises(ValueError, match="odd.json is not valid JSON"):
        load_results("quick", tmp_path)


def test_save_result_deletes_the_runs_checkpoints_unless_a_sweep_keeps_them(tmp_path, monkeypatch):
    keys = (LEARNED, "celeba", "Male", "quick", 0)
    folder = results.run_checkpoints_dir(*keys)
    folder.mkdir(parents=True)
    monkeypatch.setenv(results.KEEP_CHECKPOINTS_ENV, "1")
    save_result(Result(*keys, {}), tmp_path)
    assert folder.is_dir()  # the sweep deletes them once the result has left its staging folder
    monkeypatch.setenv(results.KEEP_CHECKPOINTS_ENV, "0")
    save_result(Result(*keys, {}), tmp_path)
    assert not folder.exists()


def test_source_modules_follow_imports_only():
    modules = versions.source_modules("nbhelpers.science.datasets")
    expected = {"nbhelpers", "nbhelpers.science.datasets", "nbhelpers.science.mfa", "nbhelpers.science.data"}
    assert expected | {"nbhelpers.core.paths", "nbhelpers.core.device"} <= set(
        modules
    )  # was nbhelpers.config
    assert "nbhelpers.chapters.ch6_summary" not in modules and "nbhelpers.runs.sweep" not in modules
    assert not [m for m in modules if m.startswith(("nbhelpers.chapters", "nbhelpers.runs"))]  # lower layers
    # a package import brings its __init__ and, through it, the submodules it imports
    assert {"nbhelpers.science.models", "nbhelpers.science.models.cnn"} <= set(
        versions.source_modules("nbhelpers.chapters.learned")
    )
    with pytest.raises(ValueError, match="not a module of the nbhelpers package"):
        versions.source_modules("nbhelpers.nothing")
    with pytest.raises(ValueError, match="not a module"):
        versions.source_modules("numpy")


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
    assert versions.source_modules("nbhelpers.top", package) == [
        "nbhelpers",
        "nbhelpers.low",
        "nbhelpers.mid",
        "nbhelpers.top",
    ]
    version = versions.source_version
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
    assert versions.notebook_modules(chapter, package) == ["nbhelpers", "nbhelpers.low", "nbhelpers.mid"]
    before = versions.notebook_source_version(chapter, package)
    (package / "unused.py").write_text("Y = 1\n")
    assert versions.notebook_source_version(chapter, package) == before
    (package / "low.py").write_text("X = 2\n")
    assert versions.notebook_source_version(chapter, package) != before
    assert versions.notebook_modules(notebook("from nbhelpers.sub import leaf"), package) == [
        "nbhelpers",
        "nbhelpers.sub",
        "nbhelpers.sub.leaf",
    ]
    # a cell that is not Python even without its magics: the whole package, to be safe
    assert len(versions.notebook_modules(notebook("from nbhelpers import mid", "x = ("), package)) == 6
