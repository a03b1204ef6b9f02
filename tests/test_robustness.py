"""Chapter 3's evaluation of the Bayes-optimal classifier: consistent numbers, the sandwich, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from nbhelpers.chapters import ch3_bayes as rb
from nbhelpers.chapters import ch3_figures as figures
from nbhelpers.chapters.ch2_datasets import noise_table
from nbhelpers.chapters.comparison import compare_with_paper
from nbhelpers.chapters.evaluation import attack_table
from nbhelpers.chapters.ids import BAYES
from nbhelpers.chapters.resultset import ResultSet, task_label
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.runs.checkpoints import Checkpoints
from nbhelpers.runs.results import collect_results, save_result
from nbhelpers.science.attacks import L2ComponentGradientAttack
from nbhelpers.science.datasets import TaskModels, make_asymmetric, sample_dataset
from tests.test_classifier import subspace_pair


def toy_models() -> TaskModels:
    """A d = 48 (3 x 4 x 4) task built like chapter 2's: low-rank class MFAs with sigma = 0.01 noise serve as
    the fitted and the symmetric pair; the asymmetric pair adds the outliers of ``make_asymmetric``."""
    classifier, _, _ = subspace_pair(d=48, k=3, latent=2, sigma=0.01)
    pair = (classifier.mfas[0], classifier.mfas[1])
    mean = torch.cat([m.mu for m in pair]).mean(0).numpy()
    direction = np.random.default_rng(0).standard_normal(48)
    return TaskModels(
        dataset="toy",
        attribute="pair",
        profile="quick",
        seed=0,
        image_shape=(3, 4, 4),
        class_names=("a", "b"),
        fitted=pair,
        symmetric=pair,
        asymmetric=make_asymmetric(pair, mean, direction, step=0.5, weight=0.05),
        data_mean=mean,
        outlier_direction=direction / np.linalg.norm(direction),
        outlier_step=0.5,
        outlier_weight=0.05,
        n_train_images=(0, 0),
    )


@pytest.fixture(scope="module")
def toy() -> tuple[TaskModels, rb.BayesEvaluation, rb.BayesEvaluation]:
    models = toy_models()
    kwargs = {"n_attack": 11, "attacks": ["gradient", "fmn"], "seed": 0, "device": "cpu", "progress": False}
    sym = rb.evaluate_bayes(models, "symmetric", **kwargs)
    return models, sym, rb.evaluate_bayes(models, "asymmetric", **kwargs)


def test_evaluation_numbers_are_consistent(toy):
    _, sym, _ = toy
    assert sym.x.shape == (11, 48) and sym.x.dtype == torch.float32 and sym.attacks == ("gradient", "fmn")
    assert set(sym.y.tolist()) == {0, 1}
    # the best attack per sample is the smaller of the two, and it does flip the label
    both = torch.stack([sym.result.per_attack_l2["gradient"], sym.result.per_attack_l2["fmn"]])
    np.testing.assert_array_equal(sym.result.l2.numpy(), both.min(0).values.numpy())
    ev = sym.evaluated
    assert ev.sum() == sym.report.n_evaluated and sym.report.n == 11
    assert (sym.classifier.predict(sym.result.x_adv[ev].double()) != sym.y[ev]).all()
    np.testing.assert_allclose(sym.report.mean_l2, sym.l2[ev].mean(), rtol=1e-6)
    assert np.isinf(sym.l2[~ev]).all()
    # Lemma 3 sandwich: certified radius <= best attack, and the bound is not vacuous on this pair
    assert rb.sandwich_violations(sym) == 0
    assert (sym.certified[ev] > 0.5 * sym.l2[ev]).all()
    distance, radius = sym.bound_means()
    assert distance == pytest.approx(sym.distances.other[ev].mean())
    assert radius == pytest.approx(sym.certified[ev].mean()) and radius < sym.report.mean_l2
    # the component that holds each adversarial belongs to the other class
    assert ((sym.adv_component >= 0) == ev).all() and (sym.adv_component < 3).all()
    assert sym.outlier_share() is None


def test_samples_are_fresh_and_seeded(toy):
    models, sym, _ = toy
    first = rb.evaluate_bayes(models, "symmetric", 4, "gradient", seed=0, device="cpu", progress=False)
    again = rb.evaluate_bayes(models, "symmetric", 4, "gradient", seed=0, device="cpu", progress=False)
    other = rb.evaluate_bayes(models, "symmetric", 4, "gradient", seed=1, device="cpu", progress=False)
    assert torch.equal(first.x, again.x) and not torch.equal(first.x, other.x)
    # an odd count draws ceil(n / 2) per class and keeps n of them
    assert first.report.n == 4 and sym.report.n == 11 and sorted(first.y.tolist()) == [0, 0, 1, 1]


def test_checkpointed_evaluation_reuses_its_finished_steps(tmp_path, capsys):
    # A chapter run passes its checkpoints: a second run of the same evaluation loads each finished attack
    # and the bounds instead of computing them, and gives the same numbers.
    models = toy_models()
    checkpoints = Checkpoints(tmp_path / "run")
    run = {"seed": 0, "device": "cpu", "progress": False, "checkpoints": checkpoints}
    first = rb.evaluate_bayes(models, "symmetric", 4, ["gradient"], **run)
    kept = checkpoints.steps()
    assert [name.split("__")[0] for name in kept] == ["attack_symmetric_gradient", "bounds_symmetric"]
    capsys.readouterr()
    again = rb.evaluate_bayes(models, "symmetric", 4, ["gradient"], **run)
    assert capsys.readouterr().out.count("loaded, finished by an earlier run") == 2
    assert checkpoints.steps() == kept
    assert torch.equal(again.result.l2, first.result.l2) and np.array_equal(again.certified, first.certified)
    assert again.report.to_dict() == first.report.to_dict()


def test_asymmetric_pair_is_far_less_robust(toy):
    _, sym, asym = toy
    assert asym.certified is None and asym.distances is None
    assert asym.report.clean_accuracy > 0.9 and sym.report.clean_accuracy == 1.0
    assert asym.report.mean_l2 < 0.4 * sym.report.mean_l2
    # Lemma 1's route: the other class's broad outlier (its last component) holds the adversarials
    assert asym.outlier_share() > 0.7
    # our numbers beside the paper's, as the chapter shows them: from the chapter's result
    results = ResultSet.of(rb.chapter3_result(sym, asym))
    row = figures.symmetric_vs_asymmetric(results).loc[task_label("toy", "pair")]
    assert row[("mean L2, symmetric", "ours")] == sym.report.mean_l2
    assert row[("mean L2, asymmetric", "ours")] == asym.report.mean_l2
    assert row[("mean L2, symmetric", "ours")] / row[("mean L2, asymmetric", "ours")] == pytest.approx(
        sym.report.mean_l2 / asym.report.mean_l2
    )
    assert row[("distance to other class", "ours")] == pytest.approx(sym.bound_means()[0])
    assert row[("certified radius", "ours")] == pytest.approx(sym.bound_means()[1])
    assert row.xs("paper", level=1).isna().all()  # the paper prints nothing for a toy task
    assert compare_with_paper(results).empty
    text = figures.findings(sym, asym).data
    assert f"{sym.report.mean_l2:.2f}" in text and "**clear**" in text and "0 of" in text


def test_attack_table_counts_the_winners(toy):
    _, sym, asym = toy
    table = attack_table(*rb.attack_results(sym, asym), index="variant")
    assert list(table.index) == [(v, a) for v in ("symmetric", "asymmetric") for a in ("gradient", "fmn")]
    for ev in (sym, asym):
        rows = table.loc[ev.variant]
        # every evaluated sample is won by exactly one attack
        assert rows["best on"].sum() == ev.evaluated.sum() == ev.report.n_evaluated
        assert (rows["correct"] == ev.report.n_correct).all()
        assert (rows["mean L2 / best"] >= 1 - 1e-9).all()


def test_step_halving(toy):
    models, sym, asym = toy
    checks = [rb.step_halving_check(ev, "cpu", progress=False) for ev in (sym, asym)]
    for check, ev in zip(checks, (sym, asym), strict=True):
        assert check.step == rb.DEFAULT_GRADIENT_STEP and check.n == ev.report.n_correct
        # the full-step mean is the evaluation's own gradient run
        l2 = ev.result.per_attack_l2["gradient"].numpy()[(ev.result.clean_pred == ev.y).numpy()]
        assert check.mean_l2 == pytest.approx(l2.mean())
        assert abs(check.relative_change) < 0.02
    table = figures.step_halving_table(checks)
    assert table.loc["asymmetric", "mean L2, half step"] == checks[1].mean_l2_half
    # without a gradient run in the evaluation both steps are attacked afresh, with the step asked for
    fmn_only = rb.evaluate_bayes(models, "symmetric", 4, ["fmn"], 0, "cpu", 0.02, progress=False)
    check = rb.step_halving_check(fmn_only, "cpu", progress=False)
    attack = L2ComponentGradientAttack(step_size=0.02, max_steps=1000)
    direct = attack(fmn_only.classifier, fmn_only.x, fmn_only.y)
    assert check.step == 0.02 and check.mean_l2 == pytest.approx(direct.l2.mean().item())


def test_result_file_has_the_summary_keys(toy, tmp_path):
    models, sym, asym = toy
    checks = [rb.step_halving_check(sym, "cpu", progress=False)]
    path = save_result(rb.chapter3_result(sym, asym, step_halving=checks), tmp_path)
    payload = json.loads(path.read_text())
    assert path.name == "03_bayes_robustness__toy__pair__seed0.json" and path.parent.name == "quick"
    metrics = payload["metrics"]
    for key in ("bayes_symmetric", "bayes_asymmetric", "subspace_distance_mean", "certified_radius_mean"):
        assert key in metrics
    assert metrics["bayes_symmetric"]["mean_l2"] == pytest.approx(sym.report.mean_l2)
    assert metrics["certified_radius_mean"] == pytest.approx(sym.bound_means()[1])
    assert metrics["step_halving"]["symmetric"]["mean_l2"] == pytest.approx(checks[0].mean_l2)
    assert payload["attacks"] == ["gradient", "fmn"] and payload["gradient_step"] == rb.DEFAULT_GRADIENT_STEP
    results = collect_results("quick", tmp_path)
    read = results.value(BAYES, "toy", "pair", "bayes_asymmetric.mean_l2")
    assert read == pytest.approx(asym.report.mean_l2)
    read = results.value(BAYES, "toy", "pair", "subspace_distance_mean")
    assert read == pytest.approx(sym.bound_means()[0])


def test_figures(toy):
    _, sym, asym = toy
    fig = figures.plot_figure4_examples(sym, asym, n_show=3)
    assert len(fig.axes) == 2 * (1 + 3 * 3)
    assert len(figures.plot_figure11(sym).axes) == 2
    ax = figures.plot_sandwich(sym).axes[0]
    assert len(ax.collections) == 4 and ax.collections[1].get_offsets().shape[0] == sym.evaluated.sum()
    plt.close("all")


def test_bad_parameters_raise(toy):
    models, sym, asym = toy
    call = {"n_attack": 2, "device": "cpu", "progress": False}
    with pytest.raises(ValueError, match="valid names are 'gradient', 'cw', 'fmn', 'ddn'"):
        rb.evaluate_bayes(models, "symmetric", attacks=["gradient", "pgd"], **call)
    with pytest.raises(ValueError, match="no attack given"):
        rb.evaluate_bayes(models, "symmetric", attacks=[], **call)
    with pytest.raises(ValueError, match="repeat"):
        rb.evaluate_bayes(models, "symmetric", attacks=["fmn", "fmn"], **call)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="n_attack must be a positive integer"):
            rb.evaluate_bayes(models, "symmetric", bad, ["gradient"], device="cpu")
    for bad in (-0.1, 0, float("nan"), "big"):
        with pytest.raises(ValueError, match="gradient_step must be a positive number"):
            rb.evaluate_bayes(models, "symmetric", attacks=["gradient"], gradient_step=bad, **call)
    with pytest.raises(ValueError, match="valid variants"):
        rb.evaluate_bayes(models, "skewed", attacks=["gradient"], **call)
    with pytest.raises(ValueError, match="unknown device"):
        rb.evaluate_bayes(models, "symmetric", 2, ["gradient"], device="tpu")
    with pytest.raises(ValueError, match="symmetric variant only"):
        figures.plot_sandwich(asym)
    with pytest.raises(ValueError, match="symmetric then the asymmetric"):
        rb.chapter3_result(asym, sym)
    with pytest.raises(ValueError, match="n_show"):
        figures.plot_figure4_examples(sym, asym, n_show=0)


def test_resolve_n_attack_and_fmn_step():
    assert rb.resolve_n_attack(None, "quick") == 16 and rb.resolve_n_attack(5, "paper") == 5
    # FMN may walk the gradient attack's path length before its first adversarial
    assert rb.fmn_max_stepsize("quick") * 100 / 2 == rb.GRADIENT_PATH_LENGTH


def test_real_mnist_models(tmp_path, monkeypatch):
    """The quick MNIST 0 vs 6 fit: the symmetric Bayes classifier needs several times the asymmetric's L2."""
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the bundled sample: fast and fixed
    models = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    noise = noise_table(models)
    assert isinstance(noise, pd.DataFrame) and list(noise.index) == ["0", "6"]
    assert (noise["share at the floor sigma = 0.01"] > 0.3).all()
    run = {"n_attack": 6, "attacks": ["gradient"], "device": "cpu", "progress": False}
    sym = rb.evaluate_bayes(models, "symmetric", **run)
    asym = rb.evaluate_bayes(models, "asymmetric", **run)
    assert sym.report.clean_accuracy == 1.0 and asym.report.clean_accuracy == 1.0
    assert sym.report.mean_l2 > 3 * asym.report.mean_l2
    assert asym.outlier_share() >= 0.5
    assert rb.sandwich_violations(sym) == 0


