"""scripts/fidelity_study.py: chapter 3's evaluation under one reading of appendix B.2, kept as one record."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def fidelity_study():
    return load_script("fidelity_study")


def test_records_the_setting_the_numbers_and_the_outlier_route(fidelity_study, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the sample shipped with the package
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    args = ["--dataset", "mnist", "--attribute", "06", "--profile", "quick", "--device", "cpu"]
    args += ["--attacks", "gradient", "--n-attack", "12", "--out-dir", str(tmp_path / "out")]
    assert fidelity_study.main([*args, "--asymmetric-base", "symmetric"]) == 0
    assert fidelity_study.main([*args, "--variants", "asymmetric"]) == 0
    name = "mnist__0_vs_6__{}-base__floor0.0001__quick{}__gradient__n12.json"
    symmetric = json.loads((tmp_path / "out" / name.format("symmetric", "")).read_text())
    fitted = json.loads((tmp_path / "out" / name.format("fitted", "__asymmetric")).read_text())
    assert symmetric["command"] == (
        "python scripts/fidelity_study.py --dataset mnist --attribute 0_vs_6 --asymmetric-base symmetric "
        "--min-variance 0.0001 --variants symmetric asymmetric --attacks gradient --n-attack 12 "
        "--profile quick --seed 0 --device cpu"
    )
    assert symmetric["setting"] == {"asymmetric_base": "symmetric", "min_variance": 1e-4}
    assert fitted["setting"] == {"asymmetric_base": "fitted", "min_variance": 1e-4}
    assert sorted(fitted["variants"]) == ["asymmetric"]
    assert sorted(symmetric["variants"]) == ["asymmetric", "symmetric"]
    # The same fit under both readings: the sample's 300 digits per class, 4 components, the floor of 0.01 on
    # the background pixels (the 1% and 5% quantiles) and broader noise on the strokes.
    assert symmetric["mfa"] == fitted["mfa"]
    assert symmetric["mfa"]["components"] == [4, 4] and symmetric["mfa"]["n_train_images"] == [300, 300]
    for noise in symmetric["mfa"]["noise_std"].values():
        assert noise["q01"] == pytest.approx(0.01) and noise["min"] == pytest.approx(0.01)
        assert 0.3 < noise["share_at_floor"] < 0.7 and noise["q50"] >= 0.01
    for record in (symmetric, fitted):
        asym = record["variants"]["asymmetric"]
        assert asym["n"] == 12 and asym["components"] == [5, 5]
        outliers = asym["outliers"]
        assert outliers["regular"]["n"] + outliers["drawn_from_outlier"]["n"] == 12
        assert outliers["n_drawn_from_outlier"] == outliers["drawn_from_outlier"]["n"]
        assert outliers["all"]["n_evaluated"] == asym["n_evaluated"] > 0
        assert asym["attacks"]["gradient"]["best_on"] == asym["n_evaluated"]
        assert asym["attacks"]["gradient"]["mean_l2"] == pytest.approx(asym["mean_l2"])
        assert record["seconds"]["total"] >= record["seconds"]["asymmetric"] > 0
        assert record["code_version"].startswith("0.")
        assert len(record["load_average"]["start"]) == len(record["load_average"]["end"]) == 3
    # Lemma 1's route: on the symmetric base the other class's outlier holds every adversarial of a sample of
    # the regular components, at a fraction of the symmetric variant's distance.
    sym_route = symmetric["variants"]["asymmetric"]
    assert sym_route["outliers"]["regular"]["outlier_share"] == 1.0
    assert sym_route["mean_l2"] < 0.25 * symmetric["variants"]["symmetric"]["mean_l2"]
    assert symmetric["variants"]["symmetric"]["certified_radius_mean"] > 0
    assert "wrote" in capsys.readouterr().out


def test_bad_input_is_named(fidelity_study, capsys):
    for args, message in [
        (["--asymmetric-base", "thin"], "invalid choice: 'thin'"),
        (["--min-variance", "0"], "--min-variance must be a number in (0, 1)"),
        (["--min-variance", "tiny"], "--min-variance must be a number in (0, 1)"),
        (["--variants", "fitted"], "invalid choice: 'fitted'"),
        (["--attacks", "pgd"], "unknown attack(s) pgd"),
        (["--attacks", "cw", "cw"], "--attacks repeats a name"),
        (["--n-attack", "0"], "--n-attack must be at least 1"),
        (["--components", "10"], "--components sets the MNIST component count"),
        (["--attribute", "Smilin"], "did you mean 'Smiling'"),
        (["--profile", "fast"], "unknown profile 'fast'"),
    ]:
        with pytest.raises(SystemExit):
            fidelity_study.main(args)
        assert message in capsys.readouterr().err
