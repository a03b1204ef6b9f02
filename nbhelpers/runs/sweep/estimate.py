"""How long a sweep's runs will take, and which of them fit a time budget (``sweep --plan``,
``--time-budget``).

A run's estimate comes, in this order, from

1. **this run**: the stamp an earlier execution of the same run left (``<result>.done`` records ``seconds``);
2. **this chapter and dataset**: the median of the stamps of the chapter's other runs on the same dataset
   (celeba or mnist);
3. **the model**: :data:`MODEL`, a small table of seconds per chapter, dataset, profile and device type, each
   number with where it comes from;

and counts only timings of the same profile, device type (cpu or cuda) and ``--param`` values, preferring
those of the same GPU. The stamps read are those of the sweep's results folder and the committed ones under
``results/paper/`` (``default_paper_results_dir``). Stamps written before the sweep recorded the device type
and GPU (``device_type``, ``gpu``) are completed from the manifest beside them: the command that wrote the
result ran on the hardware it lists. A run that was killed and resumed from its checkpoints stamps only its
last sitting; a sitting of an earlier, killed command (its manifest entry) is added back where it can be told.

Estimates are of a run alone on its device: ``--jobs`` CPU workers share the cores, and ``--runs-per-gpu``
runs share a GPU, each then slower than the estimate says.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
import shlex
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nbhelpers.chapters.ids import BAYES, LEARNED, REAL
from nbhelpers.runs.manifest import MANIFEST_NAME, default_paper_results_dir
from nbhelpers.runs.sweep.hardware import Hardware
from nbhelpers.runs.sweep.plan import Run, SweepError


@dataclass(frozen=True)
class ModelTime:
    """A modelled run time in seconds and where the number comes from."""

    seconds: float
    source: str


# (chapter, dataset, profile, device type, Figure 8 sweeps on) -> seconds of one run. Chapter 4 makes its
# Figure 8 sweeps unless ``-p figure8=False``; for the other chapters the last field is None.
Key = tuple[str, str, str, str, bool | None]
_CH4_H100 = "results/paper/README.md: chapter 4 on one H100 without Figure 8"
_F8_H100 = (
    "bench/README.md projects Figure 8's CNNs of a CelebA task at about 18 min of one H100 by their FLOPs "
    "at the base CNN's rates (not measured)"
)
_F8_MNIST = (
    "bench/README.md projects Figure 8's CNNs of an MNIST task at about 7 min of one H100 by the base CNN's "
    "step rates (not measured)"
)
_CNN_CPU = "bench/README.md: chapter 4's CNN work alone, one thread of the 2-core CPU VM (a lower bound)"
_CH3_H100 = "results/paper/README.md projects about 2 min per chapter 3 task on one H100 (not measured)"
_QUICK = "a quick-profile book build on the shared 2-core CPU VM, full data folder (its stamps, 2026-12-07)"
MODEL: dict[Key, ModelTime] = {
    # The paper profile on one H100 80GB HBM3 (results/paper/manifest.json and README.md: torch 2.11,
    # --engine python, one run at a time).
    (BAYES, "mnist", "paper", "cuda", None): ModelTime(120, _CH3_H100),
    (BAYES, "celeba", "paper", "cuda", None): ModelTime(120, _CH3_H100),
    (LEARNED, "mnist", "paper", "cuda", False): ModelTime(
        160, "results/paper/manifest.json: 479 s of one H100 for chapter 4 on the three MNIST tasks"
    ),
    (LEARNED, "celeba", "paper", "cuda", False): ModelTime(360, f"{_CH4_H100}: 6 min 0 s on Male"),
    (LEARNED, "mnist", "paper", "cuda", True): ModelTime(160 + 420, f"{_CH4_H100} (160 s), plus {_F8_MNIST}"),
    (LEARNED, "celeba", "paper", "cuda", True): ModelTime(
        360 + 1100, f"{_CH4_H100} (360 s), plus {_F8_H100}"
    ),
    (REAL, "celeba", "paper", "cuda", None): ModelTime(
        366,
        "results/paper/README.md: chapter 5 on Male took 6 min 6 s of one H100 in two sittings (the "
        "manifest: 467 s for chapters 4+5, stopped in chapter 5, then 259 s for chapter 5 resumed)",
    ),
    # The paper profile on the shared 2-core CPU VM (results/paper/manifest.json and README.md).
    (BAYES, "mnist", "paper", "cpu", None): ModelTime(
        579, "results/paper/manifest.json: 1736 s of a 2-core CPU for chapter 3 on the three MNIST tasks"
    ),
    (BAYES, "celeba", "paper", "cpu", None): ModelTime(
        3300, "results/paper/README.md: chapter 3 per CelebA task on a quiet 2-core CPU, 51-60 min"
    ),
    (LEARNED, "mnist", "paper", "cpu", False): ModelTime(9000, f"{_CNN_CPU}: 2 h 25 min per MNIST task"),
    (LEARNED, "celeba", "paper", "cpu", False): ModelTime(61200, f"{_CNN_CPU}: 16 h 49 min per CelebA task"),
    (LEARNED, "mnist", "paper", "cpu", True): ModelTime(
        9000 + 130_020, f"{_CNN_CPU}, plus Figure 8's CNNs: 36 h 07 min (bench/README.md)"
    ),
    (LEARNED, "celeba", "paper", "cpu", True): ModelTime(
        61200 + 587_760, f"{_CNN_CPU}, plus Figure 8's CNNs: 163 h 16 min (bench/README.md)"
    ),
    (REAL, "celeba", "paper", "cpu", None): ModelTime(
        48240,
        "bench/README.md's CelebA CNN rates on one CPU thread: two CNNs of 1 h 42 min and the attacks on 660 "
        "faces (0.66 x 15 h 06 min); projected, not measured",
    ),
    # The quick profile on the shared 2-core CPU VM (its load changes these by a factor of several).
    (BAYES, "mnist", "quick", "cpu", None): ModelTime(23, f"{_QUICK}: 23 s"),
    (BAYES, "celeba", "quick", "cpu", None): ModelTime(51, f"{_QUICK}: 51 s"),
    (LEARNED, "mnist", "quick", "cpu", True): ModelTime(52, f"{_QUICK}: 52 s"),
    (LEARNED, "celeba", "quick", "cpu", True): ModelTime(342, f"{_QUICK}: 342 s"),
    (LEARNED, "mnist", "quick", "cpu", False): ModelTime(52, f"{_QUICK}: 52 s with Figure 8, an upper bound"),
    (LEARNED, "celeba", "quick", "cpu", False): ModelTime(
        342, f"{_QUICK}: 342 s with Figure 8, an upper bound"
    ),
    (REAL, "celeba", "quick", "cpu", None): ModelTime(404, f"{_QUICK}: 404 s"),
}
# The quick profile was not timed on a GPU: its CPU times stand in (small sizes gain little on a GPU, which
# adds its own start-up).
for (_chapter, _dataset, _profile, _kind, _f8), _time in list(MODEL.items()):
    if _profile == "quick":
        MODEL[(_chapter, _dataset, _profile, "cuda", _f8)] = ModelTime(
            _time.seconds, f"not timed on a GPU, the CPU time stands in: {_time.source}"
        )


# ---------------------------------------------------------------------------------------------------------
# Recorded timings: the stamps of finished runs.


@dataclass(frozen=True)
class Timing:
    """One finished run's recorded time (its stamp), with the hardware it ran on where that is known."""

    chapter: str
    dataset: str
    attribute: str
    profile: str
    seed: int
    seconds: float
    hardware: Hardware | None  # None: the device type cannot be told
    parameters: str  # the stamp's --param values, as canonical JSON
    finished: str
    folder: Path  # the results folder (``<folder>/<profile>/<result>.done``)
    notes: tuple[str, ...] = ()  # what was inferred, and how

    @property
    def task(self) -> str:
        return f"{self.dataset}:{self.attribute}"

    def same_run(self, run: Run) -> bool:
        key = (run.chapter, run.dataset, run.attribute, run.seed)
        return (self.chapter, self.dataset, self.attribute, self.seed) == key


