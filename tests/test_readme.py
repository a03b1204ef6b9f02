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


def test_scoring_your_own_classifier_runs_and_the_bayes_classifier_needs_larger_changes(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NBHELPERS_DATA_DIR"}  # the bundled sample
    env["NBHELPERS_CACHE_DIR"] = str(tmp_path / "cache")
    code = _python_block("## Scoring your own classifier")
    # the block uses the layered package (chapters on top of science), not the modules it replaced
    assert "from nbhelpers.chapters.evaluation import compare_reports, score_classifier" in code
    assert not re.search(r"nbhelpers(\.| import )(experiments|classifier|datasets|models)\b", code)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"(yours|Bayes-optimal)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line.strip())
        if match:
            rows[match.group(1)] = [float(v) for v in match.groups()[1:]]
    assert set(rows) == {"yours", "Bayes-optimal"}, proc.stdout
    clean_yours, adv_yours, l2_yours = rows["yours"]
    clean_bayes, adv_bayes, l2_bayes = rows["Bayes-optimal"]
    assert clean_bayes == 100.0 and clean_yours >= 90.0  # the symmetric 0-vs-6 classes are easy to tell apart
    assert adv_yours == adv_bayes == 0.0  # minimum-norm attacks flip every sample they are given
    # The paper's point on the symmetric datasets: the Bayes-optimal classifier is the hardest to fool.
    assert l2_bayes > 1.2 * l2_yours > 0
