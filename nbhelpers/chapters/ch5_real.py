"""Chapter 5: models trained on real CelebA faces (paper section 3, appendix D.4).

The chapter trains the CNN and the SVMs on the real faces of one of the paper's five attributes, attacks
them (Table 2, Figure 9), and compares a CNN trained on real faces with one trained on the symmetric
dataset's samples on the real test faces (Table 3, ``symmetric_vs_real``); its metrics are
``chapter5_metrics``. Tables 2 and 3 and Figure 9 (right) are drawn from results (``ResultSet``), one task's
in the chapter and every task's in the summary. The records of ``scripts/table3_prior.py`` (Table 3's CNNs
at a CPU budget) have tables of their own (``table3_checks``, ``table3_drops``, ``table3_seed_checks``).
"""

from __future__ import annotations

import json
import math
import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.display import sweep_command
from nbhelpers.chapters.evaluation import Evaluation, input_view, model_logits
from nbhelpers.chapters.ids import REAL
from nbhelpers.chapters.learned import TrainedClassifiers, fit_cnn, symmetric_data, timings
from nbhelpers.chapters.plotting import (
    empty_figure,
    empty_note,
    grouped_bars,
    legend_right,
    plot_examples,
    yardsticks,
)
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.resultset import (
    Result,
    ResultSet,
    Task,
    accuracy_table,
    mean_l2_table,
    task_labels,
    task_order,
)
from nbhelpers.chapters.steps import NO_CHECKPOINTS, Steps
from nbhelpers.core.device import resolve_device
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import (
    REAL_DATA_ATTRIBUTES,
    TASKS,
    TaskData,
    canonical_task,
    load_task,
    source_label,
)
from nbhelpers.science.datasets import TaskModels

CHAPTER = REAL


#: The paper's five real-data attributes (section 3, appendix D.4); chapter 5 accepts only these.
REAL_ATTRIBUTES: tuple[str, ...] = REAL_DATA_ATTRIBUTES


def check_real_attribute(attribute: str, dataset: str = "celeba") -> str:
    """The canonical name of one of the paper's five real-data attributes; anything else raises."""
    if not isinstance(dataset, str) or dataset.strip().lower() != "celeba":
        raise ValueError(
            f"the real-data chapter uses CelebA only, got dataset {dataset!r}: set dataset='celeba'"
        )
    valid = ", ".join(REAL_ATTRIBUTES)
    try:
        _, name = canonical_task("celeba", attribute)
    except ValueError:
        name = None
    if name not in REAL_ATTRIBUTES:
        raise ValueError(
            f"attribute {attribute!r} is not one of the paper's real-data attributes: "
            f"valid attributes are {valid}"
        )
    return name


def real_task(
    attribute: str,
    profile: str = "quick",
    seed: int = 0,
    data_dir: str | None = None,
    max_per_class: int | None = None,
) -> TaskData:
    """Real CelebA faces of one of ``REAL_ATTRIBUTES`` with the official split.

    At most ``max_per_class`` images of each class in each split (default: the profile's
    ``datasets.n_train_per_class``, the per-class size of the symmetric training sets), drawn by ``seed``.
    """
    attribute = check_real_attribute(attribute)
    cap = get_profile(profile).datasets.n_train_per_class if max_per_class is None else max_per_class
    return load_task("celeba", attribute, data_dir=data_dir, max_per_class=cap, seed=seed)


def class_balance_table(
    attributes: Sequence[str] = REAL_ATTRIBUTES, data_dir: str | None = None, max_per_class: int | None = None
) -> pd.DataFrame:
    """Per attribute and split: images, positives, positive share and the majority-class accuracy.

    The majority baseline is what a classifier that always answers the larger class scores.
    """
    rows = []
    for attribute in attributes:
        task = load_task("celeba", attribute, data_dir=data_dir, max_per_class=max_per_class)
        for split, counts in task.class_balance().items():
            share = counts["positive_fraction"]
            rows.append(
                {
                    "attribute": task.attribute,
                    "split": split,
                    "images": counts["n"],
                    "positives": counts["n_1"],
                    "positive %": round(100 * share, 1),
                    "majority baseline %": round(100 * max(share, 1 - share), 1),
                }
            )
    return pd.DataFrame(rows)


