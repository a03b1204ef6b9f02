"""Planning a sweep: the chapters, tasks and runs asked for, and which are stale."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbhelpers.chapters.ids import REAL, is_chapter_id
from nbhelpers.chapters.params import CHAPTER_PARAMETERS, ParameterError, check_values
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import VALID_DEVICES
from nbhelpers.core.io import check_writable_folder
from nbhelpers.core.paths import (
    DATA_DIR_ENV,
    FOLDER_ENVIRONMENT,
    project_root,
)
from nbhelpers.core.paths import results_dir as default_results_dir
from nbhelpers.runs import results
from nbhelpers.runs.notebook_runner import notebook_parameters
from nbhelpers.science.data import BUNDLED_SAMPLE, REAL_DATA_ATTRIBUTES, TASKS

# A chapter can be swept when its papermill ``parameters`` cell declares all of these.
SWEEP_PARAMETERS = ("dataset", "attribute", "profile", "seed", "device", "results_dir")
SCHEDULER_FORM = "tcp://host:port"
# How a run executes its notebook: papermill with a Jupyter kernel, or nbhelpers.runs.notebook_runner in a
# plain Python process (for machines without Jupyter); "auto" takes papermill where it is installed.
ENGINES = ("auto", "papermill", "python")
_SCHEDULER_RE = re.compile(r"^(tcp|tls)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")

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
    """What a sweep did: runs executed (finished or failed), runs skipped as up to date, and runs left for
    later because they did not fit the time budget (with the reason)."""

    finished: list[RunOutcome]
    failed: list[RunOutcome]
    skipped: list[Run]
    left: list[tuple[Run, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.finished)} finished, {len(self.skipped)} up to date, {len(self.failed)} failed"]
        if self.left:
            lines[0] += f", {len(self.left)} left for later (--time-budget)"
        for outcome in self.failed:
            notebook = outcome.notebook if outcome.notebook.exists() else "none (the kernel never started)"
            lines += [
                f"FAILED {outcome.run.name}: {outcome.message}",
                f"  notebook: {notebook}",
                f"  logs:     {outcome.run.stdout_log}, {outcome.run.stderr_log}",
            ]
        for run, reason in self.left:
            lines.append(f"LEFT {run.name}: {reason}")
        if self.left:
            lines.append("run the same command again to do the runs left (finished runs are kept)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# Planning: chapters, tasks, runs.


def chapter_tasks(chapter: str) -> list[Task]:
    """The tasks ``chapter`` takes: chapter 5 its five CelebA attributes, the others every task of
    ``nbhelpers.science.data.TASKS``."""
    tasks = [(str(dataset), str(attribute)) for dataset, attribute in TASKS]
    if chapter == REAL:
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
    notebooks = {p.stem: p.resolve() for p in sorted(book_dir.glob("*.ipynb")) if is_chapter_id(p.stem)}
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


def absolute_folder_environment() -> None:
    """Turn a relative ``$NBHELPERS_*_DIR`` into an absolute path, against the current directory."""
    for name in FOLDER_ENVIRONMENT:
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
        chapter: _checked_params(chapter, {k: v for k, v in params.items() if k in names})
        for chapter, names in declared.items()
    }


def _checked_params(chapter: str, params: dict[str, Any]) -> ChapterParams:
    """A chapter's ``--param`` values as its first cell reads them (``chapters.params``: ``figure8=false`` ->
    False, ``attacks=cw`` -> ["cw"]), so that the runs and their stamps get those; a bad one is refused now,
    before any run starts."""
    if chapter in CHAPTER_PARAMETERS:
        try:
            params = check_values(chapter, params)
        except ParameterError as err:
            raise SweepError(f"--param: {err}") from None
    return tuple(sorted(params.items()))


def check_output_folder(folder: Path, option: str) -> None:
    """Refuse (``SweepError``, naming ``option``) a folder the runs cannot write into: a file, a folder under
    a file, or a folder without write permission."""
    try:
        check_writable_folder(folder)
    except OSError as err:
        raise SweepError(f"{option} {folder}: {err}; pass a writable folder") from None


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
    check_folders: bool = True,
) -> Plan:
    """Every (chapter, task, seed) run of a sweep, validated.

    Defaults: all sweepable chapters of ``<project root>/book``, all their tasks, notebooks and logs in
    ``<results_dir>/sweeps/<profile>``, results in ``<results_dir>/<profile>``. ``tasks_for`` maps a chapter
    stem to the tasks it takes (default :func:`chapter_tasks`; tests pass their own). ``params`` (from
    :func:`parse_params`) go to each chapter that declares them; a run whose stamp records other values
    is stale. ``engine``: see :data:`ENGINES`. ``check_folders``: refuse, before any run, a results or output
    folder that cannot be written (a dry run only reads them).
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
    if check_folders:
        results_option = "--results-dir" if results_dir else "the results folder ($NBHELPERS_RESULTS_DIR)"
        check_output_folder(base, results_option)
        check_output_folder(out, "--out" if out_dir else "the notebooks' folder (RESULTS/sweeps/PROFILE)")
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
