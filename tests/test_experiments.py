"""Chapters 4-5 orchestration on a tiny synthetic task: scoring, training, attacks, sweeps, tables, files.

The learned classifiers and their training (``chapters.learned``), their evaluation
(``chapters.evaluation``), chapter 4's sweeps and figures (``chapters.ch4_learned``) and chapter 5's real
data and Table 3 (``chapters.ch5_real``). Tables 1-3 and Figures 6, 8 and 9 (right) are drawn from the
chapter's result, as the chapters draw them (``ResultSet.of``)."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from nbhelpers.chapters import ch4_learned as ch4
from nbhelpers.chapters import ch5_real as ch5
from nbhelpers.chapters import display, learned
from nbhelpers.chapters import evaluation as evaluate
from nbhelpers.chapters.comparison import compare_with_paper
from nbhelpers.chapters.ids import LEARNED, REAL
from nbhelpers.chapters.plotting import plot_examples
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.resultset import Result, ResultSet, task_label
from nbhelpers.runs.results import collect_results, load_results, save_result
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import TaskData, load_task
from nbhelpers.science.datasets import TaskModels
from nbhelpers.science.mfa import MFA
from nbhelpers.science.models import LinearSVMModule
from nbhelpers.science.models.svm import GAMMA_TOLERANCE

IMAGE_SHAPE = (1, 4, 4)
D = 16


def tiny_pair(seed: int = 0, gap: float = 0.1) -> tuple[MFA, MFA]:
    """Two one-component MFAs in [0, 1]^16: means 0.5 -/+ gap * e, one small factor, noise sigma 0.02."""
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(D, generator=gen, dtype=torch.float64)
    e /= e.norm()
    pair = []
    for sign in (-1, 1):
        loadings = 0.03 * torch.randn(1, D, 1, generator=gen, dtype=torch.float64)
        pair.append(
            MFA.from_parameters(
                (0.5 + sign * gap * e)[None], loadings, torch.full((1,), 0.02**2), isotropic=True
            )
        )
    return pair[0], pair[1]


def make_tiny_models() -> TaskModels:
    """Models of a tiny task (two 1-component MFAs in 12 dimensions) standing in for a fitted one."""
    pair = tiny_pair()
    return TaskModels(
        dataset="celeba",
        attribute="Smiling",
        profile="quick",
        seed=0,
        image_shape=IMAGE_SHAPE,
        class_names=("not Smiling", "Smiling"),
        fitted=pair,
        symmetric=pair,
        asymmetric=pair,
        data_mean=np.full(D, 0.5),
        outlier_direction=np.eye(D)[0],
        outlier_step=2.5,
        outlier_weight=0.05,
        n_train_images=(10, 10),
    )


@pytest.fixture(scope="module")
def tiny_models() -> TaskModels:
    return make_tiny_models()


def make_tiny_data(models: TaskModels) -> TaskData:
    return learned.symmetric_data(models, n_train_per_class=40, n_test_per_class=15, seed=1)


@pytest.fixture(scope="module")
def tiny_data(tiny_models: TaskModels) -> TaskData:
    return make_tiny_data(tiny_models)


@pytest.fixture(scope="module")
def tiny_trained(tiny_data: TaskData) -> learned.TrainedClassifiers:
    return learned.train_classifiers(
        tiny_data.x_train,
        tiny_data.y_train,
        IMAGE_SHAPE,
        seed=1,
        device="cpu",
        width=4,
        depth=2,
        epochs=3,
        svm_max_train=50,
        gammas=(0.1, 1.0, 10.0, 1000.0),
        progress=False,
    )


@pytest.fixture(scope="module")
def tiny_evaluation(tiny_data: TaskData, tiny_trained: learned.TrainedClassifiers) -> evaluate.Evaluation:
    modules = {"bayes": BayesClassifier(*tiny_data.pair), **tiny_trained.modules}
    return evaluate.evaluate_models(
        modules,
        tiny_data.x_test,
        tiny_data.y_test,
        IMAGE_SHAPE,
        attacks=["ddn"],
        n_attack=8,
        seed=1,
        device="cpu",
        progress=False,
    )


class ImagesOnly(nn.Module):
    """Wraps a model so that it accepts only [n, C, H, W] inputs, like many users' CNNs."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise RuntimeError("expected [n, C, H, W]")
        return self.inner(x.flatten(1))


def chapter4_results(
    evaluation: evaluate.Evaluation, dataset: str = "celeba", attribute: str = "Smiling", sweeps=None
) -> ResultSet:
    """What chapter 4 draws Table 1 and Figures 6 and 8 from: its own result."""
    return ResultSet.of(ch4.chapter4_result(dataset, attribute, "quick", 0, evaluation, sweeps))


