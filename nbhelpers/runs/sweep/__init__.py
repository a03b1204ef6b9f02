"""Run chapters over tasks, profiles and seeds: ``python -m nbhelpers sweep``.

One run executes one chapter notebook with papermill for one (dataset, attribute, profile, seed). It leaves
an executed notebook with its kernel's stdout/stderr logs under the sweep folder, and one JSON result under
``<results_dir>/<profile>/`` (see :mod:`nbhelpers.runs.results`).

Why a sweep can be killed at any moment and simply re-run:

- the notebook writes its result into a private staging folder; only after papermill succeeds is the file
  moved into the results folder (an atomic rename);
- then a stamp ``<result>.done`` (written atomically) records the code version and the notebook hash that
  made the result. A run is up to date, and skipped, only when its stamp matches the current code and
  notebook and the result it stamped. "The code" is the sources of the nbhelpers modules the notebook
  imports (``nbhelpers.core.versions.notebook_source_version``): an edit elsewhere in the package keeps it;
- inside a run, finished trainings and attacks are kept as checkpoints (:mod:`nbhelpers.runs.checkpoints`)
  until the result is written, so a killed run resumes after its last finished step;
- papermill saves the executed notebook under a hidden partial name, renamed when the run ends.
- a run is locked while it executes (``flock`` on ``<results_dir>/.locks/<run>.lock``, dropped by the
  kernel when its process dies), so two sweeps over the same results never execute one run at once:
  the second reports it as taken, or keeps it if the first finished it meanwhile.

Runs go to a local pool of worker processes, or with ``--scheduler tcp://host:port`` to a Dask cluster.
A run executes its notebook with papermill (a Jupyter kernel) or, with ``--engine python`` on machines
without Jupyter, with :mod:`nbhelpers.runs.notebook_runner` in a child Python process; both leave the same
files.

Each stamp also records the run's ``seconds`` and what it ran on (``device_type``, ``gpu``), from which
``--plan`` estimates the time of the runs still to do and ``--time-budget SECONDS`` starts only the runs
expected to end within a budget (a GPU window: ``scripts/gpu_window.sh``); the same command later does the
rest.

The modules: ``plan`` (chapters, tasks, runs, staleness inputs), ``execute`` (one run: lock, check,
execution), ``executors`` (local pool or Dask; ``sweep``), ``hardware`` (device type and GPU name),
``estimate`` (run times from stamps or a stated model, the pool simulated against a budget), ``cli`` (the
command line).
"""

from nbhelpers.runs.sweep.cli import HELP, add_arguments, main, run
from nbhelpers.runs.sweep.estimate import MODEL, Estimate, TimeBudget, estimate_run, read_timings, simulate
from nbhelpers.runs.sweep.execute import execute_run, stale_reason
from nbhelpers.runs.sweep.executors import local_worker_envs, sweep
from nbhelpers.runs.sweep.hardware import Hardware
from nbhelpers.runs.sweep.plan import (
    Plan,
    Run,
    RunOutcome,
    SweepError,
    SweepReport,
    absolute_folder_environment,
    chapter_tasks,
    data_source,
    parse_params,
    plan_sweep,
)

__all__ = [
    "HELP",
    "MODEL",
    "Estimate",
    "Hardware",
    "Plan",
    "Run",
    "RunOutcome",
    "SweepError",
    "SweepReport",
    "TimeBudget",
    "absolute_folder_environment",
    "add_arguments",
    "chapter_tasks",
    "data_source",
    "estimate_run",
    "execute_run",
    "local_worker_envs",
    "main",
    "parse_params",
    "plan_sweep",
    "read_timings",
    "run",
    "simulate",
    "stale_reason",
    "sweep",
]
