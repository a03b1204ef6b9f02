"""Finished steps of a chapter run kept on disk, so that a run killed half-way resumes where it stopped.

A paper-profile chapter run is a chain of long steps (each attack on each model takes minutes to hours). A
:class:`Checkpoints` folder holds the outcome of every finished step under a key that fingerprints all of
the step's inputs (tensors, arrays, models, settings) and the code version: running the chapter again loads
the finished steps and computes only the rest; a changed input or changed code misses and recomputes.
``nbhelpers.results.save_result`` deletes the run's folder once its result file is written.

The files are pickles (``torch.save``) written by this package into the project's cache folder; load only
folders you made yourself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from nbhelpers.results import code_version, run_checkpoints_dir, source_version

T = TypeVar("T")


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))


def _plain_settings(module: torch.nn.Module) -> dict[str, Any]:
    """A module's own settings that are plain values (numbers, strings, tuples of them): its public
    attributes, less ``training`` and fitted results (names ending in "_", e.g. ``history_``)."""
    return {
        key: item
        for key, item in vars(module).items()
        if not key.startswith("_") and not key.endswith("_") and key != "training" and _is_plain(item)
    }


def _update(digest: Any, value: Any) -> None:
    """Feed ``value`` into ``digest``: tensors and arrays by dtype, shape and bytes, modules by class,
    ``state_dict`` and plain attributes, containers item by item, anything else by ``repr``."""
    if isinstance(value, torch.nn.Module):
        digest.update(f"module:{type(value).__module__}.{type(value).__qualname__}".encode())
        _update(digest, value.state_dict())
        # Settings kept as plain attributes (nn.Dropout's p, nn.LeakyReLU's slope) are not in state_dict.
        for name, module in value.named_modules():
            _update(digest, (name, type(module).__qualname__, _plain_settings(module)))
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # bytes, no copy (bfloat16 too)
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array:{array.dtype.str}:{array.shape}".encode())
        if array.dtype == object:
            for item in array.reshape(-1):
                _update(digest, item)
        else:
            digest.update(array.reshape(-1).view(np.uint8))  # the bytes, without a copy
    elif isinstance(value, dict):
        digest.update(f"dict:{len(value)}".encode())
        for key, item in value.items():
            _update(digest, key)
            _update(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__}:{len(value)}".encode())
        for item in value:
            _update(digest, item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(f"dataclass:{type(value).__qualname__}".encode())
        _update(digest, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def fingerprint(*inputs: Any, code: Sequence[str] | None = None) -> str:
    """A 16-hex-digit key of ``inputs`` (see :class:`Checkpoints`) and of the code that computes from them:
    the sources of the nbhelpers modules ``code`` and what they import (``source_version``), or the whole
    package (``code_version``) when None."""
    version = code_version() if code is None else source_version(code)
    digest = hashlib.sha256(version.encode())
    for value in inputs:
        _update(digest, value)
    return digest.hexdigest()[:16]


class Checkpoints:
    """The finished steps of one run, one file per step: ``<folder>/<step>__<key>.pt``.

    ``folder`` None disables checkpointing (every step computes). ``cached(step, inputs, compute)`` is the
    one call a step needs.
    """

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = None if folder is None else Path(folder)

    def __repr__(self) -> str:
        return f"Checkpoints({str(self.folder) if self.folder else None!r})"

    def path(self, step: str, key: str) -> Path:
        if self.folder is None:
            raise ValueError("checkpointing is off (folder None): there is no checkpoint path")
        if not step or not all(c.isalnum() or c in "_-." for c in step):
            raise ValueError(f"a step name must be letters, digits, '_', '-' or '.', got {step!r}")
        return self.folder / f"{step}__{key}.pt"

    def cached(
        self,
        step: str,
        inputs: tuple[Any, ...],
        compute: Callable[[], T],
        code: Sequence[str] | None = None,
    ) -> T:
        """``compute()``, or its value saved by an earlier run of ``step`` with the same ``inputs`` and code.

        ``code``: the nbhelpers modules whose sources (with what they import) ``compute`` runs, e.g.
        ``["nbhelpers.attacks.evaluate"]``, so that editing other modules keeps the checkpoint; None: any
        edit to the package recomputes. The value is saved (atomically) as soon as it is computed; it may
        hold tensors, arrays, modules and plain Python values.
        """
        if self.folder is None:
            return compute()
        path = self.path(step, fingerprint(step, *inputs, code=code))
        if path.exists():
            try:
                value = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as err:  # a damaged file only costs the recomputation
                print(f"[checkpoint] {step}: could not read {path.name} ({err}); computing it again")
            else:
                print(f"[checkpoint] {step}: loaded, finished by an earlier run")
                return value
        value = compute()
        self.save(path, value)
        return value

    @staticmethod
    def save(path: Path, value: Any) -> None:
        """Write ``value`` to ``path`` via a temporary file: a run killed while saving leaves no file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save(value, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def steps(self) -> list[str]:
        """Names of the files of finished steps (sorted)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.glob("*.pt"))

    def clear(self) -> None:
        """Delete the folder and everything in it (a no-op when checkpointing is off or nothing was saved)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def run_checkpoints(chapter: str, dataset: str, attribute: str, profile: str, seed: int) -> Checkpoints:
    """The checkpoints of one chapter run: ``nbhelpers.results.run_checkpoints_dir`` (in the cache folder),
    deleted by ``save_result`` once the run's result file is written."""
    return Checkpoints(run_checkpoints_dir(chapter, dataset, attribute, profile, seed))
