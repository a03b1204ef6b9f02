"""Provenance of committed results: ``manifest.json`` beside them, one entry per command that made them
(hardware, wall time, git commit, code version, command, result files), written by ``record_command``
(``python -m nbhelpers record --results-dir DIR -- COMMAND...``) and shown by ``describe_results``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nbhelpers.chapters.display import Markdown, display_path
from nbhelpers.chapters.ids import ChapterId
from nbhelpers.chapters.resultset import ResultSet
from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import write_json_atomic
from nbhelpers.core.paths import project_root
from nbhelpers.core.paths import results_dir as default_results_dir
from nbhelpers.core.versions import code_version

MANIFEST_NAME = "manifest.json"


PAPER_RESULTS_SUBDIR = Path("results") / "paper"


def default_paper_results_dir() -> Path:
    """``<project root>/results/paper``: committed paper-profile results live in its ``paper/`` folder."""
    return project_root() / PAPER_RESULTS_SUBDIR


def _timestamp(value: float | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    raise ValueError(f"a time must be a datetime or seconds since the epoch (time.time()), got {value!r}")


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU model (Linux: ``cpuinfo``'s "model name"), else what ``platform`` knows."""
    cpuinfo = Path(cpuinfo)
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels use here ("AVX2", "AVX512", ...), or None.

    torch picks its CPU kernels by it, so float results with the same seed can differ in the last bits
    between machines that differ here."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def machine_fields(device: str) -> dict[str, Any]:
    """What a script's record says of the machine that ran it: the torch device ``device`` resolves to,
    torch's version and CPU threads, the CPU model and its kernels (``cpu_name``, ``cpu_capability``)."""
    import torch

    return {
        "device": str(resolve_device(device)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_capability": cpu_capability(),
    }


def _git(*args: str) -> str | None:
    """Output of a git command in the project root; None without git or outside a checkout."""
    try:
        proc = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def result_files(results_dir: str | os.PathLike) -> dict[str, str]:
    """Every result file of ``results_dir`` (``<profile>/*.json``) -> its sha256: what a command changed."""
    base = Path(results_dir)
    return {
        path.relative_to(base).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(base.glob("*/*.json"))
    }


def write_manifest(
    results_dir: str | os.PathLike,
    command: str | Sequence[str],
    started: float | dt.datetime,
    finished: float | dt.datetime,
    *,
    exit_status: int | None = None,
    results: Sequence[str] | None = None,
) -> Path:
    """Add one entry to ``<results_dir>/manifest.json``: what produced results there, where, how long.

    The manifest is ``{"runs": [entry, ...]}``, one entry per command in the order they finished, so
    results made by several commands (a CPU sweep, later a GPU one) each keep their provenance.
    ``command``: a string or an argv list; ``started``/``finished``: ``time.time()`` seconds or datetimes;
    ``results``: the result files (relative to ``results_dir``) that the command wrote. An entry records
    the platform, CPU, GPUs (``torch.cuda.get_device_name``), Python, torch and CUDA versions, the git
    commit (``git rev-parse HEAD``; None outside a checkout) and whether tracked files had local changes,
    the nbhelpers code version and the wall time.
    """
    start, end = _timestamp(started), _timestamp(finished)
    if end < start:
        raise ValueError(f"finished ({end.isoformat()}) is before started ({start.isoformat()}): swap them")
    import torch  # only the manifest needs it; the tables and figures do not

    commit = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no")
    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    entry = {
        "command": command if isinstance(command, str) else shlex.join(command),
        "exit_status": exit_status,
        "started": start.isoformat(timespec="seconds"),
        "finished": end.isoformat(timespec="seconds"),
        "wall_seconds": round((end - start).total_seconds(), 1),
        "git_commit": commit,
        "git_local_changes": None if commit is None or changes is None else bool(changes),
        "code_version": code_version(),
        "results": sorted(results or []),
        "hardware": {
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "cpu_capability": cpu_capability(),
            "cpu_count": os.cpu_count(),
            "gpus": gpus,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
    }
    previous = read_manifest(results_dir) or {"runs": []}
    return write_json_atomic(Path(results_dir) / MANIFEST_NAME, {"runs": [*previous["runs"], entry]})


def read_manifest(results_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``results_dir`` as ``{"runs": [entry, ...]}``, or None when there is none.

    A manifest of the older one-command form (a single entry) reads as a list of one."""
    path = Path(results_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs", []), list):
        raise ValueError(f"{path} is not a manifest: expected an object with a list 'runs'")
    return manifest if "runs" in manifest else {"runs": [manifest]}


def _run_forwarding_signals(argv: list[str]) -> int:
    """Run ``argv`` to its end, even when this process is told to stop: SIGTERM is passed on to the command,
    and SIGINT (Ctrl-C, which the terminal also sends to the command) waits for it. A killed command thus
    still gets its manifest entry, with the status it ended with."""
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    handlers = {signal.SIGTERM: forward, signal.SIGINT: lambda *_: None}
    previous: dict[int, Any] = {}
    try:
        for sig, handler in handlers.items():
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals keep their handlers
        pass
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def record_command(command: Sequence[str], results_dir: str | os.PathLike) -> int:
    """Run ``command`` (an argv list), then add its entry to ``results_dir``'s manifest (with the result
    files it wrote or changed); the command's exit status."""
    if not command:
        raise ValueError("no command to run: pass an argv list, e.g. ['python', '-m', 'nbhelpers', 'sweep']")
    before = result_files(results_dir)
    started = time.time()
    status = _run_forwarding_signals(list(command))
    finished = time.time()
    changed = [name for name, digest in result_files(results_dir).items() if before.get(name) != digest]
    write_manifest(results_dir, command, started, finished, exit_status=status, results=changed)
    return status


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1 h 30 min``; ``95`` -> ``1 min 35 s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _result_label(name: str) -> str:
    """``paper/03_bayes_robustness__celeba__Male__seed0.json`` -> ``03 celeba:Male``."""
    parts = Path(name).stem.split("__")
    if len(parts) != 4:
        return Path(name).name
    chapter, dataset, attribute, _ = parts
    return f"{chapter[:2]} {dataset}:{attribute}"


def _status_text(status: Any) -> str:
    """``0`` -> ``exit status 0``; ``-15`` (a command ended by a signal) -> ``stopped by SIGTERM``."""
    if isinstance(status, int) and status < 0:
        try:
            return f"stopped by {signal.Signals(-status).name}"
        except ValueError:
            return f"stopped by signal {-status}"
    return f"exit status {status}"


def _manifest_lines(entry: dict[str, Any]) -> list[str]:
    """A Markdown list item (plain CommonMark, as the book renders outputs) for one manifest entry: the
    command and its exit, then one line with its results, machine, software, time and commit (the
    manifest itself keeps the rest, e.g. the platform string)."""
    hw = entry.get("hardware", {})
    machine = ", ".join(hw.get("gpus") or []) or f"CPU {hw.get('cpu', '?')}"
    commit = entry.get("git_commit") or "unknown"
    if entry.get("git_local_changes"):
        commit += " (with local changes)"
    wall = format_duration(float(entry.get("wall_seconds", 0)))
    made = entry.get("results")
    made_text = ", ".join(_result_label(n) for n in made) if made else "not recorded"
    software = (
        f"Python {hw.get('python', '?')}, torch {hw.get('torch', '?')}, CUDA {hw.get('cuda') or 'none'}"
    )
    return [
        f"- `{entry.get('command', '?')}` ({_status_text(entry.get('exit_status'))})",
        f"  - **{wall}** from {entry.get('started', '?')} on {machine} ({hw.get('cpu_count', '?')} cores; "
        f"{software}), commit `{commit}`; **results**: {made_text}",
    ]


_MANIFEST_NOTES = {
    "with local changes": "*with local changes*: tracked files differed from the commit when the command "
    "started (for a command run after others, typically the result files those had just written)",
    "stopped by": "*stopped by* a signal: the command was ended before it finished; the runs it finished "
    "are kept, and the same command run again resumes after them",
}


def describe_results(results: ResultSet, manifest_dir: str | os.PathLike | None = None) -> Markdown:
    """What the result files of ``results`` are (count, files per chapter, seeds, dates, code versions) and,
    when ``manifest_dir`` holds a manifest, the hardware, wall time, commit and command behind them."""
    folder = display_path(Path(results.results_dir or default_results_dir()) / results.profile)
    if results.empty:
        lines = [f"No result files of profile `{results.profile}` in `{folder}/` ({results.scope()})."]
    else:
        per_chapter = results.files.groupby("chapter")["dataset"].count()
        chapters = ", ".join(f"chapter {ChapterId(c).number}: {n}" for c, n in per_chapter.items())
        created = sorted(str(c) for c in results.files["created"].dropna())
        versions = sorted({str(v) for v in results.files["code_version"].dropna()})
        current = code_version()
        stale = [v for v in versions if v != current]
        when = f", written {created[0]} to {created[-1]}" if created else ""
        lines = [
            f"{len(results.files)} result files in `{folder}/` ({chapters}; {results.scope()}){when}.",
            f"Code versions: {', '.join(f'`{v}`' for v in versions)}"
            + (f" ({len(stale)} differ from the current `{current}`)." if stale else " (the current code)."),
        ]
    if manifest_dir is not None:
        manifest = read_manifest(manifest_dir)
        if manifest is None:
            lines.append(f"No `{MANIFEST_NAME}` in `{display_path(manifest_dir)}/`.")
        else:
            runs = manifest["runs"]
            plural = "s" if len(runs) != 1 else ""
            lines += ["", f"Made by {len(runs)} command{plural} (`{MANIFEST_NAME}`):", ""]
            entries = [line for entry in runs for line in _manifest_lines(entry)]
            lines += entries
            notes = [note for key, note in _MANIFEST_NOTES.items() if any(key in line for line in entries)]
            if notes:
                lines += ["", *notes]
    return Markdown("\n".join(lines))


HELP = "run a command (e.g. a paper-profile sweep) and add its entry to the results folder's manifest.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``record`` subcommand's arguments."""
    parser.add_argument("--results-dir", required=True, metavar="DIR", help="where manifest.json goes")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    parser.epilog = (
        "Adds the hardware, wall time, git commit, command and the result files it wrote; see "
        "results/paper/README.md. Example: python -m nbhelpers record --results-dir results/paper -- "
        "python -m nbhelpers sweep --profile paper --results-dir results/paper"
    )


def run(args: argparse.Namespace) -> int:
    """Run the command after ``--``, then write the manifest entry; the command's exit status (the shell's
    128 + N when signal N ended it)."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(
            "nbhelpers record: error: no command given: put it after --, e.g. -- python -m nbhelpers sweep "
            "--profile paper",
            file=sys.stderr,
        )
        return 2
    status = record_command(command, args.results_dir)
    return 128 - status if status < 0 else status  # killed by signal N: the shell's 128 + N
