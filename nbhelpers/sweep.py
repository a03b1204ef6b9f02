"""Run chapters over tasks, profiles and seeds: ``python -m nbhelpers sweep``.

One run executes one chapter notebook with papermill for one (dataset, attribute, profile, seed). It leaves
an executed notebook with its kernel's stdout/stderr logs under the sweep folder, and one JSON result under
``<results_dir>/<profile>/`` (see :mod:`nbhelpers.results`).

Why a sweep can be killed at any moment and simply re-run:

- the notebook writes its result into a private staging folder; only after papermill succeeds is the file
  moved into the results folder (an atomic rename);
- then a stamp ``<result>.done`` (written atomically) records the code version and the notebook hash that
  made the result. A run is up to date, and skipped, only when its stamp matches the current code and
  notebook and the result it stamped. "The code" is the sources of the nbhelpers modules the notebook
  imports (``nbhelpers.results.notebook_source_version``): an edit elsewhere in the package keeps it;
- inside a run, finished trainings and attacks are kept as checkpoints (:mod:`nbhelpers.checkpoints`)
  until the result is written, so a killed run resumes after its last finished step;
- papermill saves the executed notebook under a hidden partial name, renamed when the run ends.
- a run is locked while it executes (``flock`` on ``<results_dir>/.locks/<run>.lock``, dropped by the
  kernel when its process dies), so two sweeps over the same results never execute one run at once:
  the second reports it as taken, or keeps it if the first finished it meanwhile.

Runs go to a local pool of worker processes, or with ``--scheduler tcp://host:port`` to a Dask cluster.
A run executes its notebook with papermill (a Jupyter kernel) or, with ``--engine python`` on machines
without Jupyter, with :mod:`nbhelpers.notebook_runner` in a child Python process; both leave the same files.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import importlib.util
import json
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from nbhelpers import results
from nbhelpers.config import (
    CACHE_DIR_ENV,
    CHECKPOINTS_DIR_ENV,
    DATA_DIR_ENV,
    RESULTS_DIR_ENV,
    VALID_DEVICES,
    get_device,
    get_profile,
    project_root,
)
from nbhelpers.config import results_dir as default_results_dir
from nbhelpers.data import BUNDLED_SAMPLE, REAL_DATA_ATTRIBUTES, TASKS
from nbhelpers.notebook_runner import NotebookError, exit_when_gone, notebook_parameters
from nbhelpers.progress import TEXT_PROGRESS_ENV

HELP = "run chapter notebooks for many tasks, seeds and a profile (resumable, parallel)"

# A chapter can be swept when its papermill ``parameters`` cell declares all of these.
SWEEP_PARAMETERS = ("dataset", "attribute", "profile", "seed", "device", "results_dir")
REAL_DATA_CHAPTER = "05_real_data"
SCHEDULER_FORM = "tcp://host:port"
# How a run executes its notebook: papermill with a Jupyter kernel, or nbhelpers.notebook_runner in a plain
# Python process (for machines without Jupyter); "auto" takes papermill where it is installed.
ENGINES = ("auto", "papermill", "python")
_SCHEDULER_RE = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_CHAPTER_RE = re.compile(r"^\d{2}_\w+$")

Task = tuple[str, str]  # (dataset, attribute), e.g. ("celeba", "Smiling")
TasksFor = Callable[[str], Sequence[Task]]  # chapter stem -> the tasks it takes


class SweepError(ValueError):
    """Bad sweep input; the message names the problem and how to fix it."""


@dataclass(frozen=True)
class Run:
    """One notebook execution and the files it owns (all paths absolute)."""

    chapter: str  # notebook stem, e.g. "03_bayes_robustness"
    dataset: str
    attribute: str
    profile: str
    seed: int
    device: str  # passed to the notebook as given ("auto" resolves on the machine that runs it)
    notebook: Path  # the chapter notebook
    out_dir: Path  # executed notebooks and logs
    results_dir: Path  # results base folder; the file goes to <results_dir>/<profile>/
    extra: tuple[tuple[str, Any], ...] = ()  # further papermill parameters (--param), sorted by name
    engine: str = "papermill"  # "papermill" or "python" (see ENGINES)
    data: str = BUNDLED_SAMPLE  # the data it reads (``data_source``), recorded in its stamp

    @property
    def name(self) -> str:
        return f"{self.chapter}__{self.dataset}__{self.attribute}__{self.profile}__seed{self.seed}"

    @property
    def output_notebook(self) -> Path:
        return self.out_dir / f"{self.name}.ipynb"

    @property
    def failed_notebook(self) -> Path:
        return self.out_dir / f"{self.name}.failed.ipynb"

    @property
    def partial_notebook(self) -> Path:
        return self.out_dir / f".{self.name}.partial.ipynb"

    @property
    def stdout_log(self) -> Path:
        return self.out_dir / f"{self.name}.stdout.log"

    @property
    def stderr_log(self) -> Path:
        return self.out_dir / f"{self.name}.stderr.log"

    @property
    def result_path(self) -> Path:
        return results.result_path(
            self.chapter, self.dataset, self.attribute, self.profile, self.seed, self.results_dir
        )

    @property
    def stamp_path(self) -> Path:
        # Not "*.json": readers glob <profile>/*.json for results.
        return self.result_path.with_name(self.result_path.name + ".done")

    @property
    def staging_dir(self) -> Path:
        return self.results_dir / ".staging" / self.name

    @property
    def staged_result(self) -> Path:
        return results.result_path(
            self.chapter, self.dataset, self.attribute, self.profile, self.seed, self.staging_dir
        )

    def parameters(self) -> dict[str, Any]:
        """The papermill parameters of this run (the notebook saves into the staging folder)."""
        return {
            "dataset": self.dataset,
            "attribute": self.attribute,
            "profile": self.profile,
            "seed": self.seed,
            "device": self.device,
            "results_dir": str(self.staging_dir),
            **dict(self.extra),
        }

    def extra_parameters(self) -> dict[str, Any]:
        """The ``--param`` values this run passes beyond the sweep parameters (recorded in its stamp)."""
        return dict(self.extra)


@dataclass(frozen=True)
class RunOutcome:
    """How one run ended; ``message`` says why it failed."""

    run: Run
    ok: bool
    seconds: float
    message: str = ""

    @property
    def notebook(self) -> Path:
        """The executed notebook to open: the finished one, or the one kept from the failure."""
        return self.run.output_notebook if self.ok else self.run.failed_notebook


@dataclass
class Plan:
    """The runs of a sweep, and the named tasks that a chosen chapter does not take (left out)."""

    runs: list[Run]
    device: str
    left_out: list[str] = field(default_factory=list)
    keep_finished: bool = (
        False  # a finished run counts as up to date whatever changed since (--keep-finished)
    )


@dataclass
class SweepReport:
    """What a sweep did: runs executed (finished or failed) and runs skipped as up to date."""

    finished: list[RunOutcome]
    failed: list[RunOutcome]
    skipped: list[Run]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.finished)} finished, {len(self.skipped)} up to date, {len(self.failed)} failed"]
        for outcome in self.failed:
            notebook = outcome.notebook if outcome.notebook.exists() else "none (the kernel never started)"
            lines += [
                f"FAILED {outcome.run.name}: {outcome.message}",
                f"  notebook: {notebook}",
                f"  logs:     {outcome.run.stdout_log}, {outcome.run.stderr_log}",
            ]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Planning: chapters, tasks, runs.


def chapter_tasks(chapter: str) -> list[Task]:
    """The tasks ``chapter`` takes: chapter 5 its five CelebA attributes, others ``nbhelpers.data.TASKS``."""
    tasks = [(str(dataset), str(attribute)) for dataset, attribute in TASKS]
    if chapter == REAL_DATA_CHAPTER:
        return [(d, a) for d, a in tasks if d == "celeba" and a in REAL_DATA_ATTRIBUTES]
    return tasks


def _missing_parameters(notebook: Path) -> list[str]:
    """The sweep parameters that the notebook's ``parameters`` cell does not declare."""
    declared = notebook_parameters(notebook)
    return [name for name in SWEEP_PARAMETERS if name not in declared]