def chapter5_results(table3: dict[str, float], attribute: str, evaluation: evaluate.Evaluation) -> ResultSet:
    """What chapter 5 draws Tables 2 and 3 and Figure 9 (right) from: its own result."""
    real = {name: report for name, report in evaluation.reports.items() if name != "bayes"}
    real_evaluation = evaluate.Evaluation(**{**evaluation.__dict__, "reports": real})
    return ResultSet.of(ch5.chapter5_result(attribute, "quick", 0, real_evaluation, table3))


def table3_result(table3: dict[str, float], attribute: str) -> ResultSet:
    """A chapter 5 result holding only Table 3's numbers (what ``ch5_real.table3`` reads)."""
    return ResultSet.of(Result(REAL, "celeba", attribute, "quick", 0, {"table3": dict(table3)}))


# --------------------------------------------------------------------------------------------------
# score_classifier
# --------------------------------------------------------------------------------------------------


def test_score_classifier_counts_only_correct_and_flipped_samples(tiny_models):
    seed, n_attack = 3, 12
    x, y, _, _ = evaluate.score_test_set(tiny_models, "symmetric", seed)
    rows = evaluate.attacked_indices(len(y), n_attack, seed)
    mu0, mu1 = (m.mu[0].numpy() for m in tiny_models.symmetric)
    w = mu1 - mu0
    # A boundary pushed towards class 1: some class-1 samples fall on the wrong side.
    b = -float(w @ (0.05 * mu0 + 0.95 * mu1))
    f = x[rows].astype(np.float64) @ w + b
    correct = (f > 0) == (y[rows] == 1)
    assert 0 < correct.sum() < n_attack, "the setup needs both correct and misclassified samples"
    exact = np.abs(f[correct]) / np.linalg.norm(w)  # distance to the hyperplane

    model = LinearSVMModule(w, b)
    report = evaluate.score_classifier(
        model, tiny_models, n_attack=n_attack, attacks=["ddn"], seed=seed, device="cpu"
    )
    assert report.n == n_attack
    assert report.n_correct == correct.sum()
    assert report.n_evaluated == correct.sum()  # a linear boundary is always reachable
    assert report.clean_accuracy == pytest.approx(correct.mean())
    assert report.adversarial_accuracy == 0.0
    # DDN resolves the norm to ~0.005 at these tiny distances
    assert report.l2 == pytest.approx(exact, rel=0.05, abs=0.01)  # all correct ones are evaluated, in order
    assert (report.l2 >= exact * (1 - 1e-4)).all()  # never below the exact distance

    # The same classifier taking only images gives the same report.
    as_images = evaluate.score_classifier(
        ImagesOnly(model), tiny_models, n_attack=n_attack, attacks=["ddn"], seed=seed, device="cpu"
    )
    assert as_images.n_correct == report.n_correct
    assert as_images.mean_l2 == pytest.approx(report.mean_l2, rel=1e-5)


def test_score_classifier_matches_the_chapter_evaluation(tiny_models, tiny_trained):
    seed = 2
    x, y, shape, profile = evaluate.score_test_set(tiny_models, "symmetric", seed)
    assert shape == IMAGE_SHAPE and profile == "quick"
    data = learned.symmetric_data(tiny_models, seed=seed)
    assert np.array_equal(x, data.x_test) and np.array_equal(y, data.y_test)
    cnn = tiny_trained.modules["cnn"]
    evaluation = evaluate.evaluate_models(
        {"cnn": cnn},
        data.x_test,
        data.y_test,
        IMAGE_SHAPE,
        attacks=["ddn"],
        n_attack=6,
        seed=seed,
        device="cpu",
        progress=False,
    )
    report = evaluate.score_classifier(cnn, tiny_models, n_attack=6, attacks=["ddn"], seed=seed, device="cpu")
    assert report.to_dict() == evaluation.reports["cnn"].to_dict()


