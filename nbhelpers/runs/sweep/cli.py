"""``python -m nbhelpers sweep``: the command line of the sweep."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nbhelpers.core.versions import code_version
from nbhelpers.runs.notebook_runner import NotebookError
from nbhelpers.runs.sweep.execute import stale_reason
from nbhelpers.runs.sweep.executors import sweep
from nbhelpers.runs.sweep.plan import (
    ENGINES,
    SCHEDULER_FORM,
    Plan,
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
        "--keep-finished",
        action="store_true",
        help="count every finished run as up to date even if the code, notebook or --param values changed "
        "since (run only what has no result yet, e.g. beside committed results)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _print_plan(plan: Plan, dry_run: bool) -> None:
    current_code = code_version()
    reasons = [stale_reason(run, current_code, plan.keep_finished) for run in plan.runs]
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
            check_folders=not args.dry_run,
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
