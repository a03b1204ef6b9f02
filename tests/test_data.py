"""nbhelpers.science.data: the 15 tasks on the sample and the full data, the official layouts, bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nbhelpers.science.data import (
    CELEBA_ATTRIBUTES,
    MNIST_PAIRS,
    TASKS,
    canonical_task,
    load_task,
    prepare_celeba,
    to_hwc,
)
from nbhelpers.science.data import files as data
from nbhelpers.science.data.sample import make_sample

FULL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_full_data = pytest.mark.skipif(
    not (FULL_DATA / "mnist.npz").is_file() or not (FULL_DATA / "celeba64.npz").is_file(),
    reason="full data folder ../shared/data (mnist.npz, celeba64.npz) is absent",
)


@pytest.fixture(autouse=True)
def no_data_dir_env(monkeypatch, tmp_path):
    """Tests choose their data explicitly; a user's NBHELPERS_DATA_DIR must not leak in."""
    monkeypatch.delenv("NBHELPERS_DATA_DIR", raising=False)
    monkeypatch.setenv("NBHELPERS_CACHE_DIR", str(tmp_path / "cache"))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def sample_file(name: str) -> dict[str, np.ndarray]:
    return read_npz(data.SAMPLE_DIR / name)


# ---------------------------------------------------------------- names and aliases


def test_fifteen_tasks():
    assert len(TASKS) == 15 and len(set(TASKS)) == 15
    assert [a for d, a in TASKS if d == "celeba"] == list(CELEBA_ATTRIBUTES)
    assert [a for d, a in TASKS if d == "mnist"] == list(MNIST_PAIRS) == ["0_vs_6", "2_vs_7", "4_vs_5"]
    for task in TASKS:
        assert canonical_task(*task) == task


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (("MNIST", "06"), ("mnist", "0_vs_6")),
        (("mnist", "0v6"), ("mnist", "0_vs_6")),
        (("Mnist", "2 vs 7"), ("mnist", "2_vs_7")),
        (("mnist", "4-5"), ("mnist", "4_vs_5")),
        (("mnist", "4vs5"), ("mnist", "4_vs_5")),
        (("CelebA", "black hair"), ("celeba", "Black_Hair")),
        ((" celeba ", "mouth-slightly-open"), ("celeba", "Mouth_Slightly_Open")),
        (("celeba", "SMILING"), ("celeba", "Smiling")),
    ],
)
def test_aliases(given, expected):
    assert canonical_task(*given) == expected


@pytest.mark.parametrize("dataset", ["cifar10", "", None, "celeb_a"])
def test_unknown_dataset_lists_valid_ones(dataset):
    with pytest.raises(ValueError, match="valid datasets are 'celeba', 'mnist'"):
        canonical_task(dataset, "Smiling")


@pytest.mark.parametrize("attribute", ["Blond_Hair", "Smile", "", "0_vs_6"])
def test_unknown_celeba_attribute_lists_valid_ones(attribute):
    with pytest.raises(ValueError) as err:
        load_task("celeba", attribute)
    for name in CELEBA_ATTRIBUTES:
        assert name in str(err.value)


@pytest.mark.parametrize("attribute", ["1_vs_7", "0_vs_6_vs_2", "Smiling", "06x", "zero_vs_six"])
def test_unknown_mnist_pair_lists_valid_ones(attribute):
    with pytest.raises(ValueError, match="valid MNIST pairs are 0_vs_6, 2_vs_7, 4_vs_5"):
        canonical_task("mnist", attribute)


@pytest.mark.parametrize(
    ("typo", "meant"), [("Smilin", "Smiling"), ("eyeglass", "Eyeglasses"), ("No_Beards", "No_Beard")]
)
def test_a_misspelt_celeba_attribute_gets_a_suggestion(typo, meant):
    with pytest.raises(
        ValueError, match=f"unknown CelebA attribute '{typo}' \\(did you mean '{meant}'\\?\\)"
    ):
        canonical_task("celeba", typo)


def test_reversed_mnist_pair_suggests_the_right_order():
    with pytest.raises(ValueError, match="did you mean '0_vs_6'"):
        canonical_task("mnist", "6_vs_0")


# ---------------------------------------------------------------- the bundled sample


def test_sample_files_match_readme_checksums():
    readme = (data.SAMPLE_DIR / "README.md").read_text()
    for name in ("mnist.npz", "celeba64.npz"):
        digest = hashlib.sha256((data.SAMPLE_DIR / name).read_bytes()).hexdigest()
        assert re.search(rf"`{re.escape(name)}`.*`{digest}`", readme), f"README sha256 of {name} is stale"
    assert sum((data.SAMPLE_DIR / n).stat().st_size for n in ("mnist.npz", "celeba64.npz")) <= 6_000_000


