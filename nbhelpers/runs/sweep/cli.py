"""``python -m nbhelpers sweep``: the command line of the sweep."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from nbhelpers.core.versions import code_version
from nbhelpers.runs.notebook_runner import NotebookError
from nbhelpers.runs.sweep.estimate import (
    Estimate,
    Schedule,
    TimeBudget,
    duration,
    estimate_run,
    parse_budget,
    read_timings,
    simulate,
    timing_folders,
)
from nbhelpers.runs.sweep.execute import stale_reason
from nbhelpers.runs.sweep.executors import local_worker_envs, sweep
from nbhelpers.runs.sweep.hardware import Hardware, gpu_names, planned_hardware, worker_hardware
from nbhelpers.runs.sweep.plan import (
    ENGINES,
    SCHEDULER_FORM,
    Plan,
    Run,
    SweepError,
    TasksFor,
    absolute_folder_environment,
    parse_params,
    plan_sweep,
)

# ---------------------------------------------------------------------------------------------------------
# Command line.


HELP = "run chapter notebooks for many tasks, seeds and a profile (resumable, parallel)"

EPILOG = (
    "Each run leaves OUT/CHAPTER__DATASET__ATTRIBUTE__PROFILE__seedSEED.ipynb with .stdout.log and "
    ".stderr.log beside it, and its result in RESULTS/PROFILE/. Finished runs are stamped and skipped until "
    "the code, the notebook or a --param value changes: after a failure or a kill, run the same command "
    "again. --plan lists the runs to do with their estimated time; --time-budget starts only the runs "
    "expected to end within it (the same command later does the rest). "
    "Exit status: 0 all ran (or were left for later under --time-budget), 1 a run failed, 2 bad input."
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
        help="papermill (a Jupyter kernel), python (nbhelpers.runs.notebook_runner: no Jupyter needed, "
        "e.g. on a "
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
        "--plan",
        action="store_true",
        help="list the runs still to do (missing or stale) with each one's estimated seconds on --device and "
        "its basis (earlier runs' stamps, else a stated model), the total and the wall time with --jobs; "
        "runs nothing, needs no GPU",
    )
    parser.add_argument(
        "--time-budget",
        metavar="SECONDS",
        help="start only the runs expected to end within SECONDS of the command's start (local workers, in "
        "their order), and no run whose estimate no longer fits the time left; the same command later does "
        "the runs left",
    )
    parser.add_argument(
        "--keep-finished",
        action="store_true",
        help="count every finished run as up to date even if the code, notebook or --param values changed "
        "since (run only what has no result yet, e.g. beside committed results)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_settings(plan: Plan, folders: str) -> None:
    """Lines both plan printouts share: extra parameters per chapter, ``folders``, what is left out."""
    chapter_params = {run.chapter: run.extra_parameters() for run in plan.runs if run.extra}
    for chapter, params in chapter_params.items():
        print(f"  parameters of {chapter}: {', '.join(f'{k}={v!r}' for k, v in params.items())}")
    print(folders)
    for note in plan.left_out:
        print(f"  left out: {note}")


def _print_plan(plan: Plan, dry_run: bool) -> None:
    current_code = code_version()
    reasons = [stale_reason(run, current_code, plan.keep_finished) for run in plan.runs]
    todo = sum(reason is not None for reason in reasons)
    first = plan.runs[0]
    runs = f"{len(plan.runs)} run{'s' if len(plan.runs) != 1 else ''}"
    print(f"{runs} ({todo} to run, {len(plan.runs) - todo} up to date)")
    print(f"  profile {first.profile}, device {plan.device}, engine {first.engine}")
    _print_settings(plan, f"  notebooks and logs: {first.out_dir}\n  results: {first.result_path.parent}")
    if dry_run:
        for run, reason in zip(plan.runs, reasons, strict=True):
            status = f"run   ({reason})" if reason else "skip  (up to date)"
            print(f"  {run.chapter}  {run.dataset}:{run.attribute}  seed {run.seed}  {status}")


def _planned_workers(hardware: Hardware, jobs: int | None, runs_per_gpu: int) -> tuple[int, str]:
    """How many local workers a sweep would have (``local_worker_envs``) without resolving the device: on
    CUDA one per GPU of this machine, or one GPU assumed where it has none; and a note saying so."""
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    if hardware.device_type != "cuda":
        return jobs or 1, ""
    gpus = len(gpu_names())
    slots = max(1, gpus) * runs_per_gpu
    note = "" if gpus else " (no GPU here: one assumed)"
    return min(jobs or slots, slots), note


def _to_do(plan: Plan) -> tuple[list[tuple[Run, str]], int]:
    """The runs the sweep would execute, with why each must run; and how many are up to date."""
    current = code_version()
    reasons = [(run, stale_reason(run, current, plan.keep_finished)) for run in plan.runs]
    todo = [(run, reason) for run, reason in reasons if reason is not None]
    return todo, len(plan.runs) - len(todo)


def _estimates(plan: Plan, todo: list[tuple[Run, str]], hardware: Hardware) -> list[tuple[Run, Estimate]]:
    if not todo:
        return []
    first = plan.runs[0]
    timings = read_timings(timing_folders(first.results_dir), first.profile)
    return [(run, estimate_run(run, hardware, timings)) for run, _ in todo]


def _check_fits(schedule: Schedule, budget: float) -> None:
    """Refuse a budget in which no run to do fits, naming the smallest run and its estimate."""
    if schedule.started or not schedule.slots:
        return
    known = [slot for slot in schedule.slots if slot.estimate.seconds is not None]
    runs = f"{len(schedule.slots)} run{'s' if len(schedule.slots) != 1 else ''} to do"
    if not known:
        first = schedule.slots[0]
        raise SweepError(
            f"--time-budget {budget:g}: none of the {runs} has an estimate ({first.run.name}: "
            f"{first.estimate.basis})"
        )
    smallest = min(known, key=lambda slot: slot.estimate.seconds or 0.0)
    seconds = smallest.estimate.seconds or 0.0
    spent = schedule.offset
    after = (
        f" and {max(0.0, budget - spent):.0f} s of the budget are left after planning" if spent >= 1 else ""
    )
    raise SweepError(
        f"--time-budget {budget:g} is too small for any of the {runs}: the smallest, {smallest.run.chapter} "
        f"{smallest.run.dataset}:{smallest.run.attribute} seed {smallest.run.seed}, is estimated at "
        f"{seconds:.0f} s{after} ({smallest.estimate.basis}); give a budget of at least "
        f"{math.ceil(seconds + schedule.offset)} s, or run without --time-budget"
    )


def _print_estimates(
    plan: Plan,
    todo: list[tuple[Run, str]],
    up_to_date: int,
    schedule: Schedule,
    hardware: Hardware,
    worker_note: str,
) -> None:
    """``--plan``: the runs to do, each with its estimate and basis; the total and the wall time."""
    first = plan.runs[0]
    workers = f"{schedule.workers} worker{'s' if schedule.workers != 1 else ''}{worker_note}"
    print(f"plan: {len(todo)} of {len(plan.runs)} runs to do ({up_to_date} up to date, not listed)")
    planned = f"planned for {hardware.describe()}"
    if hardware.device_type == "cuda" and not hardware.gpu:
        planned = "planned for cuda; no GPU here, so timings of any GPU count"
    print(f"  profile {first.profile}, device {plan.device} ({planned}), {workers}")
    _print_settings(plan, f"  results: {first.result_path.parent}")
    if not todo:
        print("nothing to do")
        return
    why = dict((run.name, reason.split(" (")[0]) for run, reason in todo)
    rows = [
        (
            ("start" if slot.start is not None else "left") if schedule.budget is not None else "",
            slot.run.chapter,
            f"{slot.run.dataset}:{slot.run.attribute}",
            str(slot.run.seed),
            why[slot.run.name],
            "?" if slot.estimate.seconds is None else f"{slot.estimate.seconds:.0f} s",
            slot.estimate.basis,
        )
        for slot in schedule.slots
    ]
    header = ("", "chapter", "task", "seed", "why", "estimate", "basis")
    if schedule.budget is None:
        rows, header = [row[1:] for row in rows], header[1:]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if name == "estimate" else cell.ljust(width)
            for name, cell, width in zip(header[:-1], row[:-1], widths, strict=True)
        ]
        return "  " + "  ".join([*cells, row[-1]])

    print(line(header))
    for row in rows:
        print(line(row))
    known = [slot.estimate.seconds for slot in schedule.slots if slot.estimate.seconds is not None]
    unknown = len(schedule.slots) - len(known)
    total = f"total: {duration(sum(known))} of run time"
    if unknown:
        total += f", not counting {unknown} run{'s' if unknown != 1 else ''} without an estimate"
    if schedule.budget is None:
        wall = simulate([(s.run, s.estimate) for s in schedule.slots], schedule.workers).end
        print(f"{total}; wall time with {workers}: about {duration(wall)}")
        return
    print(total)
    _print_budget(schedule, reasons=False)


def _print_budget(schedule: Schedule, reasons: bool = True) -> None:
    """What a budget lets start; ``reasons``: also each run left and why (the plan's table marks them)."""
    started, left = schedule.started, schedule.left
    runs = f"{len(started)} run{'s' if len(started) != 1 else ''}"
    workers = f"{schedule.workers} worker{'s' if schedule.workers != 1 else ''}"
    print(
        f"time budget {schedule.budget:g} s: {runs} expected to start, {duration(schedule.work)} of run time "
        f"on {workers}, ending at about {duration(schedule.end)}; {len(left)} left"
    )
    for slot in left if reasons else []:
        run = slot.run
        print(f"  left: {run.chapter} {run.dataset}:{run.attribute} seed {run.seed}: {slot.why_left}")
    if any(slot.estimate.seconds is not None for slot in left):
        print("  the same command, run again, resumes them (finished runs are kept)")


def run(args: argparse.Namespace, tasks_for: TasksFor | None = None) -> int:
    """Carry out parsed ``sweep`` arguments; the exit status: 0 ok, 1 a run failed, 2 bad input."""
    began = time.monotonic()  # a --time-budget counts from here
    try:
        absolute_folder_environment()
        budget = parse_budget(getattr(args, "time_budget", None))
        planning = getattr(args, "plan", False)
        if budget is not None and args.scheduler is not None:
            raise SweepError(
                "--time-budget is for local workers: a Dask cluster is given every run at once; "
                "drop --scheduler or --time-budget"
            )
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
            check_folders=not (args.dry_run or planning),
        )
        if planning:
            hardware = planned_hardware(plan.device)
            workers, note = _planned_workers(hardware, args.jobs, args.runs_per_gpu)
            todo, up_to_date = _to_do(plan)
            offset = time.monotonic() - began if budget is not None else 0.0
            schedule = simulate(_estimates(plan, todo, hardware), workers, budget, offset)
            if budget is not None:
                _check_fits(schedule, budget)
            _print_estimates(plan, todo, up_to_date, schedule, hardware, note)
            return 0
        _print_plan(plan, args.dry_run)
        if args.dry_run:
            return 0
        time_budget = None
        if budget is not None:
            envs = local_worker_envs(plan.device, args.jobs, args.runs_per_gpu)
            hardware = worker_hardware(plan.device, envs)[0]
            todo, _ = _to_do(plan)
            estimates = _estimates(plan, todo, hardware)
            schedule = simulate(estimates, len(envs), budget, time.monotonic() - began)
            _check_fits(schedule, budget)
            if todo:
                _print_budget(schedule)
            named = {run.name: estimate.seconds for run, estimate in estimates}
            time_budget = TimeBudget(budget, named, started=began)
        report = sweep(
            plan,
            jobs=args.jobs,
            scheduler=args.scheduler,
            connect_timeout=args.connect_timeout,
            progress=not args.no_progress,
            runs_per_gpu=args.runs_per_gpu,
            time_budget=time_budget,
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
