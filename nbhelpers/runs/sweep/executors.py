"""Where a sweep's runs execute: a local pool of worker processes (one per GPU on CUDA), or a Dask
cluster; and ``sweep``, which plans, executes and reports."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from tqdm.auto import tqdm

from nbhelpers.core.device import resolve_device
from nbhelpers.core.versions import code_version
from nbhelpers.runs.notebook_runner import exit_when_gone
from nbhelpers.runs.sweep.estimate import TimeBudget
from nbhelpers.runs.sweep.execute import _failure_message, execute_run, stale_reason
from nbhelpers.runs.sweep.hardware import Hardware, worker_hardware
from nbhelpers.runs.sweep.plan import (
    _SCHEDULER_RE,
    SCHEDULER_FORM,
    Plan,
    Run,
    RunOutcome,
    SweepError,
    SweepReport,
)

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
        resolved = resolve_device(device)
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


def _run_local(
    runs: Sequence[Run],
    envs: Sequence[dict[str, str]],
    hardware: Sequence[Hardware] | None = None,
    budget: TimeBudget | None = None,
) -> Iterator[RunOutcome]:
    """Run on ``len(envs)`` worker processes; yields outcomes as runs end.

    ``hardware``: each worker's, for the stamps. ``budget``: a run starts only if it fits the time left
    (``TimeBudget.admit``); the others stay in ``budget.left``."""
    workers = [_worker(env) for env in envs]
    idle = list(range(len(workers)))[::-1]
    pending = deque(runs)
    running: dict[Future, tuple[int, Run, float]] = {}
    try:
        while pending or running:
            while idle and pending:
                run = pending.popleft()
                if budget is not None and not budget.admit(run):
                    continue  # time only runs on: a run that does not fit now never will
                slot = idle.pop()
                hw = hardware[slot] if hardware else None
                future = workers[slot].submit(execute_run, run, own_process=True, hardware=hw)
                running[future] = (slot, run, time.monotonic())
            if not running:
                break
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
    time_budget: TimeBudget | None = None,
) -> SweepReport:
    """Execute the runs of ``plan`` that are not up to date; failures are collected, not raised.

    Local by default (``jobs`` worker processes, at most ``runs_per_gpu`` per GPU, see
    :func:`local_worker_envs`), or on the Dask scheduler at ``scheduler`` (``jobs`` is then the cluster's
    business; notebooks and results folders must be shared). ``time_budget`` (local only): start a run only
    while its estimate fits the time left; the report lists the runs left.
    """
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    _check_runs_per_gpu(runs_per_gpu)
    if scheduler is not None and runs_per_gpu != 1:
        raise SweepError(
            "--runs-per-gpu is for local workers: on a Dask cluster the workers' resources decide"
        )
    if scheduler is not None and time_budget is not None:
        raise SweepError(
            "--time-budget is for local workers: a Dask cluster is given every run at once; "
            "drop --scheduler or --time-budget"
        )
    current_code = code_version()
    stale = [stale_reason(run, current_code, plan.keep_finished) is not None for run in plan.runs]
    todo = [run for run, must_run in zip(plan.runs, stale, strict=True) if must_run]
    skipped = [run for run, must_run in zip(plan.runs, stale, strict=True) if not must_run]
    finished: list[RunOutcome] = []
    failed: list[RunOutcome] = []
    if not todo:
        return SweepReport(finished, failed, skipped)
    if scheduler is None:
        envs = local_worker_envs(plan.device, jobs, runs_per_gpu)
        outcomes = _run_local(todo, envs, worker_hardware(plan.device, envs), time_budget)
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
                if time_budget is not None and time_budget.left:  # runs left never end: shrink the bar
                    bar.total = len(todo) - len(time_budget.left)
                    bar.refresh()
    finally:
        outcomes.close()
        if client is not None:
            client.close()
    left = list(time_budget.left) if time_budget is not None else []
    return SweepReport(finished, failed, skipped, left)