def test_score_classifier_rejects_bad_input(tiny_models):
    three_logits = nn.Linear(D, 3)
    with pytest.raises(ValueError, match=r"logits \[n, 2\]"):
        evaluate.score_classifier(three_logits, tiny_models, n_attack=4, attacks=["ddn"], device="cpu")
    good = nn.Linear(D, 2)
    with pytest.raises(ValueError, match="valid variants are .*'real'"):
        evaluate.score_classifier(good, tiny_models, variant="symetric", device="cpu")
    with pytest.raises(ValueError, match="valid names are"):
        evaluate.score_classifier(good, tiny_models, attacks=["pgd"], device="cpu")
    with pytest.raises(ValueError, match="no attack for learned models"):
        evaluate.score_classifier(good, tiny_models, attacks=["gradient"], device="cpu")
    with pytest.raises(ValueError, match="n_attack must be a positive integer"):
        evaluate.score_classifier(good, tiny_models, n_attack=-1, attacks=["ddn"], device="cpu")
    with pytest.raises(TypeError, match="TaskModels"):
        evaluate.score_classifier(good, "celeba/Smiling", device="cpu")
    task = TaskData(
        "celeba",
        "Smiling",
        np.zeros((2, D), np.float32),
        np.array([0, 1]),
        np.zeros((2, D), np.float32),
        np.array([0, 1]),
        IMAGE_SHAPE,
        ("a", "b"),
        "test",
    )
    with pytest.raises(ValueError, match="variant='real'"):
        evaluate.score_classifier(good, task, variant="symmetric", device="cpu")


# --------------------------------------------------------------------------------------------------
# Chapter 5 attribute validation and real data
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, name", [("Male", "Male"), ("heavy makeup", "Heavy_Makeup"), ("EYEGLASSES", "Eyeglasses")]
)
def test_real_attributes_are_canonicalised(given, name):
    assert ch5.check_real_attribute(given) == name


@pytest.mark.parametrize("attribute", ["Black_Hair", "No_Beard", "Nonsense", "0_vs_6"])
def test_other_attributes_are_refused_with_the_valid_list(attribute):
    with pytest.raises(
        ValueError, match="valid attributes are Male, Smiling, Bangs, Heavy_Makeup, Eyeglasses"
    ):
        ch5.check_real_attribute(attribute)
    with pytest.raises(ValueError, match="valid attributes are"):
        ch5.real_task(attribute)


def test_real_chapter_is_celeba_only():
    with pytest.raises(ValueError, match="CelebA only"):
        ch5.check_real_attribute("Male", dataset="mnist")


def test_class_balance_table_matches_the_loaded_tasks():
    table = ch5.class_balance_table()
    assert list(table["attribute"].unique()) == list(ch5.REAL_ATTRIBUTES)
    assert len(table) == 2 * len(ch5.REAL_ATTRIBUTES)
    for attribute in ("Eyeglasses", "Male"):
        balance = load_task("celeba", attribute).class_balance()
        for split in ("train", "test"):
            row = table[(table["attribute"] == attribute) & (table["split"] == split)].iloc[0]
            assert row["images"] == balance[split]["n"] and row["positives"] == balance[split]["n_1"]
            share = balance[split]["positive_fraction"]
            assert row["majority baseline %"] == pytest.approx(100 * max(share, 1 - share), abs=0.05)


def test_real_task_caps_each_class():
    task = ch5.real_task("Smiling", max_per_class=20)
    for y in (task.y_train, task.y_test):
        assert np.bincount(y, minlength=2).max() <= 20


# --------------------------------------------------------------------------------------------------
# Orchestration on the tiny task
# --------------------------------------------------------------------------------------------------


def test_symmetric_data_shapes_and_seeds(tiny_models, tiny_data):
    assert tiny_data.x_train.shape == (80, D) and tiny_data.y_train.shape == (80,)
    assert tiny_data.x_test.shape == (30, D) and np.bincount(tiny_data.y_test).tolist() == [15, 15]
    assert tiny_data.variant == "symmetric" and tiny_data.pair is tiny_models.symmetric
    again = learned.symmetric_data(tiny_models, n_train_per_class=40, n_test_per_class=15, seed=1)
    assert np.array_equal(again.x_train, tiny_data.x_train)
    assert not np.array_equal(
        learned.symmetric_data(tiny_models, n_train_per_class=40, seed=2).x_train, tiny_data.x_train
    )


def test_matched_epochs_give_the_symmetric_training_budget():
    sizes = get_profile("quick")
    budget = sizes.models.cnn_epochs * 2 * sizes.datasets.n_train_per_class
    assert ch5.matched_epochs(2 * sizes.datasets.n_train_per_class) == sizes.models.cnn_epochs
    for n in (1, 359, 360, budget, 10 * budget):
        epochs = ch5.matched_epochs(n)
        assert epochs * n >= budget and (epochs == 1 or (epochs - 1) * n < budget)
    with pytest.raises(ValueError, match="positive integer"):
        ch5.matched_epochs(0)
    # paper: 2 x 10,000 symmetric samples; 4 epochs over them are 80,000 examples, 6 epochs of 15,063
    assert ch5.matched_epochs(15063, "paper", symmetric_epochs=4) == 6
    assert ch5.matched_epochs(15063, "paper") == 27  # 20 epochs: 400,000 examples
    with pytest.raises(ValueError, match="symmetric_epochs must be a positive integer"):
        ch5.matched_epochs(100, symmetric_epochs=0)


