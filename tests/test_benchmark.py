"""The gold-standard benchmark: any model scored against the Bayes-optimal one, from Python and the shell,
and the leaderboard that ranks the scores."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import nbhelpers
from nbhelpers.chapters import ch7_leaderboard as leaderboard
from nbhelpers.chapters.benchmark import (
    RATIO_HELP,
    BenchmarkScore,
    benchmark_table,
    plot_l2_distributions,
    score_against_bayes,
    score_file,
    scores_from_file,
)
from nbhelpers.chapters.ids import LEARNED
from nbhelpers.chapters.resultset import Result, ResultSet
from nbhelpers.runs import cli
from nbhelpers.runs.benchmark import load_scores
from tests.conftest import ROOT
from tests.data import score_models

MODELS = ROOT / "tests" / "data" / "score_models.py"
QUICK = {"n_attack": 6, "attacks": ["ddn"], "device": "cpu", "seed": 0}


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One model cache for the module (the MNIST pair is fitted once) on the bundled sample."""
    patch = pytest.MonkeyPatch()
    patch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    patch.delenv("NBHELPERS_DATA_DIR", raising=False)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def trained_score() -> BenchmarkScore:
    return score_against_bayes(score_models.make_mlp, "mnist:0_vs_6", train=True, name="mlp", **QUICK)


def test_a_trained_factory_scores_against_the_bayes_optimal_classifier(trained_score):
    score = trained_score
    assert score.task == ("mnist", "0_vs_6") and score.trained and score.name == "mlp"
    assert score.model.n == score.bayes.n == 6  # the same attacked samples
    assert score.model.clean_accuracy > 0.8 and score.bayes.clean_accuracy == 1.0
    assert score.model.n_evaluated >= 4 and score.bayes.n_evaluated == 6
    assert score.attacks == ["ddn"]
    ratio = score.model.mean_l2 / score.bayes.mean_l2
    assert score.ratio_to_bayes == pytest.approx(ratio) and 0 < ratio < 2
    row = score.row()
    assert row["ratio to Bayes"] == pytest.approx(ratio) and row["task"] == "MNIST / 0 vs 6"


def test_a_module_taking_images_is_trained_and_scored():
    score = score_against_bayes(score_models.make_conv, ("mnist", "06"), train=True, **QUICK)
    assert score.name == "make_conv" and score.model.n == 6 and math.isfinite(score.ratio_to_bayes)


def test_bad_models_and_tasks_are_refused_with_the_reason():
    with pytest.raises(TypeError, match="train=True needs a factory"):
        score_against_bayes(score_models.a_module, "mnist:0_vs_6", train=True, **QUICK)
    with pytest.raises(TypeError, match="returned str, not a torch nn.Module"):
        score_against_bayes(score_models.not_a_module, "mnist:0_vs_6", train=True, **QUICK)
    with pytest.raises(TypeError, match="pass train=True"):
        score_against_bayes(score_models.make_mlp, "mnist:0_vs_6", **QUICK)
    with pytest.raises(ValueError, match="real images have no known Bayes-optimal"):
        score_against_bayes(score_models.a_module, "mnist:0_vs_6", variant="real", **QUICK)
    with pytest.raises(ValueError, match="DATASET:ATTRIBUTE"):
        score_against_bayes(score_models.a_module, "mnist-0-vs-6", **QUICK)
    with pytest.raises(ValueError, match="logits"):
        score_against_bayes(score_models.three_logits(), "mnist:0_vs_6", **QUICK)


def test_score_files_round_trip_and_say_how_to_read_them(trained_score):
    one = score_file([trained_score])
    assert (
        one["ratio_to_bayes"] == pytest.approx(trained_score.ratio_to_bayes)
        and one["how_to_read"] == RATIO_HELP
    )
    back = scores_from_file(json.loads(json.dumps(one)))
    assert back[0].model.mean_l2 == pytest.approx(trained_score.model.mean_l2)
    np.testing.assert_allclose(back[0].bayes.l2, trained_score.bayes.l2)
    other = BenchmarkScore.from_dict({**trained_score.to_dict(), "attribute": "2_vs_7"})
    two = score_file([trained_score, other])
    assert set(two["ratio_to_bayes"]) == {"mnist:0_vs_6", "mnist:2_vs_7"}
    assert two["mean_ratio_to_bayes"] == pytest.approx(trained_score.ratio_to_bayes)
    table = benchmark_table([trained_score, other])
    assert list(table["task"])[-1] == "mean over tasks" and len(table) == 3
    with pytest.raises(ValueError, match="is not a score file"):
        scores_from_file({"kind": "something else"}, "x.json")
    with pytest.raises(ValueError, match="damaged score file"):
        scores_from_file({"kind": "nbhelpers score", "scores": [{"name": "a"}]}, "x.json")
    fig = plot_l2_distributions(trained_score)
    assert "ratio to Bayes" in fig.axes[0].get_title()
    plt.close("all")


def test_the_python_benchmark_writes_one_score_file_per_task(tmp_path):
    options = {"train": True, "out_dir": tmp_path, "name": "my mlp", "progress": False, **QUICK}
    table = nbhelpers.benchmark(score_models.make_mlp, tasks=["mnist:0_vs_6"], **options)
    assert list(table["model"]) == ["my mlp"] and 0 < table["ratio to Bayes"].iloc[0] < 2
    (path,) = tmp_path.glob("*.json")
    assert path.name == "my_mlp__mnist__0_vs_6.json" and path.with_suffix(".png").exists()
    assert json.loads(path.read_text())["ratio_to_bayes"] == pytest.approx(table["ratio to Bayes"].iloc[0])
    assert [s.name for s in load_scores(tmp_path)] == ["my mlp"]


