"""Reading the real images from disk: ``mnist.npz`` or MNIST's IDX files, ``celeba64.npz`` or the official
aligned CelebA layout (prepared once into a ``celeba64.npz``), and the sample shipped with the package."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import struct
import tempfile
import warnings
import zipfile
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from nbhelpers.core import paths
from nbhelpers.core.io import save_npz_atomic
from nbhelpers.core.progress import tqdm

SAMPLE_DIR = Path(__file__).parents[2] / "sample_data"
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
# The key of a prepared celeba64.npz that records what it was prepared from (``_layout_fingerprint``).
PREPARED_FROM = "prepared_from"
_CORRUPT = (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError)
_GZIP_MAGIC = b"\x1f\x8b"


def prepare_celeba(src_dir: str | os.PathLike, out_path: str | os.PathLike, *, progress: bool = True) -> Path:
    """Turn the official aligned CelebA layout into a ``celeba64.npz`` (one-time step).

    ``src_dir`` holds ``img_align_celeba/*.jpg`` (178x218), ``list_attr_celeba.txt`` and
    ``list_eval_partition.txt``. Every listed face whose jpg exists is cropped to rows 50:178,
    columns 25:153 and reduced to 64x64 by the mean of each 2x2 block, rounded half up (what
    ``cv2.resize`` with INTER_LINEAR gives for this exact 2x reduction). The output has the keys
    ``images`` [N, 64, 64, 3] uint8 RGB, ``attrs`` [N, 40] int8 (+1/-1), ``attr_names`` [40],
    ``filenames`` [N], ``partition`` [N] int8, ``source`` [N] int8 (0: full-resolution jpg) and
    ``prepared_from`` (the sizes and SHA-256 of the two lists and the number of jpgs, as JSON: a later load
    prepares the file again when they change), and is written atomically.
    """
    from PIL import Image

    src_dir = Path(src_dir)
    missing = [name for name in _CELEBA_LAYOUT if not (src_dir / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{src_dir} lacks {', '.join(missing)}: the official aligned CelebA layout is "
            f"{_CELEBA_LAYOUT[0]}/*.jpg, {_CELEBA_LAYOUT[1]} and {_CELEBA_LAYOUT[2]}"
        )
    fingerprint = _layout_fingerprint(src_dir)
    attr_path = src_dir / "list_attr_celeba.txt"
    filenames, attrs, attr_names, count = _read_attr_list(attr_path)
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
            f"{image_dir}; preparing the others into {out_path} (loads of the folder prepare their "
            f"{CELEBA_FILE} again once its images or lists change, e.g. when the download is complete)",
            stacklevel=2,
        )
    listed = set(filenames.tolist())
    unlisted = sorted(name for name in on_disk if name.lower().endswith(".jpg") and name not in listed)
    if unlisted:
        why = (
            "it has no count line to check it against, so it may be truncated"
            if count is None
            else f"its count line says {count}"
        )
        warnings.warn(
            f"{len(unlisted)} jpgs in {image_dir} are not listed in {attr_path} (e.g. {unlisted[0]}), which "
            f"lists {len(filenames)} images ({why}): they are left out of {out_path}; re-download "
            f"{attr_path.name} to include them (the file is prepared again when the list changes)",
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
    return save_npz_atomic(
        Path(out_path),
        images=images,
        attrs=attrs,
        attr_names=attr_names,
        filenames=filenames,
        partition=partition,
        source=np.zeros(len(filenames), dtype=np.int8),
        **{PREPARED_FROM: np.array(fingerprint)},
    )


def resolve_folder(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The folder to read and the ``source`` label: the argument, the env var, else the sample."""
    folder = paths.data_dir(data_dir)
    if folder is None:
        return SAMPLE_DIR, "sample"
    if folder.is_file():
        raise NotADirectoryError(
            f"data folder {folder} is a file (from the data_dir argument or ${paths.DATA_DIR_ENV}): "
            f"pass the folder that holds it, {folder.parent}"
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            f"data folder {folder} does not exist (from the data_dir argument or ${paths.DATA_DIR_ENV}): "
            f"create it with the data, fix the path, or unset both to use the bundled sample"
        )
    return folder, str(folder)


def _how_to_provide(what: str) -> str:
    return (
        f"put {what} there, point ${paths.DATA_DIR_ENV} or the data_dir argument at a folder holding them, "
        "or unset both to use the bundled sample"
    )


def mnist_arrays(folder: Path) -> dict[str, np.ndarray]:
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
        arrays[f"y_{split}"] = _digit_labels(y, f"MNIST y_{split} in {npz}")
        arrays[f"x_{split}"] = x.reshape(-1, 28, 28)
    return arrays


def _digit_labels(y: np.ndarray, what: str) -> np.ndarray:
    """MNIST labels [n] as they are when they are integers 0..9 (whole-number floats are read as integers);
    anything else raises, naming ``what``: a task would otherwise find no images of its digits."""
    if y.dtype.kind in "iu":
        labels = y
    elif y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        labels = y.astype(np.int64)
    else:
        bad = y[~(np.isfinite(y) & (y == np.round(y)))] if y.dtype.kind == "f" else y
        example = f" (e.g. {bad.flat[0].item()!r})" if bad.size else ""
        raise ValueError(
            f"{what} holds {y.dtype} labels that are not whole digits{example}: expected integer labels 0..9 "
            "(the Keras mnist.npz layout); fix or re-download the file"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"{what} holds labels from {labels.min()} to {labels.max()}: expected the digits 0..9; "
            "fix or re-download the file"
        )
    return labels


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


def celeba_arrays(folder: Path) -> tuple[dict[str, np.ndarray], Path]:
    """CelebA of ``folder`` and the file read: celeba64.npz, else the official layout, prepared and cached.

    A celeba64.npz that ``prepare_celeba`` made from the official layout beside it is prepared again when
    that layout's lists or number of images changed since (a celeba64.npz from elsewhere is read as it is).
    """
    npz = folder / CELEBA_FILE
    if not npz.is_file() or _changed_sources(npz, _official_layout(folder)):
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


def _official_layout(folder: Path) -> Path | None:
    """The folder holding the whole official layout: ``folder`` or its torchvision ``celeba/``; else None."""
    for src in (folder, folder / "celeba"):
        if all((src / name).exists() for name in _CELEBA_LAYOUT):
            return src
    return None


def _layout_fingerprint(src: Path) -> str:
    """What a preparation of the official layout in ``src`` reads, as JSON: the size and SHA-256 of each
    list file and the number of jpgs (hashed again only when a list's size or time or the folder changes)."""
    lists = tuple(
        (name, (src / name).stat().st_size, (src / name).stat().st_mtime_ns) for name in _CELEBA_LAYOUT[1:]
    )
    return _fingerprint(str(src), lists, (src / _CELEBA_LAYOUT[0]).stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _fingerprint(src: str, lists: tuple[tuple[str, int, int], ...], images_mtime_ns: int) -> str:
    out: dict[str, dict[str, int | str]] = {}
    for name, size, _ in lists:
        digest = hashlib.sha256()
        with open(Path(src) / name, "rb") as handle:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        out[name] = {"bytes": size, "sha256": digest.hexdigest()}
    images = Path(src) / _CELEBA_LAYOUT[0]
    out[_CELEBA_LAYOUT[0]] = {"jpgs": sum(name.lower().endswith(".jpg") for name in os.listdir(images))}
    return json.dumps(out, sort_keys=True)


def _changed_sources(npz: Path, src: Path | None) -> bool:
    """Whether ``npz``, prepared from the official layout in ``src``, records other sources than ``src``
    holds now (warned about). False without a layout or a record (a file from elsewhere is kept)."""
    if src is None:
        return False
    try:
        with open(npz, "rb") as handle, np.load(handle, allow_pickle=False) as arrays:
            if PREPARED_FROM not in arrays.files:
                return False
            then = json.loads(str(arrays[PREPARED_FROM]))
    except (*_CORRUPT, KeyError):
        return False  # a damaged file: the reader says what to do about it
    now = json.loads(_layout_fingerprint(src))
    changed = [name for name in _CELEBA_LAYOUT if then.get(name) != now.get(name)]
    if not changed:
        return False
    warnings.warn(
        f"{npz} was prepared from other versions of {', '.join(changed)} in {src} (the list files' size or "
        "content, or the number of images, changed since): preparing it again",
        stacklevel=3,
    )
    return True


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
        target = paths.cache_dir() / f"celeba64_{tag}.npz"
        if target.is_file() and not _changed_sources(target, _official_layout(folder)):
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
    if prepared_here or path.resolve().parent == paths.cache_dir().resolve():
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


def _read_attr_list(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """``list_attr_celeba.txt``: file names [N], attributes [N, 40] int8 (+1/-1), names [40] and the count
    line's number (None without one).

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
    return filenames, attrs, attr_names, count


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


def to_float(images: np.ndarray, image_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images [n, 28, 28] or [n, H, W, C] -> [n, C*H*W] float32 in [0, 1], flattened (C, H, W)."""
    if images.ndim == 4:
        images = images.transpose(0, 3, 1, 2)
    flat = images.reshape(images.shape[0], int(np.prod(image_shape))).astype(np.float32)
    flat /= 255.0
    return flat