def test_sample_celeba_is_stratified():
    celeba = sample_file("celeba64.npz")
    names = list(celeba["attr_names"])
    assert len(names) == 40 and celeba["images"].dtype == np.uint8
    for split, rows in (("train", celeba["partition"] <= 1), ("test", celeba["partition"] == 2)):
        n = int(rows.sum())
        for attribute in CELEBA_ATTRIBUTES:
            positives = int((celeba["attrs"][rows, names.index(attribute)] == 1).sum())
            assert min(positives, n - positives) >= 0.15 * n, (split, attribute, positives, n)


@pytest.mark.parametrize(("dataset", "attribute"), TASKS)
def test_every_task_loads_from_the_sample(dataset, attribute):
    task = load_task(dataset, attribute)
    assert task.source == "sample"
    assert task.dataset == dataset and task.attribute == attribute
    d = int(np.prod(task.image_shape))
    for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape == (y.size, d) and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
        assert set(np.unique(y)) == {0, 1}
    balance = task.class_balance()
    for split, y in (("train", task.y_train), ("test", task.y_test)):
        assert balance[split]["n_1"] == int(y.sum()) and balance[split]["n_0"] == int((y == 0).sum())
        assert balance[split]["positive_fraction"] == pytest.approx(y.mean())


def test_mnist_pair_matches_sample_pixels_and_labels():
    task = load_task("mnist", "2v7")
    raw = sample_file("mnist.npz")
    assert task.image_shape == (1, 28, 28) and task.class_names == ("2", "7")
    for split in ("train", "test"):
        keep = np.isin(raw[f"y_{split}"], [2, 7])
        x, y = getattr(task, f"x_{split}"), getattr(task, f"y_{split}")
        np.testing.assert_array_equal(y, (raw[f"y_{split}"][keep] == 7).astype(np.int64))
        np.testing.assert_array_equal(
            np.round(x * 255).astype(np.uint8), raw[f"x_{split}"][keep].reshape(-1, 784)
        )
    assert task.class_balance()["train"] == {"n": 1000, "n_0": 500, "n_1": 500, "positive_fraction": 0.5}


def test_celeba_uses_official_partition_and_chw_order():
    task = load_task("celeba", "Eyeglasses")
    raw = sample_file("celeba64.npz")
    column = list(raw["attr_names"]).index("Eyeglasses")
    assert task.image_shape == (3, 64, 64) and task.class_names == ("not Eyeglasses", "Eyeglasses")
    for split, rows in (("train", np.isin(raw["partition"], (0, 1))), ("test", raw["partition"] == 2)):
        x, y = getattr(task, f"x_{split}"), getattr(task, f"y_{split}")
        np.testing.assert_array_equal(y, (raw["attrs"][rows, column] == 1).astype(np.int64))
        # to_hwc undoes the (C, H, W) flattening: back to the stored [n, 64, 64, 3] images.
        np.testing.assert_array_equal(
            np.round(to_hwc(x, task.image_shape) * 255).astype(np.uint8), raw["images"][rows]
        )
        # The first 4096 features are the red channel.
        np.testing.assert_allclose(
            x[:, :4096], raw["images"][rows][..., 0].reshape(-1, 4096) / 255.0, atol=1e-7
        )


# ---------------------------------------------------------------- subsampling


def test_max_per_class_caps_each_class_of_each_split():
    full = load_task("celeba", "Smiling")
    capped = load_task("celeba", "Smiling", max_per_class=40, seed=3)
    for split in ("train", "test"):
        y_full = getattr(full, f"y_{split}")
        counts = np.bincount(getattr(capped, f"y_{split}"), minlength=2)
        np.testing.assert_array_equal(counts, np.minimum(np.bincount(y_full, minlength=2), 40))
        # Every kept row is a row of the full split, with its label, in file order.
        x_full, x_cap = getattr(full, f"x_{split}"), getattr(capped, f"x_{split}")
        rows = [int(np.flatnonzero((x_full == row).all(axis=1))[0]) for row in x_cap]
        assert rows == sorted(rows)
        np.testing.assert_array_equal(y_full[rows], getattr(capped, f"y_{split}"))


def test_subsampling_is_deterministic_by_seed():
    first = load_task("mnist", "0_vs_6", max_per_class=30, seed=5)
    again = load_task("mnist", "0_vs_6", max_per_class=30, seed=5)
    other = load_task("mnist", "0_vs_6", max_per_class=30, seed=6)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_train, other.x_train)
    # A larger cap keeps the smaller cap's images.
    larger = load_task("mnist", "0_vs_6", max_per_class=60, seed=5)
    larger_rows = {row.tobytes() for row in larger.x_train}
    assert all(row.tobytes() in larger_rows for row in first.x_train)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", True])
