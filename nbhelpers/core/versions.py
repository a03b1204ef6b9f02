"""Version stamps of the package's sources: what a result, a cached fit or a checkpoint was made by.

``code_version`` hashes every source of the package; ``source_version`` only the named modules and the
package modules they import (directly or not), so that an edit elsewhere keeps a cache; the notebook
variants find the modules a chapter's cells import.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import nbhelpers


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