def matched_epochs(n_train: int, profile: str = "quick", symmetric_epochs: int | None = None) -> int:
    """Epochs over ``n_train`` examples that give the CNN the training budget of chapter 4's CNN.

    Chapter 4 trains for the profile's ``cnn_epochs`` (or ``symmetric_epochs``) over 2 *
    ``n_train_per_class`` symmetric samples; a smaller real training set gets proportionally more
    epochs, so that both CNNs see (at least) as many examples, i.e. make as many Adam steps.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, int | np.integer) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    sizes = get_profile(profile)
    epochs = sizes.models.cnn_epochs if symmetric_epochs is None else symmetric_epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int | np.integer) or epochs < 1:
        raise ValueError(f"symmetric_epochs must be a positive integer, got {epochs!r}")
    budget = epochs * 2 * sizes.datasets.n_train_per_class
    return max(1, math.ceil(budget / n_train))


def symmetric_vs_real(
    models: TaskModels,
    task: TaskData,
    real_cnn: nn.Module,
    *,
    profile: str = "quick",
    seed: int = 0,
    device: str | torch.device = "auto",
    epochs: int | None = None,
    checkpoints: Steps = NO_CHECKPOINTS,
) -> dict[str, float]:
    """Table 3: real-test accuracy of ``real_cnn`` (trained on the real images) and of a CNN trained on the
    symmetric dataset's training samples (``symmetric_data`` + ``train_cnn``: chapter 4's CNN).

    Returns {"real_train": accuracy, "symmetric_train": accuracy} on ``task``'s test images, and for
    each of the two CNNs the accuracy on each class's test images ("<cnn>_class0", "<cnn>_class1").
    The symmetric dataset has equal class priors by construction while the real faces do not, so
    "symmetric_train_prior_corrected" is the symmetric CNN's accuracy once the log prior odds of the real
    *training* set are added to its logit difference (no test label is used): the part of the drop
    that a different prior explains is gone from it.
    ``epochs``: the symmetric CNN's epochs (None: the profile's, as in chapter 4).
    ``checkpoints``: keep the symmetric-data CNN there (step ``train_symmetric_cnn``) and reuse it.
    """
    if tuple(models.image_shape) != tuple(task.image_shape):
        raise ValueError(f"the models make {models.image_shape} images but the task has {task.image_shape}")
    data = symmetric_data(models, seed=seed)
    sizes = get_profile(profile).models
    symmetric_cnn = checkpoints.run(
        "train_symmetric_cnn",
        fit_cnn,
        x=data.x_train,
        y=data.y_train,
        image_shape=tuple(data.image_shape),
        sizes=sizes,
        width=sizes.cnn_width,
        depth=sizes.cnn_depth,
        epochs=sizes.cnn_epochs if epochs is None else epochs,
        seed=seed,
        device=device,
    )
    prior = float(np.mean(task.y_train == 1))
    y = torch.as_tensor(task.y_test).long()
    out = table3_accuracies(
        _test_logits(real_cnn, task, device), _test_logits(symmetric_cnn, task, device), y, prior
    )
    return {**out, **bayes_real_accuracy(models, task)}


def bayes_real_accuracy(models: TaskModels, task: TaskData, batch: int = 256) -> dict[str, float]:
    """Real-test accuracy of the Bayes-optimal classifiers of ``models``' fitted and symmetric MFA pairs.

    Returns {"bayes_fitted": accuracy, "bayes_symmetric": accuracy} on ``task``'s test images (equal
    class priors, as in the symmetric dataset), and the same with the real training set's log prior odds
    added to the log-density difference ("bayes_fitted_prior_corrected", "bayes_symmetric_prior_corrected").
    The symmetric pair is the model the symmetric samples come from, so its accuracy on real faces says
    how well its own densities tell the real classes apart. A CNN trained on its samples need not score
    the same on real faces, which lie off the pair's components.
    """
    if tuple(models.image_shape) != tuple(task.image_shape):
        raise ValueError(f"the models make {models.image_shape} images but the task has {task.image_shape}")
    log_odds = _log_prior_odds(float(np.mean(task.y_train == 1)))
    # float64 inputs keep the log-density differences exact (the classifier returns the input's dtype)
    x, y = torch.as_tensor(task.x_test).double(), torch.as_tensor(task.y_test).long()
    out = {}
    for variant in ("fitted", "symmetric"):
        classifier = BayesClassifier(*models.pair(variant))
        logits = model_logits(classifier, x, "flat", task.image_shape, classifier.device, batch)
        difference = logits[:, 1] - logits[:, 0]
        out[f"bayes_{variant}"] = _margin_accuracy(difference, y)
        out[f"bayes_{variant}_prior_corrected"] = _margin_accuracy(difference + log_odds, y)
    return out


def _log_prior_odds(train_prior: float) -> float:
    """log(p / (1 - p)) of the share p of class 1 among the real training images."""
    if not 0 < train_prior < 1:
        raise ValueError(
            f"train_prior is the share of class 1 in the real training set, in (0, 1); got {train_prior}: "
            "training labels of one class only have no prior odds"
        )
    return math.log(train_prior / (1 - train_prior))


def _margin_accuracy(difference: Tensor, y: Tensor) -> float:
    """Accuracy of deciding class 1 where the logit difference [n] (class 1 - class 0) is > 0 (ties: 0)."""
    return float(((difference > 0).long() == y).double().mean())


def _class_accuracies(logits: Tensor, y: Tensor, name: str) -> dict[str, float]:
    """{name: accuracy, name_class0: accuracy on class 0, name_class1: on class 1} of logits [n, 2], y [n]."""
    if logits.shape != (len(y), 2):
        raise ValueError(f"{name} logits must be [{len(y)}, 2], got {list(logits.shape)}")
    correct = logits.argmax(1) == y
    out = {name: float(correct.double().mean())}
    for label in (0, 1):
        of_class = y == label
        out[f"{name}_class{label}"] = float(correct[of_class].double().mean()) if of_class.any() else math.nan
    return out


def real_test_accuracy(
    model: nn.Module, task: TaskData, name: str = "accuracy", device: str | torch.device = "auto"
) -> dict[str, float]:
    """Accuracy of ``model`` on ``task``'s test images, overall and per class (keys as ``table3_accuracies``
    gives them for each CNN: ``name``, ``name_class0``, ``name_class1``)."""
    y = torch.as_tensor(task.y_test).long()
    return _class_accuracies(_test_logits(model, task, device).double(), y, name)


def _test_logits(model: nn.Module, task: TaskData, device: str | torch.device) -> Tensor:
    """``model``'s logits [n, 2] (on the CPU) for ``task``'s test images x [n, d], in the layout it takes."""
    dev = resolve_device(device)
    x = torch.as_tensor(task.x_test)
    model = model.to(dev).eval()
    return model_logits(model, x, input_view(model, x, task.image_shape, dev), task.image_shape, dev)


def table3_accuracies(
    real_logits: Tensor, symmetric_logits: Tensor, y: Tensor, train_prior: float
) -> dict[str, float]:
    """Table 3's accuracies from the two CNNs' logits [n, 2] on the real test images y [n].

    ``train_prior``: share of class 1 among the real training images, in (0, 1); it shifts the
    symmetric CNN's decision to that prior ("symmetric_train_prior_corrected"; see ``symmetric_vs_real``).
    """
    log_odds = _log_prior_odds(train_prior)
    y = torch.as_tensor(y).long().cpu()
    out: dict[str, float] = {}
    as_double = {
        name: torch.as_tensor(t).detach().cpu().double()
        for name, t in (("real_train", real_logits), ("symmetric_train", symmetric_logits))
    }
    for name, logits in as_double.items():
        out.update(_class_accuracies(logits, y, name))
    sym = as_double["symmetric_train"]
    out["symmetric_train_prior_corrected"] = _margin_accuracy(sym[:, 1] - sym[:, 0] + log_odds, y)
    return out


def table3_per_class(table3: Mapping[str, float], class_names: Sequence[str]) -> pd.DataFrame:
    """Each Table 3 CNN's accuracy (%) on the real test images of each class: where the drop comes from."""
    missing = [f"{who}_class{label}" for who in ("real_train", "symmetric_train") for label in (0, 1)]
    missing = [key for key in missing if key not in table3]
    if missing:
        raise ValueError(f"table3 lacks {missing}: make it with symmetric_vs_real")
    frame = pd.DataFrame(
        {
            name: {
                "CNN trained on real images": round(100 * table3[f"real_train_class{label}"], 1),
                "CNN trained on symmetric samples": round(100 * table3[f"symmetric_train_class{label}"], 1),
            }
            for label, name in enumerate(class_names)
        }
    )
    frame.columns = [f"{name} %" for name in class_names]
    return frame


