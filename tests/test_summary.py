"""The summary chapter's tables, figures and manifest, from hand-written result files."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from nbhelpers.chapters import ch3_figures, ch4_learned, ch5_real, ch6_summary, comparison, display
from nbhelpers.chapters import paper_values as pv
from nbhelpers.chapters.ids import BAYES, LEARNED, REAL
from nbhelpers.chapters.resultset import Result, ResultSet, task_label
from nbhelpers.core.io import write_json_atomic
from nbhelpers.runs import manifest
from nbhelpers.runs.cli import main as cli_main
from nbhelpers.runs.results import collect_results, load_results, result_path, save_result
from nbhelpers.science.data import TASKS
from tests.conftest import ROOT

CH3, CH4, CH5 = BAYES, LEARNED, REAL
assert (CH3, CH4, CH5) == ("03_bayes_robustness", "04_learned_classifiers", "05_real_data")


def write_result(chapter, dataset, attribute, profile, seed, metrics, results_dir, **params):
    """Write one result file as a chapter run does: its ``Result``, saved by ``runs.results.save_result``."""
    return save_result(Result(chapter, dataset, attribute, profile, seed, metrics, params), results_dir)


def report(clean: float, adversarial: float, mean_l2: float | None, n: int = 16) -> dict:
    """A robustness report as ``RobustnessReport.to_dict`` writes it."""
    return {
        "n": n,
        "n_correct": round(clean * n),
        "n_evaluated": round((clean - adversarial) * n),
        "clean_accuracy": clean,
        "adversarial_accuracy": adversarial,
        "mean_l2": mean_l2,
        "median_l2": mean_l2,
        "frac_pixels_above_5": 0.1,
        "l2": [1.0, 2.0],
        "pixel_hist": [3] * 256,
    }


def sweep_point(value: float, test_accuracy: float, mean_l2: float, key: str = "value") -> dict:
    """One point of chapter 4's Figure 8 sweeps."""
    return {key: value, "test_accuracy": test_accuracy, "seconds": 1.5, "report": report(1.0, 0.0, mean_l2)}


@pytest.fixture
def results_dir(tmp_path):
    """Results of chapters 3-5 for a few tasks, seed 0, profile quick; one task also has seed 1."""

    def save(chapter, dataset, attribute, metrics, seed=0):
        write_result(chapter, dataset, attribute, "quick", seed, metrics, results_dir=tmp_path)

    save(
        CH3,
        "celeba",
        "Smiling",
        {
            "bayes_symmetric": report(1.0, 0.0, 3.0),
            "bayes_asymmetric": report(1.0, 0.0, 0.7),
            "subspace_distance_mean": 6.0,
            "certified_radius_mean": 2.5,
        },
    )
    save(
        CH3,
        "mnist",
        "0_vs_6",
        {
            "bayes_symmetric": report(1.0, 0.0, 2.5),
            "bayes_asymmetric": report(0.9375, 0.0, None),
            "subspace_distance_mean": 5.0,
            "certified_radius_mean": 2.0,
        },
    )
    # chapter 4 knows only Smiling and lacks the linear SVM; the CNN has a whole-test-set accuracy
    save(
        CH4,
        "celeba",
        "Smiling",
        {
            "bayes": report(1.0, 0.0, 3.2),
            "cnn": report(0.9375, 0.0, 0.5),
            "rbf_svm": report(0.875, 0.125, 2.0),
            "test_accuracy": {"cnn": 0.95},
            "sweeps": {"width": [sweep_point(8, 0.9, 0.4), sweep_point(32, 0.95, 0.6)], "depth": []},
            "trades": [
                {**sweep_point(0.0, 0.95, 0.5, key="beta"), "extra": [1, 2]},
                sweep_point(10.0, 0.85, 2.5, key="beta"),
            ],
        },
    )
    save(CH4, "celeba", "Smiling", {"cnn": report(0.8125, 0.0, 1.5)}, seed=1)
    save(
        CH5,
        "celeba",
        "Male",
        {
            "cnn": report(0.9, 0.0, 0.3),
            "linear_svm": report(0.85, 0.0, 0.2),
            "rbf_svm": report(0.8, 0.1, 1.9),
            "table3": {"real_train": 0.9, "symmetric_train": 0.84},
        },
    )
    save(CH5, "celeba", "Bangs", {"table3": {"real_train": 0.95, "symmetric_train": 0.93}})
    return tmp_path


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_collect_flattens_and_filters_by_seed(results_dir):
    res = collect_results("quick", results_dir, seed=0)
    assert res.seeds == [0] and len(res.files) == 5
    assert res.value(CH4, "celeba", "Smiling", "cnn.mean_l2") == 0.5
    assert res.value(CH4, "celeba", "Smiling", "sweeps.width.1.report.mean_l2") == 0.6
    assert res.value(CH4, "celeba", "Smiling", "trades.1.beta") == 10.0
    assert math.isnan(res.value(CH3, "mnist", "0_vs_6", "bayes_asymmetric.mean_l2"))  # None in the file
    assert math.isnan(res.value(CH4, "celeba", "Smiling", "cnn.l2"))  # per-sample lists are left out
    assert res.tasks(CH3, CH4) == [("celeba", "Smiling"), ("mnist", "0_vs_6")]
    assert res.tasks(CH5) == [("celeba", "Bangs"), ("celeba", "Male")]  # the paper's Table 1 order

    seed1 = collect_results("quick", results_dir, seed=1)
    assert seed1.value(CH4, "celeba", "Smiling", "cnn.mean_l2") == 1.5 and len(seed1.files) == 1
    both = collect_results("quick", results_dir, seed=None)
    assert both.value(CH4, "celeba", "Smiling", "cnn.mean_l2") == pytest.approx(1.0)
    assert both.value(CH4, "celeba", "Smiling", "cnn.clean_accuracy") == pytest.approx(0.875)
    assert both.value(CH4, "celeba", "Smiling", "rbf_svm.mean_l2") == 2.0  # only seed 0 has it
    assert both.seeds == [0, 1]


