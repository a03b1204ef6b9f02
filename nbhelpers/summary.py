"""The summary chapter: the paper's tables and figures rebuilt from result files, our numbers beside the
paper's, and the provenance of committed runs.

Chapters 3-5 each save one JSON result per (task, profile, seed) (:mod:`nbhelpers.results`):

- chapter 03 (Bayes-optimal robustness): ``bayes_symmetric`` and ``bayes_asymmetric`` robustness reports,
  ``subspace_distance_mean``, ``certified_radius_mean``;
- chapter 04 (learned classifiers, symmetric data): reports ``bayes``, ``cnn``, ``linear_svm``, ``rbf_svm``,
  ``test_accuracy`` (per model, on the whole test set), and the Figure 8 sweeps: ``sweeps`` =
  {``train_size``/``width``/``depth``: [{``value``, ``test_accuracy``, ``report``}]} and ``trades`` =
  [{``beta``, ``test_accuracy``, ``report``}];
- chapter 05 (real CelebA data): reports ``cnn``, ``linear_svm``, ``rbf_svm`` and
  ``table3`` = {``real_train``, ``symmetric_train``} (real-test accuracies) and ``test_accuracy``.

A report is :meth:`nbhelpers.report.RobustnessReport.to_dict`. :func:`collect_results` flattens every numeric
leaf of the metrics into dotted names (``cnn.mean_l2``, ``table3.real_train``), averages them over seeds and
leaves lists of per-sample numbers aside; a missing key is a blank cell, never an error. The Bayes-optimal
column of Table 1 and Figure 6 comes from chapter 04 and falls back to chapter 03's ``bayes_symmetric``.
Clean accuracies are over the whole test set (``test_accuracy``) where a chapter saved it, else over the
attacked samples (the report's); adversarial accuracies are over the attacked samples.

Paper-profile results committed under ``results/paper/`` carry a ``manifest.json`` with one entry per command
that made them (hardware, wall time, git commit, command, result files) written by :func:`write_manifest`;
``python -m nbhelpers.summary --results-dir results/paper -- COMMAND...`` runs a command and then adds its
entry (see ``results/paper/README.md``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from nbhelpers import paper_values as pv
from nbhelpers.config import get_profile, project_root
from nbhelpers.config import results_dir as default_results_dir
from nbhelpers.data import REAL_DATA_ATTRIBUTES, TASKS
from nbhelpers.display import Markdown
from nbhelpers.paper_values import CONVENTIONS, adversarial_accuracy  # noqa: F401 (part of the summary API)
from nbhelpers.results import code_version, load_results, write_json_atomic

MANIFEST_NAME = "manifest.json"
PAPER_RESULTS_SUBDIR = Path("results") / "paper"
BAYES_CHAPTER, LEARNED_CHAPTER, REAL_CHAPTER = "03", "04", "05"
MODEL_COLORS = {"bayes": "tab:green", "cnn": "tab:red", "linear_svm": "tab:orange", "rbf_svm": "tab:blue"}
CLEAN, ADVERSARIAL = "clean", "adversarial"

# Each table's title and the chapters that write its numbers.
_SYMMETRIC = (BAYES_CHAPTER, LEARNED_CHAPTER)
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "table1": ("Table 1: clean (adversarial) accuracy on the symmetric datasets", _SYMMETRIC),
    "figure6": ("Figure 6: mean L2 of the attacks on the symmetric datasets", _SYMMETRIC),
    "figure4": ("Figures 4, 11 and 12: the Bayes-optimal attack, asymmetric vs symmetric", (BAYES_CHAPTER,)),
    "table2": ("Table 2: clean (adversarial) accuracy on real CelebA images", (REAL_CHAPTER,)),
    "figure8": ("Figure 8: CNN sweeps and the TRADES trade-off, symmetric datasets", (LEARNED_CHAPTER,)),
    "figure9": ("Figure 9 (right): mean L2 of the attacks on real CelebA images", (REAL_CHAPTER,)),
    "table3": ("Table 3: real-test accuracy of CNNs trained on real vs symmetric data", (REAL_CHAPTER,)),
    "comparison": ("Our numbers beside the paper's", (*_SYMMETRIC, REAL_CHAPTER)),
}
# These tables also hold the paper's numbers, so they are worth showing before we have ours.
_PAPER_ONLY_OK = ("figure4", "table3")

Task = tuple[str, str]


# ---------------------------------------------------------------------------------------------------------
# Reading result files.


@dataclass
class SummaryResults:
    """The numbers of one profile's result files, averaged over seeds.

    ``values``: long table [n, 6] with columns chapter ("03"), dataset, attribute, metric (dotted path into
    the metrics, e.g. "cnn.mean_l2"), value (mean over seeds; NaN where a report had no number) and
    n_seeds. ``files``: one row per result file read, [m, 6]: chapter, dataset, attribute, seed,
    code_version, created.
    """

    profile: str
    results_dir: Path
    seed: int | None
    values: pd.DataFrame
    files: pd.DataFrame
    _lookup: dict[tuple[str, str, str, str], float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        v = self.values
        keys = zip(v["chapter"], v["dataset"], v["attribute"], v["metric"], strict=True)
        self._lookup = dict(zip(keys, v["value"].astype(float), strict=True))

    @property
    def empty(self) -> bool:
        """True when no result file was read."""
        return self.files.empty

    @property
    def seeds(self) -> list[int]:
        """The seeds whose files were read."""
        return sorted({int(s) for s in self.files["seed"] if pd.notna(s)})

    def value(self, chapter: str, dataset: str, attribute: str, metric: str) -> float:
        """The (seed-averaged) number, NaN when no result holds it."""
        return self._lookup.get((chapter, dataset, attribute, metric), math.nan)

    def tasks(self, *chapters: str) -> list[Task]:
        """Tasks with a result of any of ``chapters``, in the paper's order (Table 1), unknown ones last."""
        found = self.files[self.files["chapter"].isin(chapters)]
        return _task_order(set(zip(found["dataset"], found["attribute"], strict=True)))


def collect_results(
    profile: str = "quick", results_dir: str | os.PathLike | None = None, seed: int | None = 0
) -> SummaryResults:
    """Read ``<results_dir>/<profile>/*.json`` (default folder: ``nbhelpers.config.results_dir()``).

    ``seed`` keeps that seed's files only; None averages over every seed found. A missing folder gives an
    empty result set (the tables then say which command writes their numbers).
    """
    get_profile(profile)  # an unknown profile fails here, listing the valid ones
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None (every seed), got {seed!r}")
    base = Path(results_dir) if results_dir else default_results_dir()
    rows, files = [], []
    for payload in load_results(profile, base):
        if seed is not None and payload.get("seed") != seed:
            continue
        chapter = _chapter_key(str(payload.get("chapter", "")))
        dataset, attribute = str(payload.get("dataset", "")), str(payload.get("attribute", ""))
        files.append(
            [
                chapter,
                dataset,
                attribute,
                payload.get("seed"),
                payload.get("code_version"),
                payload.get("created"),
            ]
        )
        flat: dict[str, float] = {}
        _flatten(payload.get("metrics", {}), "", flat)
        rows += [[chapter, dataset, attribute, metric, value] for metric, value in flat.items()]
    keys = ["chapter", "dataset", "attribute", "metric"]
    if rows:
        long = pd.DataFrame(rows, columns=[*keys, "value"])
        values = long.groupby(keys, sort=False)["value"].agg(value="mean", n_seeds="count").reset_index()
    else:
        values = pd.DataFrame(columns=[*keys, "value", "n_seeds"])
    file_columns = ["chapter", "dataset", "attribute", "seed", "code_version", "created"]
    files_frame = pd.DataFrame(files, columns=file_columns)
    return SummaryResults(profile, base, seed, values, files_frame)


def _chapter_key(name: str) -> str:
    """ "03_bayes_robustness" -> "03"; other names stay as they are."""
    return name[:2] if name[:2].isdigit() else name


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


_TASK_RANK = {task: rank for rank, task in enumerate(TASKS)}


def _task_order(tasks: set[Task], order: Sequence[Task] = TASKS) -> list[Task]:
    """``tasks`` in the order of ``order`` (default: the paper's Table 1), unknown ones last."""
    known = [task for task in dict.fromkeys(order) if task in tasks]
    return known + sorted(tasks - set(known))