def test_bad_max_per_class(bad):
    with pytest.raises(ValueError, match="max_per_class must be a positive integer or None"):
        load_task("mnist", "0_vs_6", max_per_class=bad)


def test_to_hwc_round_trip_and_bad_shape():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3 * 4 * 5)
    hwc = to_hwc(x, (3, 4, 5))
    assert hwc.shape == (2, 4, 5, 3)
    assert hwc[1, 2, 3, 0] == x[1, 0 * 20 + 2 * 5 + 3] and hwc[1, 2, 3, 2] == x[1, 2 * 20 + 2 * 5 + 3]
    assert to_hwc(x[0], (3, 4, 5)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"expects \[n, 60\]"):
        to_hwc(x[:, :59], (3, 4, 5))


# ---------------------------------------------------------------- the full data (skipped when absent)


@needs_full_data
def test_full_mnist_official_split():
    task = load_task("mnist", "0_vs_6", data_dir=FULL_DATA)
    assert task.source == str(FULL_DATA)
    balance = task.class_balance()
    # The official MNIST counts of digits 0 and 6.
    assert (balance["train"]["n_0"], balance["train"]["n_1"]) == (5923, 5918)
    assert (balance["test"]["n_0"], balance["test"]["n_1"]) == (980, 958)


@needs_full_data
def test_full_celeba_through_the_env_var(monkeypatch):
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(FULL_DATA))
    task = load_task("celeba", "Smiling", max_per_class=25, seed=1)
    assert task.source == str(FULL_DATA)
    assert np.bincount(task.y_train).tolist() == [25, 25] and np.bincount(task.y_test).tolist() == [25, 25]


@needs_full_data
def test_committed_sample_is_reproducible(tmp_path):
    paths = make_sample(FULL_DATA, tmp_path, seed=0)
    for name, path in (("mnist.npz", paths["mnist"]), ("celeba64.npz", paths["celeba"])):
        committed, remade = sample_file(name), read_npz(path)
        assert committed.keys() == remade.keys()
        for key in committed:
            np.testing.assert_array_equal(committed[key], remade[key], err_msg=f"{name}:{key}")
    with np.load(FULL_DATA / "celeba64.npz") as full:
        rows = sample_file("celeba64.npz")["source_index"]
        np.testing.assert_array_equal(full["filenames"][rows], sample_file("celeba64.npz")["filenames"])


# ---------------------------------------------------------------- MNIST layouts


def write_idx(path: Path, array: np.ndarray) -> None:
    """The official IDX format: 0, 0, dtype 0x08 (ubyte), ndim, big-endian int32 dims, then the bytes."""
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as handle:
        handle.write(payload)


def fake_mnist(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "x_train": rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        "y_train": np.arange(40, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "y_test": np.arange(20, dtype=np.uint8) % 10,
    }


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_files_round_trip(tmp_path, suffix):
    arrays = fake_mnist(np.random.default_rng(0))
    for key, stem in data._IDX_STEMS.items():
        write_idx(tmp_path / (stem + suffix), arrays[key])
    task = load_task("mnist", "4_vs_5", data_dir=tmp_path)
    assert task.source == str(tmp_path)
    for split in ("train", "test"):
        keep = np.isin(arrays[f"y_{split}"], [4, 5])
        expected = arrays[f"x_{split}"][keep].reshape(-1, 784).astype(np.float32) / 255
        np.testing.assert_array_equal(getattr(task, f"x_{split}"), expected)
        np.testing.assert_array_equal(getattr(task, f"y_{split}"), arrays[f"y_{split}"][keep] == 5)


def test_torchvision_idx_layout(tmp_path):
    arrays = fake_mnist(np.random.default_rng(1))
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for key, stem in data._IDX_STEMS.items():
        write_idx(raw / stem, arrays[key])
    assert load_task("mnist", "0_vs_6", data_dir=tmp_path).y_test.tolist() == [0, 1, 0, 1]


def test_keras_npz_layout(tmp_path):
    arrays = fake_mnist(np.random.default_rng(2))
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    task = load_task("mnist", "06", data_dir=str(tmp_path))
    np.testing.assert_array_equal(task.x_test[1] * 255, arrays["x_test"][6].reshape(-1).astype(np.float32))


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (
            lambda y: y.astype(np.float32) + 0.5,
            r"y_train in .*mnist.npz holds float32 labels that are not whole",
        ),
        (lambda y: np.where(y == 3, np.nan, y), "holds float64 labels that are not whole digits .*nan"),
        (lambda y: y.astype(np.int64) + 10, "holds labels from 10 to 19: expected the digits 0..9"),
        (lambda y: y.astype(str), r"holds <U\d+ labels that are not whole digits \(e.g. '0'\)"),
    ],
    ids=["fractional", "nan", "out-of-range", "text"],
)
def test_mnist_labels_that_are_not_digits_are_named(tmp_path, labels, match):
    """Labels that are not digits 0..9: a message about the labels, not about the data's size."""
    arrays = fake_mnist(np.random.default_rng(3))
    arrays["y_train"] = labels(arrays["y_train"])
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match=match):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_mnist_labels_stored_as_whole_floats_still_load(tmp_path):
    arrays = fake_mnist(np.random.default_rng(3))
    np.savez(tmp_path / "ints.npz", **arrays)
    np.savez(tmp_path / "mnist.npz", **{**arrays, "y_train": arrays["y_train"].astype(np.float32)})
    task = load_task("mnist", "0_vs_6", data_dir=tmp_path)
    assert task.y_train.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]


