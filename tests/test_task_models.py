"""A task's models at a profile's sizes: the component counts, the fit cache and the export of a dataset."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nbhelpers.chapters import task_models
from nbhelpers.chapters.ch2_datasets import bayes_accuracy_table
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.science.datasets import load_task_models
from nbhelpers.science.release import export_dataset


def test_cache_folder_appears_whole_and_the_first_one_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    models = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    (folder,) = (tmp_path / "cache" / "models").iterdir()  # nothing staged is left beside it
    assert (folder / "meta.json").exists() and len(list(folder.glob("*.safetensors"))) == 6
    # Another run finished the same folder first: ours is dropped, theirs kept untouched.
    (folder / "theirs").write_text("x")
    task_models._publish(models, folder)
    assert (folder / "theirs").exists() and [p.name for p in folder.parent.iterdir()] == [folder.name]
    # A folder without meta.json (a crash half-way) is replaced by a whole one.
    half = folder.parent / "half"
    half.mkdir()
    (half / "fitted_class0.safetensors").write_bytes(b"trunc")
    task_models._publish(models, half)
    assert (half / "meta.json").exists() and (half / "fitted_class0.safetensors").stat().st_size > 5
    reloaded = load_task_models(half, device="cpu")
    assert torch.equal(reloaded.symmetric[0].mu, models.symmetric[0].mu)
    assert sorted(p.name for p in folder.parent.iterdir()) == sorted([folder.name, "half"])


def test_component_counts_follow_the_paper():
    paper = get_profile("paper").mfa
    assert paper.components("mnist", 5000) == (25, 6)
    assert paper.components("celeba", 5300) == (5, 10)
    assert paper.components("celeba", 12000) == (12, 10)
    assert paper.components("celeba", 900) == (4, 10)  # the floor for our smaller CelebA
    k, latent = get_profile("quick").mfa.components("celeba", 300)
    assert k >= 2 and latent <= 10


def test_build_caches_and_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the bundled sample: fast and fixed
    models = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    assert models.source == "sample"
    assert [m.K for m in models.asymmetric] == [m.K + 1 for m in models.fitted]
    for history in models.history:  # EM never decreases the log-likelihood
        assert np.all(np.diff(history) > -1e-6 * abs(history[-1]))
    again = build_task_models("mnist", "06", "quick", seed=0, device="cpu", progress=False)
    for variant in ("fitted", "symmetric", "asymmetric"):
        for first, second in zip(models.pair(variant), again.pair(variant), strict=True):
            assert torch.equal(first.mu, second.mu) and torch.equal(first.log_D, second.log_D)
    folder = export_dataset(
        models, tmp_path / "out", "asymmetric", n_train_per_class=20, n_test_per_class=10, n_attack=0
    )
    data = np.load(folder / "data.npz")
    assert data["x_train"].shape == (40, 784) and data["x_test"].shape == (20, 784)
    assert tuple(data["image_shape"]) == (1, 28, 28)
    reloaded = load_task_models(folder / "models", device="cpu")
    assert torch.equal(reloaded.asymmetric[1].mu, models.asymmetric[1].mu)
    with pytest.raises(ValueError, match="valid variants"):
        models.pair("skewed")


def test_the_reading_and_the_floor_are_built_cached_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    options = {"profile": "quick", "seed": 0, "device": "cpu", "progress": False}
    fitted = build_task_models("mnist", "0_vs_6", **options)
    symmetric = build_task_models("mnist", "0_vs_6", asymmetric_base="symmetric", **options)
    floor = build_task_models("mnist", "0_vs_6", min_variance=1e-6, **options)
    assert len(list((tmp_path / "cache" / "models").iterdir())) == 3  # one cache folder each
    assert (fitted.asymmetric_base, symmetric.asymmetric_base) == ("fitted", "symmetric")
    assert (
        (fitted.min_variance, floor.min_variance)
        == (get_profile("quick").mfa.min_variance, 1e-6)
        == (
            1e-4,
            1e-6,
        )
    )
    for a, b in zip(fitted.fitted, symmetric.fitted, strict=True):  # the same fit, another base
        assert torch.equal(a.log_D, b.log_D) and torch.equal(a.mu, b.mu)
    for mfa, sym in zip(fitted.asymmetric, symmetric.asymmetric, strict=True):
        assert torch.allclose(sym.log_D[:-1].exp(), torch.full_like(sym.log_D[:-1], 1e-4))
        assert mfa.log_D[:-1].exp().max() > 1e-3  # the learned noise: far above 0.01^2 on the digit strokes
        assert torch.equal(mfa.mu[-1], sym.mu[-1])
    # MNIST's background pixels are 0 in every training digit: their noise variance sits at the floor
    for mfa, thin in zip(fitted.fitted, floor.fitted, strict=True):
        assert mfa.log_D.exp().min().item() == pytest.approx(1e-4)
        assert thin.log_D.exp().min().item() == pytest.approx(1e-6)
    assert fitted.fit_seconds > 0
    reloaded = build_task_models("mnist", "0_vs_6", asymmetric_base="symmetric", **options)
    assert (reloaded.asymmetric_base, reloaded.min_variance, reloaded.fit_seconds) == (
        "symmetric",
        1e-4,
        symmetric.fit_seconds,
    )
    assert torch.equal(reloaded.asymmetric[0].log_D, symmetric.asymmetric[0].log_D)
    # Clipping to [0, 1] moves samples off the thin (sigma = 0.01) components by many of their standard
    # deviations: on the symmetric base the broad outliers of either class then explain a fifth of the
    # samples better than their own components. Unclipped, the classifier is exact on every variant.
    fitted_accuracy = bayes_accuracy_table(fitted, 300, seed=100).set_index("variant")
    symmetric_accuracy = bayes_accuracy_table(symmetric, 300, seed=100).set_index("variant")
    assert (fitted_accuracy["Bayes accuracy"] > 0.99).all()
    assert (symmetric_accuracy["Bayes accuracy, unclipped samples"] > 0.99).all()
    assert symmetric_accuracy.loc["symmetric", "Bayes accuracy"] > 0.99
    assert 0.6 < symmetric_accuracy.loc["asymmetric", "Bayes accuracy"] < 0.9
    assert symmetric_accuracy.loc["asymmetric", "asymmetric base"] == "symmetric"


def test_cache_key_follows_the_data_not_the_spelling_of_its_folder(tmp_path, monkeypatch):
    import shutil

    from nbhelpers.science.data import load_task, source_label
    from nbhelpers.science.data.files import SAMPLE_DIR

    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    shutil.copy(SAMPLE_DIR / "mnist.npz", tmp_path / "data" / "mnist.npz")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)

    def key(data_dir: object, seed: int = 0) -> str:
        return task_models._cache_key(
            load_task("mnist", "0_vs_6", data_dir=data_dir), "quick", seed, 2.5, 0.05
        )

    relative = key("data")
    assert key(tmp_path / "data") == relative and key("other/../data") == relative
    assert key("data", seed=1) != relative

    # relabelled data, or one image changed anywhere, is other data: the fits must not be reused
    import dataclasses

    task = load_task("mnist", "0_vs_6", data_dir="data")
    base = task_models._cache_key(task, "quick", 0, 2.5, 0.05)
    assert base == relative
    flipped = dataclasses.replace(task, y_train=1 - task.y_train)
    assert task_models._cache_key(flipped, "quick", 0, 2.5, 0.05) != base
    edited = task.x_train.copy()
    edited[1, 100] = 1.0 - edited[1, 100]
    assert task_models._cache_key(dataclasses.replace(task, x_train=edited), "quick", 0, 2.5, 0.05) != base
    assert task_models._cache_key(task, "quick", 0, 2.5, 0.05, "fitted", 1e-4) == base  # the defaults
    assert task_models._cache_key(task, "quick", 0, 2.5, 0.05, "symmetric", 1e-4) != base
    assert task_models._cache_key(task, "quick", 0, 2.5, 0.05, "fitted", 1e-6) != base
    assert (
        source_label(str(tmp_path / "data")) == "data folder data"
        and source_label("sample") == "bundled sample"
    )


@pytest.fixture
def no_fit(monkeypatch, tmp_path):
    """The sample data and a fresh cache; a fit fails the test (the checks must come before it)."""
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)

    def fit(*args, **kwargs):
        raise AssertionError("the MFAs were fitted before the bad input was found")

    monkeypatch.setattr(task_models, "fit_class_models", fit)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outlier_step": math.inf}, r"outlier_step must be a finite number > 0 .*got inf"),
        ({"outlier_step": math.nan}, r"outlier_step must be a finite number > 0 .*got nan"),
        ({"outlier_step": 0.0}, r"outlier_step must be a finite number > 0"),
        ({"outlier_weight": 1.5}, r"outlier_weight must be a number strictly between 0 and 1 .*got 1.5"),
        ({"outlier_weight": 0}, r"outlier_weight must be a number strictly between 0 and 1"),
        ({"seed": -1}, r"seed must be an integer >= 0 \(a random seed\), got -1"),
        ({"asymmetric_base": "thin"}, r"asymmetric_base must be 'fitted' or 'symmetric' .*got 'thin'"),
        ({"min_variance": 0.0}, r"min_variance must be a number in \(0, 1\)"),
    ],
)
def test_bad_arguments_are_named_before_fitting(no_fit, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_task_models("mnist", "0_vs_6", "quick", device="cpu", progress=False, **kwargs)


def test_a_cache_folder_that_is_a_file_is_refused_before_fitting(no_fit, tmp_path, monkeypatch):
    (tmp_path / "cache_file").write_text("not a folder")
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache_file"))
    with pytest.raises(NotADirectoryError) as err:
        build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    message = str(err.value)
    assert f"{tmp_path / 'cache_file'}, on its path, is a file" in message
    assert "NBHELPERS_CACHE_DIR" in message and "mnist/0_vs_6" in message


def test_an_unwritable_cache_folder_is_refused_before_fitting(no_fit, tmp_path, monkeypatch):
    import tempfile

    from nbhelpers.core import io

    cache = tmp_path / "cache"
    cache.mkdir()
    real = tempfile.TemporaryFile

    def read_only(*args, dir=None, **kwargs):  # chmod does not stop root, who runs some test machines
        if dir is not None and Path(dir) == cache:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(io.tempfile, "TemporaryFile", read_only)
    with pytest.raises(
        PermissionError, match=rf"{cache} \(where .* would be created\) is not writable"
    ) as err:
        build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    assert "NBHELPERS_CACHE_DIR" in str(err.value)


def test_a_read_only_cache_still_serves_the_fits_it_holds(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    first = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    monkeypatch.setattr(
        task_models, "check_writable_folder", lambda folder: pytest.fail("checked a cache hit")
    )
    again = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    assert torch.equal(first.fitted[0].mu, again.fitted[0].mu)
