"""One run of a sweep: its lock, the resumability check, and the notebook's execution with papermill or
``nbhelpers.runs.notebook_runner``, its result moved into place only when it succeeded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TextIO

from nbhelpers.core.io import write_json_atomic
from nbhelpers.core.progress import TEXT_PROGRESS_ENV
from nbhelpers.core.versions import code_version, notebook_source_version
from nbhelpers.runs import results
from nbhelpers.runs.sweep.hardware import Hardware, planned_hardware
from nbhelpers.runs.sweep.plan import Run, RunOutcome

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
        current = notebook_source_version(run.notebook)
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
    """Run the notebook with ``nbhelpers.runs.notebook_runner`` in a child Python process (no Jupyter
    needed)."""
    env = dict(os.environ)
    # The child starts in the book folder: make sure it imports this nbhelpers (the folder holding the
    # package: this file is nbhelpers/runs/sweep/execute.py).
    package_root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [
        sys.executable,
        "-m",
        "nbhelpers.runs.notebook_runner",
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


def execute_run(run: Run, own_process: bool = False, hardware: Hardware | None = None) -> RunOutcome:
    """Execute one run with its engine; never raises for a failing notebook (the outcome says why).

    ``own_process``: this process runs nothing else meanwhile, so its output can go to the run's logs too.
    A run that another sweep is executing is left alone (a failed outcome that names that sweep), and one
    that another sweep finished since this one was planned is kept as it is. ``hardware``: what the run
    executes on, for its stamp (default: what ``run.device`` is on this machine).
    """
    started = time.monotonic()
    with _run_lock(run) as holder:
        if holder is not None:
            message = (
                f"another sweep is executing this run ({holder}), so this one left it alone: run this "
                "command again once that sweep has finished (it skips the run if that sweep completed it)"
            )
            return RunOutcome(run, ok=False, seconds=time.monotonic() - started, message=message)
        if stale_reason(run, code_version()) is None:
            message = "finished by another sweep since this one was planned; its result is kept"
            return RunOutcome(run, ok=True, seconds=time.monotonic() - started, message=message)
        return _execute_locked(run, own_process, started, hardware)


def _execute_locked(run: Run, own_process: bool, started: float, hardware: Hardware | None) -> RunOutcome:
    """:func:`execute_run` once this process holds the run's lock."""
    checkpoints = results.run_checkpoints_dir(run.chapter, run.dataset, run.attribute, run.profile, run.seed)
    # an earlier attempt's finished steps: this attempt's time is then its last sitting only
    resumed = checkpoints.is_dir() and any(checkpoints.iterdir())
    run.out_dir.mkdir(parents=True, exist_ok=True)
    run.stamp_path.unlink(missing_ok=True)
    shutil.rmtree(run.staging_dir, ignore_errors=True)  # leftovers of a killed attempt
    for log in (run.stdout_log, run.stderr_log):
        log.write_text("")
    try:
        hardware = hardware or planned_hardware(run.device)
        notebook_sha = _sha256(run.notebook)
        source_version = notebook_source_version(run.notebook)
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
                f"call nbhelpers.runs.results.save_result(Result({run.chapter!r}, dataset, attribute, "
                "profile, seed, metrics), results_dir) with its parameters"
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
    write_json_atomic(
        run.stamp_path,
        {
            "code_version": staged.get("code_version"),
            "source_version": source_version,
            "notebook": run.notebook.name,
            "notebook_sha256": notebook_sha,
            "result_sha256": _sha256(run.result_path),
            "executed_notebook": run.output_notebook.name,
            "device": run.device,
            "device_type": hardware.device_type,  # what "device" resolved to, and the GPU: for estimates
            "gpu": hardware.gpu,
            "parameters": run.extra_parameters(),
            "data": run.data,
            "seconds": round(seconds, 3),
            "resumed": resumed,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    _remove_staging(run)
    # The result is in place: the checkpoints the chapter kept (results.KEEP_CHECKPOINTS_ENV) can go.
    shutil.rmtree(checkpoints, ignore_errors=True)
    return RunOutcome(run, ok=True, seconds=seconds)


def _remove_staging(run: Run) -> None:
    shutil.rmtree(run.staging_dir, ignore_errors=True)
    try:
        run.staging_dir.parent.rmdir()  # only succeeds once no other run is staging
    except OSError:
        pass
