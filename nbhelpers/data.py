"""Real data for the paper's 15 binary tasks: 12 CelebA attributes and 3 MNIST digit pairs.

``load_task(dataset, attribute)`` returns flattened float images in [0, 1] with 0/1 labels and
the official train/test split. Where the images come from, in order:

1. the ``data_dir`` argument, else ``$NBHELPERS_DATA_DIR`` (``nbhelpers.config.data_dir``), a folder
   holding either prepared files (``mnist.npz``, ``celeba64.npz``) or the official layouts (MNIST
   IDX files; CelebA ``img_align_celeba/`` with its attribute and partition lists, prepared once);
2. otherwise the small real sample shipped in ``nbhelpers/sample_data`` (see its README).

CelebA faces are cropped to rows 50:178, columns 25:153 and resized to 64x64, as the paper's MFA
code (gans-n-gmms) did.
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import os
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from nbhelpers import config
from nbhelpers.progress import tqdm

DATASETS: tuple[str, ...] = ("celeba", "mnist")
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "Bangs",
    "Black_Hair",
    "Brown_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "No_Beard",
    "Smiling",
    "Wearing_Earrings",
    "Wearing_Lipstick",
    "Eyeglasses",
)
MNIST_PAIRS: tuple[str, ...] = ("0_vs_6", "2_vs_7", "4_vs_5")
TASKS: list[tuple[str, str]] = [("celeba", a) for a in CELEBA_ATTRIBUTES] + [
    ("mnist", p) for p in MNIST_PAIRS
]
#: The paper's five real-data attributes (section 3, appendix D.4): chapter 5 takes only these.
REAL_DATA_ATTRIBUTES: tuple[str, ...] = ("Male", "Smiling", "Bangs", "Heavy_Makeup", "Eyeglasses")

SAMPLE_DIR = Path(__file__).parent / "sample_data"
MNIST_FILE = "mnist.npz"
CELEBA_FILE = "celeba64.npz"
MNIST_SHAPE = (1, 28, 28)
CELEBA_SHAPE = (3, 64, 64)
# Aligned CelebA jpgs are 178 wide, 218 high; gans-n-gmms crops (x, y, w, h) = (25, 50, 128, 128).
CELEBA_ALIGNED_HW = (218, 178)
CELEBA_CROP_ROWS = slice(50, 178)
CELEBA_CROP_COLS = slice(25, 153)
CELEBA_TRAIN_PARTITIONS = (0, 1)  # official train + val
CELEBA_TEST_PARTITION = 2

_MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CELEBA_KEYS = ("images", "attrs", "attr_names", "partition")
CELEBA_N_ATTRIBUTES = 40  # columns of the official list_attr_celeba.txt
_IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_CELEBA_LAYOUT = ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
_CORRUPT = (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError)
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class TaskData:
    """One binary task with its official train/test split.

    Images are flattened in (C, H, W) order; ``to_hwc`` turns them back for plotting.
    """

    dataset: str
    attribute: str
    x_train: np.ndarray = field(repr=False)  # [n_train, d] float32 in [0, 1]
    y_train: np.ndarray = field(repr=False)  # [n_train] int64; 1 = attribute present / second digit
    x_test: np.ndarray = field(repr=False)  # [n_test, d] float32 in [0, 1]
    y_test: np.ndarray = field(repr=False)  # [n_test] int64
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, str]  # (class 0, class 1)
    source: str  # "sample" or the data folder used

    def class_balance(self) -> dict[str, dict[str, float | int]]:
        """Per split: ``n``, ``n_0``, ``n_1`` (class counts) and ``positive_fraction`` (share of class 1)."""
        out: dict[str, dict[str, float | int]] = {}
        for split, y in (("train", self.y_train), ("test", self.y_test)):
            n_1 = int(np.count_nonzero(y == 1))
            out[split] = {
                "n": int(y.size),
                "n_0": int(y.size) - n_1,
                "n_1": n_1,
                "positive_fraction": n_1 / y.size if y.size else float("nan"),
            }
        return out


def canonical_task(dataset: str, attribute: str) -> tuple[str, str]:
    """Validate a task and normalise its aliases: ``("MNIST", "06")`` -> ``("mnist", "0_vs_6")``.

    Dataset names are case-insensitive. CelebA attributes also accept spaces or other cases
    ("black hair"); MNIST pairs accept "0_vs_6", "0vs6", "0v6", "06", "0-6" (the first digit is class 0).
    """
    name = dataset.strip().lower() if isinstance(dataset, str) else None
    if name not in DATASETS:
        valid = ", ".join(repr(d) for d in DATASETS)
        raise ValueError(f"unknown dataset {dataset!r}: valid datasets are {valid}")
    if not isinstance(attribute, str):
        raise ValueError(
            f"attribute must be a string, got {type(attribute).__name__}: {_valid_attributes(name)}"
        )
    if name == "celeba":
        by_key = {a.lower(): a for a in CELEBA_ATTRIBUTES}
        found = by_key.get(re.sub(r"[\s\-]+", "_", attribute.strip()).lower())
        if found is None:
            close = difflib.get_close_matches(attribute.strip(), CELEBA_ATTRIBUTES, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown CelebA attribute {attribute!r}{hint}: {_valid_attributes(name)}")
        return name, found
    match = re.fullmatch(r"(\d)(?:vs|v)?(\d)", re.sub(r"[\s_\-]+", "", attribute.lower()))
    pair = f"{match.group(1)}_vs_{match.group(2)}" if match else None
    if pair not in MNIST_PAIRS:
        hint = ""
        if match and f"{match.group(2)}_vs_{match.group(1)}" in MNIST_PAIRS:
            hint = f" (did you mean '{match.group(2)}_vs_{match.group(1)}'? The first digit is class 0)"
        raise ValueError(f"unknown MNIST pair {attribute!r}{hint}: {_valid_attributes(name)}")
    return name, pair


def _valid_attributes(dataset: str) -> str:
    if dataset == "celeba":
        return "valid CelebA attributes are " + ", ".join(CELEBA_ATTRIBUTES)
    return "valid MNIST pairs are " + ", ".join(MNIST_PAIRS) + " (aliases like '06' or '0v6' work too)"


def load_task(
    dataset: str,
    attribute: str,
    *,
    data_dir: str | os.PathLike | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Load one of the 15 tasks with its official split.

    MNIST: the official train (60,000) / test (10,000) split, keeping the pair's two digits.
    CelebA: train = official partitions 0 and 1 (train + val), test = partition 2.

    Args:
        dataset: "celeba" or "mnist" (any case).
        attribute: a CelebA attribute of ``CELEBA_ATTRIBUTES`` or an MNIST pair of ``MNIST_PAIRS``.
        data_dir: folder with the data; default ``$NBHELPERS_DATA_DIR``, else the bundled sample.
        max_per_class: if set, keep at most this many images of EACH class in EACH split (train and
            test alike), drawn without replacement by ``seed``. A larger cap keeps a superset of a
            smaller one's images; rows stay in file order.
        seed: seed of the subsampling (numpy Generator).

    Returns:
        ``TaskData`` with ``x_*`` [n, d] float32 in [0, 1] flattened (C, H, W) and ``y_*`` [n] int64.
    """
    dataset, attribute = canonical_task(dataset, attribute)
    if max_per_class is not None and (
        isinstance(max_per_class, bool)
        or not isinstance(max_per_class, (int, np.integer))
        or max_per_class < 1
    ):
        raise ValueError(
            f"max_per_class must be a positive integer or None (all images), got {max_per_class!r}"
        )
    folder, source = _resolve_folder(data_dir)

    if dataset == "mnist":
        arrays = _mnist_arrays(folder)
        digits = (int(attribute[0]), int(attribute[-1]))
        class_names = (str(digits[0]), str(digits[1]))
        images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        labels = {split: arrays[f"y_{split}"] for split in images}
        # -1 marks the other eight digits, which the task drops.
        classes = {s: np.select([labels[s] == digits[0], labels[s] == digits[1]], [0, 1], -1) for s in images}
        image_shape = MNIST_SHAPE
    else:
        arrays, path = _celeba_arrays(folder)
        names = [str(n) for n in arrays["attr_names"]]
        if attribute not in names:
            raise ValueError(f"{path} has no attribute {attribute!r}; its attributes are {', '.join(names)}")
        positive = (arrays["attrs"][:, names.index(attribute)] == 1).astype(np.int64)
        partition = arrays["partition"]
        in_train = np.isin(partition, CELEBA_TRAIN_PARTITIONS)
        classes = {
            "train": np.where(in_train, positive, -1),
            "test": np.where(partition == CELEBA_TEST_PARTITION, positive, -1),
        }
        images = {"train": arrays["images"], "test": arrays["images"]}
        class_names = (f"not {attribute.replace('_', ' ')}", attribute.replace("_", " "))
        image_shape = CELEBA_SHAPE

    out: dict[str, np.ndarray] = {}
    for split_id, split in enumerate(("train", "test")):
        rows = []
        for label in (0, 1):
            idx = np.flatnonzero(classes[split] == label)
            if idx.size == 0:
                raise ValueError(
                    f"{dataset}/{attribute}: the {split} split of {source} has no images of class {label} "
                    f"({class_names[label]!r}); point NBHELPERS_DATA_DIR or data_dir at the full data set, "
                    f"or pick another task ({_valid_attributes(dataset)})"
                )
            if max_per_class is not None and idx.size > max_per_class:
                # One stream per (split, class): capping one class never changes another's draw.
                rng = np.random.default_rng([seed, split_id, label])
                idx = rng.permutation(idx)[:max_per_class]
            rows.append(idx)
        keep = np.sort(np.concatenate(rows))
        # Subset the uint8 rows first: converting the whole file to float would cost 4x its memory.
        out[f"x_{split}"] = _to_float(images[split][keep], image_shape)
        out[f"y_{split}"] = classes[split][keep].astype(np.int64)
    return TaskData(
        dataset=dataset,
        attribute=attribute,
        image_shape=image_shape,
        class_names=class_names,
        source=source,
        **out,
    )