def test_thinner_components_make_the_asymmetric_pair_more_fragile():
    # Lemma 1: the outlier's broad Gaussian beats thin components of the other class with a small push
    models = toy_models()  # fitted noise 0.01, outliers 0.5
    table = rb.asymmetric_noise_study(models, [None, 0.05, 0.001], 32, device="cpu", progress=False)
    assert table["noise"].tolist() == ["fitted", "set", "set"]
    assert table["noise std"].tolist() == pytest.approx([0.01, 0.05, 0.001])
    own = rb.evaluate_bayes(models, "asymmetric", 32, ["gradient"], 0, "cpu", progress=False)
    assert table.loc[0, "mean L2"] == pytest.approx(own.report.mean_l2)  # None: the chapter's own pair
    l2 = table["mean L2"].tolist()
    assert l2[1] > 2 * l2[0] and l2[0] > 2 * l2[2]  # ordered by the noise std: 0.45, 0.15, 0.05
    assert (table["outlier share"] == 1.0).all() and (table["evaluated"] >= 30).all()
    with pytest.raises(ValueError, match="positive noise std or None"):
        rb.asymmetric_noise_study(models, [0.0], 4, device="cpu", progress=False)
    with pytest.raises(ValueError, match="sigmas is empty"):
        rb.asymmetric_noise_study(models, [], 4, device="cpu", progress=False)