def test_idx_files_are_unzipped_by_content_not_by_name(tmp_path):
    # a browser may unpack a download and keep ".gz", or save a gzip stream under the plain name
    arrays = fake_mnist(np.random.default_rng(7))
    for key, stem in data._IDX_STEMS.items():
        plain = tmp_path / "plain.tmp"
        write_idx(plain, arrays[key])
        raw = plain.read_bytes()
        plain.unlink()
        if key.startswith("x"):
            (tmp_path / (stem + ".gz")).write_bytes(raw)  # not compressed, named .gz
        else:
            (tmp_path / stem).write_bytes(gzip.compress(raw))  # compressed, no .gz
    task = load_task("mnist", "2_vs_7", data_dir=tmp_path)
    keep = np.isin(arrays["y_train"], [2, 7])
    np.testing.assert_array_equal(task.x_train * 255, arrays["x_train"][keep].reshape(-1, 784))
    np.testing.assert_array_equal(task.y_train, arrays["y_train"][keep] == 7)


def test_a_file_given_as_the_data_folder_names_the_folder_to_pass(tmp_path):
    np.savez_compressed(tmp_path / "mnist.npz", **fake_mnist(np.random.default_rng(8)))
    with pytest.raises(
        NotADirectoryError, match=rf"is a file .*pass the folder that holds it, {re.escape(str(tmp_path))}"
    ):
        load_task("mnist", "0_vs_6", data_dir=tmp_path / "mnist.npz")


def test_truncated_idx_file(tmp_path):
    arrays = fake_mnist(np.random.default_rng(3))
    for key, stem in data._IDX_STEMS.items():
        write_idx(tmp_path / stem, arrays[key])
    path = tmp_path / data._IDX_STEMS["x_train"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}.*truncated or corrupt; re-download"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_truncated_gzip_idx_file(tmp_path):
    arrays = fake_mnist(np.random.default_rng(3))
    for key, stem in data._IDX_STEMS.items():
        write_idx(tmp_path / (stem + ".gz"), arrays[key])
    path = tmp_path / (data._IDX_STEMS["x_test"] + ".gz")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=rf"cannot read {re.escape(str(path))}.*re-download"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_some_idx_files_missing(tmp_path):
    arrays = fake_mnist(np.random.default_rng(4))
    write_idx(tmp_path / data._IDX_STEMS["x_train"], arrays["x_train"])
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\]"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_mnist_images_of_the_wrong_shape(tmp_path):
    arrays = fake_mnist(np.random.default_rng(5))
    arrays["x_train"] = arrays["x_train"][:, :20, :20]
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match=r"expected \[n, 28, 28\]"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_corrupt_npz(tmp_path):
    arrays = fake_mnist(np.random.default_rng(6))
    np.savez_compressed(tmp_path / "mnist.npz", **arrays)
    path = tmp_path / "mnist.npz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=rf"cannot read {re.escape(str(path))}.*re-download"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="lacks the keys y_train, x_test, y_test"):
        load_task("mnist", "0_vs_6", data_dir=tmp_path)


def test_no_data_in_folder_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_task("mnist", "0_vs_6", data_dir=tmp_path)
    for needle in (
        str(tmp_path),
        "mnist.npz",
        "train-images-idx3-ubyte[.gz]",
        "NBHELPERS_DATA_DIR",
        "data_dir",
    ):
        assert needle in str(err.value)
    with pytest.raises(FileNotFoundError) as err:
        load_task("celeba", "Male", data_dir=tmp_path)
    for needle in ("celeba64.npz", "img_align_celeba", "list_eval_partition.txt", "NBHELPERS_DATA_DIR"):
        assert needle in str(err.value)


