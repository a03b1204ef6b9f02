"""scripts/table3_prior.py: chapter 5's Table 3 on a smaller budget, per class and with the real prior."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nbhelpers.chapters import ch5_real, learned
from nbhelpers.chapters.task_models import build_task_models
from nbhelpers.runs.checkpoints import Checkpoints
from nbhelpers.runs.manifest import cpu_capability, cpu_name
from tests.conftest import load_script


@pytest.fixture(scope="module")
def table3_prior():
    return load_script("table3_prior")


def test_writes_table3_per_class_and_with_the_prior(table3_prior, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the sample shipped with the package
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "table3.json"
    args = ["--attribute", "Bangs", "--profile", "quick", "--epochs", "1", "--device", "cpu"]
    args += ["--images-per-component", "50", "--out", str(out)]
    assert table3_prior.main(args) == 0
    record = json.loads(out.read_text())
    task = ch5_real.real_task("Bangs", "quick")
    assert record["n_real_train"] == len(task.y_train)
    assert record["real_epochs"] == ch5_real.matched_epochs(len(task.y_train), "quick", symmetric_epochs=1)
    prior = float(np.mean(task.y_train == 1))
    assert record["real_train_prior"] == pytest.approx(prior) and 0 < prior < 0.5  # Bangs is the rarer class
    table3 = record["table3"]
    shares = [np.mean(task.y_test == label) for label in (0, 1)]
    for who in ("real_train", "symmetric_train"):
        per_class = [table3[f"{who}_class{label}"] for label in (0, 1)]
        assert np.dot(per_class, shares) == pytest.approx(table3[who])
    assert 0 <= table3["symmetric_train_prior_corrected"] <= 1
    assert record["command"] == (
        "python scripts/table3_prior.py --attribute Bangs --epochs 1 --profile quick --seed 0 --device cpu "
        "--images-per-component 50 --out table3.json"
    )
    # quick fits at most 300 faces per class: 300 / 50 = 6 components (the profile's 100 per component: 3),
    # and the 54 faces with bangs get the profile's floor of 2
    assert record["images_per_component"] == 50 and record["components"] == [6, 2]
    printed = capsys.readouterr().out
    # Table 3's row as chapter 5 shows it, with the drop left once the real prior is used, and per class
    assert "drop, real prior" in printed and "CelebA / Bangs" in printed and "Bangs %" in printed


def test_bad_input_is_named(table3_prior, tmp_path, capsys):
    with pytest.raises(SystemExit):
        table3_prior.main(["--epochs", "0"])
    for option in ("--images-per-component", "--max-images-per-class", "--latent-dim"):
        with pytest.raises(SystemExit):
            table3_prior.main([option, "0"])
        assert f"{option} must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table3_prior.main(["--bayes-only", "--symmetric-cnn-seeds", "1"])
    assert "give one of them" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table3_prior.main(["--symmetric-cnn-seeds", "1", "2", "1"])
    assert "--symmetric-cnn-seeds repeats a seed: [1, 2, 1]" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid attributes are Male, Smiling"):
        table3_prior.main(["--attribute", "Blond", "--profile", "quick"])


def test_bayes_only_trains_no_cnn(table3_prior, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    # every CNN, the script's and chapter 5's, trains through learned.fit_cnn's fit_classifier: calling it
    # would fail the test
    monkeypatch.setattr(learned, "fit_classifier", None)
    out = tmp_path / "bayes.json"
    args = ["--attribute", "Smiling", "--profile", "quick", "--bayes-only", "--device", "cpu"]
    args += ["--max-images-per-class", "120", "--latent-dim", "3", "--out", str(out)]
    assert table3_prior.main(args) == 0
    record = json.loads(out.read_text())
    assert record["n_mfa_train"] == [120, 120] and record["latent_dim"] == 3
    assert record["components"] == [2, 2]  # 120 faces at quick's 100 per component: the floor of 2
    # the derived profile is registered under its own name, so its MFA pair has its own cache entry
    models = build_task_models("celeba", "Smiling", "quick-120-per-class-latent3", 0, "cpu")
    assert [mfa.l for mfa in models.fitted] == [3, 3]
    task = ch5_real.real_task("Smiling", "quick")
    assert record["table3"] == pytest.approx(ch5_real.bayes_real_accuracy(models, task))
    assert "real_epochs" not in record
    assert record["cpu"] == cpu_name() and record["cpu_capability"] == cpu_capability()
    variants = [f"bayes_{variant}" for variant in ("fitted", "symmetric")]
    assert set(record["table3"]) == {*variants, *(f"{name}_prior_corrected" for name in variants)}
    assert record["command"] == (
        "python scripts/table3_prior.py --attribute Smiling --bayes-only --profile quick --seed 0 "
        "--device cpu --max-images-per-class 120 --latent-dim 3 --out bayes.json"
    )
    assert f"bayes_symmetric: {100 * record['table3']['bayes_symmetric']:.1f}%" in capsys.readouterr().out


def test_symmetric_cnn_seeds_train_only_symmetric_cnns(table3_prior, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "seeds.json"
    args = ["--attribute", "Smiling", "--profile", "quick", "--epochs", "1", "--device", "cpu"]
    args += ["--symmetric-cnn-seeds", "0", "5", "--out", str(out)]
    assert table3_prior.main(args) == 0
    record = json.loads(out.read_text())
    seeds = record["symmetric_cnn_seeds"]
    assert list(seeds) == ["0", "5"] and "real_epochs" not in record and "table3" not in record
    # Seed 0 (that of the data, --seed 0) is the symmetric CNN that chapter 5's Table 3 trains.
    models = build_task_models("celeba", "Smiling", "quick", 0, "cpu")
    task = ch5_real.real_task("Smiling", "quick")
    real_cnn = learned.train_cnn(task.x_train, task.y_train, task.image_shape, epochs=1, device="cpu")
    table3 = ch5_real.symmetric_vs_real(models, task, real_cnn, profile="quick", device="cpu", epochs=1)
    keys = ("symmetric_train", "symmetric_train_class0", "symmetric_train_class1")
    assert seeds["0"] == pytest.approx({key: table3[key] for key in keys})
    accuracies = [entry["symmetric_train"] for entry in seeds.values()]
    spread = record["symmetric_train_over_seeds"]
    assert spread["mean"] == pytest.approx(np.mean(accuracies))
    assert spread["std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert (spread["min"], spread["max"]) == (min(accuracies), max(accuracies))
    assert "--symmetric-cnn-seeds 0 5" in record["command"]
    losses = record["training_loss_per_epoch"]
    assert list(losses) == ["0", "5"] and all(len(each) == 1 and 0 < each[0] < 1 for each in losses.values())
    printed = capsys.readouterr().out
    assert f"CNN seed 5: symmetric_train {100 * seeds['5']['symmetric_train']:.1f}%" in printed


@pytest.mark.parametrize(
    "mode",
    [["--symmetric-cnn-seeds", "0", "3"], []],
    ids=["symmetric-cnn-seeds", "real-and-symmetric"],
)
def test_a_crashed_run_resumes_after_its_last_trained_cnn(table3_prior, tmp_path, monkeypatch, mode):
    # Each CNN is kept as soon as it is trained: the same command after a crash trains only the CNNs that
    # were missing, and once the record is written nothing is left in the checkpoints folder.
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NBHELPERS_CHECKPOINTS_DIR", str(tmp_path / "checkpoints"))
    out = tmp_path / "resumed.json"
    args = ["--attribute", "Smiling", "--profile", "quick", "--epochs", "1", "--device", "cpu", *mode]
    args += ["--out", str(out)]
    fit_classifier = learned.fit_classifier
    trained: list[tuple[int, int]] = []  # (seed, epochs) of each CNN training that started
    crash_at = 2  # the first run dies in its second CNN's training

    # Every CNN, the script's and chapter 5's symmetric one, trains through learned.fit_cnn, which calls
    # fit_classifier. (The step functions themselves stay the package's, so the checkpoints' keys do too.)
    def counting_fit_classifier(*args, seed, epochs, **options):
        trained.append((seed, epochs))
        if len(trained) == crash_at:
            raise RuntimeError("killed")
        return fit_classifier(*args, seed=seed, epochs=epochs, **options)

    monkeypatch.setattr(learned, "fit_classifier", counting_fit_classifier)
    with pytest.raises(RuntimeError, match="killed"):
        table3_prior.main(args)
    folder = tmp_path / "checkpoints" / "table3_prior__Smiling__quick__seed0__resumed"
    (kept,) = folder.glob("*.pt")  # the first CNN, and only it
    kept_seconds = Checkpoints.load(kept).seconds
    first, second = trained
    trained.clear()
    crash_at = 0
    assert table3_prior.main(args) == 0
    assert trained == [second]  # the first CNN came from its checkpoint
    record = json.loads(out.read_text())
    assert not folder.exists()
    if mode:
        assert first == (0, 1) and second == (3, 1)
        assert list(record["symmetric_cnn_seeds"]) == ["0", "3"]
        # the seconds of the resumed CNN are those of the run that trained it, not of loading it
        assert record["seconds"]["symmetric_cnn"]["0"] == kept_seconds
    else:
        real_epochs = record["real_epochs"]
        assert first == (0, real_epochs) and second == (0, 1)
        assert 0 <= record["table3"]["symmetric_train"] <= 1 and record["seconds"]["real_cnn"] == kept_seconds
