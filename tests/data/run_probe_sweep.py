"""``nbhelpers sweep`` over the probe notebook in ``sweep_book/``, as its own process (tests kill it).

The probe accepts any task; the ones below are the sweep's valid choices in the tests.
"""

from __future__ import annotations

import sys

from nbhelpers.runs import sweep

PROBE_TASKS = [("mnist", "0_vs_6"), ("celeba", "Smiling"), ("celeba", "Slow"), ("celeba", "Fail")]


def probe_tasks(chapter: str) -> list[tuple[str, str]]:
    """Every probe chapter takes every probe task."""
    return PROBE_TASKS


if __name__ == "__main__":
    sys.exit(sweep.main(sys.argv[1:], tasks_for=probe_tasks))
