"""The benchmark scripts run, and count what they claim to count."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import sys
from dataclasses import replace

import pytest
import torch
from torch import nn

from tests.conftest import ROOT


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _forward_flops(model: nn.Module, shape: tuple[int, int, int]) -> int:
    """2 x multiply-adds of the convolutions and the linear layer (biases and activations not counted)."""
    flops, (_, h, w) = 0, shape
    for layer in model.modules():
        if isinstance(layer, nn.Conv2d):
            s = layer.stride[0]
            h, w = -(-h // s), -(-w // s)
            flops += 2 * h * w * layer.out_channels * layer.in_channels * 9
        elif isinstance(layer, nn.Linear):
            flops += 2 * layer.in_features * layer.out_features
    return flops


def test_cnn_bench_counts_a_forward_and_an_input_backward_per_attack_step():
    bench = _load("bench_cnn")
    shape = bench.SHAPES["mnist"]
    model = bench.CNN(shape, width=8, depth=4, seed=0).requires_grad_(False)
    x, y = torch.rand(5, *shape), torch.tensor([0, 1, 0, 1, 1])
    per_sample = bench.flops_per_sample(lambda: bench.attack_step(model, x, y), 5)
    # weights frozen: the backward pass computes input gradients only, as many flops as the forward
    assert per_sample == 2 * _forward_flops(model, shape)
    grad = bench.attack_step(model, x, y)
    assert grad.shape == x.shape and grad.abs().sum() > 0


def test_cnn_bench_prints_a_row_per_dataset_and_precision_with_positive_rates(capsys):
    bench = _load("bench_cnn")
    argv = ["--profile", "quick", "--device", "cpu", "--seconds", "0.05", "--datasets", "mnist"]
    bench.main([*argv, "--precision", "float32", "bfloat16"])
    out = capsys.readouterr().out
    assert "attacks (16 + 16) samples x 500 steps, batch 128" in out
    rows = [line for line in out.splitlines() if line.startswith("| mnist 1x28x28")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [row[1] for row in cells] == ["float32", "bfloat16"]
    for row in cells:
        assert all(float(c.replace(",", "")) > 0 for c in row[2:6])
        assert all(re.fullmatch(r"(\d+ h )?\d+ min \d+ s|\d+ h \d+ min", c) for c in row[6:])
    # the attack steps run in float32 whatever the training precision: measured once, shown in both rows
    assert cells[0][4:6] == cells[1][4:6] and cells[0][7] == cells[1][7]
    with pytest.raises(SystemExit):
        bench.main([*argv, "--precision", "float16"])
    assert "invalid choice: 'float16'" in capsys.readouterr().err


def test_cnn_bench_figure8_times_each_sweep_cnn_that_the_chapter_trains(capsys):
    bench = _load("bench_cnn")
    # quick: base CNN width 8, depth 4; 2 x 500 samples x 6 epochs; TRADES beta 0 is the base CNN (reused)
    assert bench.figure8_points("quick") == [
        ("train_size", 1000.0, 8, 4, 0.0, 1000),
        ("train_size", 4000.0, 8, 4, 0.0, 4000),
        ("width", 4.0, 4, 4, 0.0, 6000),
        ("width", 16.0, 16, 4, 0.0, 6000),
        ("depth", 2.0, 8, 2, 0.0, 6000),
        ("depth", 6.0, 8, 6, 0.0, 6000),
        ("trades", 2.0, 8, 4, 2.0, 6000),
        ("trades", 10.0, 8, 4, 10.0, 6000),
    ]
    bench.main(
        ["--profile", "quick", "--device", "cpu", "--seconds", "0.05", "--datasets", "mnist", "--figure8"]
    )
    out = capsys.readouterr().out
    assert "DDN 100 steps on 16 samples, batch 128" in out
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| mnist")
    ]
    assert [row[1] for row in rows] == [
        "train_size 1000", "train_size 4000", "width 4", "width 16", "depth 2", "depth 6",
        "trades 2", "trades 10", "all points",
    ]  # fmt: skip
    flops = {row[1]: float(row[3]) for row in rows[:-1]}
    assert flops["width 16"] > 2 * flops["width 4"]
    # TRADES adds 3 PGD steps (a forward and an input backward each) and a forward of the attacked batch
    assert flops["trades 2"] > 2 * flops["train_size 1000"] and flops["trades 2"] == flops["trades 10"]
    assert all(float(row[4].replace(",", "")) > 0 and float(row[5].replace(",", "")) > 0 for row in rows[:-1])
    assert [row[6] for row in rows[:2]] == ["1,000", "4,000"]


def test_mfa_bench_times_each_init_and_seed_side_by_side(capsys):
    bench = _load("bench_mfa")
    # large enough that an EM iteration (about 30 ms on a 2-core CPU) outlasts the scheduler's noise
    argv = ["--n", "4000", "--d", "400", "--K", "3", "--l", "2", "--iters", "2", "--device", "cpu"]
    bench.main([*argv, "--inits", "kmeans", "sklearn-kmeans", "--fit-seeds", "2"])
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| planted MFA")
    ]
    assert [row[5] for row in rows] == [
        "kmeans, seed 0",
        "sklearn-kmeans, seed 0",
        "kmeans, seed 1",
        "sklearn-kmeans, seed 1",
    ]
    for row in rows:
        # init and EM iteration seconds, printed to three significant digits so a fast machine is not 0
        assert float(row[6]) > 0 and float(row[9]) > 0
        start, end = re.fullmatch(
            r"(-?[\d.]+) -> (-?[\d.]+) after 2 \(planted model: -?[\d.]+\)", row[11]
        ).groups()
        assert float(end) >= float(start) - 1e-9  # EM never lowers the likelihood


def test_stage_bench_extrapolates_attacks_per_batch_and_svm_fits_by_the_measured_power(monkeypatch):
    bench = _load("bench_stages")
    clock = [0.0]
    monkeypatch.setattr(bench, "clock", lambda: clock[0])

    def spend(seconds: float, value: object = None) -> object:
        clock[0] += seconds
        return value

    profiler = bench.Profiler("test")
    # an attack of 1 + 0.5 b seconds per batch of b samples (timed at 1 and 4), batches of 128: 8 for 1000
    stage = bench.attack_stage(profiler, "4", "attack", lambda m: spend(1 + 0.5 * m), 4, 1000, 128)
    assert stage.seconds == 3.0 and stage.scaling.startswith("1.00 s per batch of 128 + 0.500 s per sample")
    assert stage.extrapolated == 8 * 1 + 0.5 * 1000
    # an RBF SVM with 10 times the support vectors: the per-sample part grows, the per-batch one not
    stage = bench.attack_stage(profiler, "4", "attack", lambda m: spend(1 + 0.5 * m), 4, 1000, 128, work=10)
    assert stage.extrapolated == 8 * 1 + 0.5 * 1000 * 10
    # work that grows like n^2: 2 s at n / 2 = 100, 8 s at n = 200, so 800 s at 2000
    out = bench.two_sizes(profiler, "4", "fit", lambda m: spend(8 * (m / 200) ** 2, m), 200, 2000)
    assert out == 200
    fit = profiler.stages[-1]
    assert (fit.seconds, fit.exponent) == (8.0, 2.0)
    assert fit.extrapolated == pytest.approx(800.0, rel=1e-12)
    # CNN training: 5 s to build, 0.01 s per sample: 1000 samples take 15 s, the paper's 400,000 4005 s
    cnn = bench.affine_stage(profiler, "4", "CNN", lambda m: spend(5 + 0.01 * m, m), 1000, 400000, "samples")
    assert cnn == 1000 and profiler.stages[-1].seconds == pytest.approx(15.0, rel=1e-12)
    assert profiler.stages[-1].extrapolated == pytest.approx(5 + 0.01 * 400000, rel=1e-12)
    # the once-per-run and linear stages; a lever is left out of the totals
    linear = bench.Stage("4", "CNN", 2.0, **bench.linear(1000, 400000, "samples x epochs"))
    assert linear.extrapolated == 800.0
    assert bench.Stage("4", "write", 0.5).extrapolated == 0.5
    profiler.add(bench.Stage("4", "lever", 100.0, in_total=False))
    total = profiler.totals()["4"]
    assert total["measured"] == pytest.approx(sum(s.seconds for s in profiler.stages[:-1]))


def _table(out: str, task: str) -> list[list[str]]:
    lines = out.split(f"#### {task}\n", 1)[1].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[3:] if line.startswith("| ")]


def _names(chapter: str, names: list[str]) -> list[tuple[str, str]]:
    return [(chapter, name) for name in names]


def _mfa_names(suffix: str = "") -> list[tuple[str, str]]:
    parts = ["init kmeans", "log-likelihood pass", "EM"]
    names = [f"MFA {part} (class {c})" for c in (0, 1) for part in parts]
    names += [f"MFA init sklearn-kmeans (class {c}){suffix}" for c in (0, 1) if suffix]
    names += [
        "data loading (all training images)",
        "outlier direction (PCA of all images) and the derived pairs",
    ]
    return _names("2", [*names, "model cache write"])


def _learned_names(chapter: str, models: tuple[str, ...]) -> list[tuple[str, str]]:
    lever = "RBF SVM: gamma search and fit, distances shared (lever, not in total)"
    names = ["linear SVM fit", "RBF SVM: gamma search and fit", lever, "result writing"]
    names += [f"attack {a} ({m})" for m in models for a in ("cw", "fmn", "ddn")]
    return _names(chapter, [*names, "evaluate_models: test accuracy and reports, attacks reused"])


def _run_and_check(bench, argv: list[str], json_path, capsys, expected: list[tuple[str, str]]):
    """Run the bench on one task; check its stages, their scaling, the totals, and the table against the
    JSON. Names are compared with the class sizes (N, K, l) and chapter 5's epochs left out."""
    checkpoints_env = os.environ["NBHELPERS_CHECKPOINTS_DIR"]
    (profiler,) = bench.main([*argv, "--device", "cpu", "--json", str(json_path)])
    out = capsys.readouterr().out
    assert os.environ["NBHELPERS_CHECKPOINTS_DIR"] == checkpoints_env  # the folders given back
    start = r"^device cpu, torch .+ threads, .+ cores; load average \(1 min\) at start: [\d.]+$"
    assert re.search(start, out, re.M) and re.search(
        r"^load average \(1 min\) at the end: [\d.]+$", out, re.M
    )
    sizes = r" \(class (\d): N = \d+, K = \d+, l = \d+\)| \(paper: \d+ epochs over \d+ faces\)"
    names = [
        (s.chapter, re.sub(sizes, lambda m: f" (class {m[1]})" if m[1] else "", s.name))
        for s in profiler.stages
    ]
    assert sorted(names) == sorted(expected)
    for s in profiler.stages:
        assert s.seconds > 0, s
        if s.scaling == "once":
            assert s.extrapolated == s.seconds, s
        elif s.paper_size is None or s.paper_size > s.size:  # scaled up to the paper's size
            assert s.extrapolated >= s.seconds * (1 - 1e-12), s
    assert all(lever["same_gamma"] for lever in profiler.notes.values()) and profiler.notes
    # the chapters' own evaluations reused every attack (and the bounds) the bench timed before them
    timed = {re.fullmatch(r"attack (\w+) \((?:Bayes, )?(\w+)\)", name) for _, name in names} - {None}
    reused = {f"attack_{m[2]}_{m[1]}" for m in timed if m is not None}
    reused |= (
        {"bounds_symmetric"}
        if ("3", "certified radius and subspace distances (symmetric)") in names
        else set()
    )
    assert reused == set(re.findall(r"^\[checkpoint\] (\w+): loaded", out, re.M))

    report = json.loads(json_path.read_text())
    assert report["machine"].startswith("device cpu, torch ")
    assert set(report["load_average_1min"]) == {"start", "end"}
    (task,) = report["tasks"]
    assert task["task"] == profiler.task and len(task["stages"]) == len(expected)
    for chapter, total in task["totals"].items():  # the sums of the chapter's counted stages
        counted = [s for s in task["stages"] if s["chapter"] == chapter and s["in_total"]]
        assert total["measured"] == pytest.approx(sum(s["seconds"] for s in counted), rel=1e-12)
        assert total["extrapolated"] == pytest.approx(sum(s["extrapolated"] for s in counted), rel=1e-12)
    assert {s["chapter"] for s in task["stages"]} == set(task["totals"])
    assert all(("not in total" in s["name"]) != s["in_total"] for s in task["stages"])

    rows = _table(out, profiler.task)  # the printed table says what the JSON says
    stage_rows, total_rows = rows[: len(task["stages"])], rows[len(task["stages"]) :]
    for row, s in zip(stage_rows, task["stages"], strict=True):
        at = "" if s["size"] is None else f"{s['size']:g} {s['unit']}"
        paper = "" if s["paper_size"] is None else f"{s['paper_size']:g}"
        cells = [
            s["chapter"],
            s["name"],
            f"{s['seconds']:.2f}",
            at,
            s["scaling"],
            paper,
            f"{s['extrapolated']:,.1f}",
        ]
        assert row == cells
    assert [row[:3] + [row[6].split("**")[1]] for row in total_rows] == [
        [chapter, "**total**", f"{t['measured']:.2f}", f"{t['extrapolated']:,.1f}"]
        for chapter, t in task["totals"].items()
    ]


