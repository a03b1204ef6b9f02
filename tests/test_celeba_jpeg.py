"""scripts/celeba_jpeg.py: a JPEG copy of celeba64.npz that decodes back to the loaders' format."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import ROOT, load_script

SAMPLE = ROOT / "nbhelpers" / "sample_data" / "celeba64.npz"


@pytest.fixture(scope="module")
def celeba_jpeg():
    return load_script("celeba_jpeg")


def test_pack_then_unpack_gives_the_faces_back_within_jpeg_error(celeba_jpeg, tmp_path):
    original = np.load(SAMPLE)
    images = original["images"]
    stats = celeba_jpeg.pack(SAMPLE, tmp_path / "copy.npz", quality=94)
    assert stats["bytes"] < images.nbytes / 2.5
    out = celeba_jpeg.unpack(tmp_path / "copy.npz", tmp_path / "data" / "celeba64.npz")
    decoded = np.load(out)
    assert sorted(decoded.files) == sorted(original.files)
    for name in original.files:
        if name != "images":
            np.testing.assert_array_equal(decoded[name], original[name])
    assert decoded["images"].dtype == np.uint8 and decoded["images"].shape == images.shape
    rms = float(np.sqrt(((decoded["images"].astype(np.float64) - images) ** 2).mean()))
    assert rms == pytest.approx(stats["rms"], rel=1e-9)
    assert 0.5 < rms < 3.0  # lossy, and about the 2.1/255 of the full set
    # a higher quality is closer to the original and larger
    finer = celeba_jpeg.pack(SAMPLE, tmp_path / "finer.npz", quality=99)
    assert finer["rms"] < rms / 2 and finer["bytes"] > stats["bytes"]


def test_the_decoded_copy_loads_like_the_original(celeba_jpeg, tmp_path):
    from nbhelpers.science.data import load_task

    celeba_jpeg.pack(SAMPLE, tmp_path / "copy.npz")
    celeba_jpeg.unpack(tmp_path / "copy.npz", tmp_path / "data" / "celeba64.npz")
    copy = load_task("celeba", "Male", data_dir=tmp_path / "data")
    original = load_task("celeba", "Male", data_dir=SAMPLE.parent)
    np.testing.assert_array_equal(copy.y_train, original.y_train)
    assert copy.x_train.shape == original.x_train.shape
    assert np.abs(copy.x_train - original.x_train).mean() < 2 / 255


def test_bad_input_names_the_problem(celeba_jpeg, tmp_path, capsys):
    with pytest.raises(ValueError, match="quality must be an integer in 1..100"):
        celeba_jpeg.pack(SAMPLE, tmp_path / "x.npz", quality=0)
    with pytest.raises(ValueError, match="not a file written by 'pack': it has no 'jpeg'"):
        celeba_jpeg.unpack(SAMPLE, tmp_path / "x.npz")
    np.savez(tmp_path / "digits.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a celeba64.npz: it has no 'images'"):
        celeba_jpeg.pack(tmp_path / "digits.npz", tmp_path / "x.npz")
    assert celeba_jpeg.main(["pack", str(tmp_path / "missing.npz"), str(tmp_path / "x.npz")]) == 2
    assert "missing.npz does not exist" in capsys.readouterr().err
