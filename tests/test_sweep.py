"""The sweep command line: plans, resumable and atomic runs, failures, local and Dask execution, bad input.

Runs execute ``tests/data/sweep_book/90_probe.ipynb``, a stand-in chapter that saves
``value = 10 * seed + len(attribute)``, fails for attribute "Fail", and sleeps when the environment says so.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from nbhelpers.core.progress import TEXT_PROGRESS_ENV
from nbhelpers.core.versions import code_version, notebook_source_version
from nbhelpers.runs import manifest, results, sweep
from nbhelpers.runs.cli import SUBCOMMANDS, build_parser
from nbhelpers.runs.notebook_runner import process_alive
from nbhelpers.runs.sweep import estimate as sweep_estimate
from nbhelpers.runs.sweep import execute
from nbhelpers.runs.sweep import plan as sweep_plan
from nbhelpers.runs.sweep.hardware import Hardware
from nbhelpers.science.data import BUNDLED_SAMPLE, REAL_DATA_ATTRIBUTES
from tests.conftest import ROOT, load_script
from tests.data.run_probe_sweep import probe_tasks

PROBE_BOOK = ROOT / "tests" / "data" / "sweep_book"
DRIVER = ROOT / "tests" / "data" / "run_probe_sweep.py"
# The 15 tasks of the book, as nbhelpers.science.data lists them.
BOOK_TASKS = [
    ("celeba", a)
    for a in (
        "Bangs",
        "Black_Hair",
        "Brown_Hair",
        "Heavy_Makeup",
        "High_Cheekbones",
        "Male",
        "Mouth_Slightly_Open",
        "No_Beard",
        "Smiling",
        "Wearing_Earrings",
        "Wearing_Lipstick",
        "Eyeglasses",
    )
] + [("mnist", "0_vs_6"), ("mnist", "2_vs_7"), ("mnist", "4_vs_5")]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A private copy of the probe book; results go to ``<tmp_path>/results``."""
    return Path(shutil.copytree(PROBE_BOOK, tmp_path / "book"))


def options(book: Path, *extra: str) -> list[str]:
    return ["--book-dir", str(book), "--results-dir", str(book.parent / "results"), "--no-progress", *extra]


def result_file(book: Path, dataset: str, attribute: str, seed: int = 0) -> Path:
    return results.result_path("90_probe", dataset, attribute, "quick", seed, book.parent / "results")


def run_file(book: Path, dataset: str, attribute: str, suffix: str, seed: int = 0) -> Path:
    """The executed notebook (suffix ".ipynb", ".failed.ipynb") or a log (".stdout.log") of one run."""
    name = f"90_probe__{dataset}__{attribute}__quick__seed{seed}{suffix}"
    return book.parent / "results" / "sweeps" / "quick" / name


def assert_complete_files(folder: Path) -> set[str]:
    """Every result and stamp under ``folder`` parses (none half-written); their names."""
    names = set()
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".done"):
            json.loads(path.read_text())
            names.add(path.name)
    return names