@pytest.fixture
def fewer_attack_steps(monkeypatch):
    """The bench script, with the paper profile's attacks at a tenth of their steps (so that a test takes
    seconds, not minutes); every other setting is the paper's. Data: the sample shipped with the package."""
    from nbhelpers.chapters import profiles

    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    bench = _load("bench_stages")
    paper = profiles.get_profile("paper")
    fewer = replace(paper, attacks=replace(paper.attacks, cw_steps=50, min_norm_steps=100))
    monkeypatch.setitem(profiles.PROFILES, "paper", fewer)
    monkeypatch.setattr(bench, "PAPER", fewer)
    return bench


TINY = [
    "--em-iters",
    "1",
    "--n-attack",
    "2",
    "--train-per-class",
    "20",
    "--test-per-class",
    "10",
    "--svm-n",
    "40",
]


def test_stage_bench_times_every_stage_of_chapters_3_and_4_on_mnist(fewer_attack_steps, tmp_path, capsys):
    chapter3 = []
    for variant in ("symmetric", "asymmetric"):
        chapter3 += [f"sampling 1000 attacked samples ({variant})"]
        chapter3 += [f"attack {a} (Bayes, {variant})" for a in ("gradient", "cw", "fmn")]
        chapter3 += [
            f"evaluate_bayes bookkeeping, attacks reused ({variant})",
            f"step-halving check ({variant})",
        ]
    chapter3 += ["certified radius and subspace distances (symmetric)", "result writing"]
    chapter4 = ["sampling the symmetric sets", "CNN training", "attack gradient (bayes)"]
    expected = _mfa_names() + _names("3", chapter3) + _names("4", chapter4)
    expected += _learned_names("4", ("bayes", "cnn", "linear_svm", "rbf_svm"))
    argv = ["--tasks", "mnist:0_vs_6", "--chapters", "3", "4", *TINY]
    _run_and_check(fewer_attack_steps, argv, tmp_path / "stages.json", capsys, expected)