def resolve_engine(engine: str) -> str:
    """``auto`` -> ``papermill`` where it is installed, else ``python``; a named engine is checked."""
    if engine not in ENGINES:
        raise SweepError(f"unknown engine {engine!r}: valid engines are {', '.join(ENGINES)}")
    has_papermill = importlib.util.find_spec("papermill") is not None
    if engine == "auto":
        return "papermill" if has_papermill else "python"
    if engine == "papermill" and not has_papermill:
        raise SweepError(
            "engine 'papermill' needs papermill and a Jupyter kernel (pip install papermill ipykernel): "
            "install them or use --engine python"
        )
    return engine


def resolve_chapters(names: Sequence[str] | None, book_dir: str | os.PathLike) -> dict[str, Path]:
    """Chapter stems -> notebooks. ``names`` are stems ("03_bayes_robustness") or numbers ("03", "3").

    None or ["all"] picks every notebook in ``book_dir`` whose parameters cell takes the sweep parameters.
    """
    book_dir = Path(book_dir)
    if not book_dir.is_dir():
        raise SweepError(
            f"book folder {book_dir} does not exist: pass --book-dir with the folder of the chapter notebooks"
        )
    notebooks = {p.stem: p.resolve() for p in sorted(book_dir.glob("*.ipynb")) if _CHAPTER_RE.match(p.stem)}
    sweepable = {stem: path for stem, path in notebooks.items() if not _missing_parameters(path)}
    if not sweepable:
        raise SweepError(
            f"no chapter notebook in {book_dir} can be swept: a chapter's 'parameters' cell must declare "
            f"{', '.join(SWEEP_PARAMETERS)}"
        )
    valid = ", ".join(sweepable)
    if names is None or list(names) == ["all"]:
        return sweepable
    chosen: dict[str, Path] = {}
    for name in names:
        key = name.removesuffix(".ipynb")
        stems = [s for s in notebooks if s == key or (key.isdigit() and int(key) == int(s[:2]))]
        if not stems:
            raise SweepError(f"unknown chapter {name!r}: valid chapters are {valid} (a stem or its number)")
        if stems[0] not in sweepable:
            missing = ", ".join(_missing_parameters(notebooks[stems[0]]))
            raise SweepError(
                f"chapter {stems[0]} cannot be swept: its parameters cell lacks {missing}; "
                f"valid chapters are {valid}"
            )
        chosen[stems[0]] = sweepable[stems[0]]
    return chosen


