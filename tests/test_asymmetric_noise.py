"""scripts/asymmetric_noise.py: the asymmetric pair rebuilt with thinner noise, attacked, recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_script


@pytest.fixture(scope="module")
def asymmetric_noise():
    return load_script("asymmetric_noise")


def test_records_one_row_per_sigma(asymmetric_noise, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)  # the sample shipped with the package
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "noise.json"
    args = ["--dataset", "mnist", "--attribute", "06", "--sigmas", "fitted", "0.001", "--n-attack", "6"]
    assert asymmetric_noise.main([*args, "--profile", "quick", "--device", "cpu", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"] == (
        "python scripts/asymmetric_noise.py --dataset mnist --attribute 0_vs_6 --sigmas fitted 0.001 "
        "--n-attack 6 --profile quick --seed 0 --device cpu --out noise.json"
    )
    assert (record["dataset"], record["attribute"], record["source"]) == ("mnist", "0_vs_6", "bundled sample")
    fitted, thin = record["rows"]
    assert (fitted["noise"], thin["noise"]) == ("fitted", "set") and thin["noise std"] == 0.001
    assert 0 < fitted["noise std"] < 0.5  # the learned noise, below the outliers' 0.5
    assert fitted["evaluated"] + thin["evaluated"] > 6 and 0 < thin["mean L2"] < fitted["mean L2"]
    assert "mean L2" in capsys.readouterr().out


def test_bad_input_is_named(asymmetric_noise, capsys):
    for args, message in [
        (["--sigmas", "thin"], "'thin' is neither 'fitted' nor a positive noise std"),
        (["--sigmas", "0"], "'0' is neither 'fitted' nor a positive noise std"),
        (["--n-attack", "0"], "--n-attack must be at least 1"),
        (["--attribute", "Smilin"], "did you mean 'Smiling'"),
    ]:
        with pytest.raises(SystemExit):
            asymmetric_noise.main(args)
        assert message in capsys.readouterr().err