def task_label(dataset: str, attribute: str) -> str:
    """ "CelebA / Mouth Slightly Open", "MNIST / 0 vs 6": the paper's row names."""
    name = {"celeba": "CelebA", "mnist": "MNIST"}.get(dataset, dataset)
    return f"{name} / {attribute.replace('_', ' ')}"


def _labels(tasks: Sequence[Task]) -> pd.Index:
    return pd.Index([task_label(*task) for task in tasks], name="task")


# ---------------------------------------------------------------------------------------------------------
# Tables.


def _report_value(results: SummaryResults, chapter: str, task: Task, model: str, metric: str) -> float:
    """One number of a model's report; chapter 04's Bayes-optimal falls back to chapter 03's symmetric one."""
    value = results.value(chapter, *task, f"{model}.{metric}")
    if math.isnan(value) and chapter == LEARNED_CHAPTER and model == "bayes":
        value = results.value(BAYES_CHAPTER, *task, f"bayes_symmetric.{metric}")
    return value


def _clean_accuracy(results: SummaryResults, chapter: str, task: Task, model: str) -> float:
    """Accuracy over the whole test set where the chapter saved it, else over the attacked samples."""
    value = results.value(chapter, *task, f"test_accuracy.{model}")
    return _report_value(results, chapter, task, model, "clean_accuracy") if math.isnan(value) else value


def _adversarial(results: SummaryResults, chapter: str, task: Task, model: str, convention: str) -> float:
    """Adversarial accuracy over the attacked samples (the paper's convention uses their clean accuracy)."""
    clean = _report_value(results, chapter, task, model, "clean_accuracy")
    strict = _report_value(results, chapter, task, model, "adversarial_accuracy")
    return adversarial_accuracy(clean, strict, convention)


def _accuracy_table(
    results: SummaryResults, chapter: str, tasks: list[Task], models: Sequence[str], convention: str
) -> pd.DataFrame:
    adversarial_accuracy(1.0, 0.0, convention)  # reject a bad convention even when there are no rows
    columns = pd.MultiIndex.from_product([[pv.MODEL_LABELS[m] for m in models], [CLEAN, ADVERSARIAL]])
    rows = []
    for task in tasks:
        row = []
        for model in models:
            row += [
                _clean_accuracy(results, chapter, task, model),
                _adversarial(results, chapter, task, model, convention),
            ]
        rows.append(row)
    return pd.DataFrame(rows, index=_labels(tasks), columns=columns, dtype=float)


def table1(results: SummaryResults, convention: str = "paper") -> pd.DataFrame:
    """Table 1: [tasks, (model, clean/adversarial)] accuracies on the symmetric datasets, NaN where missing.

    Rows: the tasks with a chapter 03 or 04 result. The Bayes-optimal columns fall back to chapter 03.
    """
    tasks = results.tasks(BAYES_CHAPTER, LEARNED_CHAPTER)
    return _accuracy_table(results, LEARNED_CHAPTER, tasks, pv.MODELS, convention)


def table2(results: SummaryResults, convention: str = "paper") -> pd.DataFrame:
    """Table 2: [tasks, (model, clean/adversarial)] accuracies of the models trained on real CelebA images."""
    return _accuracy_table(results, REAL_CHAPTER, _real_tasks(results), pv.REAL_MODELS, convention)


def _real_tasks(results: SummaryResults) -> list[Task]:
    """Tasks with a chapter 05 result, in the order of the paper's Tables 2 and 3."""
    return _task_order(set(results.tasks(REAL_CHAPTER)), [*pv.TABLE2, *TASKS])


def _paper_table3(task: Task) -> tuple[float, float]:
    """The paper's Table 3 accuracies of ``task``: (trained on real, trained on symmetric), NaN if absent."""
    paper = pv.TABLE3.get(task, {})
    return paper.get("real_train", math.nan), paper.get("symmetric_train", math.nan)


def table3(results: SummaryResults) -> pd.DataFrame:
    """Table 3: [tasks + "Average", columns] real-test CNN accuracy when trained on real vs on symmetric
    data, and the drop (real minus symmetric), ours ("ours", 3 or 5 columns) beside the paper's ("paper", 3).

    Where our results hold the symmetric CNN's accuracy with the real training prior
    (``experiments.symmetric_vs_real``), two more columns of ours give it and the drop left with it, and
    where they hold the symmetric MFA pair's Bayes-optimal accuracy on the real test faces
    (``experiments.bayes_real_accuracy``), one more gives that.
    Rows: the paper's five tasks and any other with a chapter 05 result. Each column of ours is averaged
    over the rows that have a number; the paper's columns over the same rows as our drop (all five while
    we have none), so that the two averages cover the same attributes.
    """
    tasks = _task_order(set(results.tasks(REAL_CHAPTER)) | set(pv.TABLE3), [*pv.TABLE3, *TASKS])
    rows = []
    for task in tasks:
        real = results.value(REAL_CHAPTER, *task, "table3.real_train")
        symmetric = results.value(REAL_CHAPTER, *task, "table3.symmetric_train")
        prior = results.value(REAL_CHAPTER, *task, "table3.symmetric_train_prior_corrected")
        bayes = results.value(REAL_CHAPTER, *task, "table3.bayes_symmetric")
        paper_real, paper_sym = _paper_table3(task)
        rows.append(
            [
                real,
                symmetric,
                real - symmetric,
                prior,
                real - prior,
                bayes,
                paper_real,
                paper_sym,
                paper_real - paper_sym,
            ]
        )
    ours = ["real train", "symmetric train", "drop", "symmetric, real prior", "drop, real prior"]
    ours.append("Bayes, symmetric pair")
    columns = pd.MultiIndex.from_tuples(
        [("ours", name) for name in ours] + [("paper", name) for name in ours[:3]]
    )
    table = pd.DataFrame(rows, index=_labels(tasks), columns=columns, dtype=float)
    with_ours = table[("ours", "drop")].notna()
    average = table.mean(axis=0, skipna=True)
    if with_ours.any():
        average["paper"] = table.loc[with_ours, "paper"].mean(axis=0, skipna=True)
    table.loc["Average"] = average
    # Results made before a column was recorded leave it empty: drop it rather than show NaN.
    for first, *rest in (("symmetric, real prior", "drop, real prior"), ("Bayes, symmetric pair",)):
        if table[("ours", first)].isna().all():
            table = table.drop(columns=[("ours", name) for name in (first, *rest)])
    return table


# The options of scripts/table3_prior.py that change the MFA pair, as the table names them.
_MFA_CHECK_OPTIONS = {
    "--images-per-component": "faces per component",
    "--max-images-per-class": "faces per class at most",
    "--latent-dim": "latent dim",
}


def _table3_records(folder: str | os.PathLike) -> list[tuple[str, dict, str]]:
    """``scripts/table3_prior.py``'s records in ``folder``: (file stem, record, MFA setting) per file."""
    out = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        words = shlex.split(record["command"])
        setting = [
            f"{_MFA_CHECK_OPTIONS[word]} {words[i + 1]}"
            for i, word in enumerate(words[:-1])
            if word in _MFA_CHECK_OPTIONS
        ]
        out.append((path.stem, record, ", ".join(setting) or "paper sizes"))
    return out