def _canonical(parameters: Any) -> str:
    return json.dumps(parameters or {}, sort_keys=True)


def _parse_time(text: Any) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _manifest_entries(folder: Path) -> list[dict[str, Any]]:
    try:
        manifest = json.loads((folder / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    entries = manifest.get("runs", [manifest]) if isinstance(manifest, dict) else []
    return [e for e in entries if isinstance(e, dict)]


def _writer(entries: Sequence[dict[str, Any]], result: str, finished: dt.datetime | None) -> int | None:
    """The index of the manifest entry whose command wrote ``result`` (``<profile>/<name>.json``) at
    ``finished`` (the stamp's time, which lies within the command's)."""
    for index, entry in enumerate(entries):
        if result not in entry.get("results", []):
            continue
        start, end = _parse_time(entry.get("started")), _parse_time(entry.get("finished"))
        slack = dt.timedelta(minutes=2)
        if finished is None or start is None or end is None or start - slack <= finished <= end + slack:
            return index
    return None


def _inferred_hardware(stamp: dict[str, Any], entry: dict[str, Any] | None) -> tuple[Hardware | None, str]:
    """The hardware of a stamp written before ``device_type`` was recorded, and how it was told: its
    ``device`` where named, else ("auto") the GPUs of the manifest entry of the command that wrote the result
    (``entry``), which also names the GPU."""
    named = str(stamp.get("device", ""))
    gpus = [str(g) for g in (entry or {}).get("hardware", {}).get("gpus") or []]
    gpu = gpus[0] if gpus and len(set(gpus)) == 1 else None
    if named == "cpu":
        return Hardware("cpu"), ""
    if named.startswith("cuda"):
        return Hardware("cuda", gpu), "GPU per the manifest" if gpu else ""
    if entry is not None and named == "auto":
        kind = "cuda" if gpus else "cpu"
        return Hardware(kind, gpu), f"'auto' read as {kind} from the manifest"
    return None, ""


def _sweep_covers(command: str, timing: Timing) -> bool:
    """Whether the sweep ``command`` (a manifest entry's) would run ``timing``'s run: its --chapters,
    --tasks, --profile and --seeds include it (none given: all)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if "sweep" not in words:
        return False
    options: dict[str, list[str]] = {}
    current = None
    for word in words[words.index("sweep") + 1 :]:
        if word.startswith("-"):
            current, _, value = word.partition("=")
            options.setdefault(current, []).extend([value] if value else [])
        elif current is not None:
            options[current].append(word)
    chapters = options.get("--chapters", [])
    tasks = [t.lower() for t in options.get("--tasks", [])]
    number = timing.chapter[:2]
    covers_chapter = not chapters or any(
        c.removesuffix(".ipynb") == timing.chapter or (c.isdigit() and c.zfill(2) == number) for c in chapters
    )
    covers_task = not tasks or "all" in tasks or timing.task.lower() in tasks
    profile = options.get("--profile", ["quick"])
    seeds = options.get("--seeds", ["0"])
    return covers_chapter and covers_task and profile[-1:] == [timing.profile] and str(timing.seed) in seeds


def _earlier_sitting(
    timing: Timing, entries: Sequence[dict[str, Any]], writer: int, by_result: dict[str, float]
) -> float:
    """Seconds an earlier sitting spent on ``timing``'s run: the entry just before the one that wrote its
    result, when that command was killed (non-zero exit) on the same GPUs while it covered the run and had
    not written its result; its wall time less the stamped seconds of the results it did write."""
    if writer == 0:
        return 0.0
    before, entry = entries[writer - 1], entries[writer]
    name = f"{timing.profile}/{timing.chapter}__{timing.dataset}__{timing.attribute}__seed{timing.seed}.json"
    if before.get("exit_status") in (0, None) or name in before.get("results", []):
        return 0.0
    if before.get("hardware", {}).get("gpus") != entry.get("hardware", {}).get("gpus"):
        return 0.0
    if not _sweep_covers(str(before.get("command", "")), timing):
        return 0.0
    written = [by_result.get(result) for result in before.get("results", [])]
    if any(seconds is None for seconds in written):
        return 0.0  # a result whose time is unknown: the left-over time cannot be shared out
    return max(0.0, float(before.get("wall_seconds") or 0.0) - sum(written))


def read_timings(folders: Iterable[str | Path], profile: str) -> list[Timing]:
    """The timings of the stamps under ``<folder>/<profile>/`` of each folder (a results base), once each."""
    timings: dict[tuple, Timing] = {}
    for folder in dict.fromkeys(Path(f).resolve() for f in folders):
        entries = _manifest_entries(folder)
        stamps: dict[Path, dict[str, Any]] = {}
        for path in sorted((folder / profile).glob("*.json.done")):
            try:
                stamp = json.loads(path.read_text())
                float(stamp["seconds"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
            stamps[path] = stamp
        by_result = {
            f"{profile}/{path.name.removesuffix('.done')}": float(stamp["seconds"])
            for path, stamp in stamps.items()
        }
        for path, stamp in stamps.items():
            parts = path.name.removesuffix(".json.done").split("__")
            if len(parts) != 4 or not parts[3].startswith("seed") or not parts[3][4:].isdigit():
                continue
            chapter, dataset, attribute, seed = parts[0], parts[1], parts[2], int(parts[3][4:])
            result = f"{profile}/{path.name.removesuffix('.done')}"
            writer = _writer(entries, result, _parse_time(stamp.get("finished")))
            notes: list[str] = []
            if stamp.get("device_type") in ("cpu", "cuda"):
                hardware: Hardware | None = Hardware(stamp["device_type"], stamp.get("gpu"))
            else:
                hardware, note = _inferred_hardware(stamp, entries[writer] if writer is not None else None)
                notes += [note] if note else []
            seconds = float(stamp["seconds"])
            timing = Timing(
                chapter,
                dataset,
                attribute,
                profile,
                seed,
                seconds,
                hardware,
                _canonical(stamp.get("parameters")),
                str(stamp.get("finished", "")),
                folder,
            )
            # A resumed run stamps its last sitting only (older stamps do not say whether it resumed).
            earlier = 0.0
            if stamp.get("resumed", True) and writer is not None:
                earlier = _earlier_sitting(timing, entries, writer, by_result)
            if earlier >= 1:
                seconds += earlier
                notes.append(f"+{earlier:.0f} s of a stopped earlier sitting per the manifest")
            elif stamp.get("resumed"):
                notes.append("resumed from checkpoints: its last sitting only, a lower bound")
            key = (chapter, dataset, attribute, seed, timing.finished, timing.seconds)
            timings.setdefault(key, replace(timing, seconds=seconds, notes=tuple(notes)))
    return list(timings.values())


def timing_folders(results_dir: str | Path) -> list[Path]:
    """Where a sweep writing to ``results_dir`` reads timings: there, and the committed ``results/paper``."""
    return [Path(results_dir), default_paper_results_dir()]


# ---------------------------------------------------------------------------------------------------------
# Estimates.


NO_ESTIMATE_FIX = "run it once without --time-budget (its stamp then times it)"


@dataclass(frozen=True)
class Estimate:
    """A run's estimated seconds (None: no basis for one) and the basis, in words."""

    seconds: float | None
    basis: str
    level: str  # "this run", "this chapter and dataset", "model" or "none"


def duration(seconds: float) -> str:
    """``95`` -> ``95 s``; ``352`` -> ``352 s (5 min 52 s)``; ``5400`` -> ``5400 s (1 h 30 min)``."""
    whole = int(round(seconds))
    if whole < 120:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{whole} s ({hours} h {minutes:02d} min)" if hours else f"{whole} s ({minutes} min {secs:02d} s)"


def _figure8(run: Run) -> bool | None:
    """For chapter 4: whether the run makes Figure 8's sweeps (its default); None for the other chapters."""
    if run.chapter != LEARNED:
        return None
    value = dict(run.extra).get("figure8", True)
    return value if isinstance(value, bool) else str(value).strip().lower() not in ("false", "no", "0")


def _where(timing: Timing, run: Run) -> str:
    if timing.folder == Path(run.results_dir).resolve():
        return "these results"
    if timing.folder == default_paper_results_dir().resolve():
        return "committed results/paper"
    return str(timing.folder)


def _on(timing: Timing) -> str:
    if timing.hardware is None:
        return "?"
    return timing.hardware.gpu or timing.hardware.device_type


def _recorded(timing: Timing, run: Run) -> str:
    """``352 s on NVIDIA H100 80GB HBM3, 2026-11-22 (these results; notes)``."""
    notes = "".join(f"; {note}" for note in timing.notes)
    return f"{timing.seconds:.0f} s on {_on(timing)}, {timing.finished[:10]} ({_where(timing, run)}{notes})"


def estimate_run(run: Run, hardware: Hardware, timings: Sequence[Timing]) -> Estimate:
    """The estimated seconds of ``run`` on ``hardware`` and its basis (see the module's docstring)."""
    parameters = _canonical(json.loads(json.dumps(run.extra_parameters())))
    usable = [
        t
        for t in timings
        if t.profile == run.profile
        and t.hardware is not None
        and t.hardware.device_type == hardware.device_type
        and t.parameters == parameters
    ]
    if hardware.gpu:  # the same GPU where there are such timings
        same_gpu = [t for t in usable if t.hardware is not None and t.hardware.gpu == hardware.gpu]
        usable = same_gpu or usable
    own = sorted((t for t in usable if t.same_run(run)), key=lambda t: t.finished)
    if own:
        last = own[-1]
        return Estimate(last.seconds, f"this run's stamp: {_recorded(last, run)}", "this run")
    kin = [t for t in usable if t.chapter == run.chapter and t.dataset == run.dataset]
    if kin:
        seconds = statistics.median(t.seconds for t in kin)
        if len(kin) == 1:
            what = f"{kin[0].attribute} seed {kin[0].seed}, {_recorded(kin[0], run)}"
        else:
            low, high = min(t.seconds for t in kin), max(t.seconds for t in kin)
            gpus = ", ".join(sorted({_on(t) for t in kin}))
            what = f"median of {len(kin)} runs, {low:.0f}-{high:.0f} s ({_where(kin[0], run)}, {gpus})"
        return Estimate(seconds, f"this chapter on {run.dataset}: {what}", "this chapter and dataset")
    model = MODEL.get((run.chapter, run.dataset, run.profile, hardware.device_type, _figure8(run)))
    if model is not None:
        unmodelled = {k: v for k, v in run.extra_parameters().items() if k != "figure8"}
        named = ", ".join(f"{k}={v!r}" for k, v in unmodelled.items())
        ignored = f"; not modelled: {named}" if unmodelled else ""
        return Estimate(model.seconds, f"model: {model.source}{ignored}", "model")
    basis = (
        f"no recorded {run.profile}-profile run of {run.chapter} on {hardware.device_type} with these "
        f"parameters, and no model: {NO_ESTIMATE_FIX}"
    )
    return Estimate(None, basis, "none")


# ---------------------------------------------------------------------------------------------------------
# The local pool's order, simulated; the budget while a sweep executes.


@dataclass
class Slot:
    """One run's place in a simulated sweep."""

    run: Run
    estimate: Estimate
    start: float | None = None  # seconds from the budget's start; None: not started
    why_left: str = ""


@dataclass
class Schedule:
    """The runs of a sweep in the local pool's order: which start, when, and which are left."""

    slots: list[Slot]
    workers: int
    budget: float | None
    offset: float = 0.0  # seconds of the budget already spent when the runs start

    @property
    def started(self) -> list[Slot]:
        return [s for s in self.slots if s.start is not None]

    @property
    def left(self) -> list[Slot]:
        return [s for s in self.slots if s.start is None]

    @property
    def work(self) -> float:
        return sum(s.estimate.seconds or 0.0 for s in self.started)

    @property
    def end(self) -> float:
        """When the last started run is expected to end (seconds from the budget's start)."""
        ends = [s.start + (s.estimate.seconds or 0.0) for s in self.started if s.start is not None]
        return max(ends, default=self.offset)


def simulate(
    runs: Sequence[tuple[Run, Estimate]], workers: int, budget: float | None = None, offset: float = 0.0
) -> Schedule:
    """The local pool's order: each run, in the plan's order, starts on the first worker to be free; under
    a ``budget`` (seconds, counted from ``offset`` seconds ago) a run starts only if its estimate ends inside
    it, and one that does not is left (time only runs on, so it would not fit later either). Without a
    budget a run with no estimate is left too."""
    free = [float(offset)] * max(1, workers)
    heapq.heapify(free)
    slots = []
    for run, estimate in runs:
        slot = Slot(run, estimate)
        slots.append(slot)
        if estimate.seconds is None:
            slot.why_left = f"no estimate: {NO_ESTIMATE_FIX}"
            continue
        start = free[0]
        if budget is not None and start + estimate.seconds > budget:
            left = max(0.0, budget - start)
            slot.why_left = f"needs about {duration(estimate.seconds)}, {duration(left)} of the budget left"
            continue
        heapq.heapreplace(free, start + estimate.seconds)
        slot.start = start
    return Schedule(slots, max(1, workers), budget, offset)


def parse_budget(text: str | None) -> float | None:
    """``--time-budget``: a positive, finite number of seconds (None: no budget)."""
    if text is None:
        return None
    fix = "give the seconds the sweep may take, e.g. --time-budget 540 for a 10-minute window"
    try:
        seconds = float(str(text).strip().removesuffix("s"))
    except ValueError:
        raise SweepError(f"--time-budget {text!r} is not a number of seconds: {fix}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise SweepError(f"--time-budget {text!r} must be a positive number of seconds: {fix}")
    return seconds


@dataclass
class TimeBudget:
    """While a sweep executes: starts a run only when its estimate fits the time left.

    ``started``: ``time.monotonic()`` when the budget began (the command's start); ``estimates``: run name ->
    seconds (None: no estimate, never started). Runs refused are kept in ``left`` with the reason."""

    seconds: float
    estimates: dict[str, float | None]
    started: float = field(default_factory=time.monotonic)
    left: list[tuple[Run, str]] = field(default_factory=list)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def admit(self, run: Run) -> bool:
        """Whether ``run`` may start now; if not, it is added to ``left``."""
        estimate = self.estimates.get(run.name)
        remaining = self.remaining()
        if estimate is None:
            self.left.append((run, f"no estimate of its time: {NO_ESTIMATE_FIX}"))
            return False
        if estimate > remaining:
            reason = f"needs about {duration(estimate)}, {duration(max(0.0, remaining))} of the budget left"
            self.left.append((run, reason))
            return False
        return True
