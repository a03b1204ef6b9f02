"""Results: what one chapter run measured (``Result``, the schema of a result file) and the numbers of many
runs (``ResultSet``), which every table and figure of the paper is drawn from.

A chapter builds its ``Result`` from its metrics and draws its tables and figures from a one-result
``ResultSet``; the summary chapter draws the same tables and figures from every result file of a profile
(``nbhelpers.runs.results.collect_results``). The metrics of each chapter are written and read by that
chapter's module: chapter 03 (``ch3_bayes.chapter3_metrics``), 04 (``ch4_learned.chapter4_metrics``), 05
(``ch5_real.chapter5_metrics``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.ids import BAYES, LEARNED, ChapterId
from nbhelpers.chapters.paper_values import adversarial_accuracy
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.science.data import TASKS

SCHEMA_VERSION = 1
Task = tuple[str, str]
CLEAN, ADVERSARIAL = "clean", "adversarial"  # the two columns of each model in Tables 1 and 2
_ENVELOPE = (
    "schema",
    "chapter",
    "dataset",
    "attribute",
    "profile",
    "seed",
    "code_version",
    "created",
    "metrics",
)


@dataclass
class Result:
    """One chapter run: its task, profile and seed, the metrics it measured and the parameters it ran with.

    ``code_version`` and ``created`` are stamped when the result is saved. ``params`` are stored beside the
    envelope's fields in the file (e.g. ``"figure8": false``).
    """

    chapter: ChapterId
    dataset: str
    attribute: str
    profile: str
    seed: int
    metrics: dict[str, Any]
    params: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    created: str | None = None

    def __post_init__(self) -> None:
        self.chapter = ChapterId(self.chapter)
        clash = sorted(set(self.params) & set(_ENVELOPE))
        if clash:
            raise ValueError(f"parameters {clash} would overwrite fields of the result file: rename them")

    @property
    def task(self) -> Task:
        return (self.dataset, self.attribute)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of the result file."""
        envelope = {
            "schema": SCHEMA_VERSION,
            "chapter": str(self.chapter),
            "dataset": self.dataset,
            "attribute": self.attribute,
            "profile": self.profile,
            "seed": self.seed,
            "code_version": self.code_version,
            "created": self.created,
            "metrics": self.metrics,
        }
        return {**envelope, **self.params}

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Result:
        """The result of a result file's JSON; raises ``ValueError`` when it is not one."""
        if not is_result(payload):
            raise ValueError("not a result: a result names its chapter and holds its metrics")
        return cls(
            chapter=ChapterId(str(payload["chapter"])),
            dataset=str(payload.get("dataset", "")),
            attribute=str(payload.get("attribute", "")),
            profile=str(payload.get("profile", "")),
            seed=payload.get("seed"),
            metrics=payload["metrics"],
            params={k: v for k, v in payload.items() if k not in _ENVELOPE},
            code_version=payload.get("code_version"),
            created=payload.get("created"),
        )


def is_result(payload: Any) -> bool:
    """Whether a JSON payload is a result (other JSON files, e.g. a manifest, may share its folder)."""
    return isinstance(payload, dict) and "chapter" in payload and "metrics" in payload


@dataclass
class ResultSet:
    """The numbers of one profile's results, averaged over seeds.

    ``values``: long table [n, 6] with columns chapter (a ``ChapterId``), dataset, attribute, metric (dotted
    path into the metrics, e.g. "cnn.mean_l2"), value (mean over seeds; NaN where a report had no number)
    and n_seeds. ``files``: one row per result read, [m, 6]: chapter, dataset, attribute, seed,
    code_version, created. ``results``: the results themselves, for what is not a single number (the
    Figure 8 sweeps). ``results_dir``: the folder they were read from (None: made in this run).
    """

    profile: str
    results_dir: Path | None
    seed: int | None
    values: pd.DataFrame
    files: pd.DataFrame
    results: list[Result] = field(default_factory=list, repr=False)
    _lookup: dict[tuple[str, str, str, str], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        v = self.values
        keys = zip(v["chapter"], v["dataset"], v["attribute"], v["metric"], strict=True)
        self._lookup = dict(zip(keys, v["value"].astype(float), strict=True))

    @classmethod
    def from_results(
        cls,
        results: Iterable[Result],
        profile: str = "quick",
        results_dir: str | Path | None = None,
        seed: int | None = 0,
    ) -> ResultSet:
        """The results of ``profile`` (``seed``'s only, or every seed's averaged when None)."""
        get_profile(profile)  # an unknown profile fails here, listing the valid ones
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None (every seed), got {seed!r}")
        kept = [r for r in results if r.profile in ("", profile) and (seed is None or r.seed == seed)]
        rows, files = [], []
        for result in kept:
            files.append(
                [
                    result.chapter,
                    result.dataset,
                    result.attribute,
                    result.seed,
                    result.code_version,
                    result.created,
                ]
            )
            flat: dict[str, float] = {}
            _flatten(result.metrics, "", flat)
            rows += [[result.chapter, result.dataset, result.attribute, m, v] for m, v in flat.items()]
        keys = ["chapter", "dataset", "attribute", "metric"]
        if rows:
            long = pd.DataFrame(rows, columns=[*keys, "value"])
            values = long.groupby(keys, sort=False)["value"].agg(value="mean", n_seeds="count").reset_index()
        else:
            values = pd.DataFrame(columns=[*keys, "value", "n_seeds"])
        file_columns = ["chapter", "dataset", "attribute", "seed", "code_version", "created"]
        folder = Path(results_dir) if results_dir is not None else None
        return cls(profile, folder, seed, values, pd.DataFrame(files, columns=file_columns), kept)

    @classmethod
    def of(cls, result: Result) -> ResultSet:
        """The one result of a chapter run, for its chapter's tables and figures."""
        return cls.from_results([result], result.profile, None, result.seed)

    @property
    def empty(self) -> bool:
        """True when no result was read."""
        return self.files.empty

    @property
    def seeds(self) -> list[int]:
        """The seeds whose results were read."""
        return sorted({int(s) for s in self.files["seed"] if pd.notna(s)})

    def value(self, chapter: str, dataset: str, attribute: str, metric: str) -> float:
        """The (seed-averaged) number, NaN when no result holds it."""
        return self._lookup.get((chapter, dataset, attribute, metric), math.nan)

    def tasks(self, *chapters: str) -> list[Task]:
        """Tasks with a result of any of ``chapters``, in the paper's order (Table 1), unknown ones last."""
        found = self.files[self.files["chapter"].isin(chapters)]
        return task_order(set(zip(found["dataset"], found["attribute"], strict=True)))

    def results_of(self, chapter: str, task: Task) -> list[Result]:
        """The results of ``chapter`` for ``task`` (one per seed)."""
        return [r for r in self.results if r.chapter == chapter and r.task == tuple(task)]

    def scope(self) -> str:
        """ "profile quick, seed 0": what the numbers are, for captions."""
        if self.seed is not None:
            seeds = f"seed {self.seed}"
        elif len(self.seeds) > 1:
            seeds = f"mean over seeds {', '.join(map(str, self.seeds))}"
        else:
            seeds = "every seed"
        return f"profile {self.profile}, {seeds}"


def _flatten(value: Any, prefix: str, out: dict[str, float]) -> None:
    """Numeric leaves of nested dicts (and of lists of dicts) into ``out`` under dotted names.

    None becomes NaN (a report with no successful attack has no mean L2). Lists of numbers (per-sample
    norms, histograms) and flags are not summary numbers and are left out.
    """
    if isinstance(value, bool):
        return
    if value is None:
        out[prefix] = math.nan
    elif isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}", out)