def test_missing_data_folder_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="does not exist.*NBHELPERS_DATA_DIR"):
        load_task("mnist", "0_vs_6")


def test_class_absent_from_a_split(tmp_path):
    arrays = fake_mnist(np.random.default_rng(7))
    arrays["y_test"][arrays["y_test"] == 7] = 3
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(ValueError, match=r"the test split of .* has no images of class 1 \('7'\)"):
        load_task("mnist", "2_vs_7", data_dir=tmp_path)


# ---------------------------------------------------------------- CelebA layouts


def write_celeba_layout(folder: Path, rng: np.random.Generator, n: int = 4) -> list[str]:
    """Tiny official layout: n 178x218 jpgs, the attribute list (with its count line), the partition list."""
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    yy, xx = np.mgrid[0:218, 0:178]
    for i, name in enumerate(names):
        base = np.stack([xx * (1 + i), yy * 2, (xx + yy) * (3 - i % 3)], axis=-1) % 256
        noise = rng.integers(0, 40, base.shape)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(
            folder / "img_align_celeba" / name
        )
    attr_names = list(CELEBA_ATTRIBUTES) + [f"Other_{k}" for k in range(28)]
    signs = np.where(np.arange(n)[:, None] % 2 == np.arange(40)[None, :] % 2, 1, -1)
    rows = [f"{name}  " + " ".join(f"{s:2d}" for s in row) for name, row in zip(names, signs, strict=True)]
    (folder / "list_attr_celeba.txt").write_text("\n".join([str(n), " ".join(attr_names), *rows]) + "\n")
    partition = [0, 1, 2, 2, 0, 2][:n]
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{a} {p}\n" for a, p in zip(names, partition, strict=True))
    )
    return names