def resolve_tasks(
    specs: Sequence[str] | None, chapters: Sequence[str], tasks_for: TasksFor
) -> tuple[dict[str, list[Task]], list[str]]:
    """Parse ``dataset:attribute`` specs (case-insensitive) into each chapter's tasks.

    None or ["all"] gives every chapter all its tasks. A named task is an error when no chosen chapter
    takes it, and is left out (second return value) for a chapter that does not take it.
    """
    allowed = {chapter: [(str(d), str(a)) for d, a in tasks_for(chapter)] for chapter in chapters}
    if specs is None or list(specs) == ["all"]:
        return allowed, []
    if "all" in specs:
        raise SweepError("--tasks all cannot be mixed with named tasks: give either 'all' or a list")
    known = {f"{d}:{a}".lower(): (d, a) for tasks in allowed.values() for d, a in tasks}
    wanted: list[Task] = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) != 2 or not all(parts):
            raise SweepError(
                f"malformed task {spec!r}: write dataset:attribute, e.g. celeba:Smiling or mnist:0_vs_6"
            )
        task = known.get(spec.lower())
        if task is None:
            valid = ", ".join(f"{d}:{a}" for d, a in sorted(set(known.values())))
            # compare attributes within the dataset named: "celeba:" alone would make every task look close
            same = {a.lower(): f"{d}:{a}" for d, a in known.values() if d.lower() == parts[0].lower()}
            close = difflib.get_close_matches(parts[1].lower(), list(same), n=1, cutoff=0.6)
            hint = f" (did you mean {same[close[0]]!r}?)" if close else ""
            raise SweepError(
                f"unknown task {spec!r}{hint} for chapters {', '.join(chapters)}: valid tasks are {valid}"
            )
        if task not in wanted:
            wanted.append(task)
    by_chapter = {chapter: [t for t in wanted if t in allowed[chapter]] for chapter in chapters}
    left_out = [
        f"{chapter} does not take {d}:{a}"
        for chapter in chapters
        for d, a in wanted
        if (d, a) not in allowed[chapter]
    ]
    return by_chapter, left_out


def parse_params(specs: Sequence[str] | None) -> dict[str, Any]:
    """``NAME=VALUE`` strings -> {name: value}; a VALUE that reads as a Python literal (``False``, ``200``,
    ``["ddn"]``, ``None``) is that literal, anything else stays a string."""
    params: dict[str, Any] = {}
    for spec in specs or ():
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise SweepError(
                f"malformed parameter {spec!r}: write NAME=VALUE, e.g. figure8=False or n_attack=200"
            )
        if name in SWEEP_PARAMETERS:
            raise SweepError(
                f"parameter {name!r} is set by the sweep itself (--tasks, --profile, --seeds, --device, "
                "--results-dir): use those options instead of --param"
            )
        if name in params:
            raise SweepError(f"parameter {name!r} is given twice")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text
        try:
            json.dumps(value)
        except TypeError:
            raise SweepError(
                f"parameter {spec!r}: a {type(value).__name__} cannot be passed to a notebook; use a number, "
                "string, bool, None, list or dict"
            ) from None
        if name == "data_dir" and isinstance(value, str) and value.strip():
            value = os.path.abspath(value)  # the chapters run inside the book folder
        params[name] = value
    return params


# The environment variables holding folders: a relative one is made absolute before the runs start,
# because the chapters run inside the book folder, not where the sweep was started.
_FOLDER_ENVIRONMENT = (DATA_DIR_ENV, CACHE_DIR_ENV, CHECKPOINTS_DIR_ENV, RESULTS_DIR_ENV)


def absolute_folder_environment() -> None:
    """Turn a relative ``$NBHELPERS_*_DIR`` into an absolute path, against the current directory."""
    for name in _FOLDER_ENVIRONMENT:
        value = os.environ.get(name)
        if value and not os.path.isabs(value):
            os.environ[name] = os.path.abspath(value)


def data_source(params: dict[str, Any]) -> str:
    """The data a chapter given ``params`` reads: its ``data_dir`` parameter, else ``$NBHELPERS_DATA_DIR``,
    else the bundled sample. Recorded in each run's stamp, so that switching data re-runs it: a folder is
    described by its name and the names and sizes of what it holds (not its path, which names the machine's
    folders and differs between machines holding the same data)."""
    folder = params.get("data_dir") or os.environ.get(DATA_DIR_ENV)
    if not folder:
        return BUNDLED_SAMPLE
    path = Path(folder)
    try:
        entries = sorted(path.iterdir(), key=lambda entry: entry.name)
    except OSError:
        return f"data folder {path.name} (unreadable)"
    parts = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            parts.append(f"{entry.name}/ ({sum(1 for _ in entry.iterdir())} entries)")
        elif entry.is_file():
            parts.append(f"{entry.name} ({entry.stat().st_size} bytes)")
    return f"data folder {path.name}: {', '.join(parts) or 'empty'}"


ChapterParams = tuple[tuple[str, Any], ...]  # (name, value) pairs, sorted by name


def _chapter_params(params: dict[str, Any], notebooks: dict[str, Path]) -> dict[str, ChapterParams]:
    """Each chapter's share of ``params`` (the names its parameters cell declares), sorted by name.

    Every ``--param`` must be declared by at least one chosen chapter."""
    if not params:
        return {chapter: () for chapter in notebooks}
    declared = {chapter: list(notebook_parameters(path)) for chapter, path in notebooks.items()}
    for name in params:
        if not any(name in names for names in declared.values()):
            valid = "; ".join(
                f"{chapter}: {', '.join(n for n in names if n not in SWEEP_PARAMETERS) or 'none'}"
                for chapter, names in declared.items()
            )
            raise SweepError(f"unknown parameter {name!r}: no chosen chapter declares it (they take {valid})")
    return {
        chapter: tuple(sorted((k, v) for k, v in params.items() if k in names))
        for chapter, names in declared.items()
    }