def _score(*args: str) -> int:
    return cli.main(["score", *args])


def test_the_score_command_trains_scores_and_writes_json_and_figure(tmp_path, capsys):
    out = tmp_path / "scores" / "mine.json"
    status = _score(
        f"{MODELS}:make_mlp", "--task", "mnist:0_vs_6", "--train", "--n-attack", "6", "--attacks", "ddn",
        "--device", "cpu", "--out", str(out), "--name", "mine", "--no-progress",
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    payload = json.loads(out.read_text())
    assert (
        payload["name"] == "mine" and 0 < payload["ratio_to_bayes"] < 2 and out.with_suffix(".png").exists()
    )
    assert "ratio_to_bayes" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["tests/data/nothere.py:make_mlp"], "no Python file"),
        ([f"{ROOT}/tests/data/score_broken.py:make"], "could not import"),
        ([f"{MODELS}:missing"], "has no 'missing'"),
        ([f"{MODELS}:not_a_module"], "returned str, not a torch nn.Module"),
        ([f"{MODELS}:a_module", "--train"], "--train needs a factory"),
        ([f"{MODELS}:make_mlp", "--task", "mnist:1_vs_2"], "valid MNIST pairs"),
        ([f"{MODELS}:make_mlp", "--variant", "skewed"], "unknown variant"),
        ([f"{MODELS}:three_logits"], "logits"),
        ([f"{MODELS}:make_mlp", "--out", "x.txt"], "must end in .json"),
        ([f"{MODELS}:make_mlp", "--seed", "-1"], "--seed must be a non-negative"),
        (["make_mlp"], "MODULE:FACTORY"),
    ],
)
def test_the_score_command_refuses_bad_input_with_exit_2(arguments, message, tmp_path, capsys):
    extra = [] if "--out" in arguments else ["--out", str(tmp_path / "s.json")]
    assert _score(*arguments, "--n-attack", "2", "--attacks", "ddn", "--device", "cpu", *extra) == 2
    assert message in capsys.readouterr().err


def test_score_help_explains_the_ratio():
    proc = subprocess.run(
        [sys.executable, "-m", "nbhelpers", "score", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "ratio_to_bayes" in proc.stdout and "MODULE:FACTORY" in proc.stdout


def _chapter4_result(task: tuple[str, str], cnn: float, bayes: float, width: float) -> Result:
    def report(mean_l2: float) -> dict:
        return {"n": 4, "n_correct": 4, "n_evaluated": 4, "clean_accuracy": 1.0, "adversarial_accuracy": 0.0,
                "mean_l2": mean_l2, "median_l2": mean_l2, "frac_pixels_above_5": 0.0}  # fmt: skip

    metrics = {
        "bayes": report(bayes),
        "cnn": report(cnn),
        "linear_svm": report(0.5),
        "test_accuracy": {"bayes": 1.0, "cnn": 0.98, "linear_svm": 0.97},
        "attacks": {"cnn": ["cw", "fmn", "ddn"]},
        "sweeps": {"width": [{"value": 4, "test_accuracy": 0.9, "report": report(width)}]},
        "trades": [{"beta": 2.0, "test_accuracy": 0.95, "report": report(2.0)}],
    }
    return Result(LEARNED, *task, "quick", 0, metrics)


def test_the_leaderboard_ranks_book_and_submitted_models_by_their_ratio(trained_score):
    results = ResultSet.from_results(
        [
            _chapter4_result(("mnist", "0_vs_6"), 1.0, 4.0, 0.4),
            _chapter4_result(("celeba", "Male"), 0.6, 3.0, 0.3),
        ]
    )
    book = leaderboard.book_entries(results)
    names = {e.model for e in book}
    assert names == {"CNN", "Linear SVM", "CNN, width 4", "CNN + TRADES, beta 2"}
    cnn = {e.task: e.ratio for e in book if e.model == "CNN"}
    assert cnn == {("mnist", "0_vs_6"): 0.25, ("celeba", "Male"): pytest.approx(0.2)}
    entries = book + leaderboard.submitted_entries([trained_score])
    table = leaderboard.leaderboard(entries)
    # closest to 1 first: TRADES (2/4 and 2/3: mean 0.58), the CNN (0.225), the width-4 CNN (0.1) last
    distance = (1 - table["mean ratio to Bayes"]).abs().to_numpy()
    assert (np.diff(distance) >= 0).all() and table["model"].iloc[-1] == "CNN, width 4"
    order = list(table["model"])
    assert order.index("CNN + TRADES, beta 2") < order.index("CNN") < order.index("CNN, width 4")
    assert table.loc[table["model"] == "CNN + TRADES, beta 2", "mean ratio to Bayes"].item() == pytest.approx(
        7 / 12
    )
    assert table.loc[table["model"] == "CNN", "mean ratio to Bayes"].item() == pytest.approx(0.225)
    assert table.loc[table["model"] == "mlp", "source"].item() == leaderboard.SUBMITTED
    assert {"MNIST / 0 vs 6", "CelebA / Male"} <= set(table.columns)
    fig = leaderboard.plot_leaderboard(entries)
    assert len(fig.axes[0].get_yticklabels()) == len(table)
    assert leaderboard.leaderboard([]).empty
    plt.close("all")


def test_the_paper_reference_ratios_come_from_figure_7():
    reference = leaderboard.paper_reference()
    cnn = reference.loc[reference["model"] == "CNN", "paper: ratio to Bayes"].item()
    assert cnn == pytest.approx(0.86 / 3.14)


def test_a_nan_model_is_not_scored():
    with pytest.raises(ValueError):
        score_against_bayes(score_models.nan_logits(), "mnist:0_vs_6", **QUICK)
    assert torch.isnan(score_models.nan_logits()(torch.zeros(1, 784))).all()