def expected_face(path: Path) -> np.ndarray:
    """Direct numpy reference: crop rows 50:178, cols 25:153; average 2x2 blocks; round half up -> CHW."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    crop = pixels[50:178, 25:153]
    mean = (crop[0::2, 0::2] + crop[1::2, 0::2] + crop[0::2, 1::2] + crop[1::2, 1::2]) / 4
    return np.floor(mean + 0.5).transpose(2, 0, 1).reshape(-1) / 255


def test_official_celeba_layout_is_prepared_once(tmp_path, monkeypatch):
    names = write_celeba_layout(tmp_path, np.random.default_rng(0))
    task = load_task("celeba", "Black_Hair", data_dir=tmp_path)
    # Partitions 0 and 1 (rows 0, 1) train; 2 (rows 2, 3) test. Black_Hair is column 1: odd rows positive.
    assert task.y_train.tolist() == [0, 1] and task.y_test.tolist() == [0, 1]
    for x, i in ((task.x_train[0], 0), (task.x_train[1], 1), (task.x_test[0], 2), (task.x_test[1], 3)):
        np.testing.assert_allclose(x, expected_face(tmp_path / "img_align_celeba" / names[i]), atol=1e-6)
    prepared = read_npz(tmp_path / "celeba64.npz")
    assert prepared["images"].shape == (4, 64, 64, 3) and prepared["attrs"].shape == (4, 40)
    assert prepared["filenames"].tolist() == names and prepared["partition"].tolist() == [0, 1, 2, 2]

    def no_second_preparation(*args, **kwargs):
        raise AssertionError("prepare_celeba ran again although celeba64.npz is cached")

    monkeypatch.setattr(data, "prepare_celeba", no_second_preparation)
    np.testing.assert_array_equal(load_task("celeba", "Black_Hair", data_dir=tmp_path).x_test, task.x_test)


def test_read_only_celeba_folder_caches_in_cache_dir(tmp_path, monkeypatch):
    src = tmp_path / "celeba_src"
    write_celeba_layout(src / "celeba", np.random.default_rng(1))  # the torchvision layout: <root>/celeba/...
    monkeypatch.setattr(data, "_is_writable", lambda folder: False)
    task = load_task("celeba", "Male", data_dir=src)
    assert not (src / "celeba64.npz").exists()
    cached = list((tmp_path / "cache").glob("celeba64_*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as npz:
        np.testing.assert_array_equal(np.round(to_hwc(task.x_test, (3, 64, 64))[0] * 255), npz["images"][2])


def test_prepare_celeba_rejects_wrong_size_images(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(2))
    Image.new("RGB", (120, 100)).save(tmp_path / "img_align_celeba" / names[2])
    with pytest.raises(ValueError, match=rf"{names[2]} is 120x100.*178x218"):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)
    assert not (tmp_path / "out.npz").exists()


def test_prepare_celeba_rejects_corrupt_jpeg(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(3))
    (tmp_path / "img_align_celeba" / names[1]).write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=rf"cannot decode .*{names[1]}.*re-download"):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)


def test_prepare_celeba_names_missing_list_files(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(4))
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(FileNotFoundError, match="lacks list_eval_partition.txt"):
        load_task("celeba", "Male", data_dir=tmp_path)


def test_prepare_celeba_rejects_a_malformed_attribute_list(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(6))
    path = tmp_path / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], lines[-1].rsplit(" ", 2)[0]]) + "\n")  # last row cut short
    with pytest.raises(ValueError, match=r"list_attr_celeba.txt: rows must hold a file name and 40 values"):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)


def test_prepare_celeba_refuses_an_attribute_list_shorter_than_its_count(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(9), n=6)
    path = tmp_path / "list_attr_celeba.txt"
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")  # cut at a line boundary
    with pytest.raises(
        ValueError, match=r"holds 4 rows but its first line says 6 images: the file is truncated"
    ):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)
    assert not (tmp_path / "out.npz").exists()


def test_attribute_list_with_a_byte_order_mark_and_blank_lines_parses(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(10))
    path = tmp_path / "list_attr_celeba.txt"
    count, header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([count, "", header, *rows, ""]) + "\n", encoding="utf-8-sig")
    out = prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)
    with np.load(out) as npz:
        assert npz["filenames"].tolist() == names and npz["attrs"].shape == (4, 40)
        assert npz["attr_names"][0] == CELEBA_ATTRIBUTES[0]


def test_attribute_list_without_its_header_is_refused(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(11))
    path = tmp_path / "list_attr_celeba.txt"
    count, _header, *rows = path.read_text().splitlines()
    path.write_text("\n".join([count, *rows]) + "\n")
    with pytest.raises(
        ValueError, match=r"header line should name the 40 attributes .*got 41 words starting '000001.jpg"
    ):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)


def test_partition_values_other_than_0_1_2_are_refused(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(12))
    path = tmp_path / "list_eval_partition.txt"
    path.write_text(path.read_text().replace(f"{names[2]} 2", f"{names[2]} 3"))
    with pytest.raises(ValueError, match=rf"partitions are 0 .* 1 lines hold others, e.g. '{names[2]} 3'"):
        prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)


def test_a_damaged_prepared_file_is_to_be_deleted_not_downloaded(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(13))
    load_task("celeba", "Male", data_dir=tmp_path)
    prepared = tmp_path / "celeba64.npz"
    prepared.write_bytes(prepared.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or corrupt; delete it: it is prepared again"):
        load_task("celeba", "Male", data_dir=tmp_path)
    prepared.unlink()
    assert load_task("celeba", "Male", data_dir=tmp_path).x_test.shape == (2, 3 * 64 * 64)


def test_prepare_celeba_skips_missing_images_with_a_warning(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(5), n=6)
    (tmp_path / "img_align_celeba" / names[4]).unlink()
    with pytest.warns(
        UserWarning, match="1 of 6 listed CelebA images are missing.*again once its images or lists change"
    ):
        out = prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)
    with np.load(out) as npz:
        assert npz["filenames"].tolist() == [n for i, n in enumerate(names) if i != 4]


def write_attr_list(folder: Path, rows: int, count_line: bool) -> None:
    """Rewrite the layout's attribute list with its first ``rows`` rows, with or without the count line."""
    path = folder / "list_attr_celeba.txt"
    _count, header, *body = path.read_text().splitlines()
    lines = [header, *body[:rows]]
    path.write_text("\n".join([str(rows), *lines] if count_line else lines) + "\n")


def test_an_attribute_list_without_count_line_and_fewer_rows_than_images_is_warned_about(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(14), n=6)
    write_attr_list(tmp_path, rows=4, count_line=False)
    with pytest.warns(
        UserWarning, match=r"2 jpgs in .* are not listed in .*list_attr_celeba.txt \(e.g. 000005.jpg\)"
    ):
        out = prepare_celeba(tmp_path, tmp_path / "out.npz", progress=False)
    with np.load(out) as npz:
        assert npz["filenames"].tolist() == names[:4]


def test_the_unlisted_images_warning_says_the_list_has_no_count_line(tmp_path):
    write_celeba_layout(tmp_path, np.random.default_rng(14), n=6)
    write_attr_list(tmp_path, rows=4, count_line=False)
    with pytest.warns(UserWarning, match="no count line to check it against, so it may be truncated"):
        load_task("celeba", "Male", data_dir=tmp_path)


