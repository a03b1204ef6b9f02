import shutil
import subprocess

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