def to_hwc(x: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """Flattened (C, H, W) images for plotting: [n, d] -> [n, H, W, C] (a single [d] image -> [H, W, C])."""
    x = np.asarray(x)
    channels, height, width = image_shape
    d = channels * height * width
    if x.ndim not in (1, 2) or x.shape[-1] != d:
        raise ValueError(
            f"to_hwc expects [n, {d}] or [{d}] for image_shape {tuple(image_shape)} (C, H, W), got {x.shape}"
        )
    return np.moveaxis(x.reshape(*x.shape[:-1], channels, height, width), -3, -1)


def prepare_celeba(src_dir: str | os.PathLike, out_path: str | os.PathLike, *, progress: bool = True) -> Path:
    """Turn the official aligned CelebA layout into a ``celeba64.npz`` (one-time step).

    ``src_dir`` holds ``img_align_celeba/*.jpg`` (178x218), ``list_attr_celeba.txt`` and
    ``list_eval_partition.txt``. Every listed face whose jpg exists is cropped to rows 50:178,
    columns 25:153 and reduced to 64x64 by the mean of each 2x2 block, rounded half up (what
    ``cv2.resize`` with INTER_LINEAR gives for this exact 2x reduction). The output has the keys
    ``images`` [N, 64, 64, 3] uint8 RGB, ``attrs`` [N, 40] int8 (+1/-1), ``attr_names`` [40],
    ``filenames`` [N], ``partition`` [N] int8 and ``source`` [N] int8 (0: full-resolution jpg), and is
    written atomically.
    """
    from PIL import Image

    src_dir = Path(src_dir)
    missing = [name for name in _CELEBA_LAYOUT if not (src_dir / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{src_dir} lacks {', '.join(missing)}: the official aligned CelebA layout is "
            f"{_CELEBA_LAYOUT[0]}/*.jpg, {_CELEBA_LAYOUT[1]} and {_CELEBA_LAYOUT[2]}"
        )
    filenames, attrs, attr_names = _read_attr_list(src_dir / "list_attr_celeba.txt")
    partition = _read_partition_list(src_dir / "list_eval_partition.txt", filenames)
    image_dir = src_dir / "img_align_celeba"
    on_disk = set(os.listdir(image_dir))
    present = np.isin(filenames, list(on_disk))
    if not present.any():
        raise FileNotFoundError(
            f"none of the {len(filenames)} images listed in list_attr_celeba.txt is in {image_dir}"
        )
    if not present.all():
        warnings.warn(
            f"{np.count_nonzero(~present)} of {len(filenames)} listed CelebA images are missing from "
            f"{image_dir}; preparing the others into {out_path}, which later loads reuse as it is: delete it "
            "once the download is complete to prepare every face",
            stacklevel=2,
        )
    filenames, attrs, partition = filenames[present], attrs[present], partition[present]

    images = np.empty((len(filenames), 64, 64, 3), dtype=np.uint8)
    for i, name in enumerate(tqdm(filenames, desc="CelebA crop+resize", disable=not progress)):
        path = image_dir / name
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("RGB"))
        except OSError as err:
            raise ValueError(f"cannot decode {path} ({err}): the file is corrupt; re-download it") from err
        if pixels.shape[:2] != CELEBA_ALIGNED_HW:
            raise ValueError(
                f"{path} is {pixels.shape[1]}x{pixels.shape[0]} (width x height); aligned CelebA images "
                f"are {CELEBA_ALIGNED_HW[1]}x{CELEBA_ALIGNED_HW[0]}: use img_align_celeba, not the "
                "in-the-wild images"
            )
        images[i] = _crop_resize(pixels)
    return _save_npz_atomic(
        Path(out_path),
        images=images,
        attrs=attrs,
        attr_names=attr_names,
        filenames=filenames,
        partition=partition,
        source=np.zeros(len(filenames), dtype=np.int8),
    )


def make_sample(
    data_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    mnist_digits: tuple[int, ...] = (0, 2, 4, 5, 6, 7),
    mnist_train_per_digit: int = 500,
    mnist_test_per_digit: int = 100,
    celeba_train: int = 360,
    celeba_test: int = 100,
    celeba_min_class_fraction: float = 0.15,
) -> dict[str, Path]:
    """Draw the small committed sample from the full data (reproducible for a given ``seed``).

    MNIST: ``mnist_*_per_digit`` images of each digit, drawn uniformly within each official split.
    CelebA: ``celeba_train`` faces from partitions 0/1 and ``celeba_test`` from partition 2, stratified
    so that both classes of each of the 12 task attributes make up at least
    ``celeba_min_class_fraction`` of each split: while a class is short, a random face of the rarest
    short class is added; the rest of the split is drawn uniformly.

    Writes ``mnist.npz`` and ``celeba64.npz`` in ``out_dir`` (uint8 images, the full files' keys plus
    ``source_index``: the rows of the full file; MNIST has ``source_index_train``/``_test``).
    """
    folder = Path(data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    mnist = _mnist_arrays(folder)
    picked: dict[str, np.ndarray] = {}
    for split_id, (split, per_digit) in enumerate(
        (("train", mnist_train_per_digit), ("test", mnist_test_per_digit))
    ):
        y = mnist[f"y_{split}"]
        rows = []
        for digit in mnist_digits:
            idx = np.flatnonzero(y == digit)
            if idx.size < per_digit:
                raise ValueError(
                    f"MNIST {split} has only {idx.size} images of digit {digit}, {per_digit} requested"
                )
            rows.append(
                np.random.default_rng([seed, 0, split_id, digit]).choice(idx, per_digit, replace=False)
            )
        picked[split] = np.sort(np.concatenate(rows))
    mnist_path = _save_npz_atomic(
        out_dir / MNIST_FILE,
        **{f"{k}_{s}": mnist[f"{k}_{s}"][picked[s]] for s in ("train", "test") for k in ("x", "y")},
        source_index_train=picked["train"],
        source_index_test=picked["test"],
    )

    celeba, path = _celeba_arrays(folder)
    names = [str(n) for n in celeba["attr_names"]]
    absent = [a for a in CELEBA_ATTRIBUTES if a not in names]
    if absent:
        raise ValueError(f"{path} lacks the task attributes {', '.join(absent)}")
    positive = celeba["attrs"][:, [names.index(a) for a in CELEBA_ATTRIBUTES]] == 1
    partition = celeba["partition"]
    pools = (
        ("train", np.flatnonzero(np.isin(partition, CELEBA_TRAIN_PARTITIONS)), celeba_train),
        ("test", np.flatnonzero(partition == CELEBA_TEST_PARTITION), celeba_test),
    )
    rows = []
    for split_id, (split, pool, size) in enumerate(pools):
        rng = np.random.default_rng([seed, 1, split_id])
        minimum = int(np.ceil(celeba_min_class_fraction * size))
        rows.append(pool[_stratified_pick(positive[pool], size, minimum, rng, f"CelebA {split}")])
    keep = np.sort(np.concatenate(rows))
    celeba_path = _save_npz_atomic(
        out_dir / CELEBA_FILE,
        **{key: (value if key == "attr_names" else value[keep]) for key, value in celeba.items()},
        source_index=keep,
    )
    return {"mnist": mnist_path, "celeba": celeba_path}


def _stratified_pick(
    positive: np.ndarray, size: int, minimum: int, rng: np.random.Generator, what: str
) -> np.ndarray:
    """Pick ``size`` rows of ``positive`` [n, k] bool so each column has >= ``minimum`` True and False rows.

    Returns sorted row indices [size].
    """
    n = positive.shape[0]
    if size > n:
        raise ValueError(f"{what} has only {n} images, {size} requested")
    order = rng.permutation(n)
    chosen = np.zeros(n, dtype=bool)
    # Columns 0..k-1: class 1 of each attribute; k..2k-1: class 0.
    member = np.concatenate([positive, ~positive], axis=1)
    while chosen.sum() < size:
        short = member[chosen].sum(axis=0) < minimum
        if not short.any():
            break
        available = member[~chosen].sum(axis=0)
        if (available[short] == 0).any():
            raise ValueError(
                f"{what}: too few images of some class to put {minimum} of each class in the sample"
            )
        rarest = np.flatnonzero(short)[np.argmin(available[short])]
        candidates = order[member[order, rarest] & ~chosen[order]]
        chosen[candidates[0]] = True
    if (member[chosen].sum(axis=0) < minimum).any():
        raise ValueError(f"{what}: {size} images cannot hold {minimum} of each class of every attribute")
    rest = order[~chosen[order]][: size - chosen.sum()]
    chosen[rest] = True
    return np.flatnonzero(chosen)


def _resolve_folder(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The folder to read and the ``source`` label: the argument, the env var, else the sample."""
    folder = config.data_dir(data_dir)
    if folder is None:
        return SAMPLE_DIR, "sample"
    if folder.is_file():
        raise NotADirectoryError(
            f"data folder {folder} is a file (from the data_dir argument or ${config.DATA_DIR_ENV}): "
            f"pass the folder that holds it, {folder.parent}"
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} does not exist (from the data_dir argument or ${config.DATA_DIR_ENV}): "
            f"create it with the data, fix the path, or unset both to use the bundled sample"
        )
    return folder, str(folder)


BUNDLED_SAMPLE = "bundled sample"  # how results and stamps name the sample shipped with the package


def source_label(source: str) -> str:
    """A ``TaskData.source`` for display and result files: "bundled sample", or "data folder NAME" with the
    folder's name only (a printed or recorded path would name the machine's folders)."""
    if source in ("sample", BUNDLED_SAMPLE) or source.startswith("data folder "):
        return BUNDLED_SAMPLE if source == "sample" else source  # already a label
    return f"data folder {Path(source).name}"


def _how_to_provide(what: str) -> str:
    return (
        f"put {what} there, point ${config.DATA_DIR_ENV} or the data_dir argument at a folder holding them, "
        "or unset both to use the bundled sample"
    )


def _mnist_arrays(folder: Path) -> dict[str, np.ndarray]:
    """MNIST of ``folder``: ``x_*`` [n, 28, 28] uint8 and ``y_*`` [n] labels, from mnist.npz or IDX files."""
    npz = folder / MNIST_FILE
    if npz.is_file():
        arrays = _read_npz(npz, _MNIST_KEYS)
    else:
        arrays = {key: _read_idx(path) for key, path in _find_idx_files(folder).items()}
        npz = folder
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or x.shape[0] != y.shape[0] or y.ndim != 1 or int(np.prod(x.shape[1:])) != 28 * 28:
            raise ValueError(
                f"MNIST x_{split} in {npz} has shape {x.shape} with y_{split} {y.shape}: expected "
                "[n, 28, 28] images and [n] labels (the Keras mnist.npz layout or the official IDX files)"
            )
        if x.dtype != np.uint8:
            raise ValueError(f"MNIST x_{split} in {npz} is {x.dtype}: expected uint8 pixels 0..255")
        arrays[f"x_{split}"] = x.reshape(-1, 28, 28)
    return arrays


def _find_idx_files(folder: Path) -> dict[str, Path]:
    """The four official IDX files (optionally gzipped) in ``folder`` or its torchvision ``MNIST/raw``."""
    looked = [folder, folder / "MNIST" / "raw"]
    for place in looked:
        found = {}
        for key, stem in _IDX_STEMS.items():
            variants = (
                stem,
                stem + ".gz",
                stem.replace("-idx", ".idx"),
                stem.replace("-idx", ".idx") + ".gz",
            )
            hit = next((place / v for v in variants if (place / v).is_file()), None)
            if hit is not None:
                found[key] = hit
        if len(found) == len(_IDX_STEMS):
            return found
        if found:
            missing = [f"{_IDX_STEMS[k]}[.gz]" for k in _IDX_STEMS if k not in found]
            raise FileNotFoundError(
                f"{place} has only part of the MNIST IDX files: {', '.join(missing)} missing"
            )
    names = ", ".join(f"{stem}[.gz]" for stem in _IDX_STEMS.values())
    raise FileNotFoundError(
        f"no MNIST data in {folder}: looked for {MNIST_FILE} (keys x_train, y_train, x_test, y_test, the "
        f"Keras layout) and the official IDX files {names} in {' and '.join(str(p) for p in looked)}; "
        + _how_to_provide("them")
    )


def _celeba_arrays(folder: Path) -> tuple[dict[str, np.ndarray], Path]:
    """CelebA of ``folder`` and the file read: celeba64.npz, else the official layout, prepared and cached."""
    npz = folder / CELEBA_FILE
    if not npz.is_file():
        npz = _prepared_celeba(folder)
    arrays = _read_npz(npz, _CELEBA_KEYS, optional=("filenames", "source"))
    images, attrs, names, partition = (arrays[k] for k in _CELEBA_KEYS)
    n = images.shape[0]
    if images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"{npz}: images are {images.dtype} {images.shape}, expected uint8 [N, 64, 64, 3] (RGB, cropped "
            "and resized as prepare_celeba does); re-create the file with prepare_celeba"
        )
    if attrs.shape != (n, names.shape[0]) or partition.shape != (n,):
        raise ValueError(
            f"{npz}: attrs {attrs.shape}, attr_names {names.shape} and partition {partition.shape} do not "
            f"match {n} images; re-create the file with prepare_celeba"
        )
    return arrays, npz


def _prepared_celeba(folder: Path) -> Path:
    """Find the official layout in ``folder`` (or its torchvision ``celeba/``); prepare it unless cached."""
    for src in (folder, folder / "celeba"):
        if any((src / name).exists() for name in _CELEBA_LAYOUT):
            break
    else:
        raise FileNotFoundError(
            f"no CelebA data in {folder}: looked for {CELEBA_FILE} (see nbhelpers/sample_data/README.md for "
            f"its keys) and the official aligned layout {_CELEBA_LAYOUT[0]}/*.jpg, {_CELEBA_LAYOUT[1]}, "
            f"{_CELEBA_LAYOUT[2]} in {folder} and {folder / 'celeba'}; " + _how_to_provide("them")
        )
    if _is_writable(folder):
        target = folder / CELEBA_FILE
    else:
        tag = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:12]
        target = config.cache_dir() / f"celeba64_{tag}.npz"
        if target.is_file():
            return target
    return prepare_celeba(src, target)


def _is_writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, not guessed from permission bits."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def _read_npz(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (+ those of ``optional`` present) of an npz, cached while the file is unchanged."""
    stat = path.stat()
    return dict(_read_npz_cached(str(path), stat.st_mtime_ns, stat.st_size, keys, optional))


@lru_cache(maxsize=4)
def _read_npz_cached(
    path: str, mtime_ns: int, size: int, keys: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, np.ndarray]:
    try:
        # Our own handle: np.load leaks the one it opens when a corrupt zip raises.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise KeyError(missing)
            arrays = {k: npz[k] for k in (*keys, *(k for k in optional if k in npz.files))}
    except KeyError as err:
        raise ValueError(
            f"{path} lacks the keys {', '.join(err.args[0])} (it has {', '.join(_npz_keys(path))}); expected "
            f"{', '.join(keys)}: re-create or re-download it"
        ) from None
    except _CORRUPT as err:
        raise ValueError(
            f"cannot read {path} ({err}): the file is truncated or corrupt; {_remedy(path)}"
        ) from err
    for array in arrays.values():
        array.flags.writeable = False  # shared by later calls through the cache
    return arrays


def _remedy(path: str | os.PathLike) -> str:
    """What to do about a damaged npz: one this package prepared (from the official CelebA layout beside
    it, or into the cache folder) is prepared again once deleted; any other is re-downloaded."""
    path = Path(path)
    prepared_here = path.name == CELEBA_FILE and any(
        (src / _CELEBA_LAYOUT[1]).exists() for src in (path.parent, path.parent / "celeba")
    )
    if prepared_here or path.resolve().parent == config.cache_dir().resolve():
        return "delete it: it is prepared again from the official files on the next load"
    return "re-download it"


def _npz_keys(path: str) -> list[str]:
    with np.load(path, allow_pickle=False) as npz:
        return list(npz.files)


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX file (optionally gzipped) as a uint8 array of its stored shape."""
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:  # by content: browsers may unpack a .gz and keep its name, or the reverse
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(
            f"cannot read {path} ({err}): the file is truncated or corrupt; re-download it"
        ) from err
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number); re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated (incomplete header); re-download it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} holds {len(raw) - header} bytes of data, its header {dims} says {expected}: the file is "
            "truncated or corrupt; re-download it"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_attr_list(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``list_attr_celeba.txt``: file names [N], attributes [N, 40] int8 (+1/-1), names [40].

    The leading count line is optional (some copies lack it); when present, the rows must match it.
    """
    try:
        lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} ({err}): re-download it") from err
    count = int(lines.pop(0)) if lines and lines[0].strip().isdigit() else None
    if not lines:
        raise ValueError(f"{path} is empty; re-download it")
    attr_names = np.array(lines[0].split())
    if attr_names.size != CELEBA_N_ATTRIBUTES or any(n.lower().endswith(".jpg") for n in attr_names):
        raise ValueError(
            f"{path}: its header line should name the {CELEBA_N_ATTRIBUTES} attributes "
            f"(5_o_Clock_Shadow ... Young), got {attr_names.size} words starting "
            f"{' '.join(attr_names[:3])!r} (the official format: a count line, the names, then one row per "
            "image); re-download it"
        )
    # One split over the whole body and string comparisons: 10x faster than int() per token.
    tokens = np.array(" ".join(lines[1:]).split())
    width = attr_names.size + 1
    if tokens.size % width or not np.isin(tokens.reshape(-1, width)[:, 1:], ("1", "-1")).all():
        raise ValueError(
            f"{path}: rows must hold a file name and {attr_names.size} values +1/-1 (the official format); "
            "re-download it"
        )
    table = tokens.reshape(-1, width)
    if count is not None and count != table.shape[0]:
        raise ValueError(
            f"{path} holds {table.shape[0]} rows but its first line says {count} images: the file is "
            "truncated or was edited; re-download it"
        )
    filenames = table[:, 0]
    attrs = np.where(table[:, 1:] == "1", 1, -1).astype(np.int8)
    return filenames, attrs, attr_names


def _read_partition_list(path: Path, filenames: np.ndarray) -> np.ndarray:
    """``list_eval_partition.txt`` aligned with ``filenames``: [N] int8 (0 train, 1 val, 2 test)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
        table = dict(line.split() for line in lines if line.strip())
        lookup = {name: int(value) for name, value in table.items()}
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(
            f"cannot parse {path} ({err}): expected '<file>.jpg <0|1|2>' lines; re-download it"
        ) from err
    missing = [name for name in filenames if name not in lookup]
    if missing:
        raise ValueError(
            f"{path} lacks {len(missing)} images of the attribute list, e.g. {missing[0]}; re-download it"
        )
    bad = {name: value for name, value in lookup.items() if value not in (0, 1, 2)}
    if bad:
        name, value = next(iter(bad.items()))
        raise ValueError(
            f"{path}: partitions are 0 (train), 1 (validation) or 2 (test), but {len(bad)} lines hold "
            f"others, e.g. '{name} {value}'; re-download it"
        )
    return np.array([lookup[name] for name in filenames], dtype=np.int8)


def _crop_resize(image: np.ndarray) -> np.ndarray:
    """[218, 178, 3] uint8 aligned face -> [64, 64, 3] uint8: 128x128 crop, 2x2 means rounded half up."""
    crop = image[CELEBA_CROP_ROWS, CELEBA_CROP_COLS].astype(np.uint16)
    blocks = crop.reshape(64, 2, 64, 2, 3).sum(axis=(1, 3))
    return ((blocks + 2) // 4).astype(np.uint8)


def _to_float(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images [n, 28, 28] or [n, H, W, C] -> [n, C*H*W] float32 in [0, 1], flattened (C, H, W)."""
    if images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    flat = images.reshape(images.shape[0], int(np.prod(image_shape))).astype(np.float32)
    flat /= 255.0
    return flat


def _save_npz_atomic(path: Path, **arrays: np.ndarray) -> Path:
    """``np.savez_compressed`` to a temporary file renamed into place: no half-written file on a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        # mkstemp creates the file private (0600); give it the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