def test_stage_bench_times_chapter_5_and_the_jpeg_copy_on_celeba(fewer_attack_steps, tmp_path, capsys):
    table3 = "Table 3's symmetric CNN: "  # chapter 4 not profiled: its sets and CNN timed in chapter 5
    chapter5 = ["data loading (real faces, 10,000 per class at most)", "CNN training"]
    chapter5 += [f"{table3}sampling the symmetric sets", f"{table3}CNN training"]
    chapter5 += ["Bayes-optimal classifiers on the real test faces (Table 3)"]
    expected = _names("-", ["JPEG pack (once, before a GPU run)", "JPEG unpack (once per GPU machine)"])
    expected += _mfa_names(" (alternative, not in total)") + _names("5", chapter5)
    expected += _learned_names("5", ("cnn", "linear_svm", "rbf_svm"))
    argv = ["--tasks", "celeba:Male", "--chapters", "5", "--jpeg", "--inits", "sklearn-kmeans", *TINY]
    _run_and_check(fewer_attack_steps, argv, tmp_path / "stages.json", capsys, expected)


def test_gpu_benches_run_what_fits_into_one_report(tmp_path, capsys):
    bench = _load("gpu_benches")
    report = tmp_path / "window" / "gpu_benches.md"
    sample = ROOT / "nbhelpers" / "sample_data"
    common = ["--device", "cpu", "--data-dir", str(sample), "--report", str(report)]
    # at the full sizes a bench starts only if its H100 estimate fits: none of the per-stage profiles in 5 s
    assert bench.main([*common, "--only", "stages-ch5", "stages-ch3", "--budget", "5"]) == 0
    text = report.read_text()
    assert "**left for the next window: expects 300 s, 5 s left**" in text  # BENCHES' order, not --only's
    assert text.index("## stages-ch3") < text.index("## stages-ch5")
    assert "--chapters 5 --em-iters 40 --n-attack 1000 --train-per-class 10000" in text
    # the smoke sizes run it, whatever the estimate; the data folder is shown as DATA, from the working folder
    assert bench.main([*common, "--sizes", "smoke", "--only", "cnn-precision", "--budget", "120"]) == 0
    text = report.read_text()
    assert "`python bench/bench_cnn.py --device cpu --precision float32 bfloat16 --seconds 0.05" in text
    assert re.search(r"\*\*ended well\*\* in \d+\.\d s \(expected on one H100, full sizes: 45 s\)", text)
    assert "| mnist 1x28x28 | bfloat16 |" in text and str(ROOT) not in text
    capsys.readouterr()