def test_train_classifiers_gives_two_logit_modules_and_the_gamma_rule(tiny_data, tiny_trained):
    assert set(tiny_trained.modules) == set(learned.LEARNED)
    assert tiny_trained.n_train == {"cnn": 80, "linear_svm": 50, "rbf_svm": 50}
    x = torch.from_numpy(tiny_data.x_test)
    for module in tiny_trained.modules.values():
        with torch.no_grad():
            assert module(x).shape == (len(x), 2)
    table = tiny_trained.gamma_search
    assert [row["gamma"] for row in table] == [0.1, 1.0, 10.0, 1000.0]
    assert [row["gamma"] for row in table if row["selected"]] == [tiny_trained.gamma]
    best = max(row["val_accuracy"] for row in table)
    keeping = [row["gamma"] for row in table if row["val_accuracy"] >= best - GAMMA_TOLERANCE]
    assert tiny_trained.gamma == max(keeping)
    frame = learned.gamma_table(tiny_trained)
    assert frame["selected"].sum() == 1 and frame["validation accuracy %"].max() <= 100


def test_evaluate_models_attacks_the_same_samples(tiny_data, tiny_evaluation):
    ev = tiny_evaluation
    assert list(ev.reports) == ["bayes", "cnn", "linear_svm", "rbf_svm"]
    assert ev.attacks["bayes"] == ["gradient", "ddn"] and ev.attacks["cnn"] == ["ddn"]
    assert ev.n_test == 30 and len(ev.indices) == 8 and len(set(ev.indices.tolist())) == 8
    assert torch.equal(ev.x, torch.from_numpy(tiny_data.x_test[ev.indices]))
    for name, report in ev.reports.items():
        result = ev.results[name]
        assert report.n == 8
        assert report.n_correct == int((result.clean_pred == ev.y).sum())
        assert report.n_evaluated == int(((result.clean_pred == ev.y) & result.success).sum())
        assert 0 <= ev.test_accuracy[name] <= 1
    # The classes are 0.2 apart against noise 0.02: the Bayes-optimal classifier makes no mistake and
    # needs about half the gap (0.1, up to the small factor) to be fooled.
    assert ev.test_accuracy["bayes"] == 1.0
    assert 0.05 < ev.reports["bayes"].mean_l2 < 0.15
    # Table 1 of this run, and the paper's numbers beside ours, as chapter 4 shows them
    results = chapter4_results(ev)
    row = ch4.table1(results).loc[task_label("celeba", "Smiling")]
    rep = ev.reports["cnn"]
    assert row[("CNN", "clean")] == pytest.approx(ev.test_accuracy["cnn"])  # on the whole test set
    assert row[("CNN", "adversarial")] == pytest.approx(1 - rep.clean_accuracy + rep.adversarial_accuracy)
    strict = ch4.table1(results, "strict").loc[task_label("celeba", "Smiling")]
    assert strict[("CNN", "adversarial")] == pytest.approx(rep.adversarial_accuracy)
    paper = compare_with_paper(results).set_index(["quantity", "model"])
    assert paper.loc[("clean_accuracy", "RBF SVM"), ["paper", "ours"]].tolist() == pytest.approx(
        [0.96, ev.test_accuracy["rbf_svm"]]
    )
    assert paper.loc[("adversarial_accuracy", "RBF SVM"), "paper"] == pytest.approx(0.10)
    assert paper.loc[("mean_l2", "CNN"), ["paper", "ours"]].tolist() == pytest.approx([0.86, rep.mean_l2])
    mnist = compare_with_paper(chapter4_results(ev, "mnist", "0_vs_6"))
    assert "mean_l2" not in set(mnist["quantity"])  # Figure 7 is CelebA / Smiling only
    real = compare_with_paper(chapter5_results({}, "Male", ev)).set_index(["quantity", "model"])
    assert real.loc[("real_clean_accuracy", "Linear SVM"), "paper"] == pytest.approx(0.897)
    assert real.loc[("real_adversarial_accuracy", "Linear SVM"), "paper"] == pytest.approx(0.103)