TASK_RANK = {task: rank for rank, task in enumerate(TASKS)}


def task_order(tasks: set[Task], order: Sequence[Task] = TASKS) -> list[Task]:
    """``tasks`` in the order of ``order`` (default: the paper's Table 1), unknown ones last."""
    known = [task for task in dict.fromkeys(order) if task in tasks]
    return known + sorted(tasks - set(known))


def task_label(dataset: str, attribute: str) -> str:
    """ "CelebA / Mouth Slightly Open", "MNIST / 0 vs 6": the paper's row names."""
    name = {"celeba": "CelebA", "mnist": "MNIST"}.get(dataset, dataset)
    return f"{name} / {attribute.replace('_', ' ')}"


def task_labels(tasks: Sequence[Task]) -> pd.Index:
    """The rows of a per-task table."""
    return pd.Index([task_label(*task) for task in tasks], name="task")


def report_value(results: ResultSet, chapter: str, task: Task, model: str, metric: str) -> float:
    """One number of a model's report; chapter 04's Bayes-optimal falls back to chapter 03's symmetric one."""
    value = results.value(chapter, *task, f"{model}.{metric}")
    if math.isnan(value) and chapter == LEARNED and model == "bayes":
        value = results.value(BAYES, *task, f"bayes_symmetric.{metric}")
    return value


def clean_accuracy(results: ResultSet, chapter: str, task: Task, model: str) -> float:
    """Accuracy over the whole test set where the chapter saved it, else over the attacked samples."""
    value = results.value(chapter, *task, f"test_accuracy.{model}")
    return report_value(results, chapter, task, model, "clean_accuracy") if math.isnan(value) else value


def adversarial(results: ResultSet, chapter: str, task: Task, model: str, convention: str) -> float:
    """Adversarial accuracy over the attacked samples (the paper's convention uses their clean accuracy)."""
    clean = report_value(results, chapter, task, model, "clean_accuracy")
    strict = report_value(results, chapter, task, model, "adversarial_accuracy")
    return adversarial_accuracy(clean, strict, convention)


def accuracy_table(
    results: ResultSet, chapter: str, tasks: list[Task], models: Sequence[str], convention: str
) -> pd.DataFrame:
    """[tasks, (model label, clean/adversarial)] accuracies of ``chapter``'s results, NaN where missing."""
    adversarial_accuracy(1.0, 0.0, convention)  # reject a bad convention even when there are no rows
    columns = pd.MultiIndex.from_product([[pv.MODEL_LABELS[m] for m in models], [CLEAN, ADVERSARIAL]])
    rows = []
    for task in tasks:
        row = []
        for model in models:
            row += [
                clean_accuracy(results, chapter, task, model),
                adversarial(results, chapter, task, model, convention),
            ]
        rows.append(row)
    return pd.DataFrame(rows, index=task_labels(tasks), columns=columns, dtype=float)


def mean_l2_table(results: ResultSet, chapter: str, tasks: list[Task], models: Sequence[str]) -> pd.DataFrame:
    """[tasks, model labels] mean L2 of each model's report in ``chapter``'s results."""
    rows = [[report_value(results, chapter, task, model, "mean_l2") for model in models] for task in tasks]
    return pd.DataFrame(
        rows, index=task_labels(tasks), columns=[pv.MODEL_LABELS[m] for m in models], dtype=float
    )
