"""Chapters are committed without outputs and carry a papermill parameters cell."""

from __future__ import annotations

import nbformat
import pytest

from tests.conftest import ROOT

CHAPTERS = sorted((ROOT / "book").glob("*.ipynb"))


def test_every_toc_chapter_exists():
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]] + [c["file"] for c in toc["chapters"]]
    for f in files:
        assert any((ROOT / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_one_parameters_cell_with_profile_seed_device(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    src = tagged[0].source
    for name in ("profile", "seed", "device"):
        assert f"{name} =" in src, f"{path.name}: parameters cell lacks {name!r}"
    assert 'profile = "quick"' in src, f"{path.name}: the default profile must be quick"