def test_a_chapters_own_result_draws_what_the_summary_draws_from_the_files(results_dir):
    """A chapter draws its tables from its one ``Result`` (``ResultSet.of``), the summary from every file."""
    collected = collect_results("quick", results_dir)
    (own,) = [r for r in load_results("quick", results_dir) if r.chapter == CH4 and r.seed == 0]
    mine = ResultSet.of(own)
    assert mine.results_dir is None and mine.scope() == "profile quick, seed 0"
    assert mine.tasks(CH3, CH4) == [("celeba", "Smiling")]
    pd.testing.assert_frame_equal(ch4_learned.figure8_table(mine), ch4_learned.figure8_table(collected))
    assert ch4_learned.table1(mine).loc["CelebA / Smiling", ("CNN", "clean")] == 0.95
    assert ch4_learned.figure6_table(mine).loc["CelebA / Smiling", "Bayes-optimal"] == 3.2
    every_seed = ResultSet.from_results(load_results("quick", results_dir), "quick", results_dir, seed=None)
    pd.testing.assert_frame_equal(every_seed.values, collect_results("quick", results_dir, seed=None).values)
    # chapter keys are the chapters' full ids: the two-digit keys of old find nothing
    assert collected.value(CH4, "celeba", "Smiling", "cnn.mean_l2") == 0.5
    assert math.isnan(collected.value("04", "celeba", "Smiling", "cnn.mean_l2"))


