"""The README's code runs as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import ROOT


def _python_block(heading: str) -> str:
    """The first ```python block under the README's ``heading``."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_benchmark_your_model_runs_and_the_bayes_classifier_needs_larger_changes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NBHELPERS_DATA_DIR"}  # the bundled sample
    env["NBHELPERS_CACHE_DIR"] = str(tmp_path / "cache")
    code = _python_block("## Benchmark your model")
    assert "nbhelpers.benchmark(" in code
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = None
    for line in proc.stdout.splitlines():
        match = re.match(r"([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if match:
            numbers = [float(v) for v in match.groups()]
    assert numbers is not None, proc.stdout
    clean, l2_yours, l2_bayes, ratio = numbers
    assert clean >= 0.9  # the symmetric 0-vs-6 classes are easy to tell apart
    assert abs(ratio - l2_yours / l2_bayes) < 0.01
    # The paper's point on the symmetric datasets: the Bayes-optimal classifier is the hardest to fool.
    assert 0 < ratio < 0.85


def test_the_readme_shell_command_is_the_score_command():
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Benchmark your model\n", 1)[1]
    command = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1).strip()
    assert command.startswith("python -m nbhelpers score ") and "--train" in command