def test_svms_fitted_while_the_cnn_trains_are_the_same_models(tiny_data, tiny_trained):
    # the overlap a CUDA run takes by default, forced on the CPU: only the wall times may differ
    overlapped = learned.train_classifiers(
        tiny_data.x_train,
        tiny_data.y_train,
        IMAGE_SHAPE,
        seed=1,
        device="cpu",
        width=4,
        depth=2,
        epochs=3,
        svm_max_train=50,
        gammas=(0.1, 1.0, 10.0, 1000.0),
        progress=False,
        overlap=True,
    )
    assert list(overlapped.modules) == list(tiny_trained.modules) == list(learned.LEARNED)
    assert overlapped.gamma == tiny_trained.gamma and overlapped.gamma_search == tiny_trained.gamma_search
    assert overlapped.n_train == tiny_trained.n_train and set(overlapped.seconds) == set(learned.LEARNED)
    for name, module in tiny_trained.modules.items():
        mine = overlapped.modules[name].state_dict()
        assert list(mine) == list(module.state_dict()), name
        for key, value in module.state_dict().items():
            assert torch.equal(value, mine[key]), (name, key)
    with pytest.raises(ValueError, match="overlap must be True, False or None.*'yes'"):
        learned.train_classifiers(tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, overlap="yes")


def test_progress_reaches_the_cnn_training_and_each_attack(tiny_data, capsys):
    # A paper-profile CNN trains and is attacked for many minutes on a CPU: each of those loops has a bar.
    kwargs = dict(seed=1, device="cpu", width=4, depth=2, epochs=1, svm_max_train=20, gammas=(1.0,))
    capsys.readouterr()
    trained = learned.train_classifiers(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, progress=True, **kwargs
    )
    assert "train:" in capsys.readouterr().err
    learned.train_classifiers(tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, progress=False, **kwargs)
    assert "train:" not in capsys.readouterr().err
    args = ({"cnn": trained.modules["cnn"]}, tiny_data.x_test, tiny_data.y_test, IMAGE_SHAPE)
    for progress in (True, False):
        evaluate.evaluate_models(*args, attacks=["ddn"], n_attack=4, seed=1, device="cpu", progress=progress)
        assert ("ddn attack:" in capsys.readouterr().err) is progress


def test_attack_table_counts_per_attack(tiny_evaluation):
    table = evaluate.attack_table(tiny_evaluation.results, tiny_evaluation.y)
    bayes = tiny_evaluation.results["bayes"]
    correct = bayes.clean_pred == tiny_evaluation.y
    for attack in ("gradient", "ddn"):
        flipped = torch.isfinite(bayes.per_attack_l2[attack]) & correct
        assert table.loc[("Bayes-optimal", attack), "flipped"] == int(flipped.sum())
        assert table.loc[("Bayes-optimal", attack), "correct"] == int(correct.sum())
        l2 = bayes.per_attack_l2[attack][flipped]
        assert table.loc[("Bayes-optimal", attack), "mean L2"] == pytest.approx(float(l2.mean()))
    # every evaluated sample is won by exactly one attack
    assert table.loc["Bayes-optimal", "best on"].sum() == tiny_evaluation.reports["bayes"].n_evaluated
    # the gradient attack is for Bayes only: the learned models have no row for it
    assert list(table.loc["CNN"].index) == ["ddn"] and ("CNN", "gradient") not in table.index
    for column in ("correct", "flipped", "best on"):  # counts stay integers
        assert pd.api.types.is_integer_dtype(table[column])
    assert "NaN" not in display.table(table).to_string()
    # A model that got every attacked sample wrong has no success rate nor mean L2: shown as missing.
    cnn = tiny_evaluation.results["cnn"]
    wrong = evaluate.attack_table({"cnn": cnn}, 1 - cnn.clean_pred)
    assert wrong.loc[("CNN", "ddn"), ["correct", "flipped", "best on"]].tolist() == [0, 0, 0]
    assert wrong[["success rate", "mean L2"]].isna().all().all()
    shown = display.table(wrong).to_string()
    assert "NaN" not in shown and "<NA>" not in shown and display.MISSING in shown


def test_sweeps_reuse_the_base_cnn(tiny_data):
    base = learned.train_cnn(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, seed=1, device="cpu"
    )  # profile sizes
    kwargs = {"seed": 1, "device": "cpu", "attacks": ["ddn"], "n_attack": 5, "progress": False}
    sweeps = ch4.run_sweeps(
        tiny_data, base, train_sizes=(64,), widths=(2, 16), depths=(4,), betas=(0.0, 1.0), **kwargs
    )
    assert {name: [p.value for p in points] for name, points in sweeps.items()} == {
        "train_size": [64],
        "width": [2, 16],
        "depth": [4],
        "trades": [0.0, 1.0],
    }
    direct = evaluate.evaluate_models(
        {"cnn": base},
        tiny_data.x_test,
        tiny_data.y_test,
        IMAGE_SHAPE,
        attacks=["ddn"],
        n_attack=5,
        seed=1,
        device="cpu",
        progress=False,
    ).reports["cnn"]
    for point in (sweeps["width"][1], sweeps["depth"][0], sweeps["trades"][0]):
        assert point.report.to_dict() == direct.to_dict()
    # Without the base, beta = 0 trains afresh with the same seed: the same weights, the same report.
    fresh = ch4.run_sweeps(tiny_data, None, train_sizes=(), widths=(), depths=(), betas=(0.0,), **kwargs)
    assert fresh["trades"][0].report.to_dict() == direct.to_dict()
    assert fresh["train_size"] == [] and fresh["width"] == []
    table = ch4.sweep_table(sweeps)
    assert len(table) == 6 and set(table["sweep"]) == {"train size", "width", "depth", "TRADES beta"}

    with pytest.raises(ValueError, match="width 2 and depth 4"):
        ch4.run_sweeps(
            tiny_data,
            learned.train_cnn(
                tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, width=2, epochs=1, device="cpu"
            ),
            **kwargs,
        )
    real = dataclasses.replace(tiny_data, variant="real", pair=None)  # images with no models behind them
    with pytest.raises(ValueError, match="train_sizes=()"):
        ch4.run_sweeps(real, None, train_sizes=(64,), **kwargs)


