"""Progress bars for long loops: ``from nbhelpers.progress import tqdm``.

In Jupyter the bars are widgets, elsewhere text. A widget leaves no trace in a log, so the sweep sets
``NBHELPERS_TEXT_PROGRESS=1`` for the notebooks it runs: their bars are then text on stderr, which lands in
the run's ``.stderr.log`` (updated at most every ``TQDM_MININTERVAL`` seconds, which the sweep sets too).
"""

from __future__ import annotations

import os

TEXT_PROGRESS_ENV = "NBHELPERS_TEXT_PROGRESS"

if os.environ.get(TEXT_PROGRESS_ENV, "").strip() not in ("", "0"):
    from tqdm.std import tqdm
else:
    from tqdm.auto import tqdm

__all__ = ["TEXT_PROGRESS_ENV", "tqdm"]