def test_gpu_benches_report_a_failure_and_stop_at_the_budget(tmp_path, monkeypatch, capsys):
    bench = _load("gpu_benches")
    broken = bench.Bench("broken", "bench_cnn.py", "a bad option", 1, "--no-such-option", "--no-such-option")
    slow = bench.Bench("slow", "bench_cnn.py", "past the budget", 1, "", "--profile quick --seconds 60")
    monkeypatch.setattr(bench, "BENCHES", (broken, slow))
    report = tmp_path / "report.md"
    argv = ["--sizes", "smoke", "--device", "cpu", "--report", str(report)]
    assert bench.main([*argv, "--only", "broken", "--budget", "60"]) == 1
    text = report.read_text()
    assert "**failed (exit status 2)**" in text and "unrecognized arguments: --no-such-option" in text
    assert bench.main([*argv, "--only", "slow", "--budget", "3"]) == 1
    # stopped when the budget ran out (killing the process may take a moment), not after its 60 s
    assert re.search(r"\*\*stopped: the budget was spent\*\* in [2-5]\.\d s", report.read_text())
    with pytest.raises(SystemExit) as bad:
        bench.main([*argv, "--budget", "-1"])
    assert bad.value.code == 2
    assert "--budget must be a positive number of seconds, got -1" in capsys.readouterr().err