def test_a_prepared_celeba_is_prepared_again_when_its_lists_change(tmp_path):
    names = write_celeba_layout(tmp_path, np.random.default_rng(15), n=6)
    write_attr_list(tmp_path, rows=4, count_line=False)
    with pytest.warns(UserWarning, match="not listed"):
        first = load_task("celeba", "Male", data_dir=tmp_path)
    assert len(first.y_train) + len(first.y_test) == 4
    with np.load(tmp_path / "celeba64.npz") as npz:
        recorded = json.loads(str(npz[data.PREPARED_FROM]))
    assert recorded["img_align_celeba"] == {"jpgs": 6}
    assert recorded["list_attr_celeba.txt"]["bytes"] == (tmp_path / "list_attr_celeba.txt").stat().st_size

    write_celeba_layout(tmp_path / "fixed", np.random.default_rng(15), n=6)  # the complete list
    (tmp_path / "list_attr_celeba.txt").write_text((tmp_path / "fixed" / "list_attr_celeba.txt").read_text())
    with pytest.warns(
        UserWarning, match=r"prepared from other versions of list_attr_celeba.txt .*preparing it again"
    ):
        second = load_task("celeba", "Male", data_dir=tmp_path)
    assert len(second.y_train) + len(second.y_test) == 6
    with np.load(tmp_path / "celeba64.npz") as npz:
        assert npz["filenames"].tolist() == names


def test_a_prepared_celeba_is_prepared_again_when_images_are_added(tmp_path, recwarn):
    names = write_celeba_layout(tmp_path, np.random.default_rng(16), n=6)
    held_back = tmp_path / "img_align_celeba" / names[5]
    kept = held_back.read_bytes()
    held_back.unlink()
    with pytest.warns(UserWarning, match="1 of 6 listed CelebA images are missing"):
        load_task("celeba", "Male", data_dir=tmp_path)
    held_back.write_bytes(kept)  # the download completes
    with pytest.warns(UserWarning, match="other versions of img_align_celeba"):
        load_task("celeba", "Male", data_dir=tmp_path)
    with np.load(tmp_path / "celeba64.npz") as npz:
        assert npz["filenames"].tolist() == names


def test_an_unchanged_layout_is_not_prepared_again(tmp_path, monkeypatch, recwarn):
    write_celeba_layout(tmp_path, np.random.default_rng(17))
    load_task("celeba", "Male", data_dir=tmp_path)

    def no_second_preparation(*args, **kwargs):
        raise AssertionError("prepare_celeba ran again although the layout did not change")

    monkeypatch.setattr(data, "prepare_celeba", no_second_preparation)
    load_task("celeba", "Male", data_dir=tmp_path)
    assert not [w for w in recwarn if "prepared" in str(w.message)]


def test_a_celeba64_from_elsewhere_beside_the_layout_is_kept(tmp_path, monkeypatch):
    """A celeba64.npz without the record of its preparation (downloaded, or prepared by an older version)."""
    write_celeba_layout(tmp_path, np.random.default_rng(18))
    load_task("celeba", "Male", data_dir=tmp_path)
    arrays = read_npz(tmp_path / "celeba64.npz")
    del arrays[data.PREPARED_FROM]
    np.savez(tmp_path / "celeba64.npz", **arrays)
    (tmp_path / "list_attr_celeba.txt").write_text((tmp_path / "list_attr_celeba.txt").read_text() + "\n")
    monkeypatch.setattr(data, "prepare_celeba", lambda *a, **k: pytest.fail("prepared again"))
    load_task("celeba", "Male", data_dir=tmp_path)


def test_a_prepared_celeba_in_the_cache_is_prepared_again_when_its_lists_change(tmp_path, monkeypatch):
    src = tmp_path / "celeba_src"
    write_celeba_layout(src, np.random.default_rng(19), n=6)
    write_attr_list(src, rows=4, count_line=True)
    monkeypatch.setattr(data, "_is_writable", lambda folder: False)
    with pytest.warns(UserWarning, match="not listed"):
        assert len(load_task("celeba", "Male", data_dir=src).y_test) == 2
    write_celeba_layout(tmp_path / "fixed", np.random.default_rng(19), n=6)  # the complete list
    (src / "list_attr_celeba.txt").write_text((tmp_path / "fixed" / "list_attr_celeba.txt").read_text())
    with pytest.warns(UserWarning, match="preparing it again"):
        task = load_task("celeba", "Male", data_dir=src)
    assert len(task.y_train) + len(task.y_test) == 6
    assert len(list((tmp_path / "cache").glob("celeba64_*.npz"))) == 1


def test_celeba_images_of_the_wrong_shape(tmp_path):
    np.savez(
        tmp_path / "celeba64.npz",
        images=np.zeros((4, 32, 32, 3), np.uint8),
        attrs=np.ones((4, 40), np.int8),
        attr_names=np.array(list(CELEBA_ATTRIBUTES) + [f"x{k}" for k in range(28)]),
        partition=np.array([0, 0, 2, 2], np.int8),
    )
    with pytest.raises(ValueError, match=r"expected uint8 \[N, 64, 64, 3\]"):
        load_task("celeba", "Male", data_dir=tmp_path)


