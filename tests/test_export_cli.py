"""``python -m nbhelpers export-dataset`` on the bundled MNIST sample."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nbhelpers.runs import cli, export_cli
from nbhelpers.science.datasets import SYMMETRIC_SIGMA, VARIANTS, load_task_models
from nbhelpers.science.release import load_dataset


@pytest.fixture
def sample_env(tmp_path, monkeypatch):
    """The bundled sample as data, a private model cache."""
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def export(out, *extra: str) -> int:
    sizes = ["--n-train", "6", "--n-test", "3", "--n-attack", "2"]
    return cli.main(["export-dataset", "--out", str(out), "--device", "cpu", "--no-progress", *sizes, *extra])


def test_exports_one_task_with_its_models(sample_env, capsys):
    out = sample_env / "export"
    assert export(out, "--dataset", "MNIST", "--attribute", "06") == 0
    printed = capsys.readouterr().out.split()
    folder = out / "mnist_0_vs_6_symmetric"
    npz, models_dir = folder / "data.npz", folder / "models"
    assert printed == [str(folder)]
    card = json.loads((folder / "dataset.json").read_text())
    assert card["bayes_optimal"]["n_attacked"] == 2 and card["bayes_optimal"]["clean_accuracy"] == 1.0
    assert "bundled sample" in card["fitted_to"] and (folder / "README.md").exists()
    released = load_dataset(folder, device="cpu")
    assert np.array_equal(released.data.x_test, np.load(npz)["x_test"])

    data = np.load(npz)
    assert data["x_train"].shape == (12, 784) and data["x_test"].shape == (6, 784)
    assert data["x_train"].dtype == np.float32
    assert 0.0 <= data["x_train"].min() and data["x_train"].max() <= 1.0
    assert np.bincount(data["y_train"]).tolist() == [6, 6] and np.bincount(data["y_test"]).tolist() == [3, 3]
    assert data["image_shape"].tolist() == [1, 28, 28] and data["class_names"].tolist() == ["0", "6"]
    provenance = {
        key: data[key].item() for key in ("dataset", "attribute", "variant", "profile", "seed", "source")
    }
    assert provenance == {
        "dataset": "mnist",
        "attribute": "0_vs_6",
        "variant": "symmetric",
        "profile": "quick",
        "seed": 0,
        "source": "bundled sample",
    }

    # the released models are the generating ones: the symmetric pair has sigma = 0.01 everywhere
    meta = json.loads((models_dir / "meta.json").read_text())
    assert meta["source"] == "bundled sample"  # an export names no folder of this machine
    models = load_task_models(models_dir, device="cpu")
    for mfa in models.symmetric:
        assert torch.allclose(mfa.log_D.exp(), torch.full_like(mfa.log_D, SYMMETRIC_SIGMA**2))
    assert [m.K for m in models.asymmetric] == [m.K + 1 for m in models.fitted]


def test_export_is_deterministic_and_variants_differ(sample_env):
    first, second = sample_env / "a", sample_env / "b"
    assert export(first, "--dataset", "mnist", "--attribute", "0_vs_6", "--variant", "asymmetric") == 0
    assert export(second, "--dataset", "mnist", "--attribute", "0_vs_6", "--variant", "asymmetric") == 0
    assert export(second, "--dataset", "mnist", "--attribute", "0_vs_6", "--variant", "symmetric") == 0
    a = np.load(first / "mnist_0_vs_6_asymmetric" / "data.npz")
    b = np.load(second / "mnist_0_vs_6_asymmetric" / "data.npz")
    sym = np.load(second / "mnist_0_vs_6_symmetric" / "data.npz")
    assert np.array_equal(a["x_train"], b["x_train"]) and np.array_equal(a["y_test"], b["y_test"])
    assert not np.array_equal(a["x_train"], sym["x_train"])


def test_all_exports_every_task(sample_env, monkeypatch, capsys):
    # two of the 15 tasks keep the test fast; --all walks whatever nbhelpers.science.data.TASKS holds
    monkeypatch.setattr("nbhelpers.science.data.TASKS", [("mnist", "0_vs_6"), ("mnist", "4_vs_5")])
    out = sample_env / "all"
    assert export(out, "--all", "--variant", "fitted") == 0
    assert sorted(p.name for p in out.iterdir()) == ["mnist_0_vs_6_fitted", "mnist_4_vs_5_fitted"]
    assert len(capsys.readouterr().out.split()) == 2


MALE = ["--dataset", "celeba", "--attribute", "Male"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "cifar", "--attribute", "Male"], "valid datasets are 'celeba', 'mnist'"),
        (["--dataset", "celeba", "--attribute", "Beard"], "valid CelebA attributes are Bangs, Black_Hair"),
        (["--dataset", "mnist", "--attribute", "6_vs_0"], "did you mean '0_vs_6'?"),
        ([*MALE, "--variant", "sym"], "valid variants are fitted, symmetric, asymmetric"),
        (["--dataset", "celeba"], "give --dataset and --attribute"),
        (["--all", "--dataset", "celeba"], "--all exports every task: drop --dataset"),
        ([*MALE, "--profile", "full"], "valid profiles are 'quick', 'paper'"),
        ([*MALE, "--device", "tpu"], "valid devices are auto, cpu, cuda"),
        ([*MALE, "--n-train", "0"], "--n-train must be at least 1"),
        ([*MALE, "--n-attack", "-1"], "--n-attack must be 0"),
        ([*MALE, "--seed", "-1"], "--seed must be a non-negative"),
        ([*MALE, "--data-dir", "no_such_folder"], "no_such_folder does not exist"),
    ],
)
def test_bad_input_exits_2_with_the_valid_choices(sample_env, capsys, args, message):
    assert cli.main(["export-dataset", "--out", str(sample_env / "never"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nbhelpers export-dataset: error:") and message in err
    assert not (sample_env / "never").exists()


def test_an_out_folder_that_is_a_file_is_refused_before_any_fit(sample_env, capsys, monkeypatch):
    from nbhelpers.chapters import task_models

    def fit(*args, **kwargs):
        raise AssertionError("the models were fitted before --out was checked")

    monkeypatch.setattr(task_models, "build_task_models", fit)
    target = sample_env / "out_file"
    target.write_text("not a folder")
    for out, problem in (
        (target, f"{target} is a file, not a folder"),
        (target / "sub", f"{target / 'sub'} cannot be created: {target}, on its path, is a file"),
    ):
        assert export(out, *MALE) == 2
        err = capsys.readouterr().err
        assert f"nbhelpers export-dataset: error: --out {out}: {problem}; pass a folder" in err, err


def test_variants_match_the_datasets_module():
    assert export_cli.VARIANTS == VARIANTS


def test_registered_as_a_subcommand():
    args = cli.build_parser().parse_args(["export-dataset", "--all", "--out", "x"])
    assert args.handler is export_cli.run and args.all and args.variant == "symmetric"