def _paper_sizes_first(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` sorted by attribute, the rows of the paper's MFA sizes first, then by setting."""
    return (
        table.assign(_order=table["MFA pair"] != "paper sizes")
        .sort_values(["attribute", "_order", "MFA pair"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )


_TABLE3_CHECK_COLUMNS = {
    "real_train": "CNN, real faces",
    "symmetric_train": "CNN, symmetric samples",
    "bayes_fitted": "Bayes, fitted pair",
    "bayes_symmetric": "Bayes, symmetric pair",
}


def table3_checks(folder: str | os.PathLike) -> pd.DataFrame:
    """The records of ``scripts/table3_prior.py`` in ``folder`` (``*.json``) as one table, [n, 10]: per
    record the attribute, the MFA pair's setting (the script's MFA options, or "paper sizes"), its
    components per class and latent dimension, the CNNs' epochs over the symmetric samples, the real-test
    accuracy of the CNN trained on real faces and of the one trained on symmetric samples, and of the
    Bayes-optimal classifiers of the fitted and the symmetric MFA pair (NaN where a record lacks it), and
    the records' file names. Each CNN record has a row of its own (two runs of one command stay apart);
    a ``--bayes-only`` record fills the Bayes columns of its setting's CNN rows, or has its own row where
    there is none. ``--symmetric-cnn-seeds`` records are ``table3_seed_checks``'s. Sorted by attribute,
    the paper's sizes first; empty when the folder holds no record.
    """
    rows, bayes_only = [], []
    for stem, record, setting in _table3_records(folder):
        if "table3" not in record:
            continue
        row = {
            "attribute": record["attribute"],
            "MFA pair": setting,
            "components": " + ".join(map(str, record["components"])) if "components" in record else None,
            "latent dim": record.get("latent_dim", get_profile(record["profile"]).mfa.celeba_latent_dim),
            "CNN epochs": record.get("symmetric_epochs", math.nan),
            **{label: record["table3"].get(key, math.nan) for key, label in _TABLE3_CHECK_COLUMNS.items()},
            "records": stem,
        }
        (rows if "real_train" in record["table3"] else bayes_only).append(row)
    for bayes in bayes_only:
        same = [r for r in rows if (r["attribute"], r["MFA pair"]) == (bayes["attribute"], bayes["MFA pair"])]
        for row in same:
            for column in (
                "components",
                _TABLE3_CHECK_COLUMNS["bayes_fitted"],
                _TABLE3_CHECK_COLUMNS["bayes_symmetric"],
            ):
                if row[column] is None or (isinstance(row[column], float) and math.isnan(row[column])):
                    row[column] = bayes[column]
            row["records"] += f", {bayes['records']}"
        if not same:
            rows.append(bayes)
    columns = ["attribute", "MFA pair", "components", "latent dim", "CNN epochs"]
    columns += [*_TABLE3_CHECK_COLUMNS.values(), "records"]
    table = pd.DataFrame(rows, columns=columns)
    table["CNN epochs"] = table["CNN epochs"].astype("Int64")  # a count, empty for Bayes-only settings
    return _paper_sizes_first(table)


def table3_drops(folder: str | os.PathLike) -> pd.DataFrame:
    """Table 3 from the CNN records of ``scripts/table3_prior.py`` in ``folder`` beside the paper's,
    [attributes + 1, 9]: per attribute and CNN budget with a record at the paper's MFA sizes, the number of
    records, the CNN epochs, our real-test accuracies of the CNN trained on real faces and of the one trained
    on symmetric samples and their drop (the mean over the records: the same command run on several
    machines), then the paper's two accuracies and drop. The last row, "mean", averages each column over
    the rows above (one per attribute when all share a budget; the paper's over the same attributes), as
    the paper's "average reduction" does, and counts their records. Records with other MFA settings and
    ``--symmetric-cnn-seeds`` records are left out. Empty when there is none.
    """
    checks = table3_checks(folder)
    real, symmetric = _TABLE3_CHECK_COLUMNS["real_train"], _TABLE3_CHECK_COLUMNS["symmetric_train"]
    ours = checks[(checks["MFA pair"] == "paper sizes") & checks[real].notna() & checks[symmetric].notna()]
    columns = ["attribute", "records", "CNN epochs", "ours: real", "ours: symmetric", "ours: drop"]
    columns += ["paper: real", "paper: symmetric", "paper: drop"]
    rows = []
    for (attribute, epochs), group in ours.groupby(["attribute", "CNN epochs"], sort=False):
        paper_real, paper_symmetric = _paper_table3(("celeba", attribute))
        rows.append(
            {
                "attribute": attribute,
                "records": len(group),
                "CNN epochs": epochs,
                "ours: real": group[real].mean(),
                "ours: symmetric": group[symmetric].mean(),
                "ours: drop": (group[real] - group[symmetric]).mean(),
                "paper: real": paper_real,
                "paper: symmetric": paper_symmetric,
                "paper: drop": paper_real - paper_symmetric,
            }
        )
    order = _task_order({("celeba", row["attribute"]) for row in rows}, [*pv.TABLE3, *TASKS])
    rows.sort(key=lambda row: order.index(("celeba", row["attribute"])))  # then stable: by budget
    table = pd.DataFrame(rows, columns=columns)
    if rows:
        mean = table[columns[3:]].mean().to_dict()
        table.loc[len(table)] = {"attribute": "mean", "records": table["records"].sum(), **mean}
    table["records"] = table["records"].astype(int)
    table["CNN epochs"] = table["CNN epochs"].astype("Int64")  # empty on the mean row
    return table


def table3_seed_checks(folder: str | os.PathLike) -> pd.DataFrame:
    """The ``--symmetric-cnn-seeds`` records of ``scripts/table3_prior.py`` in ``folder``, [n, 9]: per
    record the attribute, the MFA pair's setting, the CNN epochs, the seeds, and the mean, standard
    deviation, minimum and maximum of the symmetric-sample CNNs' real-test accuracies over those seeds
    (the MFA pair and samples fixed), and the record's file name. Empty when there is none."""
    rows = []
    for stem, record, setting in _table3_records(folder):
        if "symmetric_cnn_seeds" not in record:
            continue
        spread = record["symmetric_train_over_seeds"]
        rows.append(
            {
                "attribute": record["attribute"],
                "MFA pair": setting,
                "CNN epochs": record["symmetric_epochs"],
                "seeds": " ".join(record["symmetric_cnn_seeds"]),
                "CNN, symmetric samples: mean": spread["mean"],
                "sd": math.nan if spread["std"] is None else spread["std"],
                "min": spread["min"],
                "max": spread["max"],
                "record": stem,
            }
        )
    columns = [
        "attribute",
        "MFA pair",
        "CNN epochs",
        "seeds",
        "CNN, symmetric samples: mean",
        "sd",
        "min",
        "max",
        "record",
    ]
    rows.sort(key=lambda row: min(map(int, row["seeds"].split())))  # then stable: by setting
    return _paper_sizes_first(pd.DataFrame(rows, columns=columns))


def _mean_l2_table(
    results: SummaryResults, chapter: str, tasks: list[Task], models: Sequence[str]
) -> pd.DataFrame:
    rows = [[_report_value(results, chapter, task, model, "mean_l2") for model in models] for task in tasks]
    return pd.DataFrame(rows, index=_labels(tasks), columns=[pv.MODEL_LABELS[m] for m in models], dtype=float)


def figure6_table(results: SummaryResults) -> pd.DataFrame:
    """Figure 6's numbers: [tasks, models] mean L2 of the attacks on the symmetric datasets."""
    return _mean_l2_table(results, LEARNED_CHAPTER, results.tasks(BAYES_CHAPTER, LEARNED_CHAPTER), pv.MODELS)


def figure9_table(results: SummaryResults) -> pd.DataFrame:
    """Figure 9 (right)'s numbers: [tasks, models] mean L2 of the attacks on models trained on real data."""
    return _mean_l2_table(results, REAL_CHAPTER, _real_tasks(results), pv.REAL_MODELS)


SWEEPS: dict[str, str] = {
    "train_size": "training examples (fresh samples)",
    "width": "CNN width (filters of the first layer)",
    "depth": "CNN depth (convolution layers)",
    "trades": "TRADES beta",
}
_SWEEP_METRIC = re.compile(r"^(?:sweeps\.(\w+)|(trades))\.(\d+)\.(value|beta|test_accuracy|report\.mean_l2)$")


def _sweep_values(results: SummaryResults) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The chapter 04 rows of ``results.values`` that are Figure 8 sweep numbers, and the groups of
    :data:`_SWEEP_METRIC` for each (sweep name, "trades", point index, field)."""
    v = results.values[results.values["chapter"] == LEARNED_CHAPTER]
    found = v["metric"].str.extract(_SWEEP_METRIC)
    keep = (found[0].notna() | found[1].notna()).to_numpy(bool)
    return v[keep], found[keep]


def _figure8_tasks(results: SummaryResults) -> set[Task]:
    """The tasks whose chapter 04 results hold at least one Figure 8 sweep point."""
    v, _ = _sweep_values(results)
    return set(zip(v["dataset"], v["attribute"], strict=True))


def figure8_table(results: SummaryResults) -> pd.DataFrame:
    """Figure 8's numbers: one row per trained CNN of chapter 04's sweeps, [n, 5]: task, sweep (a key of
    :data:`SWEEPS`), value (training examples, width, depth or beta), test_accuracy, mean_l2."""
    columns = ["task", "sweep", "value", "test_accuracy", "mean_l2"]
    v, found = _sweep_values(results)
    if v.empty:
        return pd.DataFrame(columns=columns)
    tasks = list(zip(v["dataset"], v["attribute"], strict=True))
    long = pd.DataFrame(
        {
            "task": [task_label(*task) for task in tasks],
            "rank": [_TASK_RANK.get(task, len(_TASK_RANK)) for task in tasks],
            "sweep": found[0].fillna(found[1]).to_numpy(),
            "index": found[2].astype(int).to_numpy(),
            "field": found[3].replace({"beta": "value", "report.mean_l2": "mean_l2"}).to_numpy(),
            "number": v["value"].to_numpy(float),
        }
    )
    keys = ["rank", "task", "sweep", "index"]
    wide = long.pivot(index=keys, columns="field", values="number").reset_index().sort_values(keys)
    return wide.reindex(columns=columns).reset_index(drop=True)


def symmetric_vs_asymmetric(results: SummaryResults) -> pd.DataFrame:
    """Figures 4, 11 and 12: [tasks, 7] the Bayes-optimal classifier's mean attack L2 on the asymmetric and
    the symmetric dataset, the mean distance to the other class's component subspaces (Figure 11; Lemma 3
    puts the symmetric mean L2 near half of it) and our mean certified radius; ours beside the paper's.

    Rows: the tasks with a chapter 03 result and the paper's three tasks of Figures 4 and 12.
    """
    tasks = _task_order(set(results.tasks(BAYES_CHAPTER)) | set(pv.FIGURE4_12_MEAN_L2) | {pv.FIGURE11_TASK})
    rows = []
    for task in tasks:
        paper = pv.FIGURE4_12_MEAN_L2.get(task, {})
        rows.append(
            [
                results.value(BAYES_CHAPTER, *task, "bayes_asymmetric.mean_l2"),
                paper.get("asymmetric", math.nan),
                results.value(BAYES_CHAPTER, *task, "bayes_symmetric.mean_l2"),
                paper.get("symmetric", math.nan),
                results.value(BAYES_CHAPTER, *task, "subspace_distance_mean"),
                pv.FIGURE11_SUBSPACE_DISTANCE_MEAN if task == pv.FIGURE11_TASK else math.nan,
                results.value(BAYES_CHAPTER, *task, "certified_radius_mean"),
            ]
        )
    columns = pd.MultiIndex.from_tuples(
        [
            ("mean L2, asymmetric", "ours"),
            ("mean L2, asymmetric", "paper"),
            ("mean L2, symmetric", "ours"),
            ("mean L2, symmetric", "paper"),
            ("distance to other class", "ours"),
            ("distance to other class", "paper"),
            ("certified radius", "ours"),
        ]
    )
    return pd.DataFrame(rows, index=_labels(tasks), columns=columns, dtype=float)


COVERED, MISSING = "yes", "missing"
NOT_TAKEN = "n/a"  # the chapter does not take the task (chapter 5: only its five real-data attributes)
NO_FIGURE8 = "yes, no Figure 8"  # a chapter 04 result made with figure8=False (no Figure 8 sweeps)
_RESULT_CHAPTERS = (BAYES_CHAPTER, LEARNED_CHAPTER, REAL_CHAPTER)


def _chapter_takes(chapter: str, task: Task) -> bool:
    return chapter != REAL_CHAPTER or (task[0] == "celeba" and task[1] in REAL_DATA_ATTRIBUTES)


def _coverage_cells(results: SummaryResults) -> tuple[list[Task], list[list[str]]]:
    have = {chapter: set(results.tasks(chapter)) for chapter in _RESULT_CHAPTERS}
    with_sweeps = _figure8_tasks(results)

    def cell(chapter: str, task: Task) -> str:
        if task in have[chapter]:
            return NO_FIGURE8 if chapter == LEARNED_CHAPTER and task not in with_sweeps else COVERED
        return MISSING if _chapter_takes(chapter, task) else NOT_TAKEN

    tasks = _task_order(set(TASKS).union(*have.values()))
    return tasks, [[cell(chapter, task) for chapter in _RESULT_CHAPTERS] for task in tasks]


def coverage(results: SummaryResults) -> pd.DataFrame:
    """Which runs ``results`` holds: [tasks, 3], a column per result chapter (03, 04, 05) and a row per task
    of the paper (Table 1's order, then any other task found). A cell reads "yes" when a result file exists
    ("yes, no Figure 8" for a chapter 04 result without the Figure 8 sweeps, i.e. made with
    ``figure8=False``), "missing" when the chapter takes the task and has none, and "n/a" where the
    chapter does not take the task (chapter 5 takes only the five real-data attributes)."""
    tasks, cells = _coverage_cells(results)
    return pd.DataFrame(cells, index=_labels(tasks), columns=[f"chapter {c}" for c in _RESULT_CHAPTERS])


def missing_runs(results: SummaryResults) -> Markdown:
    """A line per result chapter: how many of the tasks it takes have a result in ``results`` and, when some
    have none, the sweep command that runs those (the sweep skips finished runs, so re-running it is safe);
    for chapter 04, also the results without Figure 8's sweeps and the command that re-runs them with it."""
    tasks, cells = _coverage_cells(results)

    def command(chapter: str, chosen: list[Task]) -> str:
        text = (
            f"python -m nbhelpers sweep --chapters {chapter} "
            f"--tasks {' '.join(f'{d}:{a}' for d, a in chosen)} --profile {results.profile}"
        )
        if Path(results.results_dir).resolve() != default_results_dir().resolve():
            text += f" --results-dir {_display_path(results.results_dir)}"
        return text

    lines = []
    for column, chapter in enumerate(_RESULT_CHAPTERS):
        taken = [task for task, row in zip(tasks, cells, strict=True) if row[column] != NOT_TAKEN]
        missing = [task for task, row in zip(tasks, cells, strict=True) if row[column] == MISSING]
        partial = [task for task, row in zip(tasks, cells, strict=True) if row[column] == NO_FIGURE8]
        line = f"- **chapter {chapter}**: {len(taken) - len(missing)} of {len(taken)} tasks have a result"
        if missing:
            line += f"; the missing ones: `{command(chapter, missing)}`"
        if partial:
            line += (
                f"; {len(partial)} of the results have no Figure 8 sweeps (made with `-p figure8=False`), "
                f"which this re-runs with them: `{command(chapter, partial)}`"
            )
        lines.append(line)
    return Markdown("\n".join(lines))


def _table3_drops(results: SummaryResults) -> dict[Task, float]:
    """Our Table 3 drop (real minus symmetric training) per task that has both numbers."""
    drops = {
        task: results.value(REAL_CHAPTER, *task, "table3.real_train")
        - results.value(REAL_CHAPTER, *task, "table3.symmetric_train")
        for task in results.tasks(REAL_CHAPTER)
    }
    return {task: drop for task, drop in drops.items() if not math.isnan(drop)}


def _our_number(
    results: SummaryResults, number: pv.PaperNumber, convention: str
) -> tuple[float, str, pv.PaperNumber]:
    """Our counterpart of one paper number, the task label to show (an average names its tasks), and the
    paper's number to set beside it: ``number``, or for an average over fewer tasks than the paper's, the
    paper's average over the same tasks (value and source replaced)."""
    task = (number.dataset, number.attribute)
    label = task_label(*task)
    quantity = number.quantity
    if quantity == "table3_drop":
        drops = _table3_drops(results)
        if not drops:
            return math.nan, label, number
        if set(drops) >= set(pv.TABLE3):
            return float(np.mean(list(drops.values()))), f"{label} (all {len(pv.TABLE3)} tasks)", number
        # like for like: the paper's Table 3 drops of our tasks, not its text's average over all five
        paper = [real - symmetric for real, symmetric in map(_paper_table3, drops)]
        tasks = f"{len(drops)} task{'s' if len(drops) != 1 else ''}"
        same = dataclasses.replace(
            number, value=float(np.nanmean(paper)), source="Table 3 (appendix D.4.2), the same tasks"
        )
        return float(np.mean(list(drops.values()))), f"{label} (the same {tasks})", same
    return _our_value(results, number, convention, task), label, number


def _our_value(results: SummaryResults, number: pv.PaperNumber, convention: str, task: Task) -> float:
    quantity = number.quantity
    if quantity.endswith(("clean_accuracy", "adversarial_accuracy")):
        chapter = REAL_CHAPTER if quantity.startswith("real_") else LEARNED_CHAPTER
        if quantity.endswith("clean_accuracy"):
            return _clean_accuracy(results, chapter, task, number.model)
        return _adversarial(results, chapter, task, number.model, convention)
    if quantity == "table3_accuracy":
        return results.value(REAL_CHAPTER, *task, f"table3.{number.model}")
    if quantity == "bayes_mean_l2":
        return results.value(BAYES_CHAPTER, *task, f"bayes_{number.model}.mean_l2")
    if quantity == "mean_l2":
        return _report_value(results, LEARNED_CHAPTER, task, number.model, "mean_l2")
    if quantity == "subspace_distance_mean":
        return results.value(BAYES_CHAPTER, *task, "subspace_distance_mean")
    raise ValueError(f"no rule for the quantity {quantity!r}: valid ones are {', '.join(pv.QUANTITIES)}")


_COMPARISON_MODEL_LABELS = {
    **pv.MODEL_LABELS,
    "symmetric": "Bayes-optimal, symmetric",
    "asymmetric": "Bayes-optimal, asymmetric",
    "real_train": "CNN trained on real",
    "symmetric_train": "CNN trained on symmetric",
}


def compare_with_paper(
    results: SummaryResults, convention: str = "paper", only_ours: bool = True
) -> pd.DataFrame:
    """Each of the paper's numbers (:func:`nbhelpers.paper_values.paper_numbers`) beside ours.

    Returns [n, 8]: quantity (a key of ``paper_values.QUANTITIES``), what (its description), task, model,
    paper, ours, difference (ours minus paper) and source (table or figure of the paper). ``only_ours``
    keeps the rows where we have a number; otherwise every paper number appears, ours NaN where missing.
    """
    adversarial_accuracy(1.0, 0.0, convention)  # reject a bad convention even when no row needs it
    rows = []
    for number in pv.paper_numbers():
        ours, label, paper = _our_number(results, number, convention)
        rows.append(
            {
                "quantity": number.quantity,
                "what": pv.QUANTITIES[number.quantity],
                "task": label,
                "model": _COMPARISON_MODEL_LABELS.get(number.model, number.model),
                "paper": paper.value,
                "ours": ours,
                "difference": ours - paper.value,
                "source": paper.source,
            }
        )
    table = pd.DataFrame(rows)
    if only_ours:
        table = table[table["ours"].notna()].reset_index(drop=True)
    return table


# ---------------------------------------------------------------------------------------------------------
# Display.


def format_accuracy_pairs(table: pd.DataFrame, decimals: int = 0) -> pd.DataFrame:
    """[tasks, models] strings "clean% (adversarial%)" from a :func:`table1` or :func:`table2` frame, as the
    paper prints them. A model without numbers is blank; one without an adversarial number shows its
    clean accuracy alone."""

    def pair(clean: float, adversarial: float) -> str:
        if math.isnan(clean):
            return ""
        text = f"{clean:.{decimals}%}"
        return text if math.isnan(adversarial) else f"{text} ({adversarial:.{decimals}%})"

    models = list(dict.fromkeys(table.columns.get_level_values(0)))
    data = {
        model: [pair(c, a) for c, a in zip(table[(model, CLEAN)], table[(model, ADVERSARIAL)], strict=True)]
        for model in models
    }
    return pd.DataFrame(data, index=table.index, columns=models)


def sweep_command(name: str, results: SummaryResults) -> str:
    """The command that writes the result files behind table ``name`` (a key of :data:`TABLES`)."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: valid tables are {', '.join(TABLES)}")
    command = f"python -m nbhelpers sweep --chapters {' '.join(TABLES[name][1])} --profile {results.profile}"
    if Path(results.results_dir).resolve() != default_results_dir().resolve():
        command += f" --results-dir {_display_path(results.results_dir)}"
    return command


def show(table: pd.DataFrame, name: str, results: SummaryResults, decimals: int = 2) -> Styler | Markdown:
    """A titled view of ``table``, built by the function of table ``name`` (a key of :data:`TABLES`) from
    ``results``. Blank cells are numbers we do not have. When none of the table's chapters has a result,
    the caption (or, for a table with nothing else to show, a note in its place) names the command that
    writes them."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}: valid tables are {', '.join(TABLES)}")
    title, chapters = TABLES[name]
    have = results.tasks(*chapters)
    missing = (
        f"no results of ours yet ({_scope(results)}); {_chapters(chapters)} them: run "
        f"`{sweep_command(name, results)}` (add `--tasks celeba:Smiling` for one task), "
        "then re-run this chapter"
    )
    if table.empty or (not have and name not in _PAPER_ONLY_OK):
        return Markdown(f"**{title}**: {missing}.")
    count = f"{len(have)} task{'s' if len(have) != 1 else ''} with results"
    caption = f"{title} ({_scope(results)}; {count})"
    if not have:
        caption = f"{title}: the paper's numbers only; {missing}"
    styler = table.style.set_caption(caption).format(precision=decimals, na_rep="")
    if "quantity" in table.columns:  # the key is for code; the "what" column says it in words
        styler = styler.hide(["quantity"], axis="columns")
    if name == "comparison":
        styler = styler.hide(axis="index")
    return styler


def _chapters(chapters: Sequence[str]) -> str:
    """ "chapter 03 writes" / "chapters 03 and 04 write"."""
    if len(chapters) == 1:
        return f"chapter {chapters[0]} writes"
    return f"chapters {', '.join(chapters[:-1])} and {chapters[-1]} write"


def _scope(results: SummaryResults) -> str:
    if results.seed is not None:
        seeds = f"seed {results.seed}"
    elif len(results.seeds) > 1:
        seeds = f"mean over seeds {', '.join(map(str, results.seeds))}"
    else:
        seeds = "every seed"
    return f"profile {results.profile}, {seeds}"


def _display_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project root when inside it (output must not name this machine's folders)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(project_root().resolve()).as_posix()
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------
# Figures.


def _grouped_bars(ax: plt.Axes, table: pd.DataFrame, models: Sequence[str]) -> np.ndarray:
    """Bars of ``table`` [tasks, model labels], one colour per model; returns the x centres [tasks]."""
    x = np.arange(len(table))
    width = 0.8 / len(models)
    for j, model in enumerate(models):
        label = pv.MODEL_LABELS[model]
        heights = table[label].to_numpy(float) if label in table else np.full(len(table), np.nan)
        ax.bar(
            x + (j - (len(models) - 1) / 2) * width,
            np.nan_to_num(heights),
            width,
            color=MODEL_COLORS[model],
            label=label,
        )
    ax.set_xticks(x, [str(label).split(" / ")[-1] for label in table.index], rotation=45, ha="right")
    return x


def _yardsticks(ax: plt.Axes) -> None:
    """The paper's perceptibility yardsticks for faces (section 2.1)."""
    ax.axhline(
        pv.IMPERCEPTIBLE_L2, color="grey", ls=":", lw=1, label=f"imperceptible below {pv.IMPERCEPTIBLE_L2}"
    )
    ax.axhline(
        pv.PERCEPTIBLE_L2, color="grey", ls="--", lw=1, label=f"perceptible near {pv.PERCEPTIBLE_L2:g}"
    )


def _empty_figure(text: str) -> Figure:
    """A small figure that only says ``text`` (what is missing and the command that makes it)."""
    fig, ax = plt.subplots(figsize=(7, 1.8))
    _empty_note(ax, text)
    return fig


def _empty_note(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _legend_right(ax: plt.Axes, axes: Sequence[plt.Axes]) -> None:
    """One legend beside ``ax`` with the entries of all ``axes`` (each label once)."""
    entries: dict[str, Any] = {}
    for a in axes:
        for handle, label in zip(*a.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    ax.legend(entries.values(), entries.keys(), fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))


def plot_figure6(results: SummaryResults) -> Figure:
    """Figure 6: grouped bars of the mean attack L2 per model and symmetric dataset (CelebA and MNIST
    panels), with the paper's Figure 7 values for CelebA / Smiling as black marks and the paper's
    perceptibility yardsticks. Without results it shows the paper's Figure 7 values alone."""
    table = figure6_table(results)
    tasks = results.tasks(BAYES_CHAPTER, LEARNED_CHAPTER)
    panels = [(d, [task_label(*t) for t in tasks if t[0] == d]) for d in ("celeba", "mnist")]
    panels = [(d, labels) for d, labels in panels if labels]
    if not panels:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        reference = pd.DataFrame(
            [[pv.FIGURE7_MEAN_L2[m] for m in pv.MODELS]],
            columns=[pv.MODEL_LABELS[m] for m in pv.MODELS],
            index=[task_label(*pv.FIGURE7_TASK)],
        )
        _grouped_bars(ax, reference, pv.MODELS)
        _yardsticks(ax)
        ax.set_title(f"No results of ours yet ({_scope(results)}):\nthe paper's {pv.FIGURE7_SOURCE} values")
        ax.set_ylabel("mean L2 of the attack")
        _legend_right(ax, [ax])
        fig.tight_layout()
        return fig
    counts = [len(labels) for _, labels in panels]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(4 + 0.9 * sum(counts), 4.2),
        sharey=True,
        gridspec_kw={"width_ratios": counts},
        squeeze=False,
    )
    reference_label = task_label(*pv.FIGURE7_TASK)
    width = 0.8 / len(pv.MODELS)
    for ax, (dataset, labels) in zip(axes[0], panels, strict=True):
        x = _grouped_bars(ax, table.loc[labels], pv.MODELS)
        if reference_label in labels:
            centre = x[labels.index(reference_label)]
            for j, model in enumerate(pv.MODELS):
                ax.plot(
                    centre + (j - (len(pv.MODELS) - 1) / 2) * width,
                    pv.FIGURE7_MEAN_L2[model],
                    "k_",
                    ms=14,
                    mew=2,
                    label="paper (Figure 7)",
                )
        _yardsticks(ax)
        ax.set_title({"celeba": "CelebA", "mnist": "MNIST"}[dataset])
    axes[0, 0].set_ylabel("mean L2 of the attack")
    _legend_right(axes[0, -1], axes[0])
    fig.suptitle(f"Figure 6, symmetric datasets ({_scope(results)})")
    fig.tight_layout()
    return fig


def _has_number(values: Sequence[float]) -> bool:
    return any(not math.isnan(v) for v in values)


def plot_figure8(results: SummaryResults) -> Figure:
    """Figure 8: mean attack L2 against training examples, CNN width and depth (one line per task; dashed:
    the Bayes-optimal classifier's mean over the tasks), and the trade-off between test accuracy and mean
    L2 of TRADES-trained CNNs, the means over the tasks per beta, beside the other models' means."""
    table = figure8_table(results)
    if table.empty:
        return _empty_figure(
            f"Figure 8: no sweeps of chapter 04 yet ({_scope(results)}):\n{sweep_command('figure8', results)}"
        )
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    tasks = results.tasks(LEARNED_CHAPTER)
    bayes = [_report_value(results, LEARNED_CHAPTER, t, "bayes", "mean_l2") for t in tasks]
    bayes_mean = np.nanmean(bayes) if _has_number(bayes) else math.nan
    for ax, sweep in zip(axes[:3], ("train_size", "width", "depth"), strict=True):
        part = table[table["sweep"] == sweep]
        if part.empty:
            _empty_note(ax, f"no {sweep.replace('_', ' ')} sweep yet")
            ax.set_xlabel(SWEEPS[sweep])
            continue
        for task, line in part.groupby("task", sort=False):
            ax.plot(line["value"], line["mean_l2"], "o-", label=task.split(" / ")[-1])
        if not math.isnan(bayes_mean):
            ax.axhline(bayes_mean, color=MODEL_COLORS["bayes"], ls="--", label="Bayes-optimal (mean)")
        if sweep == "train_size":
            ax.set_xscale("log")
        ax.set_xlabel(SWEEPS[sweep])
        ax.set_ylabel("mean L2 of the attack")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    ax = axes[3]
    trades = table[table["sweep"] == "trades"].groupby("value")[["test_accuracy", "mean_l2"]].mean()
    if trades.empty:
        _empty_note(ax, "no TRADES runs yet")
    else:
        ax.plot(
            trades["mean_l2"], trades["test_accuracy"], "o-", color=MODEL_COLORS["cnn"], label="CNN + TRADES"
        )
        for beta, row in trades.iterrows():
            ax.annotate(
                f"beta={beta:g}",
                (row["mean_l2"], row["test_accuracy"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
        for model, marker in (("bayes", "*"), ("linear_svm", "D"), ("rbf_svm", "s")):
            l2 = [_report_value(results, LEARNED_CHAPTER, t, model, "mean_l2") for t in tasks]
            accuracy = [_clean_accuracy(results, LEARNED_CHAPTER, t, model) for t in tasks]
            if _has_number(l2) and _has_number(accuracy):
                ax.scatter(
                    np.nanmean(l2),
                    np.nanmean(accuracy),
                    marker=marker,
                    s=90,
                    color=MODEL_COLORS[model],
                    label=pv.MODEL_LABELS[model],
                    zorder=3,
                )
        ax.set_xlabel("mean L2 of the attack (robustness)")
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=7)
    ax.set_title("means over the tasks", fontsize=9)
    fig.suptitle(f"Figure 8 ({_scope(results)})")
    fig.tight_layout()
    return fig


def plot_figure9(results: SummaryResults) -> Figure:
    """Figure 9 (right): grouped bars of the mean attack L2 per model trained on real CelebA images."""
    table = figure9_table(results)
    if table.empty:
        return _empty_figure(
            f"Figure 9: no real-data results of chapter 05 yet ({_scope(results)}):\n"
            f"{sweep_command('figure9', results)}"
        )
    fig, ax = plt.subplots(figsize=(4 + 0.9 * max(len(table), 2), 3.8))
    _grouped_bars(ax, table, pv.REAL_MODELS)
    _yardsticks(ax)
    ax.set_ylabel("mean L2 of the attack")
    _legend_right(ax, [ax])
    ax.set_title(f"Figure 9 (right), real CelebA ({_scope(results)})")
    fig.tight_layout()
    return fig


def plot_symmetric_vs_asymmetric(results: SummaryResults) -> Figure:
    """Figures 4/12: the Bayes-optimal classifier's mean attack L2 on the asymmetric and the symmetric
    dataset of each task (bars: ours; black marks: the paper's), with half the mean distance to the other
    class's subspaces (Lemma 3's prediction for the symmetric case; the paper's Figure 11 for Male)."""
    table = symmetric_vs_asymmetric(results)
    fig, ax = plt.subplots(figsize=(4.5 + 1.1 * len(table), 4.0))
    x = np.arange(len(table))
    width = 0.38
    for offset, variant, color in ((-0.5, "asymmetric", "tab:purple"), (0.5, "symmetric", "tab:green")):
        column = f"mean L2, {variant}"
        ax.bar(
            x + offset * width,
            np.nan_to_num(table[(column, "ours")].to_numpy(float)),
            width,
            color=color,
            alpha=0.8,
            label=f"ours, {variant}",
        )
        ax.plot(
            x + offset * width,
            table[(column, "paper")].to_numpy(float),
            "k_",
            ms=16,
            mew=2,
            label="paper (Figures 4, 12)",
        )
    for source, marker, label in (("ours", "o", "ours"), ("paper", "s", "paper (Figure 11)")):
        half = table[("distance to other class", source)].to_numpy(float) / 2
        ax.plot(
            x + 0.5 * width,
            half,
            marker,
            mfc="none",
            mec="black",
            ls="none",
            label=f"half the distance to the other class, {label}",
        )
    _yardsticks(ax)
    ax.set_xticks(x, list(table.index), rotation=30, ha="right")
    ax.set_ylabel("mean L2 of the attack")
    have = results.tasks(BAYES_CHAPTER)
    note = _scope(results) if have else "no results of ours yet: the paper's marks only"
    ax.set_title(f"Bayes-optimal classifier, asymmetric vs symmetric\n({note})")
    _legend_right(ax, [ax])
    fig.tight_layout()
    return fig


def plot_table3_drops(table: pd.DataFrame) -> Figure:
    """Table 3 as a picture, from :func:`table3_drops`: per attribute (and the mean), an arrow from the
    real-test accuracy of the CNN trained on real faces down to that of the CNN trained on symmetric
    samples, ours and the paper's side by side; the arrow's length is the drop."""
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * max(len(table), 1), 4.0))
    if table.empty:
        _empty_note(ax, "no Table 3 records with both CNNs yet")
        return fig
    x = np.arange(len(table))
    for offset, source, color in ((-0.15, "ours", "tab:blue"), (0.15, "paper", "black")):
        real = table[f"{source}: real"].to_numpy(float)
        symmetric = table[f"{source}: symmetric"].to_numpy(float)
        for xi, top, bottom in zip(x + offset, real, symmetric, strict=True):
            if not (np.isnan(top) or np.isnan(bottom)):
                ax.annotate(
                    "", (xi, bottom), (xi, top), arrowprops={"arrowstyle": "->", "color": color, "lw": 1.8}
                )
                middle = (top + bottom) / 2
                ax.text(
                    xi + 0.03, middle, f"{100 * (top - bottom):.1f}", va="center", fontsize=7, color=color
                )
        ax.plot(x + offset, real, "o", color=color, label=f"{source}: CNN trained on real faces")
        ax.plot(x + offset, symmetric, "v", color=color, mfc="none", label=f"{source}: on symmetric samples")
    ax.set_xticks(x, list(table["attribute"]))
    ax.set_ylabel("accuracy on real test faces")
    ax.set_title("Table 3: real vs symmetric training\n(the drop in points beside each arrow)")
    _legend_right(ax, [ax])
    fig.tight_layout()
    return fig


def asymmetric_noise_table(folder: str | os.PathLike) -> pd.DataFrame:
    """The records of ``scripts/asymmetric_noise.py`` in ``folder`` (``*.json``) as one table, a row per
    task and noise setting: task, "noise" ("fitted" or "set"), "noise std", clean accuracy, mean L2 of the
    gradient attack over the evaluated samples, "outlier share" (Lemma 1's route), the number evaluated, and
    the paper's asymmetric mean L2 of the task (Figures 4 and 12; NaN where it gives none). Sorted by task,
    then by noise std, largest first; empty when the folder holds no record."""
    columns = ["task", "noise", "noise std", "clean accuracy", "mean L2", "outlier share", "evaluated"]
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        record = json.loads(path.read_text())
        task = (record["dataset"], record["attribute"])
        paper = pv.FIGURE4_12_MEAN_L2.get(task, {}).get("asymmetric", math.nan)
        for row in record["rows"]:
            rows.append(
                {"task": task_label(*task), **{c: row[c] for c in columns[1:]}, "paper: mean L2": paper}
            )
    if not rows:
        return pd.DataFrame(columns=[*columns, "paper: mean L2"])
    table = pd.DataFrame(rows).sort_values(["task", "noise std"], ascending=[True, False], kind="stable")
    return table.reset_index(drop=True)


def plot_asymmetric_noise(table: pd.DataFrame) -> Figure:
    """Mean L2 of the attack on the asymmetric pair against the components' noise std (log scale), a line
    per task of :func:`asymmetric_noise_table`; a filled marker for the fitted noise, the paper's value as a
    dashed line of the same colour."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if table.empty:
        _empty_note(ax, "no records of scripts/asymmetric_noise.py yet")
        return fig
    for (task, group), color in zip(table.groupby("task", sort=False), plt.cm.tab10.colors, strict=False):
        ax.plot(group["noise std"], group["mean L2"], "-o", color=color, mfc="white", label=f"{task}: ours")
        fitted = group[group["noise"] == "fitted"]
        ax.plot(fitted["noise std"], fitted["mean L2"], "o", color=color, ms=9)
        paper = group["paper: mean L2"].iloc[0]
        if not math.isnan(paper):
            ax.axhline(paper, color=color, ls="--", lw=1, label=f"{task}: paper")
    ax.set_xscale("log")
    ax.set_xlabel("noise std of every component (filled: the fitted noise)")
    ax.set_ylabel("mean L2 of the gradient attack")
    ax.set_title("Asymmetric datasets: thinner components, smaller pushes (Lemma 1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_comparison(comparison: pd.DataFrame, results: SummaryResults | None = None) -> Figure:
    """Ours against the paper's, one point per row of :func:`compare_with_paper` (accuracies left, L2 norms
    and distances right); on the grey diagonal we agree. ``results``: the results compared, named in the
    title (profile and seed)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    have = comparison.dropna(subset=["ours"])
    is_accuracy = have["quantity"].str.contains("accuracy|table3", regex=True).to_numpy(bool)
    panels = ((axes[0], have[is_accuracy], "accuracy"), (axes[1], have[~is_accuracy], "L2 norm"))
    for ax, part, unit in panels:
        if part.empty:
            _empty_note(ax, f"no {unit} of ours to compare yet")
            continue
        for what, group in part.groupby("what", sort=False):
            ax.plot(group["paper"], group["ours"], "o", alpha=0.7, label=what)
        low = min(part["paper"].min(), part["ours"].min(), 0.0)
        high = max(part["paper"].max(), part["ours"].max()) * 1.05
        ax.plot([low, high], [low, high], color="grey", lw=1)
        ax.set_xlabel(f"paper, {unit}")
        ax.set_ylabel(f"ours, {unit}")
        ax.legend(fontsize=7)
    scope = f" ({_scope(results)})" if results is not None else ""
    fig.suptitle(f"Our numbers against the paper's{scope}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# Provenance: the manifest of a committed run.


def default_paper_results_dir() -> Path:
    """``<project root>/results/paper``: committed paper-profile results live in its ``paper/`` folder."""
    return project_root() / PAPER_RESULTS_SUBDIR


def _timestamp(value: float | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.astimezone()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    raise ValueError(f"a time must be a datetime or seconds since the epoch (time.time()), got {value!r}")


def cpu_name(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> str:
    """The CPU model (Linux: ``cpuinfo``'s "model name"), else what ``platform`` knows."""
    cpuinfo = Path(cpuinfo)
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_capability() -> str | None:
    """The vector instruction set torch's CPU kernels use here ("AVX2", "AVX512", ...), or None.

    torch picks its CPU kernels by it, so float results with the same seed can differ in the last bits
    between machines that differ here."""
    import torch

    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


def machine_fields(device: str) -> dict[str, Any]:
    """What a script's record says of the machine that ran it: the torch device ``device`` resolves to,
    torch's version and CPU threads, the CPU model and its kernels (``cpu_name``, ``cpu_capability``)."""
    import torch

    from nbhelpers.models.training import resolve_device

    return {
        "device": str(resolve_device(device)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": cpu_name(),
        "cpu_capability": cpu_capability(),
    }


def _git(*args: str) -> str | None:
    """Output of a git command in the project root; None without git or outside a checkout."""
    try:
        proc = subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def result_files(results_dir: str | os.PathLike) -> dict[str, str]:
    """Every result file of ``results_dir`` (``<profile>/*.json``) -> its sha256: what a command changed."""
    base = Path(results_dir)
    return {
        path.relative_to(base).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(base.glob("*/*.json"))
    }


def write_manifest(
    results_dir: str | os.PathLike,
    command: str | Sequence[str],
    started: float | dt.datetime,
    finished: float | dt.datetime,
    *,
    exit_status: int | None = None,
    results: Sequence[str] | None = None,
) -> Path:
    """Add one entry to ``<results_dir>/manifest.json``: what produced results there, where, how long.

    The manifest is ``{"runs": [entry, ...]}``, one entry per command in the order they finished, so
    results made by several commands (a CPU sweep, later a GPU one) each keep their provenance.
    ``command``: a string or an argv list; ``started``/``finished``: ``time.time()`` seconds or datetimes;
    ``results``: the result files (relative to ``results_dir``) that the command wrote. An entry records
    the platform, CPU, GPUs (``torch.cuda.get_device_name``), Python, torch and CUDA versions, the git
    commit (``git rev-parse HEAD``; None outside a checkout) and whether tracked files had local changes,
    the nbhelpers code version and the wall time.
    """
    start, end = _timestamp(started), _timestamp(finished)
    if end < start:
        raise ValueError(f"finished ({end.isoformat()}) is before started ({start.isoformat()}): swap them")
    import torch  # only the manifest needs it; the tables and figures do not

    commit = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no")
    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    entry = {
        "command": command if isinstance(command, str) else shlex.join(command),
        "exit_status": exit_status,
        "started": start.isoformat(timespec="seconds"),
        "finished": end.isoformat(timespec="seconds"),
        "wall_seconds": round((end - start).total_seconds(), 1),
        "git_commit": commit,
        "git_local_changes": None if commit is None or changes is None else bool(changes),
        "code_version": code_version(),
        "results": sorted(results or []),
        "hardware": {
            "platform": platform.platform(),
            "cpu": cpu_name(),
            "cpu_capability": cpu_capability(),
            "cpu_count": os.cpu_count(),
            "gpus": gpus,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
        },
    }
    previous = read_manifest(results_dir) or {"runs": []}
    return write_json_atomic(Path(results_dir) / MANIFEST_NAME, {"runs": [*previous["runs"], entry]})


def read_manifest(results_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of ``results_dir`` as ``{"runs": [entry, ...]}``, or None when there is none.

    A manifest of the older one-command form (a single entry) reads as a list of one."""
    path = Path(results_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it") from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("runs", []), list):
        raise ValueError(f"{path} is not a manifest: expected an object with a list 'runs'")
    return manifest if "runs" in manifest else {"runs": [manifest]}


def _run_forwarding_signals(argv: list[str]) -> int:
    """Run ``argv`` to its end, even when this process is told to stop: SIGTERM is passed on to the command,
    and SIGINT (Ctrl-C, which the terminal also sends to the command) waits for it. A killed command thus
    still gets its manifest entry, with the status it ended with."""
    child = subprocess.Popen(argv)

    def forward(signum: int, _frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    handlers = {signal.SIGTERM: forward, signal.SIGINT: lambda *_: None}
    previous: dict[int, Any] = {}
    try:
        for sig, handler in handlers.items():
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: signals keep their handlers
        pass
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def record_command(command: Sequence[str], results_dir: str | os.PathLike) -> int:
    """Run ``command`` (an argv list), then add its entry to ``results_dir``'s manifest (with the result
    files it wrote or changed); the command's exit status."""
    if not command:
        raise ValueError("no command to run: pass an argv list, e.g. ['python', '-m', 'nbhelpers', 'sweep']")
    before = result_files(results_dir)
    started = time.time()
    status = _run_forwarding_signals(list(command))
    finished = time.time()
    changed = [name for name, digest in result_files(results_dir).items() if before.get(name) != digest]
    write_manifest(results_dir, command, started, finished, exit_status=status, results=changed)
    return status


def format_duration(seconds: float) -> str:
    """``5400`` -> ``1 h 30 min``; ``95`` -> ``1 min 35 s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _result_label(name: str) -> str:
    """``paper/03_bayes_robustness__celeba__Male__seed0.json`` -> ``03 celeba:Male``."""
    parts = Path(name).stem.split("__")
    if len(parts) != 4:
        return Path(name).name
    chapter, dataset, attribute, _ = parts
    return f"{chapter[:2]} {dataset}:{attribute}"


def _status_text(status: Any) -> str:
    """``0`` -> ``exit status 0``; ``-15`` (a command ended by a signal) -> ``stopped by SIGTERM``."""
    if isinstance(status, int) and status < 0:
        try:
            return f"stopped by {signal.Signals(-status).name}"
        except ValueError:
            return f"stopped by signal {-status}"
    return f"exit status {status}"


def _manifest_lines(entry: dict[str, Any]) -> list[str]:
    """A Markdown list item (plain CommonMark, as the book renders outputs) for one manifest entry: the
    command and its exit, then one line with its results, machine, software, time and commit (the
    manifest itself keeps the rest, e.g. the platform string)."""
    hw = entry.get("hardware", {})
    machine = ", ".join(hw.get("gpus") or []) or f"CPU {hw.get('cpu', '?')}"
    commit = entry.get("git_commit") or "unknown"
    if entry.get("git_local_changes"):
        commit += " (with local changes)"
    wall = format_duration(float(entry.get("wall_seconds", 0)))
    made = entry.get("results")
    made_text = ", ".join(_result_label(n) for n in made) if made else "not recorded"
    software = (
        f"Python {hw.get('python', '?')}, torch {hw.get('torch', '?')}, CUDA {hw.get('cuda') or 'none'}"
    )
    return [
        f"- `{entry.get('command', '?')}` ({_status_text(entry.get('exit_status'))})",
        f"  - **{wall}** from {entry.get('started', '?')} on {machine} ({hw.get('cpu_count', '?')} cores; "
        f"{software}), commit `{commit}`; **results**: {made_text}",
    ]


_MANIFEST_NOTES = {
    "with local changes": "*with local changes*: tracked files differed from the commit when the command "
    "started (for a command run after others, typically the result files those had just written)",
    "stopped by": "*stopped by* a signal: the command was ended before it finished; the runs it finished "
    "are kept, and the same command run again resumes after them",
}


def describe_results(results: SummaryResults, manifest_dir: str | os.PathLike | None = None) -> Markdown:
    """What the result files of ``results`` are (count, files per chapter, seeds, dates, code versions) and,
    when ``manifest_dir`` holds a manifest, the hardware, wall time, commit and command behind them."""
    folder = _display_path(Path(results.results_dir) / results.profile)
    if results.empty:
        lines = [f"No result files of profile `{results.profile}` in `{folder}/` ({_scope(results)})."]
    else:
        per_chapter = results.files.groupby("chapter")["dataset"].count()
        chapters = ", ".join(f"chapter {c}: {n}" for c, n in per_chapter.items())
        created = sorted(str(c) for c in results.files["created"].dropna())
        versions = sorted({str(v) for v in results.files["code_version"].dropna()})
        current = code_version()
        stale = [v for v in versions if v != current]
        when = f", written {created[0]} to {created[-1]}" if created else ""
        lines = [
            f"{len(results.files)} result files in `{folder}/` ({chapters}; {_scope(results)}){when}.",
            f"Code versions: {', '.join(f'`{v}`' for v in versions)}"
            + (f" ({len(stale)} differ from the current `{current}`)." if stale else " (the current code)."),
        ]
    if manifest_dir is not None:
        manifest = read_manifest(manifest_dir)
        if manifest is None:
            lines.append(f"No `{MANIFEST_NAME}` in `{_display_path(manifest_dir)}/`.")
        else:
            runs = manifest["runs"]
            plural = "s" if len(runs) != 1 else ""
            lines += ["", f"Made by {len(runs)} command{plural} (`{MANIFEST_NAME}`):", ""]
            entries = [line for entry in runs for line in _manifest_lines(entry)]
            lines += entries
            notes = [note for key, note in _MANIFEST_NOTES.items() if any(key in line for line in entries)]
            if notes:
                lines += ["", *notes]
    return Markdown("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nbhelpers.summary --results-dir DIR -- COMMAND...``: run COMMAND, write DIR's manifest."""
    parser = argparse.ArgumentParser(
        prog="python -m nbhelpers.summary",
        description="Run a command (e.g. a paper-profile sweep), then add to DIR/manifest.json the "
        "hardware, wall time, git commit, command and result files it wrote.",
    )
    parser.add_argument("--results-dir", required=True, metavar="DIR", help="where manifest.json goes")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given: put it after --, e.g. -- python -m nbhelpers sweep --profile paper")
    status = record_command(command, args.results_dir)
    return 128 - status if status < 0 else status  # killed by signal N: the shell's 128 + N


if __name__ == "__main__":
    sys.exit(main())
