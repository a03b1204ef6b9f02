"""The code's shape: ruff, the import layers, module sizes, one implementation per figure and table."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def ruff() -> str:
    found = shutil.which("ruff") or shutil.which("ruff", path=str(ROOT / ".venv" / "bin"))
    if found is None:
        pytest.skip("ruff is not installed")
    return found


def test_ruff_check_is_clean_on_code_and_chapters(ruff):
    # The chapters' code cells are checked too (ruff reads notebooks).
    proc = subprocess.run(
        [ruff, "check", "nbhelpers", "tests", "bench", "book"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_python_sources_are_ruff_formatted(ruff):
    proc = subprocess.run(
        [ruff, "format", "--check", "nbhelpers", "tests", "bench"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


PACKAGE = ROOT / "nbhelpers"
FIGURE_OR_TABLE = ("plot_", "table", "figure")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _public_functions(path: Path) -> list[str]:
    return [
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]


def test_import_layers_point_one_way():
    """science imports neither chapters nor runs, chapters do not import runs (the contract in pyproject)."""
    linter = shutil.which("lint-imports") or shutil.which("lint-imports", path=str(ROOT / ".venv" / "bin"))
    if linter is None:
        pytest.skip("import-linter is not installed")
    proc = subprocess.run([linter], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "broken" not in proc.stdout.split("Contracts:")[-1].split(",")[0], (
        proc.stdout + proc.stderr
    )
    assert "1 kept, 0 broken" in proc.stdout, proc.stdout


def test_no_module_is_over_700_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 700}
    assert not long, f"split these modules along their sections: {long}"


def test_every_figure_and_table_function_is_defined_once():
    seen: dict[str, list[str]] = {}
    for path in _modules():
        for name in _public_functions(path):
            if name.startswith(FIGURE_OR_TABLE) or name.endswith("_table"):
                seen.setdefault(name, []).append(str(path.relative_to(ROOT)))
    twice = {name: places for name, places in seen.items() if len(places) > 1}
    assert not twice, twice
    assert len(seen) > 30  # the check sees the book's figures and tables


def test_the_science_api_is_typed():
    untyped = []
    for path in sorted((PACKAGE / "science").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            unannotated = [a for a in args if a.annotation is None and a.arg not in ("self", "cls")]
            if node.returns is None or unannotated:
                untyped.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not untyped, untyped


def test_the_layers_are_folders_of_the_package():
    """Where the maths, a figure and the run scheduling live, from the folder tree alone."""
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert layers == ["chapters", "core", "runs", "science"]
    chapter_modules = sorted(p.stem for p in (PACKAGE / "chapters").glob("ch[0-9]_*.py"))
    assert [m[:3] for m in chapter_modules] == ["ch1", "ch2", "ch3", "ch3", "ch4", "ch5", "ch6", "ch7"]
    assert (PACKAGE / "runs" / "sweep" / "plan.py").exists() and (PACKAGE / "science" / "mfa.py").exists()