def test_outlier_share_among_the_samples_of_the_regular_components(toy):
    models, sym, asym = toy
    # the component each attacked sample was drawn from comes with the very samples that were attacked
    x, y, drawn = sample_dataset(models.asymmetric, 6, seed=rb.ATTACK_SEED_OFFSET, components=True)
    assert np.array_equal(x[:11], asym.x.numpy()) and np.array_equal(drawn[:11], asym.drawn_component)
    own_outlier = np.asarray(asym.n_components)[asym.y.numpy()] - 1
    other_outlier = np.asarray(asym.n_components)[1 - asym.y.numpy()] - 1
    regular = asym.evaluated & (asym.drawn_component != own_outlier)
    assert regular.sum() >= 8
    held = asym.adv_component == other_outlier
    assert asym.outlier_share(regular_only=True) == pytest.approx(held[regular].mean())
    # every sample from its own outlier: no regular sample is left; none from it: the share over all
    assert dataclasses.replace(asym, drawn_component=own_outlier).outlier_share(regular_only=True) is None
    no_outlier = dataclasses.replace(asym, drawn_component=np.zeros(11, dtype=np.int64))
    assert no_outlier.outlier_share(regular_only=True) == asym.outlier_share()
    assert sym.outlier_share(regular_only=True) is None
    result = rb.chapter3_result(sym, asym)
    assert result.metrics["asymmetric_outlier_share_regular"] == asym.outlier_share(regular_only=True)
    assert (result.params["asymmetric_base"], result.params["min_variance"]) == ("fitted", 1e-4)