def executed(log: Path) -> list[str]:
    """The runs that reached the probe's first cell, in order ("dataset:attribute:seed")."""
    return log.read_text().split() if log.exists() else []


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One finished sweep: two tasks, seed 2."""
    base = tmp_path_factory.mktemp("finished")
    book = Path(shutil.copytree(PROBE_BOOK, base / "book"))
    argv = options(book, "--tasks", "mnist:0_vs_6", "CelebA:smiling", "--seeds", "2")
    version = code_version()
    code = sweep.main(argv, tasks_for=probe_tasks)
    return {"book": book, "argv": argv, "code": code, "version": version}


def test_sweep_leaves_one_notebook_result_stamp_and_logs_per_run(finished):
    book = finished["book"]
    assert finished["code"] == 0
    for dataset, attribute in [("mnist", "0_vs_6"), ("celeba", "Smiling")]:
        path = result_file(book, dataset, attribute, seed=2)
        result = json.loads(path.read_text())
        assert (result["chapter"], result["dataset"], result["attribute"]) == ("90_probe", dataset, attribute)
        assert (result["profile"], result["seed"]) == ("quick", 2)
        assert result["metrics"]["value"] == 20 + len(attribute)
        assert result["metrics"]["cwd"] == "book"  # chapters execute inside the book folder
        assert result["metrics"]["device"] == "auto"
        assert result["metrics"]["text_progress"] == "1"  # progress bars as text, into the run's log
        assert result["code_version"] == code_version()
        stamp = json.loads(Path(f"{path}.done").read_text())
        assert stamp["notebook_sha256"] == hashlib.sha256((book / "90_probe.ipynb").read_bytes()).hexdigest()
        assert stamp["result_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        nb = nbformat.read(run_file(book, dataset, attribute, ".ipynb", seed=2), as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert f'attribute = "{attribute}"' in injected[0].source
        assert (
            f"probe stdout {dataset}:{attribute}"
            in run_file(book, dataset, attribute, ".stdout.log", 2).read_text()
        )
        assert (
            f"probe stderr {dataset}:{attribute}"
            in run_file(book, dataset, attribute, ".stderr.log", 2).read_text()
        )
    results_dir = book.parent / "results"
    assert not (results_dir / ".staging").exists()
    assert not list(results_dir.rglob("*.partial.ipynb"))
    assert len(assert_complete_files(results_dir)) == 4


def test_up_to_date_runs_are_skipped_and_dry_run_tells_which(finished, capsys):
    book = finished["book"]
    before = {p: p.read_bytes() for p in (book.parent / "results" / "quick").iterdir()}
    assert code_version() == finished["version"], "nbhelpers was edited during the test"
    capsys.readouterr()
    assert sweep.main(finished["argv"], tasks_for=probe_tasks) == 0
    assert "0 finished, 2 up to date, 0 failed" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before
    dry = options(book, "--tasks", "mnist:0_vs_6", "celeba:Smiling", "--seeds", "2", "3", "--dry-run")
    assert sweep.main(dry, tasks_for=probe_tasks) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "4 runs (2 to run, 2 up to date)" in lines[0]
    assert "  90_probe  celeba:Smiling  seed 2  skip  (up to date)" in lines
    assert "  90_probe  celeba:Smiling  seed 3  run   (no result yet)" in lines
    assert not result_file(book, "celeba", "Smiling", seed=3).exists()


def test_stale_reason_names_what_changed(finished, tmp_path):
    base = Path(shutil.copytree(finished["book"].parent, tmp_path / "copy"))
    plan = sweep.plan_sweep(
        tasks=["celeba:Smiling"],
        seeds=[2],
        book_dir=base / "book",
        results_dir=base / "results",
        tasks_for=probe_tasks,
    )
    (run,) = plan.runs
    current = json.loads(run.result_path.read_text())["code_version"]
    assert sweep.stale_reason(run, current) is None
    # The stamp holds the version of the sources the notebook imports: the package's version is not asked.
    stamp = json.loads(run.stamp_path.read_text())
    assert stamp["source_version"] == notebook_source_version(run.notebook)
    assert sweep.stale_reason(run, "0.0.0+other") is None
    run.stamp_path.write_text(json.dumps({**stamp, "source_version": "0.0.0+other"}))
    assert sweep.stale_reason(run, current) == (
        f"code changed (0.0.0+other -> {notebook_source_version(run.notebook)})"
    )
    assert sweep.stale_reason(run, current, keep_finished=True) is None
    # A stamp of an older sweep, without it: the result's whole-package version decides.
    run.stamp_path.write_text(json.dumps({k: v for k, v in stamp.items() if k != "source_version"}))
    assert sweep.stale_reason(run, current) is None
    assert sweep.stale_reason(run, "0.0.0+other").startswith("code changed")
    assert sweep.stale_reason(run, "0.0.0+other", keep_finished=True) is None
    run.stamp_path.write_text(json.dumps(stamp))

    notebook = run.notebook.read_bytes()
    nb = nbformat.reads(notebook.decode(), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("An edit."))
    nbformat.write(nb, run.notebook)
    assert sweep.stale_reason(run, current) == "notebook changed"
    run.notebook.write_bytes(notebook)

    result = run.result_path.read_bytes()
    run.result_path.write_bytes(result[: len(result) // 2])  # a half-written file
    assert sweep.stale_reason(run, current) == "result or stamp unreadable"
    edited = json.loads(result)
    edited["metrics"]["value"] += 1
    run.result_path.write_text(json.dumps(edited))
    assert sweep.stale_reason(run, current) == "result changed since it was stamped"
    assert sweep.stale_reason(run, current, keep_finished=True) == "result changed since it was stamped"
    run.result_path.write_bytes(result)
    assert sweep.stale_reason(run, current) is None

    run.stamp_path.unlink()
    assert sweep.stale_reason(run, current) == "result not stamped by a finished sweep run"
    run.result_path.unlink()
    assert sweep.stale_reason(run, current) == "no result yet"


def test_the_sweep_deletes_a_runs_checkpoints_only_once_its_result_is_in_place(book):
    done, failed = (
        results.run_checkpoints_dir("90_probe", "celeba", a, "quick", 0) for a in ("Smiling", "Fail")
    )
    for folder in (done, failed):
        folder.mkdir(parents=True)
        (folder / "step.pt").write_bytes(b"kept")
    assert sweep.main(options(book, "--tasks", "celeba:Smiling", "celeba:Fail"), tasks_for=probe_tasks) == 1
    assert result_file(book, "celeba", "Smiling").exists() and not done.exists()
    assert (failed / "step.pt").read_bytes() == b"kept"  # a failed run resumes from its checkpoints


def test_switching_the_data_folder_reruns(finished, tmp_path, monkeypatch):
    base = Path(shutil.copytree(finished["book"].parent, tmp_path / "copy"))

    def planned_run() -> sweep.Run:
        (run,) = sweep.plan_sweep(
            tasks=["celeba:Smiling"],
            seeds=[2],
            book_dir=base / "book",
            results_dir=base / "results",
            tasks_for=probe_tasks,
        ).runs
        return run

    run = planned_run()
    current = json.loads(run.result_path.read_text())["code_version"]
    stamp = json.loads(run.stamp_path.read_text())
    assert stamp["data"] == run.data == sweep.data_source({})
    assert sweep.stale_reason(run, current) is None
    full = tmp_path / "full data"
    (full / "img_align_celeba").mkdir(parents=True)
    (full / "mnist.npz").write_bytes(b"abc")
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(full))
    moved = planned_run()
    # named by what it holds, not by its path (which differs between machines holding the same data)
    assert moved.data == "data folder full data: img_align_celeba/ (0 entries), mnist.npz (3 bytes)"
    assert sweep.stale_reason(moved, current) == f"data changed ({stamp['data']} -> {moved.data})"
    assert sweep.stale_reason(moved, current, keep_finished=True) is None
    (full / "mnist.npz").write_bytes(b"abcd")  # other data in the same folder
    assert planned_run().data.endswith("mnist.npz (4 bytes)")
    monkeypatch.delenv("NBHELPERS_DATA_DIR")
    assert planned_run().data == BUNDLED_SAMPLE
    # A stamp written before the data source was recorded is kept.
    run.stamp_path.write_text(json.dumps({k: v for k, v in stamp.items() if k != "data"}))
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(full))
    assert sweep.stale_reason(planned_run(), current) is None


def test_relative_folders_are_made_absolute_before_the_runs_start(tmp_path, monkeypatch):
    # The chapters run inside the book folder: a relative path would point somewhere else there.
    monkeypatch.chdir(tmp_path)
    for name in ("NBHELPERS_DATA_DIR", "NBHELPERS_CACHE_DIR", "NBHELPERS_CHECKPOINTS_DIR"):
        monkeypatch.setenv(name, f"rel/{name.lower()}")
    monkeypatch.setenv("NBHELPERS_RESULTS_DIR", str(tmp_path / "already absolute"))
    sweep.absolute_folder_environment()
    assert os.environ["NBHELPERS_DATA_DIR"] == str(tmp_path / "rel" / "nbhelpers_data_dir")
    assert os.environ["NBHELPERS_CHECKPOINTS_DIR"] == str(tmp_path / "rel" / "nbhelpers_checkpoints_dir")
    assert os.environ["NBHELPERS_RESULTS_DIR"] == str(tmp_path / "already absolute")
    assert sweep.parse_params(["data_dir=data/celeba"]) == {"data_dir": str(tmp_path / "data" / "celeba")}
    assert sweep.parse_params(["data_dir="]) == {"data_dir": ""}  # empty: $NBHELPERS_DATA_DIR or the sample


def test_param_reaches_the_notebook_and_a_new_value_reruns(finished, tmp_path, capsys):
    base = Path(shutil.copytree(finished["book"].parent, tmp_path / "copy"))
    argv = options(base / "book", "--tasks", "celeba:Smiling", "--seeds", "2")
    smiling = result_file(base / "book", "celeba", "Smiling", seed=2)
    capsys.readouterr()
    assert sweep.main([*argv, "-p", "scale=100"], tasks_for=probe_tasks) == 0
    out = capsys.readouterr().out
    assert "(1 to run, 0 up to date)" in out and "parameters of 90_probe: scale=100" in out
    assert json.loads(smiling.read_text())["metrics"]["value"] == 200 + len("Smiling")
    assert json.loads(Path(f"{smiling}.done").read_text())["parameters"] == {"scale": 100}
    assert sweep.main([*argv, "--param", "scale=100"], tasks_for=probe_tasks) == 0
    assert "0 finished, 1 up to date" in capsys.readouterr().out
    # Back to the notebook's default: the stamp records scale=100, so the run is stale again.
    assert sweep.main([*argv, "--dry-run"], tasks_for=probe_tasks) == 0
    assert "run   (parameters changed ({'scale': 100} -> {}))" in capsys.readouterr().out
    assert sweep.main([*argv, "--keep-finished"], tasks_for=probe_tasks) == 0
    assert "0 finished, 1 up to date" in capsys.readouterr().out
    assert json.loads(smiling.read_text())["metrics"]["value"] == 200 + len("Smiling")


def test_text_progress_env_switches_the_bars_to_text():
    check = "from nbhelpers.core.progress import tqdm; print(tqdm.__module__)"
    modules = {}
    for value in ("1", "0"):
        env = {**os.environ, TEXT_PROGRESS_ENV: value}
        out = subprocess.run(
            [sys.executable, "-c", check], env=env, capture_output=True, text=True, check=True
        )
        modules[value] = out.stdout.strip()
    assert modules["1"] == "tqdm.std" and modules["0"] != "tqdm.std"  # "0": tqdm.auto's choice


def test_parse_params_reads_literals_and_keeps_other_text():
    assert sweep.parse_params(["figure8=False", "n_attack=200", 'attacks=["ddn"]', "name=Smiling"]) == {
        "figure8": False,
        "n_attack": 200,
        "attacks": ["ddn"],
        "name": "Smiling",
    }
    assert sweep.parse_params(None) == {}
    with pytest.raises(sweep.SweepError, match="a set cannot be passed to a notebook"):
        sweep.parse_params(["scale={1, 2}"])


def test_failing_runs_are_reported_after_the_others_finish(book, capsys):
    # A chapter that saves its result under another chapter's name: finishes, but fails the run.
    shutil.copy(book / "90_probe.ipynb", book / "92_misnamed.ipynb")

    def tasks_for(chapter: str) -> list[tuple[str, str]]:
        return probe_tasks(chapter) if chapter == "90_probe" else [("celeba", "Smiling")]

    argv = options(book, "--chapters", "90", "92", "--tasks", "celeba:Fail", "celeba:Smiling", "--jobs", "2")
    assert sweep.main(argv, tasks_for=tasks_for) == 1
    out = capsys.readouterr().out
    assert "left out: 92_misnamed does not take celeba:Fail" in out
    assert "1 finished, 0 up to date, 2 failed" in out
    failed_notebook = run_file(book, "celeba", "Fail", ".failed.ipynb")
    assert "FAILED 90_probe__celeba__Fail__quick__seed0: RuntimeError: probe failure requested" in out
    assert f"notebook: {failed_notebook}" in out
    errors = [
        output
        for cell in nbformat.read(failed_notebook, as_version=4).cells
        for output in cell.get("outputs", [])
        if output.output_type == "error"
    ]
    assert [e.ename for e in errors] == ["RuntimeError"]
    assert "probe failure requested" in run_file(book, "celeba", "Fail", ".stderr.log").read_text()
    assert (
        "FAILED 92_misnamed__celeba__Smiling__quick__seed0: the notebook finished but wrote no "
        "92_misnamed__celeba__Smiling__seed0.json (it wrote: 90_probe__celeba__Smiling__seed0.json)"
    ) in " ".join(out.split())
    smiling = result_file(book, "celeba", "Smiling")
    assert json.loads(smiling.read_text())["metrics"]["value"] == len("Smiling")
    # Only the finished run left a result: neither the failure nor the misnamed file leaked in.
    assert assert_complete_files(book.parent / "results") == {smiling.name, f"{smiling.name}.done"}


def test_python_engine_names_why_the_runner_stopped_before_any_cell(book, tmp_path, monkeypatch):
    (run,) = sweep.plan_sweep(
        tasks=["celeba:Smiling"],
        book_dir=book,
        results_dir=book.parent / "results",
        tasks_for=probe_tasks,
        engine="python",
    ).runs
    # a runner that stops before any cell, as it does for a notebook it cannot read
    fake, pythonpath = tmp_path / "python", tmp_path / "pythonpath"
    message = "nbhelpers.runs.notebook_runner: error: cannot read notebook x"
    fake.write_text(f"#!/bin/sh\necho \"$PYTHONPATH\" > '{pythonpath}'\necho '{message}' >&2\nexit 2\n")
    fake.chmod(0o755)
    monkeypatch.setattr(execute.sys, "executable", str(fake))
    outcome = sweep.execute_run(run)
    assert not outcome.ok and not run.result_path.exists()
    assert outcome.message == (
        "NotebookProcessError: the notebook process exited with status 2: "
        "nbhelpers.runs.notebook_runner: error: cannot read notebook x"
    )
    # the runner starts in the book folder: the folder holding this nbhelpers comes first on its path
    assert pythonpath.read_text().strip().split(os.pathsep)[0] == str(ROOT)
    # a notebook that became unreadable after planning fails its run instead of the sweep
    run.notebook.write_text("not a notebook")
    outcome = sweep.execute_run(run)
    assert not outcome.ok and "JSONDecodeError" in outcome.message


def test_python_engine_runs_without_jupyter_and_reports_failures(book, capsys, monkeypatch):
    # Hide papermill: "auto" must fall back to the python engine, "papermill" must say what to install.
    real_find_spec = sweep_plan.importlib.util.find_spec
    monkeypatch.setattr(
        sweep_plan.importlib.util,
        "find_spec",
        lambda name: None if name == "papermill" else real_find_spec(name),
    )
    assert sweep.main(options(book, "--engine", "papermill"), tasks_for=probe_tasks) == 2
    assert "engine 'papermill' needs papermill" in capsys.readouterr().err
    argv = options(book, "--tasks", "celeba:Smiling", "celeba:Fail", "-p", "scale=7", "--seeds", "1")
    assert sweep.main(argv, tasks_for=probe_tasks) == 1
    out = capsys.readouterr().out
    assert "engine python" in out and "1 finished, 0 up to date, 1 failed" in out
    assert "FAILED 90_probe__celeba__Fail__quick__seed1: RuntimeError: probe failure requested" in out
    smiling = result_file(book, "celeba", "Smiling", seed=1)
    result = json.loads(smiling.read_text())
    assert result["metrics"]["value"] == 7 + len("Smiling") and result["metrics"]["cwd"] == "book"
    assert result["metrics"]["text_progress"] == "1" and TEXT_PROGRESS_ENV not in os.environ
    nb = json.loads(run_file(book, "celeba", "Smiling", ".ipynb", seed=1).read_text())
    injected = [c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert "attribute = 'Smiling'" in injected[0]["source"] and "scale = 7" in injected[0]["source"]
    streams = [o["text"] for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "stream"]
    assert "probe stdout celeba:Smiling\n" in streams and "probe stderr celeba:Smiling\n" in streams
    assert "probe stdout celeba:Smiling" in run_file(book, "celeba", "Smiling", ".stdout.log", 1).read_text()
    failed = json.loads(run_file(book, "celeba", "Fail", ".failed.ipynb", seed=1).read_text())
    errors = [o for c in failed["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["ename"] for e in errors] == ["RuntimeError"]
    assert assert_complete_files(book.parent / "results") == {smiling.name, f"{smiling.name}.done"}


def _wait_for_marker(marker: Path, proc: subprocess.Popen, timeout: float = 180.0) -> dict[str, int]:
    """The pids the sleeping probe wrote: its kernel and the sweep worker that runs it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists():
            try:
                return json.loads(marker.read_text())
            except json.JSONDecodeError:  # caught mid-write
                pass
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended before the slow run started:\n{proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError(f"the slow run did not start within {timeout} s")


def _wait_until_gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):  # gone, or a zombie waiting to be reaped
            return
        time.sleep(0.2)
    raise AssertionError(f"process {pid} (a sweep worker or its kernel) outlived its sweep by {timeout} s")