def test_collect_rejects_bad_input(results_dir):
    with pytest.raises(ValueError, match="valid profiles are 'quick', 'paper'"):
        collect_results("fast", results_dir)
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None"):
        collect_results("quick", results_dir, seed=-1)
    (results_dir / "quick" / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json is not valid JSON"):
        collect_results("quick", results_dir)


def test_table1_values_land_in_their_cells_and_missing_ones_are_blank(results_dir):
    res = collect_results("quick", results_dir)
    table = ch4_learned.table1(res, convention="paper")
    assert list(table.index) == ["CelebA / Smiling", "MNIST / 0 vs 6"]
    assert table.loc["CelebA / Smiling", ("CNN", "clean")] == 0.95  # the whole test set's
    # adversarial: over the attacked samples; in the paper's convention their misclassified 6.25% count
    assert table.loc["CelebA / Smiling", ("CNN", "adversarial")] == pytest.approx(0.0625)
    assert table.loc["CelebA / Smiling", ("RBF SVM", "adversarial")] == pytest.approx(0.25)
    assert table.loc["CelebA / Smiling", ("Bayes-optimal", "clean")] == 1.0
    # MNIST has only chapter 3: the Bayes-optimal column falls back to it, the learned models are blank
    assert table.loc["MNIST / 0 vs 6", ("Bayes-optimal", "clean")] == 1.0
    assert math.isnan(table.loc["MNIST / 0 vs 6", ("CNN", "clean")])
    assert table[("Linear SVM", "clean")].isna().all()

    strict = ch4_learned.table1(res, convention="strict")
    assert strict.loc["CelebA / Smiling", ("RBF SVM", "adversarial")] == pytest.approx(0.125)

    shown = display.format_accuracy_pairs(table)
    assert shown.loc["CelebA / Smiling", "CNN"] == "95% (6%)"
    assert shown.loc["CelebA / Smiling", "RBF SVM"] == "88% (25%)"
    assert shown.loc["MNIST / 0 vs 6", "CNN"] == "" and shown.loc["CelebA / Smiling", "Linear SVM"] == ""
    assert list(shown.columns) == ["Bayes-optimal", "CNN", "Linear SVM", "RBF SVM"]


def test_bayes_column_prefers_chapter_4(results_dir):
    figure6 = ch4_learned.figure6_table(collect_results("quick", results_dir))
    assert figure6.loc["CelebA / Smiling", "Bayes-optimal"] == 3.2  # chapter 4, not chapter 3's 3.0
    assert figure6.loc["MNIST / 0 vs 6", "Bayes-optimal"] == 2.5  # chapter 3's fallback
    assert figure6.loc["CelebA / Smiling", "CNN"] == 0.5
    assert math.isnan(figure6.loc["MNIST / 0 vs 6", "RBF SVM"])


def test_tables_2_and_3(results_dir):
    res = collect_results("quick", results_dir)
    t2 = ch5_real.table2(res)
    assert list(t2.index) == ["CelebA / Male", "CelebA / Bangs"]  # the paper's Table 2 order
    assert t2.loc["CelebA / Male", ("Linear SVM", "clean")] == 0.85
    assert t2.loc["CelebA / Male", ("RBF SVM", "adversarial")] == pytest.approx(0.3)
    assert t2.loc["CelebA / Bangs"].isna().all()  # Bangs has a Table 3 result only
    assert display.format_accuracy_pairs(t2, 1).loc["CelebA / Male", "CNN"] == "90.0% (10.0%)"

    t3 = ch5_real.table3(res)
    assert list(t3.index) == [*(task_label(*t) for t in pv.TABLE3), "Average"]
    assert t3.loc["CelebA / Male", ("ours", "drop")] == pytest.approx(0.06)
    assert t3.loc["CelebA / Male", ("paper", "real train")] == 0.923
    assert math.isnan(t3.loc["CelebA / Smiling", ("ours", "real train")])
    assert t3.loc["Average", ("ours", "drop")] == pytest.approx((0.06 + 0.02) / 2)
    # the paper's average covers the same attributes as ours
    ours = [task for task in pv.TABLE3 if not math.isnan(t3.loc[task_label(*task), ("ours", "drop")])]
    assert len(ours) == 2
    paper_drops = [pv.TABLE3[t]["real_train"] - pv.TABLE3[t]["symmetric_train"] for t in ours]
    assert t3.loc["Average", ("paper", "drop")] == pytest.approx(np.mean(paper_drops))
    assert t3.loc["Average", ("paper", "real train")] == pytest.approx(
        np.mean([pv.TABLE3[t]["real_train"] for t in ours])
    )
    assert ("ours", "symmetric, real prior") not in t3.columns  # no result holds it
    assert ("ours", "Bayes, symmetric pair") not in t3.columns


def test_table3_shows_the_prior_corrected_drop_and_the_bayes_accuracy_where_results_hold_them(tmp_path):
    table3 = {"real_train": 0.97, "symmetric_train": 0.84, "symmetric_train_prior_corrected": 0.9}
    table3["bayes_symmetric"] = 0.81
    write_result(CH5, "celeba", "Male", "quick", 0, {"table3": table3}, results_dir=tmp_path)
    write_result(
        CH5,
        "celeba",
        "Bangs",
        "quick",
        0,
        {"table3": {"real_train": 0.95, "symmetric_train": 0.93}},
        results_dir=tmp_path,
    )
    t3 = ch5_real.table3(collect_results("quick", tmp_path))
    assert t3.loc["CelebA / Male", ("ours", "drop")] == pytest.approx(0.13)
    assert t3.loc["CelebA / Male", ("ours", "symmetric, real prior")] == 0.9
    assert t3.loc["CelebA / Male", ("ours", "drop, real prior")] == pytest.approx(0.07)
    assert math.isnan(t3.loc["CelebA / Bangs", ("ours", "drop, real prior")])  # made before it was recorded
    assert t3.loc["Average", ("ours", "drop, real prior")] == pytest.approx(0.07)
    assert t3.loc["Average", ("ours", "drop")] == pytest.approx((0.13 + 0.02) / 2)
    assert t3.loc["CelebA / Male", ("ours", "Bayes, symmetric pair")] == 0.81
    assert math.isnan(t3.loc["CelebA / Bangs", ("ours", "Bayes, symmetric pair")])
    assert t3.loc["Average", ("ours", "Bayes, symmetric pair")] == pytest.approx(0.81)


def test_symmetric_vs_asymmetric_sets_ours_beside_the_papers(results_dir):
    table = ch3_figures.symmetric_vs_asymmetric(collect_results("quick", results_dir))
    assert list(table.index) == ["CelebA / Male", "CelebA / Smiling", "MNIST / 0 vs 6"]
    assert table.loc["CelebA / Smiling", ("mean L2, asymmetric", "ours")] == 0.7
    assert table.loc["CelebA / Smiling", ("mean L2, asymmetric", "paper")] == 0.8
    assert table.loc["CelebA / Male", ("mean L2, symmetric", "paper")] == 3.3
    assert table.loc["CelebA / Male", ("distance to other class", "paper")] == 6.2
    assert math.isnan(table.loc["CelebA / Male", ("mean L2, symmetric", "ours")])
    assert table.loc["MNIST / 0 vs 6", ("certified radius", "ours")] == 2.0


def test_comparison_difference_is_ours_minus_papers(results_dir):
    res = collect_results("quick", results_dir)
    cmp = comparison.compare_with_paper(res)
    assert cmp["ours"].notna().all()
    row = cmp[(cmp["quantity"] == "mean_l2") & (cmp["model"] == "CNN")].iloc[0]
    assert (row["task"], row["paper"], row["ours"]) == ("CelebA / Smiling", 0.86, 0.5)
    assert row["difference"] == pytest.approx(0.5 - 0.86)
    assert row["source"] == "Figure 7 (section 3)"
    adv = cmp[(cmp["quantity"] == "real_adversarial_accuracy") & (cmp["model"] == "RBF SVM")].iloc[0]
    assert adv["difference"] == pytest.approx(0.3 - 0.113)
    # the average drop of our two attributes beside the paper's Table 3 drops of the same two (Male 4.3 and
    # Bangs 3.9 points), not beside its text's 5% over all five
    drop = cmp[cmp["quantity"] == "table3_drop"].iloc[0]
    paper = ((0.923 - 0.880) + (0.943 - 0.904)) / 2
    assert drop["ours"] == pytest.approx(0.04) and drop["paper"] == pytest.approx(paper)
    assert drop["difference"] == pytest.approx(0.04 - paper)
    assert drop["task"] == "CelebA / average (the same 2 tasks)"
    assert drop["source"] == "Table 3 (appendix D.4.2), the same tasks"
    sym = cmp[(cmp["quantity"] == "bayes_mean_l2") & (cmp["task"] == "MNIST / 0 vs 6")]
    assert sym["model"].tolist() == ["Bayes-optimal, symmetric"]  # the asymmetric mean L2 is None: no row
    assert sym["difference"].iloc[0] == pytest.approx(2.5 - 3.0)

    everything = comparison.compare_with_paper(res, only_ours=False)
    assert len(everything) == len(pv.paper_numbers()) and everything["ours"].isna().any()
    with pytest.raises(ValueError, match="valid conventions are paper, strict"):
        comparison.compare_with_paper(res, convention="loose")


def test_empty_results_give_commands_not_errors(tmp_path):
    res = collect_results("quick", tmp_path / "nothing")
    assert res.empty and ch4_learned.table1(res).empty
    note = display.show(display.format_accuracy_pairs(ch4_learned.table1(res)), "table1", res)
    assert "no results of ours yet" in note.data
    assert "python -m nbhelpers sweep --chapters 03 04 --profile quick --results-dir" in note.data
    # tables that hold the paper's numbers still show them, with the command in the caption
    styled = display.show(ch5_real.table3(res), "table3", res).to_html()
    assert "the paper&#x27;s numbers only" in styled or "the paper's numbers only" in styled
    assert "0.92" in styled and "--chapters 05" in styled
    compared = comparison.compare_with_paper(res)
    figures = [ch4_learned.plot_figure6(res), ch5_real.plot_figure9(res)]
    figures += [ch3_figures.plot_figure4(res), comparison.plot_comparison(compared)]
    assert compared.empty and all(isinstance(fig, Figure) for fig in figures)
    assert "No result files of profile `quick`" in manifest.describe_results(res).data


def test_show_and_figures_with_results(results_dir):
    res = collect_results("quick", results_dir)
    html = display.show(display.format_accuracy_pairs(ch4_learned.table1(res)), "table1", res).to_html()
    assert "95% (6%)" in html and "2 tasks with results" in html
    cmp_html = display.show(comparison.compare_with_paper(res), "comparison", res).to_html()
    assert "Figure 7 (section 3)" in cmp_html and "-0.36" in cmp_html
    with pytest.raises(ValueError, match="valid tables are table1"):
        display.show(ch4_learned.table1(res), "table9", res)
    fig = ch4_learned.plot_figure6(res)
    assert [ax.get_title() for ax in fig.axes] == ["CelebA", "MNIST"]
    heights = sorted(round(p.get_height(), 3) for p in fig.axes[0].patches)
    assert heights == [0.0, 0.5, 2.0, 3.2]  # Smiling: no linear SVM, CNN 0.5, RBF 2.0, Bayes 3.2
    assert isinstance(ch5_real.plot_figure9(res), Figure)
    assert isinstance(comparison.plot_comparison(comparison.compare_with_paper(res)), Figure)
    assert isinstance(ch3_figures.plot_figure4(res), Figure)


def test_figure8_from_the_sweeps(results_dir):
    res = collect_results("quick", results_dir)
    table = ch4_learned.figure8_table(res)
    assert table["sweep"].tolist() == ["trades", "trades", "width", "width"]
    assert table["value"].tolist() == [0.0, 10.0, 8.0, 32.0]
    assert table["mean_l2"].tolist() == [0.5, 2.5, 0.4, 0.6]
    assert table["test_accuracy"].tolist() == [0.95, 0.85, 0.9, 0.95]
    assert set(table["task"]) == {"CelebA / Smiling"}
    fig = ch4_learned.plot_figure8(res)
    width_axes = fig.axes[1]
    assert width_axes.lines[0].get_ydata().tolist() == [0.4, 0.6]
    assert list(width_axes.lines[1].get_ydata()) == [3.2, 3.2]  # the Bayes-optimal reference
    empty = collect_results("quick", results_dir / "none")
    assert ch4_learned.figure8_table(empty).empty and isinstance(ch4_learned.plot_figure8(empty), Figure)


def test_adversarial_accuracy_conventions():
    assert pv.adversarial_accuracy(0.9, 0.05, "strict") == 0.05
    assert pv.adversarial_accuracy(0.9, 0.05, "paper") == pytest.approx(0.15)
    with pytest.raises(ValueError, match="valid conventions are paper, strict"):
        pv.adversarial_accuracy(0.9, 0.05, "other")


def test_paper_values_are_consistent():
    assert set(pv.TABLE1) == set(TASKS)
    assert all(set(models) == set(pv.MODELS) for models in pv.TABLE1.values())
    assert set(pv.TABLE2) == set(pv.TABLE3) and all(t in TASKS for t in pv.TABLE2)
    drops = [row["real_train"] - row["symmetric_train"] for row in pv.TABLE3.values()]
    assert sum(drops) / len(drops) == pytest.approx(pv.TABLE3_AVERAGE_DROP, abs=0.005)
    # the bracket convention the summary assumes: clean + adversarial = 100% for the CNN and linear SVM
    for table in (pv.TABLE1, pv.TABLE2):
        for models in table.values():
            for model in ("cnn", "linear_svm"):
                assert sum(models[model]) == pytest.approx(1.0, abs=0.001)
    numbers = pv.paper_numbers()
    assert len(numbers) == 15 * 4 * 2 + 5 * 3 * 2 + 5 * 2 + 1 + 3 * 2 + 4 + 1
    assert {n.quantity for n in numbers} == set(pv.QUANTITIES)
    assert all(n.source for n in numbers)


def test_cpu_name_reads_the_model_name(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core\n")
    assert manifest.cpu_name(cpuinfo) == "AMD EPYC 9654 96-Core"
    cpuinfo.write_text("processor\t: 0\n")  # no model name (some ARM kernels): what platform knows
    assert manifest.cpu_name(cpuinfo) == (platform.processor() or platform.machine())
    assert manifest.cpu_name(tmp_path / "missing") == (platform.processor() or platform.machine())


def test_manifest_records_machine_commit_and_time(tmp_path):
    command = ["python", "-m", "nbhelpers", "sweep", "--profile", "paper"]
    path = manifest.write_manifest(
        tmp_path, command, 1000.0, 1090.5, results=["paper/b.json", "paper/a.json"]
    )
    written = json.loads(path.read_text())
    assert path == tmp_path / "manifest.json" and written == manifest.read_manifest(tmp_path)
    (entry,) = written["runs"]
    assert entry["command"] == "python -m nbhelpers sweep --profile paper"
    assert entry["wall_seconds"] == 90.5
    assert entry["started"] == "1970-01-01T00:16:40+00:00"
    assert entry["results"] == ["paper/a.json", "paper/b.json"]
    assert entry["hardware"]["cpu_count"] == os.cpu_count()
    assert entry["hardware"]["cpu"] == manifest.cpu_name()
    assert entry["hardware"]["cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert isinstance(entry["hardware"]["gpus"], list) and entry["hardware"]["torch"]
    if shutil.which("git") and (ROOT / ".git").exists():
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        assert entry["git_commit"] == head.stdout.strip()
    text = manifest.describe_results(collect_results("quick", tmp_path), tmp_path).data
    assert "1 min 30 s" in text and "python -m nbhelpers sweep --profile paper" in text
    with pytest.raises(ValueError, match="before started"):
        manifest.write_manifest(tmp_path, "x", 10.0, 5.0)
    with pytest.raises(ValueError, match="seconds since the epoch"):
        manifest.write_manifest(tmp_path, "x", "yesterday", 5.0)
    assert len(manifest.read_manifest(tmp_path)["runs"]) == 1  # refused entries left it alone


def test_manifest_keeps_every_command_and_reads_the_one_command_form(tmp_path):
    legacy = {"command": "python -m nbhelpers sweep --chapters 03", "wall_seconds": 60.0, "exit_status": 0}
    (tmp_path / "manifest.json").write_text(json.dumps(legacy))
    assert manifest.read_manifest(tmp_path) == {"runs": [legacy]}
    made = ["paper/x__celeba__Male__seed0.json"]
    manifest.write_manifest(tmp_path, "second", 0.0, 7200.0, exit_status=-15, results=made)
    runs = manifest.read_manifest(tmp_path)["runs"]
    assert [r["command"] for r in runs] == [legacy["command"], "second"]
    text = manifest.describe_results(collect_results("paper", tmp_path), tmp_path).data
    assert "Made by 2 commands" in text and "2 h 00 min" in text and "1 min 00 s" in text
    assert "`second` (stopped by SIGTERM)" in text and "(exit status 0)" in text
    assert "the same command run again resumes after them" in text  # what "stopped by" means
    assert "x celeba:Male" in text and "not recorded" in text  # the legacy entry names no files
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a manifest"):
        manifest.read_manifest(tmp_path)


def test_record_runs_the_command_and_lists_the_results_it_wrote(tmp_path):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "old.json").write_text("{}")
    (tmp_path / "paper" / "same.json").write_text("{}")
    script = (
        "import pathlib, sys; p = pathlib.Path(sys.argv[1], 'paper');"
        "(p / 'new.json').write_text('{}'); (p / 'old.json').write_text('[1]'); raise SystemExit(3)"
    )
    argv = ["record", "--results-dir", str(tmp_path), "--", sys.executable, "-c", script, str(tmp_path)]
    status = cli_main(argv)
    assert status == 3
    (entry,) = manifest.read_manifest(tmp_path)["runs"]
    assert entry["exit_status"] == 3 and "SystemExit(3)" in entry["command"]
    assert entry["wall_seconds"] >= 0
    assert entry["results"] == ["paper/new.json", "paper/old.json"]
    assert manifest.read_manifest(tmp_path / "none") is None


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_record_passes_sigterm_on_and_still_writes_the_entry(tmp_path):
    """A sweep stopped with `kill` keeps its manifest entry: the wrapper hands SIGTERM to the command."""
    (tmp_path / "paper").mkdir()
    started = tmp_path / "paper" / "started.json"
    script = f"import pathlib, time; pathlib.Path({str(started)!r}).write_text('{{}}'); time.sleep(120)"
    argv = [sys.executable, "-m", "nbhelpers", "record", "--results-dir", str(tmp_path), "--"]
    proc = subprocess.Popen([*argv, sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the recorded command did not start"
        os.kill(proc.pid, signal.SIGTERM)  # the wrapper only, not its process group
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    (entry,) = manifest.read_manifest(tmp_path)["runs"]
    assert entry["exit_status"] == -signal.SIGTERM
    assert entry["results"] == ["paper/started.json"]


def test_describe_results_flags_results_of_other_code(results_dir):
    # a result file written by older code (save_result stamps the current version: write the file as it was)
    old = Result(CH3, "celeba", "Male", "quick", 0, {"subspace_distance_mean": 6.0}, code_version="0.0.1+old")
    write_json_atomic(result_path(CH3, "celeba", "Male", "quick", 0, results_dir), old.to_dict())
    res = collect_results("quick", results_dir)
    text = manifest.describe_results(res).data
    assert "6 result files" in text and "1 differ from the current" in text
    assert "(chapter 03: 3, chapter 04: 1, chapter 05: 2; profile quick, seed 0)" in text
    assert isinstance(manifest.describe_results(res, results_dir / "no-manifest").data, str)
    assert pd.notna(res.value(CH3, "celeba", "Male", "subspace_distance_mean"))


def test_coverage_marks_each_chapter_and_task(results_dir):
    res = collect_results("quick", results_dir, seed=None)
    table = ch6_summary.coverage(res)
    assert list(table.columns) == ["chapter 03", "chapter 04", "chapter 05"]
    assert len(table) == len(TASKS) and table.index[0] == "CelebA / Bangs"
    assert table.loc["CelebA / Smiling"].tolist() == ["yes", "yes", "missing"]
    assert table.loc["MNIST / 0 vs 6"].tolist() == ["yes", "missing", "n/a"]  # chapter 5 takes no MNIST task
    assert table.loc["CelebA / Bangs"].tolist() == ["missing", "missing", "yes"]
    assert table.loc["CelebA / Black Hair", "chapter 05"] == "n/a"  # nor CelebA beyond its five attributes
    counts = {column: table[column].value_counts().to_dict() for column in table.columns}
    assert counts["chapter 03"] == {"missing": 13, "yes": 2}
    assert counts["chapter 04"] == {"missing": 14, "yes": 1}
    assert counts["chapter 05"] == {"n/a": 10, "missing": 3, "yes": 2}


def test_coverage_keeps_a_task_outside_the_paper(tmp_path):
    write_result(
        CH3, "celeba", "Blond_Hair", "quick", 0, {"bayes_symmetric": report(1.0, 0.0, 3.0)}, tmp_path
    )
    table = ch6_summary.coverage(collect_results("quick", tmp_path))
    assert table.index[-1] == "CelebA / Blond Hair"
    assert table.loc["CelebA / Blond Hair"].tolist() == ["yes", "missing", "n/a"]  # not a real-data attribute


def test_missing_runs_counts_and_names_the_missing_tasks(results_dir):
    lines = ch6_summary.missing_runs(collect_results("quick", results_dir, seed=None)).data.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "- **chapter 03**",
        "- **chapter 04**",
        "- **chapter 05**",
    ]
    assert lines[0].startswith("- **chapter 03**: 2 of 15 tasks have a result; the missing ones: `python -m")
    assert "2_vs_7" in lines[0] and "celeba:Smiling" not in lines[0] and "mnist:0_vs_6" not in lines[0]
    assert (
        "--chapters 05 --tasks celeba:Heavy_Makeup celeba:Smiling celeba:Eyeglasses --profile quick"
        in lines[2]
    )
    assert f"--results-dir {results_dir}" in lines[2]  # outside the project: the folder is named in full
    command = lines[1].split("`")[1].split()
    tasks = command[command.index("--tasks") + 1 : command.index("--profile")]
    assert len(tasks) == 14 and "celeba:Smiling" not in tasks and tasks[0] == "celeba:Bangs"


def test_missing_runs_when_every_task_has_a_result(tmp_path):
    point = {"value": 4, "test_accuracy": 0.9, "report": {"mean_l2": 1.0}}
    for dataset, attribute in TASKS:
        write_result(CH3, dataset, attribute, "quick", 0, {}, results_dir=tmp_path)
        write_result(
            CH4, dataset, attribute, "quick", 0, {"sweeps": {"width": [point]}}, results_dir=tmp_path
        )
    for attribute in ("Male", "Smiling", "Bangs", "Heavy_Makeup", "Eyeglasses"):
        write_result(CH5, "celeba", attribute, "quick", 0, {}, results_dir=tmp_path)
    text = ch6_summary.missing_runs(collect_results("quick", tmp_path)).data
    assert text.splitlines() == [
        "- **chapter 03**: 15 of 15 tasks have a result",
        "- **chapter 04**: 15 of 15 tasks have a result",
        "- **chapter 05**: 5 of 5 tasks have a result",
    ]
    table = ch6_summary.coverage(collect_results("quick", tmp_path))
    assert (table == "yes").sum().tolist() == [15, 15, 5]
    # Chapter 4 results made with figure8=False have no sweep points: counted, and named with a command
    for attribute in ("Male", "Bangs"):
        metrics = {"sweeps": {"width": [], "depth": [], "train_size": []}, "trades": []}
        write_result(CH4, "celeba", attribute, "quick", 0, metrics, results_dir=tmp_path)
    results = collect_results("quick", tmp_path)
    line = ch6_summary.missing_runs(results).data.splitlines()[1]
    assert line.startswith("- **chapter 04**: 15 of 15 tasks have a result; 2 of the results have no Figure")
    command = "python -m nbhelpers sweep --chapters 04 --tasks celeba:Bangs celeba:Male --profile quick"
    assert line.endswith(f"`{command} --results-dir {tmp_path}`")
    table = ch6_summary.coverage(results)
    assert table.loc["CelebA / Male"].tolist() == ["yes", "yes, no Figure 8", "yes"]
    assert (table["chapter 04"] == "yes").sum() == 13


def test_table3_checks_merges_a_settings_cnn_and_bayes_records(tmp_path):
    def record(name: str, command: str, table3: dict, **extra) -> None:
        fields = {"attribute": "Male", "profile": "paper", "command": command, "table3": table3, **extra}
        (tmp_path / name).write_text(json.dumps(fields))

    script = "python scripts/table3_prior.py --attribute Male"
    record(
        "cnn.json",
        f"{script} --epochs 4 --out cnn.json",
        {"real_train": 0.96, "symmetric_train": 0.86},
        symmetric_epochs=4,
    )
    record(
        "bayes.json",
        f"{script} --bayes-only --out bayes.json",
        {"bayes_fitted": 0.81, "bayes_symmetric": 0.82},
        components=[9, 6],
        latent_dim=10,
    )
    record(
        "latent.json",
        f"{script} --bayes-only --latent-dim 20 --data-dir DATA --out latent.json",
        {"bayes_fitted": 0.85, "bayes_symmetric": 0.88},
        components=[9, 6],
        latent_dim=20,
    )
    (tmp_path / "notes.txt").write_text("not a record")
    table = ch5_real.table3_checks(tmp_path)
    assert list(table["MFA pair"]) == ["paper sizes", "latent dim 20"]  # the paper's sizes first
    paper = table.iloc[0]
    assert paper["components"] == "9 + 6" and paper["CNN epochs"] == 4 and paper["latent dim"] == 10
    assert (paper["CNN, symmetric samples"], paper["Bayes, symmetric pair"]) == (0.86, 0.82)
    assert paper["records"] == "cnn, bayes"
    latent = table.iloc[1]
    assert latent["latent dim"] == 20 and latent["Bayes, symmetric pair"] == 0.88
    assert math.isnan(latent["CNN, real faces"]) and pd.isna(latent["CNN epochs"])
    assert ch5_real.table3_checks(tmp_path / "none").empty

    # A second run of the same command has a row of its own, and takes the same Bayes record's numbers.
    record(
        "again.json", f"{script} --epochs 4 --out again.json", {"real_train": 0.95, "symmetric_train": 0.81}
    )
    table = ch5_real.table3_checks(tmp_path)
    paper = table[table["MFA pair"] == "paper sizes"]
    assert list(paper["CNN, symmetric samples"]) == [0.81, 0.86]  # the file names' order: again, cnn
    assert list(paper["Bayes, symmetric pair"]) == [0.82, 0.82]
    assert list(paper["records"]) == ["again, bayes", "cnn, bayes"]

    # --symmetric-cnn-seeds records: not in table3_checks, one row each in table3_seed_checks.
    assert ch5_real.table3_seed_checks(tmp_path).empty
    seeds = {"0": {"symmetric_train": 0.80}, "1": {"symmetric_train": 0.84}, "2": {"symmetric_train": 0.86}}
    fields = {"attribute": "Male", "profile": "paper", "symmetric_epochs": 4, "symmetric_cnn_seeds": seeds}
    fields |= {"command": f"{script} --epochs 4 --symmetric-cnn-seeds 0 1 2 --out seeds.json"}
    fields |= {"symmetric_train_over_seeds": {"mean": 0.833, "std": 0.0306, "min": 0.80, "max": 0.86}}
    (tmp_path / "seeds.json").write_text(json.dumps(fields))
    assert len(ch5_real.table3_checks(tmp_path)) == 3
    seed_table = ch5_real.table3_seed_checks(tmp_path)
    assert seed_table.shape == (1, 9)
    (row,) = seed_table.to_dict("records")
    assert row["seeds"] == "0 1 2" and row["CNN epochs"] == 4 and row["MFA pair"] == "paper sizes"
    assert (row["CNN, symmetric samples: mean"], row["sd"], row["min"], row["max"]) == (
        0.833,
        0.0306,
        0.8,
        0.86,
    )
    assert row["record"] == "seeds"
    later = {**fields, "symmetric_cnn_seeds": {"3": {"symmetric_train": 0.9}}}
    later["symmetric_train_over_seeds"] = {"mean": 0.9, "std": None, "min": 0.9, "max": 0.9}
    (tmp_path / "seeds-3.json").write_text(json.dumps(later))  # sorts before seeds.json by name
    both = ch5_real.table3_seed_checks(tmp_path)
    assert list(both["seeds"]) == ["0 1 2", "3"] and math.isnan(both["sd"].iloc[1])


def test_table3_drops_sets_each_attributes_cnn_records_beside_the_paper(tmp_path):
    def record(name: str, attribute: str, options: str, real: float, symmetric: float) -> None:
        command = f"python scripts/table3_prior.py --attribute {attribute} --epochs 4 {options}--out {name}"
        fields = {"attribute": attribute, "profile": "paper", "command": command, "symmetric_epochs": 4}
        fields["table3"] = {"real_train": real, "symmetric_train": symmetric}
        (tmp_path / name).write_text(json.dumps(fields))

    assert ch5_real.table3_drops(tmp_path).empty
    record("eyeglasses.json", "Eyeglasses", "", 0.99, 0.95)
    record("male.json", "Male", "", 0.96, 0.86)
    record("male-again.json", "Male", "", 0.94, 0.80)  # the same command on another machine
    record("male-latent.json", "Male", "--latent-dim 20 ", 0.5, 0.5)  # another MFA setting: left out
    bayes = {"attribute": "Smiling", "profile": "paper"}
    bayes["command"] = "python scripts/table3_prior.py --attribute Smiling --bayes-only"
    (tmp_path / "smiling.json").write_text(json.dumps({**bayes, "table3": {"bayes_fitted": 0.8}}))  # no CNN

    table = ch5_real.table3_drops(tmp_path)
    assert list(table["attribute"]) == ["Male", "Eyeglasses", "mean"]  # the paper's order, then the mean
    assert list(table["records"]) == [2, 1, 3]
    male, eyeglasses, mean = (row for _, row in table.iterrows())
    assert male["CNN epochs"] == 4 and pd.isna(mean["CNN epochs"])
    assert male["ours: real"] == pytest.approx(0.95) and male["ours: symmetric"] == pytest.approx(0.83)
    assert male["ours: drop"] == pytest.approx(0.12)  # the mean of 0.10 and 0.14
    assert eyeglasses["ours: drop"] == pytest.approx(0.04)
    assert (male["paper: real"], male["paper: symmetric"]) == (0.923, 0.880)
    assert male["paper: drop"] == pytest.approx(0.043) and eyeglasses["paper: drop"] == pytest.approx(0.067)
    assert mean["ours: drop"] == pytest.approx(0.08) and mean["paper: drop"] == pytest.approx(0.055)
    assert mean["ours: real"] == pytest.approx(0.97)

    # The picture: one arrow per attribute and source (the mean included), labelled with its drop in points.
    fig = ch5_real.plot_table3_drops(table)
    (ax,) = fig.axes
    labels = [text.get_text() for text in ax.texts if text.get_text()]  # the arrows are untitled texts
    assert sum(not text.get_text() for text in ax.texts) == 6
    assert labels == ["12.0", "4.0", "8.0", "4.3", "6.7", "5.5"]  # ours per row, then the paper's
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["Male", "Eyeglasses", "mean"]
    plt.close(fig)
    empty = ch5_real.plot_table3_drops(ch5_real.table3_drops(tmp_path / "none"))
    assert "no Table 3 records" in empty.axes[0].texts[0].get_text()
    plt.close(empty)


def test_asymmetric_noise_records_become_one_table_and_a_figure(tmp_path):
    assert ch3_figures.asymmetric_noise_table(tmp_path).empty
    assert isinstance(ch3_figures.plot_asymmetric_noise(ch3_figures.asymmetric_noise_table(tmp_path)), Figure)

    def row(noise: str, std: float, l2: float, share: float) -> dict:
        return {
            "noise": noise,
            "noise std": std,
            "clean accuracy": 1.0,
            "mean L2": l2,
            "outlier share": share,
            "evaluated": 100,
            "seconds": 1.0,
        }

    male = {
        "dataset": "celeba",
        "attribute": "Male",
        "rows": [row("set", 0.002, 0.55, 1.0), row("fitted", 0.12, 2.7, 0.05)],
    }
    digits = {"dataset": "mnist", "attribute": "0_vs_6", "rows": [row("fitted", 0.01, 0.6, 0.9)]}
    (tmp_path / "celeba__Male.json").write_text(json.dumps(male))
    (tmp_path / "mnist__0_vs_6.json").write_text(json.dumps(digits))
    table = ch3_figures.asymmetric_noise_table(tmp_path)
    assert table["task"].tolist() == ["CelebA / Male", "CelebA / Male", "MNIST / 0 vs 6"]
    assert table["noise"].tolist() == ["fitted", "set", "fitted"]  # the largest noise first
    assert table["paper: mean L2"].tolist() == [0.9, 0.9, 0.5]  # Figures 4 and 12
    assert table.loc[1, "mean L2"] == 0.55 and table.loc[0, "outlier share"] == 0.05
    fig = ch3_figures.plot_asymmetric_noise(table)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and len(ax.get_legend().get_texts()) == 4  # ours and paper per task
    plt.close(fig)
