"""Atomic file writes: a process killed half-way leaves the old file or none, never a truncated one."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error it is renamed to ``path``
    (with the permissions of an ordinary new file), otherwise deleted. The folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)  # mkstemp makes the file owner-only; results and models are meant to be shared
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: str | os.PathLike) -> None:
    """Raise unless files can be written in ``folder`` (created if missing): ``NotADirectoryError`` when it
    or a folder on its path is a file, ``PermissionError`` when it cannot be written. The message names it.

    Tried, not guessed from permission bits: a file is created and deleted in the folder, or, when it does
    not exist yet, in the nearest existing folder above it.
    """
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        if probe == folder:
            raise NotADirectoryError(f"{folder} is a file, not a folder")
        raise NotADirectoryError(f"{folder} cannot be created: {probe}, on its path, is a file")
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as err:
        what = folder if probe == folder else f"{probe} (where {folder} would be created)"
        raise PermissionError(f"{what} is not writable ({err.strerror or type(err).__name__})") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented, key-sorted JSON ending in a newline, atomically.

    numpy and torch scalars and arrays are stored as plain numbers and lists."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def json_number(value: float | None) -> float | None:
    """JSON has no NaN: an undefined number (None, NaN or infinite) is stored as null."""
    return None if value is None or not math.isfinite(value) else float(value)


def save_npz_atomic(path: str | os.PathLike, **arrays: Any) -> Path:
    """``np.savez_compressed`` of ``arrays`` to ``path``, atomically."""
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return Path(path)


def _jsonable(value: Any) -> Any:
    """numpy / torch scalars and arrays to plain Python."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a JSON file")