def _start_sweep_sleeping_on_slow(argv: list[str], cwd: Path, log: Path, marker: Path) -> subprocess.Popen:
    """The probe sweep as its own process, its "Slow" run sleeping once it has written ``marker``."""
    env = {
        **os.environ,
        "SWEEP_PROBE_LOG": str(log),
        "SWEEP_PROBE_SLEEP_ON": "Slow",
        "SWEEP_PROBE_MARKER": str(marker),
    }
    return subprocess.Popen(
        [sys.executable, str(DRIVER), *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so a test can kill it with its workers
    )


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX signals")
@pytest.mark.parametrize(
    ("victim", "engine"),
    [
        ("worker", "papermill"),
        ("sweep", "papermill"),
        ("worker", "python"),
        ("main", "papermill"),
        ("main", "python"),
    ],
)
def test_killed_sweep_resumes_with_only_the_missing_runs(book, tmp_path, monkeypatch, victim, engine):
    """SIGKILL the worker running a (sleeping) run, or the whole sweep (its process group), or SIGTERM the
    sweep's own process alone (`kill PID`); then re-run the same command.

    No process may outlive its sweep: not the worker, not the kernel (with the python engine, the notebook
    runner's process)."""
    log, marker = tmp_path / "executed.log", tmp_path / "in_flight.json"
    version = code_version()
    tasks = ["mnist:0_vs_6", "celeba:Slow", "celeba:Smiling"]
    argv = options(book, "--tasks", *tasks, "--jobs", "1", "--engine", engine)
    proc = _start_sweep_sleeping_on_slow(argv, tmp_path, log, marker)
    try:
        pids = _wait_for_marker(marker, proc)
        assert pids["worker"] != proc.pid  # runs execute in worker processes
        if victim == "worker":
            os.kill(pids["worker"], signal.SIGKILL)
        elif victim == "sweep":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=180)
        _wait_until_gone(pids["worker"])
        _wait_until_gone(pids["kernel"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    results_dir = book.parent / "results"
    first = "90_probe__mnist__0_vs_6__seed0.json"
    if victim == "worker":  # the sweep goes on with the next run, then reports the lost one
        assert proc.returncode == 1, out + err
        assert "FAILED 90_probe__celeba__Slow__quick__seed0: its worker process died" in out
        assert f"notebook: {run_file(book, 'celeba', 'Slow', '.failed.ipynb')}" in out
        assert executed(log) == ["mnist:0_vs_6:0", "celeba:Slow:0", "celeba:Smiling:0"]
        done = {
            first,
            f"{first}.done",
            "90_probe__celeba__Smiling__seed0.json",
            "90_probe__celeba__Smiling__seed0.json.done",
        }
        missing = ["celeba:Slow:0"]
    else:
        assert proc.returncode == -(signal.SIGKILL if victim == "sweep" else signal.SIGTERM)
        assert executed(log) == ["mnist:0_vs_6:0", "celeba:Slow:0"]
        done = {first, f"{first}.done"}
        missing = ["celeba:Slow:0", "celeba:Smiling:0"]
    assert assert_complete_files(results_dir) == done
    assert {p.name for p in (results_dir / "quick").iterdir()} == done
    first_bytes = (results_dir / "quick" / first).read_bytes()

    before = executed(log)
    assert code_version() == version, "nbhelpers was edited during the test: every run is stale"
    monkeypatch.setenv("SWEEP_PROBE_LOG", str(log))
    assert sweep.main(argv, tasks_for=probe_tasks) == 0
    assert executed(log) == before + missing
    assert (results_dir / "quick" / first).read_bytes() == first_bytes
    plan = sweep.plan_sweep(tasks=tasks, **_dirs(book), tasks_for=probe_tasks, engine=engine)
    assert [sweep.stale_reason(r, code_version()) for r in plan.runs] == [None, None, None]
    assert len(assert_complete_files(results_dir)) == 6
    assert not list(results_dir.rglob("*.partial.ipynb"))
    assert not (results_dir / ".staging").exists()


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX signals")
def test_a_run_that_another_sweep_is_executing_is_left_alone(book, tmp_path, monkeypatch, capsys):
    """A second sweep over the same results reports the run as taken by the first (naming its process) and
    touches none of its files; once the first is SIGKILLed its lock is gone and the run executes."""
    log, marker = tmp_path / "executed.log", tmp_path / "in_flight.json"
    argv = options(book, "--tasks", "celeba:Slow", "--jobs", "1", "--engine", "python")
    first = _start_sweep_sleeping_on_slow(argv, tmp_path, log, marker)
    (run,) = sweep.plan_sweep(
        tasks=["celeba:Slow"], **_dirs(book), tasks_for=probe_tasks, engine="python"
    ).runs
    try:
        pids = _wait_for_marker(marker, first)
        lock = book.parent / "results" / ".locks" / f"{run.name}.lock"
        assert lock.read_text().startswith(f"pid {pids['worker']} on ")  # the first sweep is mid-run
        first_log = run.stdout_log.read_text()
        assert "probe stdout celeba:Slow" in first_log

        monkeypatch.setenv("SWEEP_PROBE_LOG", str(log))
        capsys.readouterr()
        assert sweep.main(argv, tasks_for=probe_tasks) == 1
        out = capsys.readouterr().out
        assert f"FAILED {run.name}: another sweep is executing this run (pid {pids['worker']} on " in out
        assert "run this command again once that sweep has finished" in out
        assert executed(log) == ["celeba:Slow:0"]  # not executed twice
        assert run.stdout_log.read_text() == first_log and lock.exists()
        assert not run.failed_notebook.exists()

        os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=60)
        _wait_until_gone(pids["worker"])
        _wait_until_gone(pids["kernel"])
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    # the kernel dropped the dead sweep's lock: nothing to clean up by hand
    assert sweep.main(argv, tasks_for=probe_tasks) == 0
    assert executed(log) == ["celeba:Slow:0", "celeba:Slow:0"]
    assert sweep.stale_reason(run, code_version()) is None
    assert not (book.parent / "results" / ".locks").exists()
    assert not (book.parent / "results" / ".staging").exists()


def test_a_run_finished_by_another_sweep_since_planning_is_kept(book, tmp_path, monkeypatch):
    log = tmp_path / "executed.log"
    monkeypatch.setenv("SWEEP_PROBE_LOG", str(log))
    planned = sweep.plan_sweep(
        tasks=["celeba:Smiling"], **_dirs(book), tasks_for=probe_tasks, engine="python"
    )
    (run,) = planned.runs
    assert sweep.stale_reason(run, code_version()) == "no result yet"
    # another sweep, planned later, finishes the run first
    report = sweep.sweep(
        sweep.plan_sweep(tasks=["celeba:Smiling"], **_dirs(book), tasks_for=probe_tasks, engine="python"),
        jobs=1,
        progress=False,
    )
    assert len(report.finished) == 1 and report.ok
    result_bytes, stamp_bytes = run.result_path.read_bytes(), run.stamp_path.read_bytes()

    outcome = sweep.execute_run(run)
    assert outcome.ok
    assert outcome.message == "finished by another sweep since this one was planned; its result is kept"
    assert executed(log) == ["celeba:Smiling:0"]
    assert run.result_path.read_bytes() == result_bytes and run.stamp_path.read_bytes() == stamp_bytes
    assert not (book.parent / "results" / ".locks").exists()


def _tagged_processes(tag: str) -> dict[int, str]:
    """Pid -> command line of the live (not zombie) processes whose environment holds ``SWEEP_TEST_TAG=tag``
    (Linux /proc). Kernels start their own sessions, so the environment, which every descendant
    inherits, is what finds them all."""
    found, marker = {}, f"SWEEP_TEST_TAG={tag}".encode()
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if marker not in (proc_dir / "environ").read_bytes().split(b"\0"):
                continue
            cmdline = (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if process_alive(int(proc_dir.name)):
            found[int(proc_dir.name)] = cmdline
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("engine", ["papermill", "python"])
def test_finished_sweep_leaves_no_process_behind(book, tmp_path, engine):
    """Once the sweep command has exited, nothing it started (workers, fork server, kernels) lives on."""
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    argv = options(book, "--tasks", "mnist:0_vs_6", "celeba:Smiling", "--engine", engine)
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), *argv],
        cwd=tmp_path,
        env={**os.environ, "SWEEP_PROBE_LOG": str(tmp_path / "executed.log"), "SWEEP_TEST_TAG": tag},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    assert executed(tmp_path / "executed.log") == ["mnist:0_vs_6:0", "celeba:Smiling:0"]
    deadline = time.monotonic() + 30
    while (left := _tagged_processes(tag)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # do not leave them to the other tests
        os.kill(pid, signal.SIGKILL)
    assert left == {}, "processes outlived their sweep by 30 s"


def _dirs(book: Path) -> dict[str, Path]:
    return {"book_dir": book, "results_dir": book.parent / "results"}


def test_dask_scheduler_runs_on_a_local_cluster(book, capsys):
    distributed = pytest.importorskip(
        "distributed", reason="the --scheduler path needs the optional `distributed`"
    )
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=":0"
    )
    with cluster:
        argv = options(
            book, "--tasks", "mnist:0_vs_6", "celeba:Smiling", "--scheduler", cluster.scheduler_address
        )
        assert sweep.main(argv, tasks_for=probe_tasks) == 0
    assert "2 finished, 0 up to date, 0 failed" in capsys.readouterr().out
    for dataset, attribute in [("mnist", "0_vs_6"), ("celeba", "Smiling")]:
        path = result_file(book, dataset, attribute)
        assert json.loads(path.read_text())["metrics"]["value"] == len(attribute)
        assert Path(f"{path}.done").exists()
        assert run_file(book, dataset, attribute, ".ipynb").exists()
    plan = sweep.plan_sweep(tasks=["mnist:0_vs_6", "celeba:Smiling"], **_dirs(book), tasks_for=probe_tasks)
    assert [sweep.stale_reason(r, code_version()) for r in plan.runs] == [None, None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--chapters", "07"], "unknown chapter '07': valid chapters are 90_probe"),
        (["--chapters", "91"], "chapter 91_no_sweep cannot be swept: its parameters cell lacks dataset"),
        (
            ["--tasks", "celeba:Nope"],
            "unknown task 'celeba:Nope' for chapters 90_probe: valid tasks are celeba:Fail, celeba:Slow",
        ),
        (["--tasks", "celeba:Slo"], "unknown task 'celeba:Slo' (did you mean 'celeba:Slow'?) for chapters"),
        (["--tasks", "Smiling"], "malformed task 'Smiling': write dataset:attribute"),
        (["--tasks", "all", "celeba:Smiling"], "--tasks all cannot be mixed with named tasks"),
        (["--profile", "huge"], "unknown profile 'huge': valid profiles are 'quick', 'paper'"),
        (["--device", "tpu"], "unknown device 'tpu': valid devices are auto, cpu, cuda"),
        (["--seeds", "-1"], "seeds must be one or more non-negative integers"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--runs-per-gpu", "0"], "--runs-per-gpu must be an integer of at least 1, got 0"),
        (
            ["--runs-per-gpu", "2", "--scheduler", "tcp://127.0.0.1:8786"],
            "--runs-per-gpu is for local workers",
        ),
        (
            ["--scheduler", "10.0.0.5:8786"],
            "malformed scheduler address '10.0.0.5:8786': expected tcp://host:port",
        ),
        (["--scheduler", "tcp://host:99999"], "expected tcp://host:port"),
        (["-p", "scale"], "malformed parameter 'scale': write NAME=VALUE"),
        (["-p", "seed=3"], "parameter 'seed' is set by the sweep itself"),
        (["-p", "scale=1", "-p", "scale=2"], "parameter 'scale' is given twice"),
        (
            ["-p", "figure8=False"],
            "unknown parameter 'figure8': no chosen chapter declares it (they take 90_probe: scale)",
        ),
    ],
)
def test_bad_input_is_refused_with_the_valid_choices(book, capsys, extra, message):
    assert sweep.main(options(book, *extra), tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbhelpers sweep: error: ") and message in err, err
    assert not (book.parent / "results" / "quick").exists()


def test_a_results_folder_that_is_a_file_is_refused_up_front(book, tmp_path, capsys):
    target = tmp_path / "results_file"
    target.write_text("not a folder")
    argv = ["--book-dir", str(book), "--results-dir", str(target), "--no-progress"]
    assert sweep.main(argv, tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert f"nbhelpers sweep: error: --results-dir {target}: {target} is a file, not a folder" in err, err
    assert "pass a writable folder" in err


def test_a_results_folder_from_the_environment_that_is_a_file_is_named(book, tmp_path, capsys, monkeypatch):
    target = tmp_path / "results_file"
    target.write_text("not a folder")
    monkeypatch.setenv("NBHELPERS_RESULTS_DIR", str(target))
    assert sweep.main(["--book-dir", str(book), "--no-progress"], tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert f"the results folder ($NBHELPERS_RESULTS_DIR) {target}: {target} is a file" in err, err


def test_an_unwritable_results_folder_is_refused_up_front(book, capsys, monkeypatch):
    import tempfile

    from nbhelpers.core import io

    results_dir = book.parent / "results"
    results_dir.mkdir()
    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # chmod does not stop root, who runs some test machines
        if dir is not None and Path(dir) == results_dir:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(io.tempfile, "TemporaryFile", read_only)
    assert sweep.main(options(book), tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert f"--results-dir {results_dir}: {results_dir} is not writable (Permission denied)" in err, err
    assert not list(results_dir.iterdir())  # no run started
    assert sweep.main(options(book, "--dry-run"), tasks_for=probe_tasks) == 0  # a dry run only reads


def test_an_out_folder_that_is_a_file_or_under_one_is_refused_up_front(book, tmp_path, capsys):
    target = tmp_path / "out_file"
    target.write_text("not a folder")
    assert sweep.main(options(book, "--out", str(target)), tasks_for=probe_tasks) == 2
    assert f"--out {target}: {target} is a file, not a folder" in capsys.readouterr().err
    assert sweep.main(options(book, "--out", str(target / "sub")), tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert (
        f"--out {target / 'sub'}: {target / 'sub'} cannot be created: {target}, on its path, is a file" in err
    )
    assert not (book.parent / "results").exists()


def test_chapter_params_are_read_as_the_chapter_reads_them(tmp_path):
    """``-p figure8=false`` reaches chapter 4 (and its stamp) as False, ``-p attacks=cw`` as ["cw"]."""
    params = sweep.parse_params(["figure8=false", "attacks=cw", "sweep_attacks=ddn,fmn", "n_attack=200"])
    assert params["figure8"] == "false" and params["attacks"] == "cw"  # what the command line holds
    plan = sweep.plan_sweep(
        ["04"],
        ["celeba:Smiling"],
        book_dir=ROOT / "book",
        results_dir=tmp_path / "results",
        params=params,
        engine="python",
    )
    (run,) = plan.runs
    assert run.extra_parameters() == {
        "attacks": ["cw"],
        "figure8": False,
        "n_attack": 200,
        "sweep_attacks": ["ddn", "fmn"],
    }
    assert run.parameters()["figure8"] is False


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("figure8=maybe", "parameter figure8='maybe': expected True or False"),
        ("attacks=cw,pgd", "parameter attacks='cw,pgd': unknown name(s) ['pgd']"),
        ("n_attack=-5", "parameter n_attack=-5: expected an integer >= 1 or None"),
    ],
)
def test_bad_chapter_params_are_refused_before_any_run(tmp_path, capsys, param, message):
    argv = ["--book-dir", str(ROOT / "book"), "--results-dir", str(tmp_path / "results"), "--chapters", "04"]
    # --dry-run: refused while planning; were it not, a dry run still starts no chapter (nor would this test)
    assert sweep.main([*argv, "--tasks", "celeba:Smiling", "--dry-run", "-p", param]) == 2
    err = capsys.readouterr().err
    assert "nbhelpers sweep: error: --param: 04_learned_classifiers: " + message in err, err
    assert not (tmp_path / "results").exists()


def test_missing_or_empty_book_folder_is_refused(tmp_path, capsys):
    assert sweep.main(["--book-dir", str(tmp_path / "nope")], tasks_for=probe_tasks) == 2
    assert "does not exist: pass --book-dir" in capsys.readouterr().err
    assert sweep.main(["--book-dir", str(tmp_path)], tasks_for=probe_tasks) == 2
    assert "no chapter notebook in" in capsys.readouterr().err


def test_unreachable_scheduler_says_it_could_not_connect(book, capsys):
    pytest.importorskip("distributed", reason="the --scheduler path needs the optional `distributed`")
    address = f"tcp://127.0.0.1:{_free_port()}"
    argv = options(book, "--scheduler", address, "--connect-timeout", "1")
    assert sweep.main(argv, tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert f"could not connect to a Dask scheduler at {address} within 1 s" in err
    assert "expected tcp://host:port" in err


def test_scheduler_without_distributed_says_how_to_install(book, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    assert sweep.main(options(book, "--scheduler", "tcp://127.0.0.1:8786"), tasks_for=probe_tasks) == 2
    assert (
        "--scheduler needs the optional Dask dependency: pip install distributed" in capsys.readouterr().err
    )


def test_cuda_workers_get_one_gpu_each(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert sweep.local_worker_envs("auto") == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]
    assert len(sweep.local_worker_envs("cuda", jobs=8)) == 2  # never two jobs on one GPU
    assert sweep.local_worker_envs("cuda", jobs=1) == [{"CUDA_VISIBLE_DEVICES": "0"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the user's choice of GPUs is kept
    assert sweep.local_worker_envs("cuda") == [{"CUDA_VISIBLE_DEVICES": "3"}, {"CUDA_VISIBLE_DEVICES": "5"}]
    # Sharing is asked for: up to that many runs per GPU, spread over the GPUs first.
    shared = sweep.local_worker_envs("cuda", runs_per_gpu=2)
    assert [env["CUDA_VISIBLE_DEVICES"] for env in shared] == ["3", "5", "3", "5"]
    assert [env["CUDA_VISIBLE_DEVICES"] for env in sweep.local_worker_envs("cuda", 3, 2)] == ["3", "5", "3"]
    with pytest.raises(sweep.SweepError, match="--runs-per-gpu must be an integer of at least 1, got 0"):
        sweep.local_worker_envs("cuda", runs_per_gpu=0)


def test_cpu_workers_share_the_cores(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert sweep.local_worker_envs("auto") == [{}]
    assert sweep.local_worker_envs("cpu", jobs=4) == [{"OMP_NUM_THREADS": "2"}] * 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert sweep.local_worker_envs("cpu", jobs=4) == [{}] * 4
    with pytest.raises(sweep.SweepError, match="no CUDA GPU is available"):
        sweep.local_worker_envs("cuda")
    with pytest.raises(sweep.SweepError, match="needs a CUDA GPU, but the device is cpu: use --jobs"):
        sweep.local_worker_envs("auto", runs_per_gpu=2)


@pytest.fixture
def book_tasks(monkeypatch):
    """The book's task list as the sweep sees it (``TASKS`` where ``chapter_tasks`` reads it)."""
    monkeypatch.setattr(sweep_plan, "TASKS", BOOK_TASKS)


def test_real_data_chapter_takes_only_its_five_celeba_attributes(book, book_tasks, capsys):
    assert sweep.chapter_tasks("05_real_data") == [
        ("celeba", a) for a in ("Bangs", "Heavy_Makeup", "Male", "Smiling", "Eyeglasses")
    ]
    assert sweep.chapter_tasks("03_bayes_robustness") == BOOK_TASKS
    shutil.copy(book / "90_probe.ipynb", book / "05_real_data.ipynb")
    assert sweep.main(options(book, "--chapters", "5", "90", "--dry-run")) == 0
    assert "20 runs (20 to run, 0 up to date)" in capsys.readouterr().out
    assert (
        sweep.main(
            options(book, "--chapters", "05_real_data", "90_probe", "--tasks", "mnist:4_vs_5", "--dry-run")
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "1 run (1 to run, 0 up to date)" in out and "left out: 05_real_data does not take mnist:4_vs_5" in out
    )
    assert sweep.main(options(book, "--chapters", "05", "--tasks", "mnist:4_vs_5")) == 2
    err = capsys.readouterr().err
    assert "unknown task 'mnist:4_vs_5' for chapters 05_real_data: valid tasks are celeba:Bangs," in err


def test_real_task_list_covers_the_real_data_chapter():
    assert len(sweep.chapter_tasks("05_real_data")) == len(REAL_DATA_ATTRIBUTES)


def test_command_line_lists_subcommands_and_sweep_options(book, book_tasks, capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "nbhelpers", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    listed = " ".join(proc.stdout.split())  # argparse wraps long lines
    assert f"sweep {sweep.HELP}" in listed
    assert list(SUBCOMMANDS) == ["sweep", "export-dataset", "checkpoints", "record", "score"]
    for name, module in SUBCOMMANDS.items():
        assert f"{name} {importlib.import_module(module).HELP}" in listed
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["sweep", "--help"])
    assert exit_info.value.code == 0
    usage = capsys.readouterr().out
    for option in (
        "--chapters",
        "--tasks",
        "--profile",
        "--seeds",
        "--device",
        "--jobs",
        "--scheduler",
        "--out",
    ):
        assert option in usage
    args = build_parser().parse_args(
        ["sweep", *options(book, "--tasks", "mnist:2_vs_7", "--seeds", "0", "1", "--dry-run")]
    )
    assert args.handler(args) == 0
    assert "2 runs (2 to run, 0 up to date)" in capsys.readouterr().out


def test_record_is_a_subcommand_and_wants_a_command(tmp_path, capsys):
    """``nbhelpers record`` (was ``python -m nbhelpers.summary``): run by the command line, refusing to run
    nothing; running a command is tested with the manifest (tests/test_summary.py)."""
    args = build_parser().parse_args(["record", "--results-dir", str(tmp_path), "--", "true"])
    assert args.handler is manifest.run and args.command[-1] == "true"
    for after in ([], ["--"]):
        args = build_parser().parse_args(["record", "--results-dir", str(tmp_path), *after])
        assert args.handler(args) == 2
        captured = capsys.readouterr()
        assert "no command given: put it after --" in captured.err and captured.out == ""
    assert manifest.read_manifest(tmp_path) is None  # nothing ran, nothing recorded


# ---------------------------------------------------------------------------------------------------------
# Planning against a time budget: --plan, --time-budget, the estimates, scripts/gpu_window.sh.


def _set_seconds(stamp: Path, seconds: float) -> None:
    """Give a finished run's stamp another recorded time (the stamp stays valid: seconds are not checked)."""
    data = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**data, "seconds": seconds}))


@pytest.fixture
def timed(finished, tmp_path) -> Path:
    """A copy of the finished sweep (mnist:0_vs_6, celeba:Smiling; seed 2), its stamps saying 30 and 10 s."""
    base = Path(shutil.copytree(finished["book"].parent, tmp_path / "timed"))
    _set_seconds(Path(f"{result_file(base / 'book', 'mnist', '0_vs_6', seed=2)}.done"), 30)
    _set_seconds(Path(f"{result_file(base / 'book', 'celeba', 'Smiling', seed=2)}.done"), 10)
    return base / "book"


def test_stamps_record_the_device_type_gpu_and_whether_the_run_resumed(finished):
    stamp = json.loads(Path(f"{result_file(finished['book'], 'celeba', 'Smiling', seed=2)}.done").read_text())
    assert stamp["device"] == "auto"  # as given; what it resolved to beside it
    assert (stamp["device_type"], stamp["gpu"], stamp["resumed"]) == ("cpu", None, False)


def test_plan_lists_the_runs_to_do_with_estimates_and_their_basis(timed, capsys):
    # mnist seed 2's result no longer matches its stamp: it must run again, and its own stamp times it.
    mnist = result_file(timed, "mnist", "0_vs_6", seed=2)
    mnist.write_text(mnist.read_text() + " ")
    tasks = ["--tasks", "mnist:0_vs_6", "celeba:Smiling", "celeba:Slow", "--seeds", "2", "3"]
    assert sweep.main(options(timed, *tasks, "--plan", "--jobs", "2"), tasks_for=probe_tasks) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "plan: 5 of 6 runs to do (1 up to date, not listed)"
    assert "profile quick, device auto (planned for cpu), 2 workers" in lines[1]
    rows = {tuple(line.split()[:3]): line for line in lines if line.startswith("  90_probe")}
    assert set(rows) == {
        ("90_probe", "mnist:0_vs_6", "2"),
        ("90_probe", "mnist:0_vs_6", "3"),
        ("90_probe", "celeba:Smiling", "3"),
        ("90_probe", "celeba:Slow", "2"),
        ("90_probe", "celeba:Slow", "3"),
    }
    assert "result changed since it was stamped 30 s this run's stamp: 30 s on cpu" in " ".join(
        rows[("90_probe", "mnist:0_vs_6", "2")].split()
    )
    assert "no result yet 10 s this chapter on celeba: Smiling seed 2, 10 s on cpu" in " ".join(
        rows[("90_probe", "celeba:Slow", "3")].split()
    )
    assert "(these results)" in rows[("90_probe", "celeba:Slow", "3")]
    # 30 + 30 + 10 + 10 + 10 s; two workers: 30 | 30, then 10, 10 | 10 -> 50 s
    assert "total: 90 s of run time; wall time with 2 workers: about 50 s" in out
    assert not result_file(timed, "celeba", "Slow", seed=3).exists()  # a plan runs nothing

    # Planning for a GPU needs none here; without timings of the probe on one, there is no estimate.
    assert sweep.main(options(timed, *tasks, "--plan", "--device", "cuda"), tasks_for=probe_tasks) == 0
    out = capsys.readouterr().out
    assert "planned for cuda; no GPU here, so timings of any GPU count" in out
    assert "no recorded quick-profile run of 90_probe on cuda" in out
    assert "not counting 5 runs without an estimate" in out


def test_estimates_prefer_this_run_then_the_chapter_then_the_model(tmp_path):
    def planned(task: str, **params) -> sweep.Run:
        (run,) = sweep.plan_sweep(
            ["04"],
            [task],
            "paper",
            device="cuda",
            book_dir=ROOT / "book",
            results_dir=tmp_path,
            params=params,
            engine="python",
            check_folders=False,
        ).runs
        return run

    def stamp(task: str, seconds: float, **fields) -> None:
        dataset, attribute = task.split(":")
        path = tmp_path / "paper" / f"04_learned_classifiers__{dataset}__{attribute}__seed0.json.done"
        path.parent.mkdir(exist_ok=True)
        values = {"device": "cuda", "parameters": {"figure8": False}, "finished": "2026-11-22T20:00:00Z"}
        path.write_text(json.dumps({**values, "seconds": seconds, **fields}))

    h100 = Hardware("cuda", "NVIDIA H100 80GB HBM3")

    def estimate(run: sweep.Run, hardware: Hardware = h100) -> sweep_estimate.Estimate:
        return sweep_estimate.estimate_run(run, hardware, sweep_estimate.read_timings([tmp_path], "paper"))

    smiling = planned("celeba:Smiling", figure8=False)
    first = estimate(smiling)
    assert (first.seconds, first.level) == (360, "model")
    assert "chapter 4 on one H100 without Figure 8: 6 min 0 s on Male" in first.basis
    assert estimate(planned("celeba:Smiling")).seconds == 360 + 1100  # with Figure 8's sweeps
    assert estimate(planned("mnist:0_vs_6", figure8=False, n_attack=200)).basis.endswith(
        "not modelled: n_attack=200"
    )
    assert estimate(smiling, Hardware("cpu")).seconds == 61200

    stamp("celeba:Male", 100, device_type="cpu")  # another device type: not counted
    stamp("celeba:Bangs", 300, parameters={})  # other --param values: not counted
    assert estimate(smiling).level == "model"
    stamp("celeba:Male", 200, device_type="cuda", gpu="NVIDIA A100")
    stamp("celeba:Bangs", 300)  # an older stamp: "cuda" named, no GPU
    chapter = estimate(smiling)
    assert (chapter.seconds, chapter.level) == (250, "this chapter and dataset")
    assert "median of 2 runs, 200-300 s (these results, NVIDIA A100, cuda)" in chapter.basis
    stamp("celeba:Eyeglasses", 400, device_type="cuda", gpu="NVIDIA H100 80GB HBM3")
    assert estimate(smiling).seconds == 400  # the same GPU's timings, where there are any
    assert estimate(smiling, Hardware("cuda")).seconds == 300  # no GPU named: all of them
    stamp("celeba:Smiling", 123, device_type="cuda", gpu="NVIDIA H100 80GB HBM3", resumed=True)
    own = estimate(smiling)
    assert (own.seconds, own.level) == (123, "this run")
    assert "resumed from checkpoints: its last sitting only, a lower bound" in own.basis


def test_older_stamps_are_completed_from_the_manifest(tmp_path):
    """The committed stamps predate ``device_type``: the manifest tells the GPU, and a killed command's
    sitting is added to the run it was stopped in."""
    timings = sweep_estimate.read_timings([manifest.default_paper_results_dir()], "paper")
    by_run = {(t.chapter, t.task): t for t in timings}
    male4 = by_run[("04_learned_classifiers", "celeba:Male")]
    assert male4.hardware == Hardware("cuda", "NVIDIA H100 80GB HBM3") and male4.seconds == 352.07
    assert male4.parameters == '{"figure8": false}'
    # 05 on Male: 251.7 s resumed, after 467.4 s of "--chapters 04 05" stopped once 04 (352.07 s) was done
    male5 = by_run[("05_real_data", "celeba:Male")]
    assert male5.seconds == pytest.approx(251.736 + 467.4 - 352.07)
    assert by_run[("03_bayes_robustness", "mnist:0_vs_6")].hardware == Hardware("cpu")

    # An older stamp of device "auto": the manifest entry that wrote its result says what it ran on.
    folder = tmp_path / "results"
    (folder / "quick").mkdir(parents=True)
    name = "03_bayes_robustness__mnist__0_vs_6__seed0.json"
    (folder / "quick" / f"{name}.done").write_text(
        json.dumps({"device": "auto", "seconds": 20, "finished": "2026-12-01T10:00:30Z"})
    )
    entry = {
        "command": "python -m nbhelpers sweep --chapters 03",
        "exit_status": 0,
        "started": "2026-12-01T10:00:00+00:00",
        "finished": "2026-12-01T10:00:31+00:00",
        "wall_seconds": 31,
        "results": [f"quick/{name}"],
        "hardware": {"gpus": ["NVIDIA L4"]},
    }
    # the command before it was stopped (SIGTERM) while it ran the same run, 50 s in
    stopped = {**entry, "command": "python -m nbhelpers sweep --tasks mnist:0_vs_6", "exit_status": -15}
    stopped.update(started="2026-12-01T09:58:00+00:00", finished="2026-12-01T09:58:50+00:00", results=[])
    stopped["wall_seconds"] = 50
    (folder / "manifest.json").write_text(json.dumps({"runs": [stopped, entry]}))
    (timing,) = sweep_estimate.read_timings([folder], "quick")
    assert timing.hardware == Hardware("cuda", "NVIDIA L4")
    assert "'auto' read as cuda from the manifest" in timing.notes
    assert timing.seconds == 20 + 50 and "+50 s of a stopped earlier sitting per the manifest" in timing.notes
    stamp = json.loads((folder / "quick" / f"{name}.done").read_text())
    (folder / "quick" / f"{name}.done").write_text(json.dumps({**stamp, "resumed": False}))
    assert sweep_estimate.read_timings([folder], "quick")[0].seconds == 20  # a new stamp: it did not resume
    (folder / "quick" / f"{name}.done").write_text(json.dumps(stamp))
    (folder / "manifest.json").unlink()
    assert sweep_estimate.read_timings([folder], "quick")[0].hardware is None  # cannot be told: not used


def test_the_simulated_pool_starts_runs_in_order_while_they_fit():
    runs = [
        (sweep.Run("90_probe", "celeba", f"A{i}", "quick", 0, "cpu", Path("x"), Path("o"), Path("r")), e)
        for i, e in enumerate(
            [
                sweep_estimate.Estimate(100, "", "model"),
                sweep_estimate.Estimate(300, "", "model"),
                sweep_estimate.Estimate(50, "", "model"),
                sweep_estimate.Estimate(200, "", "model"),
                sweep_estimate.Estimate(None, "", "none"),
                sweep_estimate.Estimate(20, "", "model"),
            ]
        )
    ]
    # Two workers: A0 0-100 and A1 0-300; A2 100-150; A3 would end at 350 > 320: left; A4 has no
    # estimate: left; A5 150-170.
    schedule = sweep_estimate.simulate(runs, workers=2, budget=320)
    assert [s.start for s in schedule.slots] == [0, 0, 100, None, None, 150]
    assert (
        schedule.slots[3].why_left == "needs about 200 s (3 min 20 s), 170 s (2 min 50 s) of the budget left"
    )
    assert schedule.slots[4].why_left.startswith("no estimate: run it once without --time-budget")
    assert (schedule.work, schedule.end) == (470, 300)
    unlimited = sweep_estimate.simulate(runs, workers=1)
    assert unlimited.end == 670 and [s.run.attribute for s in unlimited.left] == ["A4"]
    assert sweep_estimate.simulate(runs, workers=1, budget=320, offset=250).started[0].run.attribute == "A2"


def test_a_run_starts_only_while_its_estimate_fits_the_time_left(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(sweep_estimate.time, "monotonic", lambda: now[0])
    run = sweep.Run("90_probe", "celeba", "Smiling", "quick", 0, "cpu", Path("x"), Path("o"), Path("r"))
    budget = sweep_estimate.TimeBudget(600, {run.name: 100}, started=1000.0)
    assert budget.admit(run) and not budget.left
    now[0] = 1000.0 + 501  # 99 s left
    assert not budget.admit(run)
    assert budget.left == [(run, "needs about 100 s, 99 s of the budget left")]
    other = sweep.Run("90_probe", "celeba", "Slow", "quick", 0, "cpu", Path("x"), Path("o"), Path("r"))
    assert not budget.admit(other) and budget.left[-1][1].startswith("no estimate of its time: run it once")


def test_time_budget_starts_what_fits_and_the_same_command_resumes_the_rest(timed, capsys):
    _set_seconds(Path(f"{result_file(timed, 'mnist', '0_vs_6', seed=2)}.done"), 100_000)
    argv = options(
        timed, "--tasks", "mnist:0_vs_6", "celeba:Smiling", "--seeds", "2", "3", "--time-budget", "600"
    )
    assert sweep.main(argv, tasks_for=probe_tasks) == 0
    out = capsys.readouterr().out
    assert "time budget 600 s: 1 run expected to start, 10 s of run time on 1 worker" in out
    assert "left: 90_probe mnist:0_vs_6 seed 3: needs about 100000 s (27 h 46 min)" in out
    assert "1 finished, 2 up to date, 0 failed, 1 left for later (--time-budget)" in out
    assert "LEFT 90_probe__mnist__0_vs_6__quick__seed3: needs about 100000 s (27 h 46 min)" in out
    assert "run the same command again to do the runs left" in out
    assert result_file(timed, "celeba", "Smiling", seed=3).exists()
    assert not result_file(timed, "mnist", "0_vs_6", seed=3).exists()
    stamp = json.loads(Path(f"{result_file(timed, 'celeba', 'Smiling', seed=3)}.done").read_text())
    assert stamp["device_type"] == "cpu" and stamp["seconds"] > 0

    _set_seconds(Path(f"{result_file(timed, 'mnist', '0_vs_6', seed=2)}.done"), 5)
    assert sweep.main(argv, tasks_for=probe_tasks) == 0
    assert "1 finished, 3 up to date, 0 failed" in capsys.readouterr().out
    assert result_file(timed, "mnist", "0_vs_6", seed=3).exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--time-budget", "ten"], "--time-budget 'ten' is not a number of seconds: give the seconds"),
        (["--time-budget", "0"], "--time-budget '0' must be a positive number of seconds"),
        (["--time-budget", "-60"], "--time-budget '-60' must be a positive number of seconds"),
        (["--time-budget", "nan", "--plan"], "--time-budget 'nan' must be a positive number of seconds"),
        (["--plan", "--chapters", "07"], "unknown chapter '07': valid chapters are 90_probe"),
        (
            ["--plan", "--tasks", "celeba:Nope"],
            "unknown task 'celeba:Nope' for chapters 90_probe: valid tasks",
        ),
        (
            ["--time-budget", "60", "--scheduler", "tcp://127.0.0.1:8786"],
            "--time-budget is for local workers: a Dask cluster is given every run at once",
        ),
        (
            [
                "--tasks",
                "celeba:Smiling",
                "--seeds",
                "3",
                "--plan",
                "--device",
                "cuda",
                "--time-budget",
                "60",
            ],
            "--time-budget 60: none of the 1 run to do has an estimate (90_probe__celeba__Smiling__quick",
        ),
    ],
)
def test_bad_budget_or_plan_input_is_refused(timed, capsys, extra, message):
    assert sweep.main(options(timed, *extra), tasks_for=probe_tasks) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbhelpers sweep: error: ") and message in err, err


def test_a_budget_too_small_for_every_run_names_the_smallest(timed, capsys):
    argv = options(timed, "--tasks", "mnist:0_vs_6", "celeba:Smiling", "--seeds", "3", "--time-budget", "5")
    for plan in ([], ["--plan"]):
        assert sweep.main([*argv, *plan], tasks_for=probe_tasks) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert (
            "--time-budget 5 is too small for any of the 2 runs to do: the smallest, 90_probe celeba:Smiling "
            "seed 3, is estimated at 10 s"
        ) in err, err
        assert "give a budget of at least" in err and "or run without --time-budget" in err
    assert not result_file(timed, "celeba", "Smiling", seed=3).exists()


def _window(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_window.sh"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_gpu_window_script_runs_the_next_chunk_into_one_folder(timed, tmp_path):
    """scripts/gpu_window.sh on CPU at small sizes: the quick profile, the probe chapter, the bundled sample's
    faces as a JPEG copy to unpack, no wheels; OUT starts from earlier results whose stamps time the runs."""
    celeba_jpeg = load_script("celeba_jpeg")
    data = tmp_path / "data"
    data.mkdir()
    sample = ROOT / "nbhelpers" / "sample_data"
    celeba_jpeg.pack(sample / "celeba64.npz", data / "celeba64_jpeg.npz")
    shutil.copy(sample / "mnist.npz", data / "mnist.npz")
    # The earlier results: mnist seed 2 took 3 s, Smiling seed 2 27 h (and so would Male, by the chapter).
    start = timed.parent / "results"
    _set_seconds(Path(f"{result_file(timed, 'mnist', '0_vs_6', seed=2)}.done"), 3)
    _set_seconds(Path(f"{result_file(timed, 'celeba', 'Smiling', seed=2)}.done"), 100_000)
    smiling_before = result_file(timed, "celeba", "Smiling", seed=2).read_bytes()
    out, work = tmp_path / "out", tmp_path / "work"
    env = {k: v for k, v in os.environ.items() if k not in ("NBHELPERS_DATA_DIR", "NBHELPERS_RESULTS_DIR")}
    env.update(
        PYTHON=sys.executable,
        GPU_WINDOW_PROFILE="quick",
        GPU_WINDOW_DEVICE="cpu",
        GPU_WINDOW_MARGIN="5",
        GPU_WINDOW_WORK=str(work),
        GPU_WINDOW_FROM=str(start),
        GPU_WINDOW_BENCHES="--only cnn-precision --sizes smoke",
    )
    sweep_options = ["--chapters", "90", "--tasks", "mnist:0_vs_6", "celeba:Smiling", "celeba:Male"]
    sweep_options += ["--seeds", "2", "--book-dir", str(timed)]

    bad = _window([str(out), str(data), "-", "ten minutes", *sweep_options], env, tmp_path)
    assert bad.returncode == 2 and "BUDGET 'ten minutes' is not a positive whole number" in bad.stderr
    assert not out.exists()
    bad = _window([str(out), str(data), "-", "600", "--device", "cuda"], env, tmp_path)
    assert (
        bad.returncode == 2
        and "--device is set by this script: use GPU_WINDOW_PROFILE, GPU_WINDOW_DEVICE" in (bad.stderr)
    )

    done = _window([str(out), str(data), "-", "900", *sweep_options], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    log = " ".join(done.stdout.split())
    assert "== unpacking the faces of" in log and f"== data: {work / 'celeba_jpeg94'}" in log
    assert "== plan:" in log and "plan: 3 of 3 runs to do (0 up to date, not listed)" in log
    assert "1 finished, 0 up to date, 0 failed, 2 left for later (--time-budget)" in log
    assert "LEFT 90_probe__celeba__Smiling__quick__seed2: needs about 100000 s (27 h 46 min)" in log
    assert "LEFT 90_probe__celeba__Male__quick__seed2: needs about 100000 s (27 h 46 min)" in log
    # the time the sweep left went to the benchmarks asked for, on the window's device and data
    assert "== benchmarks:" in log and "== cnn-precision" in log
    benches = (out / "gpu_benches.md").read_text()
    assert "Device cpu" in benches and "smoke sizes" in benches and "**ended well**" in benches
    assert "| mnist 1x28x28 | bfloat16 |" in benches

    results_dir = out / "quick"
    mnist = results_dir / "90_probe__mnist__0_vs_6__seed2.json"
    stamp = json.loads(Path(f"{mnist}.done").read_text())
    faces = (work / "celeba_jpeg94" / "celeba64.npz").stat().st_size
    assert stamp["data"] == (
        f"data folder celeba_jpeg94: celeba64.npz ({faces} bytes), "
        f"mnist.npz ({(sample / 'mnist.npz').stat().st_size} bytes)"
    )
    assert (stamp["device"], stamp["device_type"], stamp["gpu"]) == ("cpu", "cpu", None)
    assert (work / "celeba_jpeg94" / "mnist.npz").is_symlink()
    # The run left keeps the result it started from; the one never made is still missing.
    assert (results_dir / "90_probe__celeba__Smiling__seed2.json").read_bytes() == smiling_before
    assert not (results_dir / "90_probe__celeba__Male__seed2.json").exists()
    (entry,) = manifest.read_manifest(out)["runs"]
    assert entry["results"] == ["quick/90_probe__mnist__0_vs_6__seed2.json"] and entry["exit_status"] == 0
    assert "sweep --profile quick" in entry["command"] and "--time-budget" in entry["command"]
    assert (out / "sweeps" / "quick" / "90_probe__mnist__0_vs_6__quick__seed2.ipynb").exists()

    spent = _window([str(out), str(data), "-", "1", *sweep_options], env, tmp_path)
    assert spent.returncode == 2 and "BUDGET 1 s is spent" in spent.stderr
    assert len(manifest.read_manifest(out)["runs"]) == 1  # nothing ran, nothing recorded