def chapter5_metrics(
    evaluation: Evaluation,
    table3: Mapping[str, float],
    trained: TrainedClassifiers | None = None,
    task: TaskData | None = None,
) -> dict[str, Any]:
    """The metrics of ``save_result("05_real_data", ...)``: "cnn", "linear_svm", "rbf_svm" reports,
    "table3" (``symmetric_vs_real``), "test_accuracy", "seconds" (as in ``chapter4_metrics``), and the gamma /
    class balance if given."""
    metrics: dict[str, Any] = {name: rep.to_dict() for name, rep in evaluation.reports.items()}
    metrics["table3"] = dict(table3)
    metrics["test_accuracy"] = dict(evaluation.test_accuracy)
    metrics["n_test"] = evaluation.n_test
    metrics["attacks"] = dict(evaluation.attacks)
    metrics["seconds"] = timings(evaluation, trained)
    if trained is not None:
        metrics["rbf_gamma"] = trained.gamma
        metrics["gamma_search"] = trained.gamma_search
    if task is not None:
        metrics["class_balance"] = task.class_balance()
        metrics["source"] = source_label(task.source)
    return metrics


def plot_figure9_examples(
    evaluation: Evaluation, class_names: tuple[str, str] | None = None, n_show: int = 3
) -> Figure:
    """Figure 9 (left): adversarial examples of the models trained on real images and their magnified
    perturbations (the right half, their mean L2, is :func:`plot_figure9`)."""
    fig = plot_examples(evaluation, n_show, class_names, side="none")
    fig.suptitle("real CelebA test images: adversarial examples and perturbations", fontsize=10)
    return fig


