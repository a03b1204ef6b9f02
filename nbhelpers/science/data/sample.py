"""The small real sample shipped with the package (``nbhelpers/sample_data``), drawn from the full data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nbhelpers.core.io import save_npz_atomic
from nbhelpers.science.data.files import (
    CELEBA_FILE,
    CELEBA_TEST_PARTITION,
    CELEBA_TRAIN_PARTITIONS,
    MNIST_FILE,
    celeba_arrays,
    mnist_arrays,
)
from nbhelpers.science.data.tasks import CELEBA_ATTRIBUTES


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

    mnist = mnist_arrays(folder)
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
    mnist_path = save_npz_atomic(
        out_dir / MNIST_FILE,
        **{f"{k}_{s}": mnist[f"{k}_{s}"][picked[s]] for s in ("train", "test") for k in ("x", "y")},
        source_index_train=picked["train"],
        source_index_test=picked["test"],
    )

    celeba, path = celeba_arrays(folder)
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
    celeba_path = save_npz_atomic(
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