def plan_sweep(
    chapters: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    profile: str = "quick",
    seeds: Sequence[int] = (0,),
    device: str = "auto",
    *,
    book_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    results_dir: str | os.PathLike | None = None,
    tasks_for: TasksFor | None = None,
    params: dict[str, Any] | None = None,
    engine: str = "auto",
    keep_finished: bool = False,
) -> Plan:
    """Every (chapter, task, seed) run of a sweep, validated.

    Defaults: all sweepable chapters of ``<project root>/book``, all their tasks, notebooks and logs in
    ``<results_dir>/sweeps/<profile>``, results in ``<results_dir>/<profile>``. ``tasks_for`` maps a chapter
    stem to the tasks it takes (default :func:`chapter_tasks`; tests pass their own). ``params`` (from
    :func:`parse_params`) go to each chapter that declares them; a run whose stamp records other values
    is stale. ``engine``: see :data:`ENGINES`.
    """
    params = dict(params or {})
    engine = resolve_engine(engine)
    try:
        get_profile(profile)
    except ValueError as err:
        raise SweepError(str(err)) from None
    if device not in VALID_DEVICES:
        raise SweepError(f"unknown device {device!r}: valid devices are {', '.join(VALID_DEVICES)}")
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise SweepError(f"seeds must be one or more non-negative integers, got {list(seeds)}")
    book = Path(book_dir) if book_dir else project_root() / "book"
    base = Path(results_dir).resolve() if results_dir else default_results_dir().resolve()
    out = Path(out_dir).resolve() if out_dir else base / "sweeps" / profile
    notebooks = resolve_chapters(chapters, book)
    extra = _chapter_params(params, notebooks)
    by_chapter, left_out = resolve_tasks(tasks, list(notebooks), tasks_for or chapter_tasks)
    data = {chapter: data_source(dict(extra[chapter])) for chapter in notebooks}  # one look per chapter
    runs = [
        Run(
            chapter,
            dataset,
            attribute,
            profile,
            seed,
            device,
            notebook,
            out,
            base,
            extra[chapter],
            engine,
            data[chapter],
        )
        for chapter, notebook in notebooks.items()
        for dataset, attribute in by_chapter[chapter]
        for seed in dict.fromkeys(seeds)
    ]
    if not runs:
        raise SweepError(f"nothing to run: {'; '.join(left_out) or 'the chosen chapters take no tasks'}")
    return Plan(runs=runs, device=device, left_out=left_out, keep_finished=keep_finished)


# ---------------------------------------------------------------------------------------------------------
# One run: resumability check and execution (in a worker process or on a Dask worker).


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale_reason(run: Run, code_version: str, keep_finished: bool = False) -> str | None:
    """None when ``run`` is up to date (stamped result of this code and notebook), else why it must run.

    "This code": the sources of the nbhelpers modules the notebook imports (``notebook_source_version``,
    stamped by the sweep), so editing a module the chapter does not use keeps its results; a stamp
    without it (older sweeps) compares the result's whole-package ``code_version`` with ``code_version``.

    ``keep_finished``: a complete, untouched result is up to date even if the code, the notebook or the
    parameters changed since it was made (to add runs beside committed ones without redoing them)."""
    if not run.result_path.exists():
        return "no result yet"
    if not run.stamp_path.exists():
        return "result not stamped by a finished sweep run"
    try:
        stamp = json.loads(run.stamp_path.read_text())
        result_bytes = run.result_path.read_bytes()
        result = json.loads(result_bytes)
    except (OSError, json.JSONDecodeError):
        return "result or stamp unreadable"
    if stamp.get("result_sha256") != hashlib.sha256(result_bytes).hexdigest():
        return "result changed since it was stamped"
    if keep_finished:
        return None
    if "source_version" in stamp:
        current = results.notebook_source_version(run.notebook)
        if stamp["source_version"] != current:
            return f"code changed ({stamp['source_version']} -> {current})"
    elif result.get("code_version") != code_version:
        return f"code changed ({result.get('code_version')} -> {code_version})"
    if stamp.get("notebook_sha256") != _sha256(run.notebook):
        return "notebook changed"
    if stamp.get("parameters", {}) != json.loads(json.dumps(run.extra_parameters())):
        return f"parameters changed ({stamp.get('parameters', {})} -> {run.extra_parameters()})"
    # stamps written before the data source was recorded carry none: those are kept
    if "data" in stamp and stamp["data"] != run.data:
        return f"data changed ({stamp['data']} -> {run.data})"
    return None


def _failure_message(err: Exception) -> str:
    ename, evalue = getattr(err, "ename", None), getattr(err, "evalue", None)
    if ename is not None:  # PapermillExecutionError / NotebookRunError: the notebook's own exception
        count = getattr(err, "exec_count", "?")
        return f"{ename}: {evalue}" + (f" (cell In [{count}])" if count not in ("?", None) else "")
    return f"{type(err).__name__}: {err}"


