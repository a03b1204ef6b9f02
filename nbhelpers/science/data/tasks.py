"""Real data for the paper's 15 binary tasks: 12 CelebA attributes and 3 MNIST digit pairs.

``load_task(dataset, attribute)`` returns flattened float images in [0, 1] with 0/1 labels and
the official train/test split. Where the images come from, in order:

1. the ``data_dir`` argument, else ``$NBHELPERS_DATA_DIR`` (``nbhelpers.core.paths.data_dir``), a folder
   holding either prepared files (``mnist.npz``, ``celeba64.npz``) or the official layouts (MNIST
   IDX files; CelebA ``img_align_celeba/`` with its attribute and partition lists, prepared once);
2. otherwise the small real sample shipped in ``nbhelpers/sample_data`` (see its README).

CelebA faces are cropped to rows 50:178, columns 25:153 and resized to 64x64, as the paper's MFA
code (gans-n-gmms) did.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nbhelpers.science.data.files import (
    CELEBA_SHAPE,
    CELEBA_TEST_PARTITION,
    CELEBA_TRAIN_PARTITIONS,
    MNIST_SHAPE,
    celeba_arrays,
    mnist_arrays,
    resolve_folder,
    to_float,
)

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


@dataclass
class TaskData:
    """One binary task's labelled train/test split: the real images with their official split, or samples
    drawn from the task's generative models.

    Images are flattened in (C, H, W) order; ``to_hwc`` turns them back for plotting. ``variant``: "real", or
    the model pair the samples were drawn from ("symmetric", ...), which ``pair`` then holds (class 0,
    class 1), so that more samples can be drawn.
    """

    dataset: str
    attribute: str
    x_train: np.ndarray = field(repr=False)  # [n_train, d] float32 in [0, 1]
    y_train: np.ndarray = field(repr=False)  # [n_train] int64; 1 = attribute present / second digit
    x_test: np.ndarray = field(repr=False)  # [n_test, d] float32 in [0, 1]
    y_test: np.ndarray = field(repr=False)  # [n_test] int64
    image_shape: tuple[int, int, int]  # (C, H, W)
    class_names: tuple[str, str]  # (class 0, class 1)
    source: str  # "sample" or the data folder used (of the real images, or those the models were fitted to)
    variant: str = "real"
    pair: tuple[Any, Any] | None = field(default=None, repr=False)  # (class 0, class 1) MFAs of samples

    @property
    def description(self) -> str:
        """ "real celeba/Male (bundled sample): 720 train, 200 test images" or "symmetric mnist/0_vs_6: 1000
        train, 200 test samples"."""
        counts = f"{len(self.y_train)} train, {len(self.y_test)} test"
        if self.variant == "real":
            return f"real {self.dataset}/{self.attribute} ({source_label(self.source)}): {counts} images"
        return f"{self.variant} {self.dataset}/{self.attribute}: {counts} samples"

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
    folder, source = resolve_folder(data_dir)

    if dataset == "mnist":
        arrays = mnist_arrays(folder)
        digits = (int(attribute[0]), int(attribute[-1]))
        class_names = (str(digits[0]), str(digits[1]))
        images = {"train": arrays["x_train"], "test": arrays["x_test"]}
        labels = {split: arrays[f"y_{split}"] for split in images}
        # -1 marks the other eight digits, which the task drops.
        classes = {s: np.select([labels[s] == digits[0], labels[s] == digits[1]], [0, 1], -1) for s in images}
        image_shape = MNIST_SHAPE
    else:
        arrays, path = celeba_arrays(folder)
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
        out[f"x_{split}"] = to_float(images[split][keep], image_shape)
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


BUNDLED_SAMPLE = "bundled sample"  # how results and stamps name the sample shipped with the package


def source_label(source: str) -> str:
    """A ``TaskData.source`` for display and result files: "bundled sample", or "data folder NAME" with the
    folder's name only (a printed or recorded path would name the machine's folders)."""
    if source in ("sample", BUNDLED_SAMPLE) or source.startswith("data folder "):
        return BUNDLED_SAMPLE if source == "sample" else source  # already a label
    return f"data folder {Path(source).name}"
