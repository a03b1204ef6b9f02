"""Finished steps of a chapter run kept on disk, so that a run killed half-way resumes where it stopped.

A paper-profile chapter run is a chain of long steps (each attack on each model takes minutes to hours). A
:class:`Checkpoints` folder holds the outcome of every finished step (``run(step, fn, **inputs)``, see
``nbhelpers.chapters.steps``) under a key that fingerprints the step function, every input it is given
(tensors, arrays, models, settings) and the sources of the code it runs: running the chapter again loads the
finished steps and computes only the rest; a changed input or changed code misses and recomputes.
``nbhelpers.runs.results.save_result`` deletes the run's folder once its result file is written.

The files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``: only tensors,
plain Python values and the package's own result types and models (:data:`SAFE_TYPES`) can come out of
them, so a file planted in the folder cannot run code; one that holds anything else is refused and the step
computed again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import os
import pickle
import shutil
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from nbhelpers.chapters.steps import UNTRACKED, check_step_function
from nbhelpers.core.io import atomic_path
from nbhelpers.core.versions import code_version, source_version

_LOAD_LOCK = threading.Lock()

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
    elif isinstance(value, torch.device):
        digest.update(b"device")  # where a step runs does not change what it computes
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
    elif callable(value) and hasattr(value, "__qualname__"):
        digest.update(f"callable:{getattr(value, '__module__', '')}.{value.__qualname__}".encode())
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def fingerprint(*inputs: Any, code: Sequence[str] | None = None) -> str:
    """A 16-hex-digit key of ``inputs`` and of the code that computes from them: the sources of the nbhelpers
    modules ``code`` and what they import (``source_version``), or the whole package (``code_version``)
    when None."""
    version = code_version() if code is None else source_version(code)
    digest = hashlib.sha256(version.encode())
    for value in inputs:
        _update(digest, value)
    return digest.hexdigest()[:16]


def _package_modules(value: Any) -> set[str]:
    """The nbhelpers modules defining ``value``'s classes (models and results passed to a step), so that
    editing a model's code misses its checkpoints."""
    found: set[str] = set()
    values = list(value.values()) if isinstance(value, dict) else [value]
    for item in values:
        if isinstance(item, (list, tuple)):
            found |= set().union(*(_package_modules(i) for i in item)) if item else set()
        elif type(item).__module__.startswith("nbhelpers."):
            found.add(type(item).__module__)
    return found


def _own_source(fn: Callable[..., Any]) -> str:
    """The code of a step function outside the package: its module's source, else the function's own (a
    function typed into a notebook cell has no file), else its bytecode."""
    for target in (sys.modules.get(fn.__module__), fn):
        try:
            return inspect.getsource(target)
        except (OSError, TypeError):
            continue
    return fn.__code__.co_code.hex()


def step_key(step: str, fn: Callable[..., Any], inputs: dict[str, Any]) -> str:
    """The key of step ``step`` computed by ``fn(**inputs)``: the function, the inputs that change its
    outcome (all but :data:`nbhelpers.chapters.steps.UNTRACKED`) and the sources of the function's module,
    what it imports and the modules of the package objects it is given. A function outside the package (a
    script's, a notebook's) is keyed by its own source and the whole package's (``code_version``)."""
    tracked = {name: value for name, value in sorted(inputs.items()) if name not in UNTRACKED}
    name = f"{fn.__module__}.{fn.__qualname__}"
    if fn.__module__ != "nbhelpers" and not fn.__module__.startswith("nbhelpers."):
        return fingerprint(step, name, _own_source(fn), tracked)
    code = sorted({fn.__module__} | _package_modules(tracked))
    return fingerprint(step, name, tracked, code=code)


@functools.cache
def safe_types() -> tuple[Any, ...]:
    """What a checkpoint may hold besides tensors and plain values: the package's step outcomes and models,
    the torch layers they are built of, and numpy arrays and scalars (their reconstruction functions)."""
    from numpy._core.multiarray import _reconstruct, scalar

    from nbhelpers.chapters.learned import Fitted
    from nbhelpers.science.attacks import AttackOutcome
    from nbhelpers.science.bounds import SubspaceDistances
    from nbhelpers.science.models import CNN, LinearSVMModule, RBFSVMModule

    numpy_types = [np.ndarray, np.dtype, _reconstruct, scalar]
    numpy_types += [type(np.dtype(kind)) for kind in ("f8", "f4", "i8", "i4", "u1", "b1")]
    torch_layers = [torch.nn.Sequential, torch.nn.Conv2d, torch.nn.LeakyReLU, torch.nn.Linear]
    package = [Fitted, AttackOutcome, SubspaceDistances, CNN, LinearSVMModule, RBFSVMModule]
    return (*package, *torch_layers, *numpy_types)


class Checkpoints:
    """The finished steps of one run, one file per step: ``<folder>/<step>__<key>.pt``.

    ``folder`` None disables checkpointing (every step computes). ``run(step, fn, **inputs)`` is the one
    call a step needs (the ``nbhelpers.chapters.steps.Steps`` protocol).
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

    def run(self, step: str, fn: Callable[..., T], /, **inputs: Any) -> T:
        """``fn(**inputs)``, or its value saved by an earlier run of ``step`` with the same function, inputs
        and code (see :func:`step_key`). ``fn`` must be a module-level function; the value is saved
        (atomically) as soon as it is computed and may hold what :func:`safe_types` allows."""
        check_step_function(fn)
        if self.folder is None:
            return fn(**inputs)
        path = self.path(step, step_key(step, fn, inputs))
        if path.exists():
            try:
                value = self.load(path)
            except Exception as err:  # a damaged or foreign file only costs the recomputation
                print(f"[checkpoint] {step}: could not read {path.name} ({err}); computing it again")
            else:
                print(f"[checkpoint] {step}: loaded, finished by an earlier run")
                return value
        value = fn(**inputs)
        self.save(path, value)
        return value

    @staticmethod
    def load(path: Path) -> Any:
        """The value saved in ``path``; anything but tensors, plain values and :func:`safe_types` is refused
        (``pickle.UnpicklingError``) before it is built, so no code in the file runs."""
        # safe_globals edits one process-wide list: two threads loading at once (train_classifiers'
        # overlapped SVM fits) would each undo the other's entries on leaving it.
        with _LOAD_LOCK, torch.serialization.safe_globals(list(safe_types())):
            return torch.load(path, map_location="cpu", weights_only=True)

    @classmethod
    def save(cls, path: Path, value: Any) -> None:
        """Write ``value`` to ``path`` via a temporary file: a run killed while saving leaves no file. A value
        that ``load`` would refuse (a type outside :func:`safe_types`) raises ``TypeError`` instead of being
        saved and recomputed on every run."""
        with atomic_path(path) as tmp:
            torch.save(value, tmp)
            try:
                cls.load(tmp)
            except pickle.UnpicklingError as err:
                raise TypeError(
                    f"the value of step {path.name.split('__')[0]} holds a type checkpoints cannot load back "
                    f"safely; add it to safe_types() if it is the package's own: {err}"
                ) from err

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
    """The checkpoints of one chapter run: ``nbhelpers.runs.results.run_checkpoints_dir`` (in the cache
    folder), deleted by ``save_result`` once the run's result file is written."""
    from nbhelpers.runs.results import run_checkpoints_dir

    return Checkpoints(run_checkpoints_dir(chapter, dataset, attribute, profile, seed))