@contextmanager
def _process_output_to(stdout_path: Path, stderr_path: Path) -> Iterator[None]:
    """Point this process's file descriptors 1 and 2 at the run's logs while the run lasts.

    The kernel inherits them, so its own messages (and a crash's last words) land in the logs, not on the
    terminal. Only for a process that runs one notebook at a time.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(stdout_path, "a") as out, open(stderr_path, "a") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


# What a run's notebook sees besides the caller's environment (the caller's own settings win): text
# progress bars, so that the run's .stderr.log shows how far it is, updated at most once a minute.
RUN_ENVIRONMENT = {TEXT_PROGRESS_ENV: "1", "TQDM_MININTERVAL": "60", results.KEEP_CHECKPOINTS_ENV: "1"}


@contextmanager
def _run_environment() -> Iterator[None]:
    """Add :data:`RUN_ENVIRONMENT` to ``os.environ`` while a notebook starts and runs, then restore it."""
    added = {k: v for k, v in RUN_ENVIRONMENT.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class NotebookRunError(RuntimeError):
    """A notebook run by the ``python`` engine failed; ``ename``/``evalue`` as papermill reports them."""

    def __init__(self, ename: str, evalue: str, exec_count: int | str = "?") -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.exec_count = ename, evalue, exec_count


def _execute_python(run: Run, stdout: TextIO, stderr: TextIO) -> None:
    """Run the notebook with ``nbhelpers.notebook_runner`` in a child Python process (no Jupyter needed)."""
    env = dict(os.environ)
    # The child starts in the book folder: make sure it imports this nbhelpers.
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "nbhelpers.notebook_runner",
        str(run.notebook),
        str(run.partial_notebook),
        "--parameters-json",
        json.dumps(run.parameters()),
    ]
    proc = subprocess.run(command, cwd=run.notebook.parent, env=env, stdout=stdout, stderr=stderr)
    status = proc.returncode
    if status == 0:
        return
    if run.partial_notebook.exists():
        cells = json.loads(run.partial_notebook.read_text())["cells"]
        for cell in cells:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    count = cell.get("execution_count", "?")
                    raise NotebookRunError(output["ename"], output["evalue"], count)
    stderr.flush()
    last = _last_line(run.stderr_log)
    reason = f": {last}" if last else ""
    message = f"the notebook process exited with status {status}{reason}"
    raise NotebookRunError("NotebookProcessError", message)


def _last_line(path: Path) -> str:
    """The last non-blank line of a log (the runner's own error message, when it failed before any cell)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _lock_path(run: Run) -> Path:
    return run.results_dir / ".locks" / f"{run.name}.lock"


@contextmanager
def _run_lock(run: Run) -> Iterator[str | None]:
    """Hold an exclusive lock on ``run`` while the block runs; yields None, or who holds it already.

    Two sweeps on the same results folder (two terminals, or a local sweep beside a Dask one) would otherwise
    both execute a run and clear each other's staging folder, logs and stamp. The lock is ``flock`` on
    ``<results_dir>/.locks/<run>.lock``: the kernel drops it when its process dies, SIGKILL included, so a
    killed sweep never leaves a stale lock behind. Without ``fcntl`` (not POSIX) runs are not locked.
    """
    try:
        import fcntl
    except ImportError:
        yield None
        return
    path = _lock_path(run)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # another run's release removed the empty folder just now
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that is starting it"
            os.close(fd)
            yield holder
            return
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the holder before us deleted this file as it let go: lock the new one
    try:
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {started}".encode())
        yield None
    finally:
        path.unlink(missing_ok=True)  # while still locked, so no one else locks a file being deleted
        os.close(fd)
        try:
            path.parent.rmdir()  # only succeeds once no other run is locked
        except OSError:
            pass


def execute_run(run: Run, own_process: bool = False) -> RunOutcome:
    """Execute one run with its engine; never raises for a failing notebook (the outcome says why).

    ``own_process``: this process runs nothing else meanwhile, so its output can go to the run's logs too.
    A run that another sweep is executing is left alone (a failed outcome that names that sweep), and one
    that another sweep finished since this one was planned is kept as it is.
    """
    started = time.monotonic()
    with _run_lock(run) as holder:
        if holder is not None:
            message = (
                f"another sweep is executing this run ({holder}), so this one left it alone: run this "
                "command again once that sweep has finished (it skips the run if that sweep completed it)"
            )
            return RunOutcome(run, ok=False, seconds=time.monotonic() - started, message=message)
        if stale_reason(run, results.code_version()) is None:
            message = "finished by another sweep since this one was planned; its result is kept"
            return RunOutcome(run, ok=True, seconds=time.monotonic() - started, message=message)
        return _execute_locked(run, own_process, started)


def _execute_locked(run: Run, own_process: bool, started: float) -> RunOutcome:
    """:func:`execute_run` once this process holds the run's lock."""
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.stamp_path.unlink(missing_ok=True)
    shutil.rmtree(run.staging_dir, ignore_errors=True)  # leftovers of a killed attempt
    for log in (run.stdout_log, run.stderr_log):
        log.write_text("")
    try:
        notebook_sha = _sha256(run.notebook)
        source_version = results.notebook_source_version(run.notebook)
        redirect = _process_output_to(run.stdout_log, run.stderr_log) if own_process else nullcontext()
        # Append mode: the kernel's own output may share these files.
        with (
            redirect,
            _run_environment(),
            open(run.stdout_log, "a") as stdout,
            open(run.stderr_log, "a") as stderr,
        ):
            if run.engine == "python":
                _execute_python(run, stdout, stderr)
            else:
                import papermill

                # log_output would copy the same streams onto the terminal, garbling the progress bar.
                papermill.execute_notebook(
                    run.notebook,
                    run.partial_notebook,
                    parameters=run.parameters(),
                    progress_bar=False,
                    stdout_file=stdout,
                    stderr_file=stderr,
                    cwd=run.notebook.parent,
                )
        staged = json.loads(run.staged_result.read_text())
    except Exception as err:  # the notebook failed, the kernel died, or no result was written
        message = _failure_message(err)
        if isinstance(err, FileNotFoundError) and Path(err.filename or "") == run.staged_result:
            wrote = ", ".join(sorted(p.name for p in run.staging_dir.rglob("*.json"))) or "nothing"
            message = (
                f"the notebook finished but wrote no {run.staged_result.name} (it wrote: {wrote}): it must "
                f"call nbhelpers.results.save_result({run.chapter!r}, dataset, attribute, profile, seed, "
                "metrics, results_dir) with its parameters"
            )
        with open(run.stderr_log, "a") as log:
            log.write(f"\n[sweep] run failed: {message}\n{err}\n")
        if run.partial_notebook.exists():
            os.replace(run.partial_notebook, run.failed_notebook)
        _remove_staging(run)
        return RunOutcome(run, ok=False, seconds=time.monotonic() - started, message=message)
    run.result_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(run.staged_result, run.result_path)
    os.replace(run.partial_notebook, run.output_notebook)
    run.failed_notebook.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    # Written last: its presence is what marks the run as complete.
    results.write_json_atomic(
        run.stamp_path,
        {
            "code_version": staged.get("code_version"),
            "source_version": source_version,
            "notebook": run.notebook.name,
            "notebook_sha256": notebook_sha,
            "result_sha256": _sha256(run.result_path),
            "executed_notebook": run.output_notebook.name,
            "device": run.device,
            "parameters": run.extra_parameters(),
            "data": run.data,
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    _remove_staging(run)
    # The result is in place: the checkpoints the chapter kept (results.KEEP_CHECKPOINTS_ENV) can go.
    checkpoints = results.run_checkpoints_dir(run.chapter, run.dataset, run.attribute, run.profile, run.seed)
    shutil.rmtree(checkpoints, ignore_errors=True)
    return RunOutcome(run, ok=True, seconds=seconds)


def _remove_staging(run: Run) -> None:
    shutil.rmtree(run.staging_dir, ignore_errors=True)
    try:
        run.staging_dir.parent.rmdir()  # only succeeds once no other run is staging
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------------------
# Executors: a local process pool, or a Dask cluster.


def _check_runs_per_gpu(runs_per_gpu: int) -> None:
    if isinstance(runs_per_gpu, bool) or not isinstance(runs_per_gpu, int) or runs_per_gpu < 1:
        raise SweepError(f"--runs-per-gpu must be an integer of at least 1, got {runs_per_gpu!r}")


def local_worker_envs(device: str, jobs: int | None = None, runs_per_gpu: int = 1) -> list[dict[str, str]]:
    """One environment per local worker process (the kernels inherit it).

    CUDA runs get at most ``runs_per_gpu`` workers per visible GPU (default 1: each run has its GPU to
    itself), each pinned to its GPU by ``CUDA_VISIBLE_DEVICES``; more than one lets a run's CPU work
    (libsvm, k-means) overlap another's GPU work. CPU runs get ``jobs`` workers (default 1) that split the
    cores through ``OMP_NUM_THREADS`` unless the user set it.
    """
    _check_runs_per_gpu(runs_per_gpu)
    try:
        resolved = get_device(device)
    except ValueError as err:
        raise SweepError(str(err)) from None
    if runs_per_gpu > 1 and resolved.type != "cuda":
        raise SweepError(
            f"--runs-per-gpu {runs_per_gpu} needs a CUDA GPU, but the device is {resolved.type}: "
            "use --jobs for CPU workers"
        )
    if resolved.type == "cuda":
        import torch

        count = torch.cuda.device_count()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = [g.strip() for g in visible.split(",") if g.strip()][:count] if visible else []
        gpus = gpus or [str(i) for i in range(count)]
        slots = [gpu for _ in range(runs_per_gpu) for gpu in gpus]  # spread over the GPUs first
        return [{"CUDA_VISIBLE_DEVICES": gpu} for gpu in slots[: jobs or len(slots)]]
    jobs = jobs or 1
    if jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
        return [{"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))} for _ in range(jobs)]
    return [{} for _ in range(jobs)]


def _start_worker(env: dict[str, str], sweep_pid: int) -> None:
    """Worker initializer: take environment ``env``, and exit when the sweep process ``sweep_pid`` dies.

    A pool worker busy with a run would otherwise finish it (hours) after its sweep was killed; its kernel
    (ipykernel's parent poller) or notebook runner process then follows it within a second.
    """
    os.environ.clear()
    os.environ.update(env)
    exit_when_gone(sweep_pid)


def _worker(env: dict[str, str]) -> ProcessPoolExecutor:
    """A one-process executor (a worker that dies then costs only its own run) with environment ``env``."""
    # Not "fork": CUDA and threads do not survive it. "forkserver" forks new workers from a clean process
    # that has already imported this module (cheaper than "spawn", which imports torch again each time).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
    else:
        context = multiprocessing.get_context("spawn")
    # The whole environment: a fork server keeps the one it started with.
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=context,
        initializer=_start_worker,
        initargs=({**os.environ, **env}, os.getpid()),
    )


def _run_local(runs: Sequence[Run], envs: Sequence[dict[str, str]]) -> Iterator[RunOutcome]:
    """Run on ``len(envs)`` worker processes; yields outcomes as runs end."""
    workers = [_worker(env) for env in envs]
    idle = list(range(len(workers)))[::-1]
    pending = deque(runs)
    running: dict[Future, tuple[int, Run, float]] = {}
    try:
        while pending or running:
            while idle and pending:
                slot, run = idle.pop(), pending.popleft()
                future = workers[slot].submit(execute_run, run, own_process=True)
                running[future] = (slot, run, time.monotonic())
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                slot, run, started = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    message = (
                        "its worker process died (killed, or out of memory); re-run the sweep to retry it"
                    )
                    outcome = RunOutcome(run, ok=False, seconds=time.monotonic() - started, message=message)
                    if run.partial_notebook.exists():  # keep what papermill saved before the death
                        os.replace(run.partial_notebook, run.failed_notebook)
                    workers[slot].shutdown(wait=False)
                    workers[slot] = _worker(envs[slot])
                except Exception as err:  # e.g. the results folder is not writable: report, go on
                    outcome = RunOutcome(run, False, time.monotonic() - started, _failure_message(err))
                idle.append(slot)
                yield outcome
    finally:
        for worker in workers:
            worker.shutdown(wait=False, cancel_futures=True)


def connect_scheduler(address: str, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` connected to the Dask scheduler at ``address`` (``tcp://host:port``)."""
    match = _SCHEDULER_RE.match(address)
    if match is None or not 0 < int(match.group(3)) < 65536:
        raise SweepError(
            f"malformed scheduler address {address!r}: expected {SCHEDULER_FORM}, e.g. tcp://10.0.0.5:8786"
        )
    try:
        from distributed import Client
    except ImportError:
        raise SweepError(
            "--scheduler needs the optional Dask dependency: pip install distributed "
            "(the version pinned in requirements.txt)"
        ) from None
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise SweepError(
            f"could not connect to a Dask scheduler at {address} within {timeout:g} s ({err}); start one "
            f"there (`dask scheduler`) or fix the address (expected {SCHEDULER_FORM})"
        ) from None


def _run_dask(runs: Sequence[Run], client: Any) -> Iterator[RunOutcome]:
    """Submit every run to the cluster; yields outcomes as runs end."""
    from distributed import as_completed

    batch = uuid.uuid4().hex[:8]
    futures = {client.submit(execute_run, run, key=f"sweep-{batch}-{run.name}"): run for run in runs}
    started = time.monotonic()
    for future in as_completed(futures):
        try:
            yield future.result()
        except Exception as err:  # e.g. KilledWorker: the cluster gave up on the run
            run = futures[future]
            message = f"the cluster lost the run ({type(err).__name__}: {err}); re-run the sweep to retry it"
            yield RunOutcome(run, ok=False, seconds=time.monotonic() - started, message=message)


def sweep(
    plan: Plan,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    connect_timeout: float = 10.0,
    progress: bool = True,
    runs_per_gpu: int = 1,
) -> SweepReport:
    """Execute the runs of ``plan`` that are not up to date; failures are collected, not raised.

    Local by default (``jobs`` worker processes, at most ``runs_per_gpu`` per GPU, see
    :func:`local_worker_envs`), or on the Dask scheduler at ``scheduler`` (``jobs`` is then the cluster's
    business; notebooks and results folders must be shared).
    """
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    _check_runs_per_gpu(runs_per_gpu)
    if scheduler is not None and runs_per_gpu != 1:
        raise SweepError(
            "--runs-per-gpu is for local workers: on a Dask cluster the workers' resources decide"
        )
    code_version = results.code_version()
    stale = [stale_reason(run, code_version, plan.keep_finished) is not None for run in plan.runs]
    todo = [run for run, must_run in zip(plan.runs, stale, strict=True) if must_run]
    skipped = [run for run, must_run in zip(plan.runs, stale, strict=True) if not must_run]
    finished: list[RunOutcome] = []
    failed: list[RunOutcome] = []
    if not todo:
        return SweepReport(finished, failed, skipped)
    if scheduler is None:
        outcomes = _run_local(todo, local_worker_envs(plan.device, jobs, runs_per_gpu))
        client = None
    else:
        client = connect_scheduler(scheduler, connect_timeout)
        outcomes = _run_dask(todo, client)
    try:
        with tqdm(total=len(todo), unit="run", desc="sweep", disable=not progress) as bar:
            for outcome in outcomes:
                (finished if outcome.ok else failed).append(outcome)
                if not outcome.ok:
                    tqdm.write(f"failed: {outcome.run.name}: {outcome.message}", file=sys.stderr)
                elif progress:  # the bar moves only when a run ends: say which, and how long it took
                    how = outcome.message or f"in {outcome.seconds:.0f} s"
                    tqdm.write(f"done: {outcome.run.name} {how}", file=sys.stderr)
                bar.set_postfix(failed=len(failed))
                bar.update()
    finally:
        outcomes.close()
        if client is not None:
            client.close()
    return SweepReport(finished, failed, skipped)


# ---------------------------------------------------------------------------------------------------------
# Command line.


EPILOG = (
    "Each run leaves OUT/CHAPTER__DATASET__ATTRIBUTE__PROFILE__seedSEED.ipynb with .stdout.log and "
    ".stderr.log beside it, and its result in RESULTS/PROFILE/. Finished runs are stamped and skipped until "
    "the code, the notebook or a --param value changes: after a failure or a kill, run the same command "
    "again. "
    "Exit status: 0 all ran, 1 a run failed, 2 bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``nbhelpers sweep``."""
    parser.epilog = EPILOG
    parser.add_argument(
        "--chapters",
        nargs="+",
        metavar="CHAPTER",
        help="chapter stems or numbers, e.g. 03 04 or 05_real_data (default: all sweepable chapters)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="DATASET:ATTRIBUTE",
        help="e.g. celeba:Smiling mnist:0_vs_6, or all (default: all tasks each chapter takes)",
    )
    parser.add_argument("--profile", default="quick", help="run profile: quick or paper (default: quick)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="default: 0")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda, passed to every notebook")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="another papermill parameter for the chapters that declare it, e.g. -p figure8=False or "
        "-p n_attack=200 (repeatable; VALUE is read as a Python literal when it is one)",
    )
    parser.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="papermill (a Jupyter kernel), python (nbhelpers.notebook_runner: no Jupyter needed, e.g. on a "
        "bare GPU host), or auto: papermill where installed (default)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="local worker processes (default: 1 on CPU, one per GPU on CUDA, never more than "
        "--runs-per-gpu per GPU)",
    )
    parser.add_argument(
        "--runs-per-gpu",
        type=int,
        default=1,
        metavar="N",
        help="runs sharing each GPU at once (default 1: a run has its GPU to itself). 2 or 3 let one run's "
        "CPU work (the RBF SVM's libsvm fits, the MFA's k-means start) overlap another's GPU work, if the "
        "GPU's memory holds them all",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"run on the Dask scheduler at {SCHEDULER_FORM} instead of locally (needs `distributed`)",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="SECONDS", help="for --scheduler (default: 10)"
    )
    parser.add_argument(
        "--out", metavar="DIR", help="executed notebooks and logs (default: RESULTS/sweeps/PROFILE)"
    )
    parser.add_argument(
        "--results-dir", metavar="DIR", help="results base (default: $NBHELPERS_RESULTS_DIR or results/)"
    )
    parser.add_argument("--book-dir", metavar="DIR", help="folder of the chapter notebooks (default: book/)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and whether each is up to date")
    parser.add_argument(
        "--keep-finished",
        action="store_true",
        help="count every finished run as up to date even if the code, notebook or --param values changed "
        "since (run only what has no result yet, e.g. beside committed results)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_plan(plan: Plan, dry_run: bool) -> None:
    code_version = results.code_version()
    reasons = [stale_reason(run, code_version, plan.keep_finished) for run in plan.runs]
    todo = sum(reason is not None for reason in reasons)
    first = plan.runs[0]
    runs = f"{len(plan.runs)} run{'s' if len(plan.runs) != 1 else ''}"
    print(f"{runs} ({todo} to run, {len(plan.runs) - todo} up to date)")
    print(f"  profile {first.profile}, device {plan.device}, engine {first.engine}")
    chapter_params = {run.chapter: run.extra_parameters() for run in plan.runs if run.extra}
    for chapter, params in chapter_params.items():
        print(f"  parameters of {chapter}: {', '.join(f'{k}={v!r}' for k, v in params.items())}")
    print(f"  notebooks and logs: {first.out_dir}\n  results: {first.result_path.parent}")
    for note in plan.left_out:
        print(f"  left out: {note}")
    if dry_run:
        for run, reason in zip(plan.runs, reasons, strict=True):
            status = f"run   ({reason})" if reason else "skip  (up to date)"
            print(f"  {run.chapter}  {run.dataset}:{run.attribute}  seed {run.seed}  {status}")


def run(args: argparse.Namespace, tasks_for: TasksFor | None = None) -> int:
    """Carry out parsed ``sweep`` arguments; the exit status: 0 ok, 1 a run failed, 2 bad input."""
    try:
        absolute_folder_environment()
        params = parse_params(getattr(args, "param", None))
        plan = plan_sweep(
            args.chapters,
            args.tasks,
            args.profile,
            args.seeds,
            args.device,
            book_dir=args.book_dir,
            out_dir=args.out,
            results_dir=args.results_dir,
            tasks_for=tasks_for,
            params=params,
            engine=args.engine,
            keep_finished=args.keep_finished,
        )
        _print_plan(plan, args.dry_run)
        if args.dry_run:
            return 0
        report = sweep(
            plan,
            jobs=args.jobs,
            scheduler=args.scheduler,
            connect_timeout=args.connect_timeout,
            progress=not args.no_progress,
            runs_per_gpu=args.runs_per_gpu,
        )
    except (SweepError, NotebookError) as err:
        print(f"nbhelpers sweep: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130
    print(report.summary())
    return 0 if report.ok else 1


def main(argv: Sequence[str] | None = None, *, tasks_for: TasksFor | None = None) -> int:
    """``nbhelpers sweep`` alone: parse ``argv`` and run; ``tasks_for`` replaces :func:`chapter_tasks`."""
    parser = argparse.ArgumentParser(prog="nbhelpers sweep", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv), tasks_for=tasks_for)