def chapter5_result(
    attribute: str,
    profile: str,
    seed: int,
    evaluation: Evaluation,
    table3: Mapping[str, float],
    trained: TrainedClassifiers | None = None,
    task: TaskData | None = None,
) -> Result:
    """The chapter's result (``chapter5_metrics``)."""
    metrics = chapter5_metrics(evaluation, table3, trained, task)
    return Result(CHAPTER, "celeba", attribute, profile, seed, metrics)


# --------------------------------------------------------------------------------------------------
# Tables 2 and 3 and Figure 9 from results


def table2(results: ResultSet, convention: str = "paper") -> pd.DataFrame:
    """Table 2: [tasks, (model, clean/adversarial)] accuracies of the models trained on real CelebA images."""
    return accuracy_table(results, REAL, real_tasks(results), pv.REAL_MODELS, convention)


def real_tasks(results: ResultSet) -> list[Task]:
    """Tasks with a chapter 05 result, in the order of the paper's Tables 2 and 3."""
    return task_order(set(results.tasks(REAL)), [*pv.TABLE2, *TASKS])


def paper_table3(task: Task) -> tuple[float, float]:
    """The paper's Table 3 accuracies of ``task``: (trained on real, trained on symmetric), NaN if absent."""
    paper = pv.TABLE3.get(task, {})
    return paper.get("real_train", math.nan), paper.get("symmetric_train", math.nan)


def table3(results: ResultSet) -> pd.DataFrame:
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
    tasks = task_order(set(results.tasks(REAL)) | set(pv.TABLE3), [*pv.TABLE3, *TASKS])
    rows = []
    for task in tasks:
        real = results.value(REAL, *task, "table3.real_train")
        symmetric = results.value(REAL, *task, "table3.symmetric_train")
        prior = results.value(REAL, *task, "table3.symmetric_train_prior_corrected")
        bayes = results.value(REAL, *task, "table3.bayes_symmetric")
        paper_real, paper_sym = paper_table3(task)
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
    table = pd.DataFrame(rows, index=task_labels(tasks), columns=columns, dtype=float)
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
        paper_real, paper_symmetric = paper_table3(("celeba", attribute))
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
    order = task_order({("celeba", row["attribute"]) for row in rows}, [*pv.TABLE3, *TASKS])
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


def figure9_table(results: ResultSet) -> pd.DataFrame:
    """Figure 9 (right)'s numbers: [tasks, models] mean L2 of the attacks on models trained on real data."""
    return mean_l2_table(results, REAL, real_tasks(results), pv.REAL_MODELS)


def plot_figure9(results: ResultSet) -> Figure:
    """Figure 9 (right): grouped bars of the mean attack L2 per model trained on real CelebA images (the
    left half, the adversarial examples, is :func:`plot_figure9_examples`)."""
    table = figure9_table(results)
    if table.empty:
        return empty_figure(
            f"Figure 9: no real-data results of chapter 05 yet ({results.scope()}):\n"
            f"{sweep_command('figure9', results)}"
        )
    fig, ax = plt.subplots(figsize=(4 + 0.9 * max(len(table), 2), 3.8))
    grouped_bars(ax, table, pv.REAL_MODELS)
    yardsticks(ax)
    ax.set_ylabel("mean L2 of the attack")
    legend_right(ax, [ax])
    ax.set_title(f"Figure 9 (right), real CelebA ({results.scope()})")
    fig.tight_layout()
    return fig


def plot_table3_drops(table: pd.DataFrame) -> Figure:
    """Table 3 as a picture, from :func:`table3_drops`: per attribute (and the mean), an arrow from the
    real-test accuracy of the CNN trained on real faces down to that of the CNN trained on symmetric
    samples, ours and the paper's side by side; the arrow's length is the drop."""
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * max(len(table), 1), 4.0))
    if table.empty:
        empty_note(ax, "no Table 3 records with both CNNs yet")
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
    legend_right(ax, [ax])
    fig.tight_layout()
    return fig


def table3_drops_of(results: ResultSet) -> dict[Task, float]:
    """Our Table 3 drop (real minus symmetric training) per task that has both numbers."""
    drops = {
        task: results.value(REAL, *task, "table3.real_train")
        - results.value(REAL, *task, "table3.symmetric_train")
        for task in results.tasks(REAL)
    }
    return {task: drop for task, drop in drops.items() if not math.isnan(drop)}
