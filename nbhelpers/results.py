"""Result files: one JSON per (chapter, dataset, attribute, profile, seed), written atomically.

Chapters 3-5 write their numbers here; the sweep and the summary chapter read them back.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbhelpers
from nbhelpers.config import checkpoints_dir, env_flag
from nbhelpers.config import results_dir as default_results_dir

SCHEMA_VERSION = 1


def result_path(
    chapter: str,
    dataset: str,
    attribute: str,
    profile: str,
    seed: int,
    results_dir: str | os.PathLike | None = None,
) -> Path:
    """``<results_dir>/<profile>/<chapter>__<dataset>__<attribute>__seed<seed>.json``."""
    base = Path(results_dir) if results_dir else default_results_dir()
    return base / profile / f"{chapter}__{dataset}__{attribute}__seed{seed}.json"


def code_version() -> str:
    """Package version plus a short hash of the nbhelpers sources, so results know what made them."""
    digest = hashlib.sha256()
    package_dir = Path(nbhelpers.__file__).parent
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{nbhelpers.__version__}+{digest.hexdigest()[:12]}"


def _package_dir(package_dir: str | os.PathLike | None) -> Path:
    return Path(nbhelpers.__file__).parent if package_dir is None else Path(package_dir)


def _module_file(package_dir: Path, name: str) -> Path | None:
    """The source of module ``name`` ("nbhelpers.models.cnn") in the package, None when not a module."""
    parts = name.split(".")[1:]
    if not parts:
        return package_dir / "__init__.py"
    for candidate in (
        package_dir.joinpath(*parts).with_suffix(".py"),
        package_dir.joinpath(*parts, "__init__.py"),
    ):
        if candidate.is_file():
            return candidate
    return None


def _statements(tree: ast.AST) -> Iterator[ast.AST]:
    """Every statement of ``tree``, nested ones included; imports are statements, so this finds them all
    without visiting the (far more numerous) expressions."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            todo.extend(child for child in getattr(node, field, ()) if isinstance(child, ast.AST))


def _imported_modules(tree: ast.AST, package_dir: Path) -> set[str]:
    """The nbhelpers modules that ``tree`` imports anywhere (top level or inside functions), with the
    packages above each (importing ``a.b`` runs ``a/__init__.py``)."""
    found: set[str] = set()
    for node in _statements(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from nbhelpers.x import y": y may be a submodule or a name in x
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] != "nbhelpers":
                continue
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if _module_file(package_dir, prefix) is not None:
                    found.add(prefix)
    return found


def source_modules(module: str | Sequence[str], package_dir: str | os.PathLike | None = None) -> list[str]:
    """``module`` (or several) and every nbhelpers module it imports, directly or through others (sorted
    names). ``package_dir``: the package's folder (default: this nbhelpers).
    """
    package_dir = _package_dir(package_dir)
    todo = [module] if isinstance(module, str) else list(module)
    if not todo:
        raise ValueError("name at least one module of the nbhelpers package (e.g. 'nbhelpers.datasets')")
    for name in todo:
        if name.split(".")[0] != "nbhelpers" or _module_file(package_dir, name) is None:
            raise ValueError(f"{name!r} is not a module of the nbhelpers package (e.g. 'nbhelpers.datasets')")
    seen: set[str] = set()
    while todo:  # one walk over the import graph, each file parsed once
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            path = _module_file(package_dir, name)
            todo.extend(
                _imported_modules(ast.parse(path.read_text(), filename=str(path)), package_dir) - seen
            )
    return sorted(seen)