def test_sampling_bench_times_both_generators_side_by_side_on_paper_sized_models(tmp_path, capsys):
    bench = _load("bench_sampling")
    pair = bench.random_pair("celeba", torch.device("cpu"))
    assert [(m.K, m.l, m.d, m.dtype) for m in pair] == [
        (9, 10, 12288, torch.float64),
        (6, 10, 12288, torch.float64),
    ]
    rows = bench.main(
        ["--device", "cpu", "--datasets", "mnist", "--seconds", "0.2", "--json", str(tmp_path / "s.json")]
    )
    assert [row["way"] for row in rows] == [
        "host generator (sample_dataset)",
        "device generator (fresh_sampler)",
    ]
    for row in rows:  # 64 samples a step; the paper's 3,000,000 fresh samples a task
        assert row["ms_per_step"] > 0
        assert row["us_per_sample"] == pytest.approx(1000 * row["ms_per_step"] / 64)
        assert row["projected_s"] == pytest.approx(row["ms_per_step"] / 1000 * 3_000_000 / 64)
    assert json.loads((tmp_path / "s.json").read_text())["rows"] == rows
    out = capsys.readouterr().out
    assert "| mnist | device generator (fresh_sampler) |" in out and "3,000,000 fresh samples" in out
    with pytest.raises(SystemExit):
        bench.main(["--seconds", "0"])


