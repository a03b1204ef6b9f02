"""``python -m nbhelpers checkpoints``: what unfinished chapter runs keep on disk, and deleting it.

A chapter run keeps its finished steps (``nbhelpers.runs.checkpoints``) until it writes its result file. A run
that was stopped and will not be resumed leaves them behind; this lists them with their sizes and, with
``--clear``, deletes them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from nbhelpers.core.paths import checkpoints_dir

HELP = "list the checkpoints that unfinished chapter runs keep (to resume), or delete them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clear",
        nargs="*",
        metavar="RUN",
        help="delete the checkpoints of these runs (names as listed); with no name, of every run",
    )


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _runs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def run(args: argparse.Namespace) -> int:
    root = checkpoints_dir()
    runs = _runs(root)
    if args.clear is None:
        if not runs:
            print(f"no checkpoints in {root}")
            return 0
        print(f"checkpoints of unfinished runs in {root} (a re-run of the same chapter resumes from them):")
        for folder in runs:
            steps = sorted(p.name.split("__")[0] for p in folder.glob("*.pt"))
            changed = time.strftime("%Y-%m-%d %H:%M", time.localtime(folder.stat().st_mtime))
            print(f"  {folder.name}  {_size(folder) / 1e6:.1f} MB, {len(steps)} steps, last {changed}")
            if steps:
                print(f"    {', '.join(steps)}")
        return 0
    by_name = {folder.name: folder for folder in runs}
    chosen = list(dict.fromkeys(args.clear)) or list(by_name)  # a run named twice is deleted once
    unknown = [name for name in chosen if name not in by_name]
    if unknown:
        valid = ", ".join(by_name) or "none: there are no checkpoints"
        print(
            f"error: no checkpoints of run(s) {', '.join(unknown)}; runs with checkpoints: {valid}",
            file=sys.stderr,
        )
        return 2
    freed = 0
    for name in chosen:
        freed += _size(by_name[name])
        shutil.rmtree(by_name[name])
        print(f"deleted {name}")
    print(f"freed {freed / 1e6:.1f} MB")
    return 0