def _sources_version(modules: list[str], package_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in modules:
        digest.update(name.encode())
        digest.update(_module_file(package_dir, name).read_bytes())
    return f"{nbhelpers.__version__}+{digest.hexdigest()[:12]}"


def source_version(module: str | Sequence[str], package_dir: str | os.PathLike | None = None) -> str:
    """Package version plus a short hash of the sources of ``source_modules(module)`` (one module or
    several): what a cache of their work depends on. Unlike ``code_version``, editing a module they do not
    import keeps it.
    """
    package_dir = _package_dir(package_dir)
    return _sources_version(source_modules(module, package_dir), package_dir)


def notebook_modules(notebook: str | os.PathLike, package_dir: str | os.PathLike | None = None) -> list[str]:
    """The nbhelpers modules a notebook's code cells import, with all that those import (sorted names).

    IPython lines (``%magic``, ``!shell``) are dropped first; a cell that still does not parse counts as
    importing the whole package.
    """
    package_dir = _package_dir(package_dir)
    found: set[str] = set()
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            return sorted(
                ".".join(("nbhelpers", *p.relative_to(package_dir).with_suffix("").parts)).removesuffix(
                    ".__init__"
                )
                for p in package_dir.rglob("*.py")
            )
        found |= _imported_modules(tree, package_dir)
    return source_modules(sorted(found), package_dir) if found else []


def notebook_source_version(notebook: str | os.PathLike, package_dir: str | os.PathLike | None = None) -> str:
    """Package version plus a short hash of the sources of ``notebook_modules(notebook)``: the code a
    chapter runs. The sweep stamps it on each result; editing a module the chapter does not use keeps it."""
    package_dir = _package_dir(package_dir)
    return _sources_version(notebook_modules(notebook, package_dir), package_dir)


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write JSON to a temporary file beside ``path`` and rename it into place.

    A process killed half-way leaves either the old file or none, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=_jsonable)
            handle.write("\n")  # a text file ends with a newline (diffs, cat, git)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: Set (to anything but "" or "0") by the sweep for the chapters it runs: ``save_result`` then keeps the run's
#: checkpoints, and the sweep deletes them once the result has left its staging folder, so that a sweep
#: killed in between resumes from them instead of from nothing.
KEEP_CHECKPOINTS_ENV = "NBHELPERS_KEEP_CHECKPOINTS"


def run_checkpoints_dir(chapter: str, dataset: str, attribute: str, profile: str, seed: int) -> Path:
    """Where one chapter run keeps its finished steps (``nbhelpers.checkpoints``) until its result is saved:
    ``<checkpoints_dir()>/<chapter>__<dataset>__<attribute>__<profile>__seed<seed>``."""
    return checkpoints_dir() / f"{chapter}__{dataset}__{attribute}__{profile}__seed{seed}"


def save_result(
    chapter: str,
    dataset: str,
    attribute: str,
    profile: str,
    seed: int,
    metrics: dict[str, Any],
    results_dir: str | os.PathLike | None = None,
    **extra: Any,
) -> Path:
    """Save one run's metrics with the parameters and code version that produced them, then delete the
    run's checkpoints (``run_checkpoints_dir``): the result now holds what they were kept for (unless
    ``$NBHELPERS_KEEP_CHECKPOINTS`` says that a sweep will, see :data:`KEEP_CHECKPOINTS_ENV`)."""
    payload = {
        "schema": SCHEMA_VERSION,
        "chapter": chapter,
        "dataset": dataset,
        "attribute": attribute,
        "profile": profile,
        "seed": seed,
        "code_version": code_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "metrics": metrics,
        **extra,
    }
    path = write_json_atomic(result_path(chapter, dataset, attribute, profile, seed, results_dir), payload)
    if not env_flag(KEEP_CHECKPOINTS_ENV):
        shutil.rmtree(run_checkpoints_dir(chapter, dataset, attribute, profile, seed), ignore_errors=True)
    return path


def load_results(profile: str, results_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Every result file of ``profile``, sorted by file name; unreadable files raise with their path.

    Other JSON files in the folder (e.g. a ``manifest.json`` of committed results) are not results: a
    result names its chapter and holds its metrics."""
    base = (Path(results_dir) if results_dir else default_results_dir()) / profile
    out = []
    for path in sorted(base.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"result file {path} is not valid JSON ({err}); delete it and re-run") from err
        if isinstance(payload, dict) and "chapter" in payload and "metrics" in payload:
            out.append(payload)
    return out


def _jsonable(value: Any) -> Any:
    """numpy / torch scalars and arrays to plain Python."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__} in a result file")