def test_training_loop_bench_compares_the_loop_with_the_one_before_which_trains_the_same_weights(capsys):
    bench = _load("bench_training_loop")
    from nbhelpers.science.models import CNN, fit_classifier
    from tests.test_models import stripes

    x, y = stripes(200, seed=0)
    before = bench.loop_before(CNN((1, 16, 16), 4, 2, seed=0), x, y, 32, torch.device("cpu"))
    now = fit_classifier(CNN((1, 16, 16), 4, 2, seed=0), x, y, epochs=1, batch_size=32, device="cpu")
    for a, b in zip(before.parameters(), now.parameters(), strict=True):
        assert torch.equal(a, b)
    rates = bench.main(
        ["--device", "cpu", "--profile", "quick", "--datasets", "mnist", "--n", "64", "--seconds", "0.05"]
    )
    assert list(rates["mnist"]) == ["Adam step alone", "loop before", "fit_classifier"]
    assert all(rate > 0 for rate in rates["mnist"].values())
    out = capsys.readouterr().out
    assert "| mnist | fit_classifier |" in out and "projection: 6,000 samples" in out  # 2 x 500 x 6 epochs
    with pytest.raises(SystemExit):
        bench.main(["--n", "0"])


def test_svm_host_bench_splits_the_chapters_fits_into_device_and_host_seconds(tmp_path, capsys):
    from nbhelpers.chapters import learned
    from nbhelpers.chapters.ch5_real import real_task
    from nbhelpers.chapters.profiles import get_profile
    from nbhelpers.science.models import LinearSVM
    from nbhelpers.science.models.svm import AUTO_MIN_SAMPLES

    bench = _load("bench_svm_host")
    sample = ROOT / "nbhelpers" / "sample_data"
    argv = ["--data-dir", str(sample), "--chapters", "5", "--device", "cpu", "--liblinear", "60"]
    report = bench.main([*argv, "--json", str(tmp_path / "h.json")])
    assert json.loads((tmp_path / "h.json").read_text())["liblinear"] == report["liblinear"]

    # the chapter's own training set and fits: same rows, same support vectors, same gamma
    paper = get_profile("paper")
    task = real_task("Male", profile="paper", data_dir=sample)
    rows = learned.svm_training_rows(len(task.y_train), paper.models.svm_max_train, seed=0)
    x, y = task.x_train[rows], task.y_train[rows]
    gamma = learned.fit_rbf_svm(x, y, gammas=paper.models.svm_gammas, device="cpu").gamma
    linear, search, final = report["chapters"]["5"]["stages"]
    assert report["chapters"]["5"]["n"] == len(y) > 100
    assert linear["stage"] == "linear SVM"
    assert linear["support_vectors"] == LinearSVM(device="cpu").fit(x, y).support_.shape[0]
    assert search["stage"].startswith("RBF SVM gamma search (5 gammas, ")
    assert len(search["support_vectors"]) == len(paper.models.svm_gammas)
    assert final["stage"] == f"RBF SVM final fit (gamma {gamma:g})"
    for stage in (linear, search, final):  # both parts timed inside the fit (the search: its distances)
        assert stage["host_s"] > 0 and stage["device_s"] + stage["host_s"] <= stage["wall_s"] + 1e-9
    # below AUTO_MIN_SAMPLES rows the fits let libsvm compute the kernel itself: no Gram matrix in torch
    assert len(y) < AUTO_MIN_SAMPLES and linear["device_s"] == final["device_s"] == 0.0
    assert search["device_s"] > 0

    # the lever: libsvm is its own reference; liblinear's two iteration budgets are compared with it
    libsvm, *liblinear = report["liblinear"]["rows"]
    assert report["liblinear"]["n"] == 60
    assert (libsvm["agreement"], libsvm["cosine"]) == (1.0, pytest.approx(1.0))
    assert [row["note"].split(" iterations")[0].isdigit() for row in liblinear] == [True, True]
    for row in liblinear:
        assert 0 <= row["agreement"] <= 1 and -1 <= row["cosine"] <= 1 and row["mean_distance"] > 0
    out = capsys.readouterr().out
    assert "| 5 | **host total** |" in out and "| liblinear (LinearSVC) |" in out
    for bad in (["--chapters", "5", "--attribute", "Black_Hair"], ["--liblinear", "-1"]):
        with pytest.raises(SystemExit) as stop:
            bench.main(bad)
        assert stop.value.code == 2


