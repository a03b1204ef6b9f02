"""scripts/svm_attacks.py: chapter 4's attacks each alone on an SVM, beside their best-of, as one record."""

from __future__ import annotations

import json

import pytest

from nbhelpers.chapters import ch4_learned
from tests.conftest import load_script


@pytest.fixture(scope="module")
def svm_attacks():
    return load_script("svm_attacks")


def test_records_each_attack_alone_and_the_best_of(svm_attacks, tmp_path, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the sample shipped with the package
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--dataset", "mnist", "--attribute", "06", "--profile", "quick", "--device", "cpu"]
    args += ["--n-attack", "12", "--cw-binary-search-steps", "3", "9", "--out-dir", str(tmp_path / "out")]
    assert svm_attacks.main(args) == 0
    path = tmp_path / "out" / "mnist__0_vs_6__rbf_svm__attacks__quick__n12.json"
    record = json.loads(path.read_text())
    assert record["command"] == (
        "python scripts/svm_attacks.py --dataset mnist --attribute 0_vs_6 --model rbf_svm "
        "--cw-binary-search-steps 9 --n-attack 12 --profile quick --seed 0 --device cpu"
    )
    assert record["budget"]["cw_binary_search_steps"] == 3 and record["budget"]["cw_steps"] == 100
    assert sorted(record["attacks"]) == ["cw", "cw_9_searches", "ddn", "fmn"]  # the paper's 3 not twice
    # chapter 4's SVM: the quick profile's 1,000 training samples, the largest gamma within 2 points
    assert record["n_train"] == 1000 and record["gamma"] == max(
        row["gamma"] for row in record["gamma_search"] if row["selected"]
    )
    assert record["n_support"] > 0 and record["test_accuracy"] > 0.95
    best, attacks = record["best_of"], record["attacks"]
    assert best["n"] == 12 and best["clean_accuracy"] == 1.0
    # The paper's CW-L2 never lets its weight past 1 and stalls on the SVM; nine steps of its binary search
    # (weights up to 1e6) flip every sample, as do the best of the three.
    assert attacks["cw"]["success_rate"] == 0.0 and attacks["cw"]["adversarial_accuracy"] == 1.0
    assert attacks["cw"]["mean_l2"] is None
    assert attacks["cw_9_searches"]["success_rate"] == 1.0 and attacks["cw_9_searches"]["mean_l2"] > 0.5
    assert best["success_rate"] == 1.0 and best["adversarial_accuracy"] == 0.0
    for name in ("cw", "fmn", "ddn"):
        assert best["success_rate"] >= attacks[name]["success_rate"]
        assert attacks[name]["n_evaluated"] <= best["n_evaluated"]
    assert sum(attacks[name]["best_on"] for name in ("cw", "fmn", "ddn")) == best["n_evaluated"]
    assert best["mean_l2"] <= attacks["ddn"]["mean_l2"] + 1e-9  # ddn flips all: the best is no larger

    table = ch4_learned.svm_attacks_table(tmp_path / "out")
    assert list(table["attack"]) == [
        "CW-L2 alone, the paper's settings",
        "CW-L2 alone, 9 binary-search steps (paper: 3)",
        "FMN alone",
        "DDN alone",
        "best of CW-L2, FMN, DDN (chapter 4)",
    ]
    assert set(table["task"]) == {"MNIST / 0 vs 6"} and set(table["model"]) == {"RBF SVM"}
    assert table["paper: adversarial accuracy"].tolist() == [0.04] * 5  # Table 1, MNIST 0 vs 6
    assert table["adversarial accuracy"].iloc[0] == 1.0 and table["adversarial accuracy"].iloc[-1] == 0.0


def test_empty_folder_gives_an_empty_table(tmp_path):
    assert ch4_learned.svm_attacks_table(tmp_path).empty


def test_bad_arguments_exit_with_a_message(svm_attacks, capsys):
    with pytest.raises(SystemExit) as exit_info:
        svm_attacks.main(["--n-attack", "0"])
    assert exit_info.value.code == 2
    assert "--n-attack: expected a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        svm_attacks.main(["--model", "cnn"])
    assert "invalid choice: 'cnn'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        svm_attacks.main(["--dataset", "mnist", "--attribute", "0_vs_0"])
    assert "0_vs_0" in capsys.readouterr().err