def test_celeba_test_split_without_positives(tmp_path):
    attrs = -np.ones((6, 40), np.int8)
    attrs[[0, 2], CELEBA_ATTRIBUTES.index("Eyeglasses")] = 1  # positives only in train
    np.savez(
        tmp_path / "celeba64.npz",
        images=np.zeros((6, 64, 64, 3), np.uint8),
        attrs=attrs,
        attr_names=np.array(list(CELEBA_ATTRIBUTES) + [f"x{k}" for k in range(28)]),
        partition=np.array([0, 0, 1, 1, 2, 2], np.int8),
    )
    with pytest.raises(ValueError, match=r"the test split .* no images of class 1 \('Eyeglasses'\)"):
        load_task("celeba", "Eyeglasses", data_dir=tmp_path)


# ---------------------------------------------------------------- make_sample


def test_make_sample_stratifies_and_records_rows(tmp_path):
    rng = np.random.default_rng(8)
    full = tmp_path / "full"
    full.mkdir()
    mnist = {
        "x_train": rng.integers(0, 256, (300, 28, 28), dtype=np.uint8),
        "y_train": np.arange(300, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        "y_test": np.arange(100, dtype=np.uint8) % 10,
    }
    np.savez(full / "mnist.npz", **mnist)
    n = 600
    rates = np.full(40, 0.3)
    rates[CELEBA_ATTRIBUTES.index("Eyeglasses")] = 0.05  # as rare as in CelebA
    present = rng.random((n, 40)) < rates
    celeba = {
        "images": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
        "attrs": np.where(present, 1, -1).astype(np.int8),
        "attr_names": np.array(list(CELEBA_ATTRIBUTES) + [f"x{k}" for k in range(28)]),
        "filenames": np.array([f"{i:06d}.jpg" for i in range(n)]),
        "partition": np.where(np.arange(n) < 400, 0, 2).astype(np.int8),
    }
    np.savez(full / "celeba64.npz", **celeba)
    kwargs = dict(mnist_train_per_digit=10, mnist_test_per_digit=4, celeba_train=60, celeba_test=30)
    paths = make_sample(full, tmp_path / "a", seed=1, **kwargs)
    again = make_sample(full, tmp_path / "b", seed=1, **kwargs)
    for key in ("mnist", "celeba"):
        assert paths[key].read_bytes() == again[key].read_bytes()

    small = read_npz(paths["mnist"])
    assert np.bincount(small["y_train"]).tolist() == [10, 0, 10, 0, 10, 10, 10, 10]
    np.testing.assert_array_equal(small["x_test"], mnist["x_test"][small["source_index_test"]])
    faces = read_npz(paths["celeba"])
    rows = faces["source_index"]
    np.testing.assert_array_equal(faces["images"], celeba["images"][rows])
    np.testing.assert_array_equal(faces["filenames"], celeba["filenames"][rows])
    for split, size in (("train", 60), ("test", 30)):
        in_split = faces["partition"] == (0 if split == "train" else 2)
        assert in_split.sum() == size
        positives = (faces["attrs"][in_split, :12] == 1).sum(axis=0)
        assert positives.min() >= np.ceil(0.15 * size), (split, positives)
    # Stratification pulled in far more Eyeglasses than the 5% a uniform draw would give.
    eyeglasses = CELEBA_ATTRIBUTES.index("Eyeglasses")
    assert (
        (faces["attrs"][:, eyeglasses] == 1).mean() >= 0.15 > 2 * (celeba["attrs"][:, eyeglasses] == 1).mean()
    )
    assert not np.array_equal(
        read_npz(make_sample(full, tmp_path / "c", seed=2, **kwargs)["celeba"])["source_index"], rows
    )


def test_make_sample_refuses_impossible_quotas(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    np.savez(full / "mnist.npz", **fake_mnist(np.random.default_rng(9)))
    attrs = -np.ones((50, 40), np.int8)
    attrs[0, 0] = 1  # a single positive Bangs face
    np.savez(
        full / "celeba64.npz",
        images=np.zeros((50, 64, 64, 3), np.uint8),
        attrs=attrs,
        attr_names=np.array(list(CELEBA_ATTRIBUTES) + [f"x{k}" for k in range(28)]),
        partition=np.where(np.arange(50) < 40, 0, 2).astype(np.int8),
    )
    with pytest.raises(ValueError, match="too few images of some class"):
        make_sample(full, tmp_path / "out", mnist_train_per_digit=2, mnist_test_per_digit=1, celeba_train=20)