def test_calls_per_second_warms_up_then_times_at_least_the_seconds_asked():
    import time

    from nbhelpers.core.timing import calls_per_second

    calls = []

    def sleepy() -> None:
        calls.append(time.perf_counter())
        time.sleep(0.01)

    rate = calls_per_second(sleepy, torch.device("cpu"), seconds=0.1, warmup=2)
    assert 0 < rate <= 100  # a call sleeps at least 10 ms
    timed = len(calls) - 2
    assert timed >= 1
    assert timed / rate >= 0.1  # the timed calls took at least the seconds asked


def test_overlap_bench_trains_chapter_5s_models_both_ways_and_finds_them_the_same(tmp_path, capsys):
    from nbhelpers.chapters import learned

    bench = _load("bench_overlap")
    sample = ROOT / "nbhelpers" / "sample_data"
    argv = ["--data-dir", str(sample), "--device", "cpu", "--profile", "quick"]
    small = ["--train-n", "80", "--svm-n", "60", "--epochs", "1", "--repeats", "2"]
    assert bench.main([*argv, *small, "--json", str(tmp_path / "o.json")]) == 0
    saved = json.loads((tmp_path / "o.json").read_text())
    serial_way, overlapped_way = bench.WAYS
    ways = [(row["way"], row["repeat"]) for row in saved["rows"]]  # each way first in turn
    assert ways == [(serial_way, 0), (overlapped_way, 0), (overlapped_way, 1), (serial_way, 1)]
    assert saved["same"] is True
    for row in saved["rows"]:  # each way's wall time holds its models' times (overlapped: the longer)
        models = row["models_s"]
        assert set(models) == set(learned.LEARNED) and min(models.values()) > 0
        assert row["wall_s"] >= max(models.values())
    serial = saved["rows"][0]
    assert serial["wall_s"] >= sum(serial["models_s"].values())
    out = capsys.readouterr().out
    assert "CNN on 80 faces for 1 epochs, SVMs on 60" in out and "| overlapped | 2 |" in out
    assert "overlapped / one after another (mean wall): " in out and "same models: True" in out

    # the check behind "same models": any differing weight or gamma is caught
    torch.manual_seed(0)
    one = learned.TrainedClassifiers({"cnn": nn.Linear(3, 2)}, 0.01, [], {}, {})
    other = learned.TrainedClassifiers({"cnn": copy.deepcopy(one.modules["cnn"])}, 0.01, [], {}, {})
    assert bench.same_models(one, other)
    assert not bench.same_models(one, replace(other, gamma=0.003))
    with torch.no_grad():
        other.modules["cnn"].bias[1] += 1e-6
    assert not bench.same_models(one, other)
    for bad in (["--attribute", "Black_Hair"], ["--epochs", "0"], ["--svm-n", "1"], ["--repeats", "0"]):
        with pytest.raises(SystemExit) as stop:
            bench.main([*argv, *bad])
        assert stop.value.code == 2
    assert "--epochs must be at least 1, got 0" in capsys.readouterr().err
