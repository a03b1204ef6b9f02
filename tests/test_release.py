"""Released datasets: exported with their models and a card, read back verified, damage refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nbhelpers
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.science.release import CARD_FILE, export_dataset, load_dataset


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    patch = pytest.MonkeyPatch()
    patch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    patch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the bundled sample
    models = build_task_models("mnist", "0_vs_6", "quick", seed=0, device="cpu", progress=False)
    out = tmp_path_factory.mktemp("out")
    folder = export_dataset(models, out, "asymmetric", n_train_per_class=30, n_test_per_class=12, n_attack=6)
    yield models, folder
    patch.undo()


def test_the_export_writes_samples_models_and_a_card(exported):
    models, folder = exported
    assert folder.name == "mnist_0_vs_6_asymmetric"
    card = json.loads((folder / CARD_FILE).read_text())
    assert card["dataset"] == "mnist" and card["variant"] == "asymmetric" and card["samples"]["test"] == 24
    assert [m["components"] for m in card["mfa"]] == [mfa.K for mfa in models.asymmetric]
    assert card["mfa"][0]["fit_log_likelihood_per_image"] == pytest.approx(models.history[0][-1])
    assert "outlier" in card["construction"] and card["parameters"]["outlier_step"] == models.outlier_step
    assert card["construction"].startswith("the fitted class MFAs plus one outlier component per class")
    assert (card["parameters"]["asymmetric_base"], card["parameters"]["min_variance"]) == ("fitted", 1e-4)
    with np.load(folder / "data.npz") as data:
        assert (data["asymmetric_base"].item(), data["min_variance"].item()) == ("fitted", 1e-4)
    bayes = card["bayes_optimal"]
    assert bayes["n_attacked"] == 6 and 0 < bayes["n_evaluated"] <= 6 and bayes["mean_l2"] > 0
    assert "CC BY-SA 3.0" in card["licence"] and card["code_version"].startswith(nbhelpers.__version__)
    listed = set(card["checksums"])
    assert {"data.npz", "models/meta.json", "models/asymmetric_class1.safetensors"} <= listed
    readme = (folder / "README.md").read_text()
    assert "# mnist / 0_vs_6, asymmetric dataset" in readme and card["checksums"]["data.npz"] in readme
    assert "Licence" in readme and "nbhelpers.load_dataset" in readme


def test_load_dataset_gives_back_the_samples_the_models_and_the_classifier(exported):
    models, folder = exported
    released = nbhelpers.load_dataset(folder, device="cpu")
    data = np.load(folder / "data.npz")
    np.testing.assert_array_equal(released.data.x_test, data["x_test"])
    assert released.data.variant == "asymmetric" and released.data.image_shape == (1, 28, 28)
    assert torch.equal(released.models.asymmetric[1].mu.cpu(), models.asymmetric[1].mu.cpu())
    with torch.no_grad():
        predicted = released.classifier(torch.as_tensor(released.data.x_test)).argmax(1).numpy()
    accuracy = float((predicted == released.data.y_test).mean())
    assert accuracy == pytest.approx(released.card["bayes_optimal"]["clean_accuracy"])


def test_a_damaged_or_incomplete_export_is_refused(exported, tmp_path):
    import shutil

    _, folder = exported
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    path = copy / "models" / "symmetric_class0.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="symmetric_class0.safetensors does not match its checksum"):
        load_dataset(copy, device="cpu")
    path.unlink()
    with pytest.raises(ValueError, match="is missing from the exported dataset"):
        load_dataset(copy, device="cpu")
    (copy / CARD_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="is damaged"):
        load_dataset(copy, device="cpu")
    (copy / CARD_FILE).unlink()
    with pytest.raises(ValueError, match="is not an exported dataset"):
        load_dataset(copy, device="cpu")


def test_export_arguments_are_checked(exported):
    models, folder = exported
    with pytest.raises(ValueError, match="n_train_per_class"):
        export_dataset(models, folder.parent, "symmetric", n_train_per_class=0, n_test_per_class=5)
    with pytest.raises(ValueError, match="valid variants"):
        export_dataset(models, folder.parent, "skewed", n_train_per_class=5, n_test_per_class=5)
    with pytest.raises(ValueError, match="n_attack"):
        export_dataset(models, folder.parent, n_train_per_class=5, n_test_per_class=5, n_attack=-1)