def test_skipped_sweeps_train_nothing_and_say_so(tiny_data, tiny_evaluation, tmp_path):
    skipped = ch4.run_sweeps(tiny_data, None, skip=True, device="cpu", progress=False)
    assert skipped == {"train_size": [], "width": [], "depth": [], "trades": []}
    table = ch4.sweep_table(skipped)
    assert table.empty and "mean L2" in table.columns
    result = ch4.chapter4_result("celeba", "Smiling", "quick", 0, tiny_evaluation, skipped, figure8=False)
    assert result.params == {"figure8": False}
    results = ResultSet.of(result)  # what the chapter draws Figure 8 from
    assert ch4.figure8_table(results).empty and not ch4.figure8_tasks(results)
    fig = ch4.plot_figure8(results)
    assert "sweeps skipped" in fig.axes[0].texts[0].get_text()
    plt.close(fig)
    # The same result read back from its folder (the summary chapter): no sweeps yet, and the command
    save_result(result, tmp_path)
    fig = ch4.plot_figure8(collect_results("quick", tmp_path))
    text = fig.axes[0].texts[0].get_text()
    assert "no sweeps of chapter 04" in text and "python -m nbhelpers sweep --chapters 04" in text
    plt.close(fig)
    metrics = ch4.chapter4_metrics(tiny_evaluation, skipped)
    assert metrics["sweeps"] == {"train_size": [], "width": [], "depth": []} and metrics["trades"] == []


def test_metrics_are_saved_and_read_back(tmp_path, tiny_evaluation, tiny_trained):
    point = ch4.SweepPoint(2.0, 0.9, tiny_evaluation.reports["cnn"], 1.5)
    sweeps = {"train_size": [point], "width": [], "depth": [], "trades": [point]}
    metrics = ch4.chapter4_metrics(tiny_evaluation, sweeps, tiny_trained)
    for key in ("bayes", "cnn", "linear_svm", "rbf_svm", "sweeps", "trades"):
        assert key in metrics
    assert set(metrics["sweeps"]) == {"train_size", "width", "depth"}
    assert metrics["trades"][0]["beta"] == 2.0 and metrics["sweeps"]["train_size"][0]["value"] == 2.0
    assert metrics["cnn"] == tiny_evaluation.reports["cnn"].to_dict()
    json.dumps(metrics, allow_nan=False)
    result = ch4.chapter4_result("celeba", "Smiling", "quick", 0, tiny_evaluation, sweeps, tiny_trained)
    assert result.metrics == metrics and result.chapter == LEARNED
    path = save_result(result, tmp_path)
    assert path == tmp_path / "quick" / "04_learned_classifiers__celeba__Smiling__seed0.json"
    assert json.loads(path.read_text())["figure8"] is True  # the parameter it ran with, beside the metrics
    (saved,) = load_results("quick", tmp_path)
    assert (saved.chapter, saved.task, saved.seed, saved.params) == (
        LEARNED,
        ("celeba", "Smiling"),
        0,
        {"figure8": True},
    )
    assert saved.metrics["rbf_svm"]["n"] == 8 and saved.metrics["rbf_gamma"] == tiny_trained.gamma
    seconds = saved.metrics["seconds"]  # where the run's time went, per model
    assert set(seconds["evaluate"]) == set(tiny_evaluation.reports) and set(seconds["train"]) == set(
        learned.LEARNED
    )
    assert all(value > 0 for part in seconds.values() for value in part.values())
    assert seconds["train"] == pytest.approx(tiny_trained.seconds)

    real = {k: v for k, v in tiny_evaluation.reports.items() if k != "bayes"}
    real_eval = evaluate.Evaluation(**{**tiny_evaluation.__dict__, "reports": real})
    metrics5 = ch5.chapter5_metrics(real_eval, {"real_train": 0.9, "symmetric_train": 0.8})
    assert set(metrics5) >= {"cnn", "linear_svm", "rbf_svm", "table3"} and "bayes" not in metrics5
    assert "train" not in metrics5["seconds"]  # no trained classifiers given
    json.dumps(metrics5, allow_nan=False)


