"""Chapters 4-5 orchestration on a tiny synthetic task: scoring, training, attacks, sweeps, tables, files."""

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

from nbhelpers import display
from nbhelpers import experiments as ex
from nbhelpers.classifier import BayesClassifier
from nbhelpers.data import TaskData, load_task
from nbhelpers.datasets import TaskModels
from nbhelpers.mfa import MFA
from nbhelpers.models import LinearSVMModule
from nbhelpers.results import load_results, save_result

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


def make_tiny_data(models: TaskModels) -> ex.SampledData:
    return ex.symmetric_data(models, n_train_per_class=40, n_test_per_class=15, seed=1)


@pytest.fixture(scope="module")
def tiny_data(tiny_models: TaskModels) -> ex.SampledData:
    return make_tiny_data(tiny_models)


@pytest.fixture(scope="module")
def tiny_trained(tiny_data: ex.SampledData) -> ex.TrainedClassifiers:
    return ex.train_classifiers(
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
def tiny_evaluation(tiny_data: ex.SampledData, tiny_trained: ex.TrainedClassifiers) -> ex.Evaluation:
    modules = {"bayes": BayesClassifier(*tiny_data.pair), **tiny_trained.modules}
    return ex.evaluate_models(
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


# --------------------------------------------------------------------------------------------------
# score_classifier
# --------------------------------------------------------------------------------------------------


def test_score_classifier_counts_only_correct_and_flipped_samples(tiny_models):
    seed, n_attack = 3, 12
    x, y, _, _ = ex.score_test_set(tiny_models, "symmetric", seed)
    rows = ex.attacked_indices(len(y), n_attack, seed)
    mu0, mu1 = (m.mu[0].numpy() for m in tiny_models.symmetric)
    w = mu1 - mu0
    # A boundary pushed towards class 1: some class-1 samples fall on the wrong side.
    b = -float(w @ (0.05 * mu0 + 0.95 * mu1))
    f = x[rows].astype(np.float64) @ w + b
    correct = (f > 0) == (y[rows] == 1)
    assert 0 < correct.sum() < n_attack, "the setup needs both correct and misclassified samples"
    exact = np.abs(f[correct]) / np.linalg.norm(w)  # distance to the hyperplane

    model = LinearSVMModule(w, b)
    report = ex.score_classifier(
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
    as_images = ex.score_classifier(
        ImagesOnly(model), tiny_models, n_attack=n_attack, attacks=["ddn"], seed=seed, device="cpu"
    )
    assert as_images.n_correct == report.n_correct
    assert as_images.mean_l2 == pytest.approx(report.mean_l2, rel=1e-5)


def test_score_classifier_matches_the_chapter_evaluation(tiny_models, tiny_trained):
    seed = 2
    x, y, shape, profile = ex.score_test_set(tiny_models, "symmetric", seed)
    assert shape == IMAGE_SHAPE and profile == "quick"
    data = ex.symmetric_data(tiny_models, seed=seed)
    assert np.array_equal(x, data.x_test) and np.array_equal(y, data.y_test)
    cnn = tiny_trained.modules["cnn"]
    evaluation = ex.evaluate_models(
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
    report = ex.score_classifier(cnn, tiny_models, n_attack=6, attacks=["ddn"], seed=seed, device="cpu")
    assert report.to_dict() == evaluation.reports["cnn"].to_dict()


def test_score_classifier_rejects_bad_input(tiny_models):
    three_logits = nn.Linear(D, 3)
    with pytest.raises(ValueError, match=r"logits \[n, 2\]"):
        ex.score_classifier(three_logits, tiny_models, n_attack=4, attacks=["ddn"], device="cpu")
    good = nn.Linear(D, 2)
    with pytest.raises(ValueError, match="valid variants are .*'real'"):
        ex.score_classifier(good, tiny_models, variant="symetric", device="cpu")
    with pytest.raises(ValueError, match="valid names are"):
        ex.score_classifier(good, tiny_models, attacks=["pgd"], device="cpu")
    with pytest.raises(ValueError, match="no attack for learned models"):
        ex.score_classifier(good, tiny_models, attacks=["gradient"], device="cpu")
    with pytest.raises(ValueError, match="n_attack must be a positive integer"):
        ex.score_classifier(good, tiny_models, n_attack=-1, attacks=["ddn"], device="cpu")
    with pytest.raises(TypeError, match="TaskModels"):
        ex.score_classifier(good, "celeba/Smiling", device="cpu")
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
        ex.score_classifier(good, task, variant="symmetric", device="cpu")


# --------------------------------------------------------------------------------------------------
# Chapter 5 attribute validation and real data
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, name", [("Male", "Male"), ("heavy makeup", "Heavy_Makeup"), ("EYEGLASSES", "Eyeglasses")]
)
def test_real_attributes_are_canonicalised(given, name):
    assert ex.check_real_attribute(given) == name


@pytest.mark.parametrize("attribute", ["Black_Hair", "No_Beard", "Nonsense", "0_vs_6"])
def test_other_attributes_are_refused_with_the_valid_list(attribute):
    with pytest.raises(
        ValueError, match="valid attributes are Male, Smiling, Bangs, Heavy_Makeup, Eyeglasses"
    ):
        ex.check_real_attribute(attribute)
    with pytest.raises(ValueError, match="valid attributes are"):
        ex.real_task(attribute)


def test_real_chapter_is_celeba_only():
    with pytest.raises(ValueError, match="CelebA only"):
        ex.check_real_attribute("Male", dataset="mnist")


def test_class_balance_table_matches_the_loaded_tasks():
    table = ex.class_balance_table()
    assert list(table["attribute"].unique()) == list(ex.REAL_ATTRIBUTES)
    assert len(table) == 2 * len(ex.REAL_ATTRIBUTES)
    for attribute in ("Eyeglasses", "Male"):
        balance = load_task("celeba", attribute).class_balance()
        for split in ("train", "test"):
            row = table[(table["attribute"] == attribute) & (table["split"] == split)].iloc[0]
            assert row["images"] == balance[split]["n"] and row["positives"] == balance[split]["n_1"]
            share = balance[split]["positive_fraction"]
            assert row["majority baseline %"] == pytest.approx(100 * max(share, 1 - share), abs=0.05)


def test_real_task_caps_each_class():
    task = ex.real_task("Smiling", max_per_class=20)
    for y in (task.y_train, task.y_test):
        assert np.bincount(y, minlength=2).max() <= 20


# --------------------------------------------------------------------------------------------------
# Orchestration on the tiny task
# --------------------------------------------------------------------------------------------------


def test_symmetric_data_shapes_and_seeds(tiny_models, tiny_data):
    assert tiny_data.x_train.shape == (80, D) and tiny_data.y_train.shape == (80,)
    assert tiny_data.x_test.shape == (30, D) and np.bincount(tiny_data.y_test).tolist() == [15, 15]
    again = ex.symmetric_data(tiny_models, n_train_per_class=40, n_test_per_class=15, seed=1)
    assert np.array_equal(again.x_train, tiny_data.x_train)
    assert not np.array_equal(
        ex.symmetric_data(tiny_models, n_train_per_class=40, seed=2).x_train, tiny_data.x_train
    )


def test_matched_epochs_give_the_symmetric_training_budget():
    from nbhelpers.config import get_profile

    sizes = get_profile("quick")
    budget = sizes.models.cnn_epochs * 2 * sizes.datasets.n_train_per_class
    assert ex.matched_epochs(2 * sizes.datasets.n_train_per_class) == sizes.models.cnn_epochs
    for n in (1, 359, 360, budget, 10 * budget):
        epochs = ex.matched_epochs(n)
        assert epochs * n >= budget and (epochs == 1 or (epochs - 1) * n < budget)
    with pytest.raises(ValueError, match="positive integer"):
        ex.matched_epochs(0)
    # paper: 2 x 10,000 symmetric samples; 4 epochs over them are 80,000 examples, 6 epochs of 15,063
    assert ex.matched_epochs(15063, "paper", symmetric_epochs=4) == 6
    assert ex.matched_epochs(15063, "paper") == 27  # 20 epochs: 400,000 examples
    with pytest.raises(ValueError, match="symmetric_epochs must be a positive integer"):
        ex.matched_epochs(100, symmetric_epochs=0)


def test_train_classifiers_gives_two_logit_modules_and_the_gamma_rule(tiny_data, tiny_trained):
    assert set(tiny_trained.modules) == set(ex.LEARNED)
    assert tiny_trained.n_train == {"cnn": 80, "linear_svm": 50, "rbf_svm": 50}
    x = torch.from_numpy(tiny_data.x_test)
    for module in tiny_trained.modules.values():
        with torch.no_grad():
            assert module(x).shape == (len(x), 2)
    table = tiny_trained.gamma_search
    assert [row["gamma"] for row in table] == [0.1, 1.0, 10.0, 1000.0]
    assert [row["gamma"] for row in table if row["selected"]] == [tiny_trained.gamma]
    best = max(row["val_accuracy"] for row in table)
    keeping = [row["gamma"] for row in table if row["val_accuracy"] >= best - ex.GAMMA_TOLERANCE]
    assert tiny_trained.gamma == max(keeping)
    frame = ex.gamma_table(tiny_trained)
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
    frame = ex.table1(ev, "celeba", "Smiling")
    assert frame.loc["RBF SVM", "paper: clean (adv.) %"] == "96.0 (10.0)"
    assert frame.loc["CNN", "paper: mean L2"] == 0.86
    rep = ev.reports["cnn"]
    assert frame.loc["CNN", "adv. acc., paper's reading %"] == pytest.approx(
        round(100 * (1 - rep.clean_accuracy + rep.adversarial_accuracy), 1)
    )
    assert "paper: mean L2" not in ex.table1(ev, "mnist", "0_vs_6")  # Figure 7 is CelebA / Smiling only
    assert ex.table2(ev, "Male").loc["Linear SVM", "paper: clean (adv.) %"] == "89.7 (10.3)"


def test_progress_reaches_the_cnn_training_and_each_attack(tiny_data, capsys):
    # A paper-profile CNN trains and is attacked for many minutes on a CPU: each of those loops has a bar.
    kwargs = dict(seed=1, device="cpu", width=4, depth=2, epochs=1, svm_max_train=20, gammas=(1.0,))
    capsys.readouterr()
    trained = ex.train_classifiers(tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, progress=True, **kwargs)
    assert "train:" in capsys.readouterr().err
    ex.train_classifiers(tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, progress=False, **kwargs)
    assert "train:" not in capsys.readouterr().err
    args = ({"cnn": trained.modules["cnn"]}, tiny_data.x_test, tiny_data.y_test, IMAGE_SHAPE)
    for progress in (True, False):
        ex.evaluate_models(*args, attacks=["ddn"], n_attack=4, seed=1, device="cpu", progress=progress)
        assert ("ddn attack:" in capsys.readouterr().err) is progress


def test_attack_table_counts_per_attack(tiny_evaluation):
    table = ex.attack_table(tiny_evaluation)
    bayes = tiny_evaluation.results["bayes"]
    correct = bayes.clean_pred == tiny_evaluation.y
    for attack in ("gradient", "ddn"):
        flipped = torch.isfinite(bayes.per_attack_l2[attack]) & correct
        assert table.loc["Bayes-optimal", f"{attack}: flipped"] == int(flipped.sum())
    # every evaluated sample is won by exactly one attack
    assert (
        table.loc["Bayes-optimal", ["gradient: best", "ddn: best"]].sum()
        == tiny_evaluation.reports["bayes"].n_evaluated
    )
    assert pd.isna(table.loc["CNN", "gradient: flipped"])  # the gradient attack is for Bayes only
    assert str(table["gradient: flipped"].dtype) == "Int64"  # counts stay integers beside the gap
    shown = display.table(table).to_string()
    assert "NaN" not in shown and "<NA>" not in shown and display.MISSING in shown


def test_sweeps_reuse_the_base_cnn(tiny_data):
    base = ex.train_cnn(
        tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, seed=1, device="cpu"
    )  # profile sizes
    kwargs = {"seed": 1, "device": "cpu", "attacks": ["ddn"], "n_attack": 5, "progress": False}
    sweeps = ex.run_sweeps(
        tiny_data, base, train_sizes=(64,), widths=(2, 16), depths=(4,), betas=(0.0, 1.0), **kwargs
    )
    assert {name: [p.value for p in points] for name, points in sweeps.items()} == {
        "train_size": [64],
        "width": [2, 16],
        "depth": [4],
        "trades": [0.0, 1.0],
    }
    direct = ex.evaluate_models(
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
    fresh = ex.run_sweeps(tiny_data, None, train_sizes=(), widths=(), depths=(), betas=(0.0,), **kwargs)
    assert fresh["trades"][0].report.to_dict() == direct.to_dict()
    assert fresh["train_size"] == [] and fresh["width"] == []
    table = ex.sweep_table(sweeps)
    assert len(table) == 6 and set(table["sweep"]) == {"train size", "width", "depth", "TRADES beta"}

    with pytest.raises(ValueError, match="width 2 and depth 4"):
        ex.run_sweeps(
            tiny_data,
            ex.train_cnn(tiny_data.x_train, tiny_data.y_train, IMAGE_SHAPE, width=2, epochs=1, device="cpu"),
            **kwargs,
        )
    real = ex.SampledData(
        tiny_data.x_train, tiny_data.y_train, tiny_data.x_test, tiny_data.y_test, IMAGE_SHAPE, ("a", "b")
    )
    with pytest.raises(ValueError, match="train_sizes=()"):
        ex.run_sweeps(real, None, train_sizes=(64,), **kwargs)


def test_skipped_sweeps_train_nothing_and_say_so(tiny_data, tiny_evaluation):
    skipped = ex.run_sweeps(tiny_data, None, skip=True, device="cpu", progress=False)
    assert skipped == {"train_size": [], "width": [], "depth": [], "trades": []}
    table = ex.sweep_table(skipped)
    assert table.empty and "mean L2" in table.columns
    fig = ex.plot_figure8(skipped, tiny_evaluation)
    assert "sweeps skipped" in fig.axes[0].texts[0].get_text()
    plt.close(fig)
    metrics = ex.chapter4_metrics(tiny_evaluation, skipped)
    assert metrics["sweeps"] == {"train_size": [], "width": [], "depth": []} and metrics["trades"] == []


def test_metrics_are_saved_and_read_back(tmp_path, tiny_evaluation, tiny_trained):
    point = ex.SweepPoint(2.0, 0.9, tiny_evaluation.reports["cnn"], 1.5)
    sweeps = {"train_size": [point], "width": [], "depth": [], "trades": [point]}
    metrics = ex.chapter4_metrics(tiny_evaluation, sweeps, tiny_trained)
    for key in ("bayes", "cnn", "linear_svm", "rbf_svm", "sweeps", "trades"):
        assert key in metrics
    assert set(metrics["sweeps"]) == {"train_size", "width", "depth"}
    assert metrics["trades"][0]["beta"] == 2.0 and metrics["sweeps"]["train_size"][0]["value"] == 2.0
    assert metrics["cnn"] == tiny_evaluation.reports["cnn"].to_dict()
    json.dumps(metrics, allow_nan=False)
    save_result("04_learned_classifiers", "celeba", "Smiling", "quick", 0, metrics, tmp_path)
    (saved,) = load_results("quick", tmp_path)
    assert saved["metrics"]["rbf_svm"]["n"] == 8 and saved["metrics"]["rbf_gamma"] == tiny_trained.gamma
    seconds = saved["metrics"]["seconds"]  # where the run's time went, per model
    assert set(seconds["evaluate"]) == set(tiny_evaluation.reports) and set(seconds["train"]) == set(
        ex.LEARNED
    )
    assert all(value > 0 for part in seconds.values() for value in part.values())
    assert seconds["train"] == pytest.approx(tiny_trained.seconds)

    real = {k: v for k, v in tiny_evaluation.reports.items() if k != "bayes"}
    real_eval = ex.Evaluation(**{**tiny_evaluation.__dict__, "reports": real})
    metrics5 = ex.chapter5_metrics(real_eval, {"real_train": 0.9, "symmetric_train": 0.8})
    assert set(metrics5) >= {"cnn", "linear_svm", "rbf_svm", "table3"} and "bayes" not in metrics5
    assert "train" not in metrics5["seconds"]  # no trained classifiers given
    json.dumps(metrics5, allow_nan=False)


def test_symmetric_vs_real_and_table3(tiny_models, tiny_trained):
    # The tiny "real" task: fresh samples of the same pair, so both CNNs should do well on it.
    fresh = ex.symmetric_data(tiny_models, n_test_per_class=20, seed=7)
    x, y = fresh.x_test, fresh.y_test
    task = TaskData("celeba", "Male", x, y, x, y, IMAGE_SHAPE, ("not Male", "Male"), "tiny")
    table3 = ex.symmetric_vs_real(tiny_models, task, tiny_trained.modules["cnn"], seed=1, device="cpu")
    with torch.no_grad():
        expected = float((tiny_trained.modules["cnn"](torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert table3["real_train"] == pytest.approx(expected)
    assert 0.5 <= table3["symmetric_train"] <= 1.0
    frame = ex.table3_frame(table3, "Male")
    assert list(frame.index) == ["ours", "paper"]
    assert frame.loc["paper", "drop (points)"] == pytest.approx(4.3)
    assert frame.loc["ours", "drop (points)"] == pytest.approx(
        round(100 * (table3["real_train"] - table3["symmetric_train"]), 1)
    )
    for who in ("real_train", "symmetric_train"):  # the mean of the per-class accuracies, weighted
        per_class = [table3[f"{who}_class{label}"] for label in (0, 1)]
        assert np.dot(per_class, [np.mean(y == 0), np.mean(y == 1)]) == pytest.approx(table3[who])
    # Balanced training labels: the real prior is 1/2, and the correction changes nothing.
    assert table3["symmetric_train_prior_corrected"] == pytest.approx(table3["symmetric_train"])
    assert frame.loc["ours", "drop with the prior (points)"] == frame.loc["ours", "drop (points)"]
    bayes = ex.bayes_real_accuracy(tiny_models, task)
    assert {key: table3[key] for key in bayes} == bayes
    assert frame.loc["ours", "Bayes-optimal, symmetric pair %"] == round(100 * bayes["bayes_symmetric"], 1)
    assert np.isnan(frame.loc["paper", "symmetric, real prior %"])
    per_class = ex.table3_per_class(table3, task.class_names)
    assert list(per_class.columns) == ["not Male %", "Male %"]
    assert per_class.loc["CNN trained on symmetric samples", "Male %"] == round(
        100 * table3["symmetric_train_class1"], 1
    )
    with pytest.raises(ValueError, match="make it with symmetric_vs_real"):
        ex.table3_per_class({"real_train": 0.9, "symmetric_train": 0.8}, task.class_names)
    wrong = TaskData("celeba", "Male", x[:, :9], y, x[:, :9], y, (1, 3, 3), ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="images but the task has"):
        ex.symmetric_vs_real(tiny_models, wrong, tiny_trained.modules["cnn"], device="cpu")


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
    out = ex.bayes_real_accuracy(models, task, batch=4)
    assert out == {
        "bayes_fitted": pytest.approx(4 / 6),
        "bayes_fitted_prior_corrected": pytest.approx(5 / 6),
        "bayes_symmetric": pytest.approx(2 / 6),
        "bayes_symmetric_prior_corrected": pytest.approx(2 / 6),
    }
    one_class = TaskData("celeba", "Male", x[:4], y_train[:4], x, y, IMAGE_SHAPE, ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="one class only"):
        ex.bayes_real_accuracy(models, one_class)
    wrong = TaskData("celeba", "Male", x[:, :9], y, x[:, :9], y, (1, 3, 3), ("a", "b"), "tiny")
    with pytest.raises(ValueError, match="images but the task has"):
        ex.bayes_real_accuracy(models, wrong)


def test_table3_accuracies_per_class_and_with_the_real_prior():
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    real = torch.tensor([[1.0, 0.0]] * 6 + [[0.0, 1.0], [1.0, 0.0]])  # all of class 0, half of class 1
    # Logit differences (class 1 - class 0): the symmetric CNN calls three of the six class-0 images 1,
    # with margins 0.2, 0.4 and 2.0, and both class-1 images 1, with margins 0.3 and 3.0.
    diff = torch.tensor([-1.0, -1.0, -1.0, 0.2, 0.4, 2.0, 0.3, 3.0])
    symmetric = torch.stack([torch.zeros(8), diff], dim=1)
    out = ex.table3_accuracies(real, symmetric, y, train_prior=0.25)
    assert out["real_train"] == pytest.approx(7 / 8)
    assert (out["real_train_class0"], out["real_train_class1"]) == pytest.approx((1.0, 0.5))
    assert out["symmetric_train"] == pytest.approx(5 / 8)
    assert (out["symmetric_train_class0"], out["symmetric_train_class1"]) == pytest.approx((0.5, 1.0))
    # Prior 1/4: log odds -log 3 = -1.099 moves the margins 0.2, 0.4 and 0.3 below zero, not 2.0 or 3.0.
    assert out["symmetric_train_prior_corrected"] == pytest.approx(6 / 8)
    frame = ex.table3_frame(out, "Smiling")
    assert frame.loc["ours", "drop (points)"] == pytest.approx(25.0)
    assert frame.loc["ours", "drop with the prior (points)"] == pytest.approx(12.5)
    with pytest.raises(ValueError, match="share of class 1"):
        ex.table3_accuracies(real, symmetric, y, train_prior=1.0)
    with pytest.raises(ValueError, match=r"logits must be \[8, 2\]"):
        ex.table3_accuracies(real[:, :1], symmetric, y, train_prior=0.5)


def test_figures_are_returned(tiny_data, tiny_evaluation):
    point = ex.SweepPoint(2.0, 0.9, tiny_evaluation.reports["cnn"], 1.5)
    sweeps = {"train_size": [point], "width": [point], "depth": [point], "trades": [point]}
    figures = [
        ex.plot_figure7(tiny_evaluation, tiny_data.class_names, "celeba", "Smiling", n_show=2),
        ex.plot_figure9(tiny_evaluation, tiny_data.class_names, n_show=2),
        ex.plot_figure8(sweeps, tiny_evaluation),
        ex.plot_figure6(tiny_evaluation, "celeba", "Smiling"),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        plt.close(fig)
    with pytest.raises(ValueError, match="valid choices"):
        ex.plot_examples(tiny_evaluation, side="left")
