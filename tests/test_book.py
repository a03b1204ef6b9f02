"""The book as a regression test: a raising cell fails the build, and the real book builds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tests.conftest import ROOT


def _jupyter_book() -> str:
    exe = Path(sys.executable).with_name("jupyter-book")
    return str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def _build(book_root: Path, timeout: int) -> subprocess.CompletedProcess:
    # a non-inline MPLBACKEND (e.g. Agg, set for the unit tests) would reach the kernels and hide figures
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    return subprocess.run(
        [_jupyter_book(), "build", str(book_root), "--all"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _tiny_book(tmp_path: Path, cells: list[str]) -> Path:
    """A one-chapter book that uses this project's own _config.yml execution settings."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["sphinx"]["config"].pop("html_static_path", None)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (tmp_path / "intro.md").write_text("# Tiny book\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    return tmp_path


def test_raising_cell_fails_the_build(tmp_path):
    book = _tiny_book(tmp_path, ["x = 1", "raise RuntimeError('deliberate failure 7731')"])
    proc = _build(book, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a failing cell must fail the build:\n" + output[-3000:]
    assert "deliberate failure 7731" in output


def test_clean_tiny_book_builds(tmp_path):
    book = _tiny_book(tmp_path, ["print(6 * 7)"])
    proc = _build(book, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    html = (book / "_build" / "html" / "chapter.html").read_text()
    assert "42" in html


@pytest.mark.book
def test_whole_book_builds_in_quick_profile():
    """Executes every chapter with its default (quick) parameters and writes _build/html."""
    proc = _build(ROOT, timeout=3600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-5000:]
    html_dir = ROOT / "_build" / "html"
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for chapter in toc["chapters"]:
        page = html_dir / f"{chapter['file']}.html"
        assert page.exists(), f"{page} missing"
    for nb_path in sorted((ROOT / "book").glob("*.ipynb")):
        page = (html_dir / "book" / f"{nb_path.stem}.html").read_text()
        assert "<img" in page, f"{nb_path.name} rendered no figure"
        assert "Traceback" not in page, f"{nb_path.name} shows a traceback"
    # Widgets and equations are served from the vendored copies, not a CDN.
    static = html_dir / "_static"
    assert (static / "embed-amd.js").exists() and (static / "require.js").exists()
    assert (static / "mathjax" / "tex-mml-chtml.js").exists()
    page = (html_dir / "book" / "01_theory.html").read_text()
    assert "_static/mathjax/tex-mml-chtml.js" in page and "cdn.jsdelivr.net/npm/mathjax" not in page