def test_the_readings_table_sets_records_and_chapter_results_beside_the_paper(toy):
    _, sym, asym = toy
    folder = Path(__file__).parents[1] / "results" / "paper" / "fidelity"
    records = figures.readings_table(folder)
    mnist = records[records["task"] == "MNIST / 0 vs 6"]
    symmetric = mnist[mnist["reading"] == "symmetric"].iloc[0]
    assert symmetric["attacks"] == "gradient+cw+fmn"
    assert symmetric["clean accuracy"] == 0.864 and symmetric["evaluated"] == 864
    assert symmetric["mean L2"] == pytest.approx(0.4081, abs=1e-4)
    assert symmetric["outlier share, regular samples"] == 1.0 and symmetric["paper: mean L2"] == 0.5
    # the authors' variance floor on MNIST: the asymmetric pair far more fragile than the paper's
    floor = mnist[mnist["variance floor"] == "1e-06"].iloc[0]
    assert floor["reading"] == "fitted" and floor["mean L2"] == pytest.approx(0.210, abs=1e-3)
    # a chapter 3 result of a task of Figures 4/12 joins as the reading it ran with; other tasks stay out
    result = rb.chapter3_result(sym, asym)
    ours = dataclasses.replace(result, dataset="celeba", attribute="Male")
    table = figures.readings_table(folder, ResultSet.from_results([result, ours]))
    assert len(table) == len(records) + 1 and "toy / pair" not in set(table["task"])
    row = table[table["source"] == "chapter 3"].iloc[0]
    assert (row["task"], row["reading"], row["paper: mean L2"]) == ("CelebA / Male", "fitted", 0.9)
    assert row["mean L2"] == asym.report.mean_l2
    assert row["outlier share, regular samples"] == pytest.approx(asym.outlier_share(regular_only=True))
    fig = figures.plot_readings(table)
    assert len(fig.axes[0].patches) == len(table)  # a bar per row
    plt.close(fig)
    assert figures.readings_table(Path(__file__).parent / "data").empty