def test_symmetric_vs_real_and_table3(tiny_models, tiny_trained, tiny_evaluation):
    # The tiny "real" task: fresh samples of the same pair, so both CNNs should do well on it.
    fresh = learned.symmetric_data(tiny_models, n_test_per_class=20, seed=7)
    x, y = fresh.x_test, fresh.y_test
    task = TaskData("celeba", "Male", x, y, x, y, IMAGE_SHAPE, ("not Male", "Male"), "tiny")
    table3 = ch5.symmetric_vs_real(tiny_models, task, tiny_trained.modules["cnn"], seed=1, device="cpu")
    with torch.no_grad():
        expected = float((tiny_trained.modules["cnn"](torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert table3["real_train"] == pytest.approx(expected)
    assert 0.5 <= table3["symmetric_train"] <= 1.0
    # Table 3 as chapter 5 shows it: from the chapter's result, ours beside the paper's
    frame = ch5.table3(chapter5_results(table3, "Male", tiny_evaluation))
    row = frame.loc[task_label("celeba", "Male")]
    assert set(frame.columns.get_level_values(0)) == {"ours", "paper"}
    assert row[("paper", "drop")] == pytest.approx(0.043)
    assert row[("ours", "real train")] == table3["real_train"]
    assert row[("ours", "drop")] == pytest.approx(table3["real_train"] - table3["symmetric_train"])
    # the paper's average covers the tasks we have a drop for: Male alone
    assert frame.loc["Average", ("paper", "drop")] == pytest.approx(0.043)
    for who in ("real_train", "symmetric_train"):  # the mean of the per-class accuracies, weighted
        per_class = [table3[f"{who}_class{label}"] for label in (0, 1)]
        assert np.dot(per_class, [np.mean(y == 0), np.mean(y == 1)]) == pytest.approx(table3[who])
    # Balanced training labels: the real prior is 1/2, and the correction changes nothing.
    assert table3["symmetric_train_prior_corrected"] == pytest.approx(table3["symmetric_train"])
    assert row[("ours", "drop, real prior")] == pytest.approx(row[("ours", "drop")])
    bayes = ch5.bayes_real_accuracy(tiny_models, task)
    assert {key: table3[key] for key in bayes} == bayes
    assert row[("ours", "Bayes, symmetric pair")] == bayes["bayes_symmetric"]
    assert ("paper", "symmetric, real prior") not in frame.columns  # the paper gives no such number
    per_class = ch5.table3_per_class(table3, task.class_names)
    assert list(per_class.columns) == ["not Male %", "Male %"]
    assert per_class.loc["CNN trained on symmetric samples", "Male %"] == round(
        100 * table3["symmetric_train_class1"], 1
    )
    with pytest.raises(ValueError, match="make it with symmetric_vs_real"):
        ch5.table3_per_class({"real_train": 0.9, "symmetric_train": 0.8}, task.class_names)
    wrong = TaskData("celeba", "Male", x[:, :9], y, x[:, :9], y, (1, 3, 3), ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="images but the task has"):
        ch5.symmetric_vs_real(tiny_models, wrong, tiny_trained.modules["cnn"], device="cpu")


def test_bayes_real_accuracy_counts_each_pairs_decisions(tiny_models):
    # Two pairs in d = 16: unit-variance spheres at -3 e1 (class 0) and +3 e1 (class 1), which split the
    # first pixel at 0, and the same with the means swapped, which gets every answer the other way round.
    d = int(np.prod(IMAGE_SHAPE))
    e1 = np.eye(d)[:1]
    no_factors = np.zeros((1, d, 1))

    def sphere(mean: np.ndarray) -> MFA:
        return MFA.from_parameters(mean, no_factors, np.ones(1), isotropic=True)

    models = dataclasses.replace(
        tiny_models, fitted=(sphere(-3 * e1), sphere(3 * e1)), symmetric=(sphere(3 * e1), sphere(-3 * e1))
    )
    # log p1 - log p0 = 6 t on the first pixel t; the real training prior 1/5 adds log(1/4) = -1.39 to it,
    # which moves the last face (t = 0.1, margin 0.6) to class 0 and leaves the others.
    x = (np.array([-2.0, -1.0, 1.0, 2.0, 0.5, 0.1])[:, None] * e1).astype(np.float32)
    y = np.array([0, 0, 1, 0, 1, 0])  # the fourth face is on the wrong side of the first pair's boundary
    y_train = np.array([0, 0, 0, 0, 1])
    task = TaskData("celeba", "Male", x[:5], y_train, x, y, IMAGE_SHAPE, ("not Male", "Male"), "tiny")
    out = ch5.bayes_real_accuracy(models, task, batch=4)
    assert out == {
        "bayes_fitted": pytest.approx(4 / 6),
        "bayes_fitted_prior_corrected": pytest.approx(5 / 6),
        "bayes_symmetric": pytest.approx(2 / 6),
        "bayes_symmetric_prior_corrected": pytest.approx(2 / 6),
    }
    one_class = TaskData("celeba", "Male", x[:4], y_train[:4], x, y, IMAGE_SHAPE, ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="one class only"):
        ch5.bayes_real_accuracy(models, one_class)
    wrong = TaskData("celeba", "Male", x[:, :9], y, x[:, :9], y, (1, 3, 3), ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="images but the task has"):
        ch5.bayes_real_accuracy(models, wrong)


def test_table3_accuracies_per_class_and_with_the_real_prior():
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    real = torch.tensor([[1.0, 0.0]] * 6 + [[0.0, 1.0], [1.0, 0.0]])  # all of class 0, half of class 1
    # Logit differences (class 1 - class 0): the symmetric CNN calls three of the six class-0 images 1,
    # with margins 0.2, 0.4 and 2.0, and both class-1 images 1, with margins 0.3 and 3.0.
    diff = torch.tensor([-1.0, -1.0, -1.0, 0.2, 0.4, 2.0, 0.3, 3.0])
    symmetric = torch.stack([torch.zeros(8), diff], dim=1)
    out = ch5.table3_accuracies(real, symmetric, y, train_prior=0.25)
    assert out["real_train"] == pytest.approx(7 / 8)
    assert (out["real_train_class0"], out["real_train_class1"]) == pytest.approx((1.0, 0.5))
    assert out["symmetric_train"] == pytest.approx(5 / 8)
    assert (out["symmetric_train_class0"], out["symmetric_train_class1"]) == pytest.approx((0.5, 1.0))
    # Prior 1/4: log odds -log 3 = -1.099 moves the margins 0.2, 0.4 and 0.3 below zero, not 2.0 or 3.0.
    assert out["symmetric_train_prior_corrected"] == pytest.approx(6 / 8)
    row = ch5.table3(table3_result(out, "Smiling")).loc[task_label("celeba", "Smiling")]
    assert row[("ours", "drop")] == pytest.approx(0.25)
    assert row[("ours", "drop, real prior")] == pytest.approx(0.125)
    with pytest.raises(ValueError, match="share of class 1"):
        ch5.table3_accuracies(real, symmetric, y, train_prior=1.0)
    with pytest.raises(ValueError, match=r"logits must be \[8, 2\]"):
        ch5.table3_accuracies(real[:, :1], symmetric, y, train_prior=0.5)


def test_figures_are_returned(tiny_data, tiny_evaluation):
    point = ch4.SweepPoint(2.0, 0.9, tiny_evaluation.reports["cnn"], 1.5)
    sweeps = {"train_size": [point], "width": [point], "depth": [point], "trades": [point]}
    results4 = chapter4_results(tiny_evaluation, sweeps=sweeps)
    results5 = chapter5_results({}, "Male", tiny_evaluation)
    figure8 = ch4.figure8_table(results4)
    assert len(figure8) == 4 and set(figure8["sweep"]) == {"train_size", "width", "depth", "trades"}
    assert figure8["mean_l2"].tolist() == pytest.approx([tiny_evaluation.reports["cnn"].mean_l2] * 4)
    figure6 = ch4.figure6_table(results4).loc[task_label("celeba", "Smiling")]
    assert figure6["CNN"] == pytest.approx(tiny_evaluation.reports["cnn"].mean_l2)
    figure9 = ch5.figure9_table(results5).loc[task_label("celeba", "Male")]
    assert figure9["RBF SVM"] == pytest.approx(tiny_evaluation.reports["rbf_svm"].mean_l2)
    figures = [
        ch4.plot_figure7(tiny_evaluation, tiny_data.class_names, "celeba", "Smiling", n_show=2),
        ch5.plot_figure9_examples(tiny_evaluation, tiny_data.class_names, n_show=2),
        ch5.plot_figure9(results5),
        ch4.plot_figure8(results4),
        ch4.plot_figure6(results4),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        plt.close(fig)
    with pytest.raises(ValueError, match="valid choices"):
        plot_examples(tiny_evaluation, side="left")
