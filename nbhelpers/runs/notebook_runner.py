"""Execute a chapter notebook without Jupyter: ``python -m nbhelpers.runs.notebook_runner``.

The sweep's ``python`` engine, for machines that have the scientific stack but no Jupyter, papermill or
IPython (a bare GPU host). It runs the very cells of the chapter, in order, in one Python namespace:

- the parameters are injected as papermill does, in a cell tagged ``injected-parameters`` right after the
  cell tagged ``parameters``;
- IPython magics (``%matplotlib inline``) are dropped and figures go to the Agg backend;
- each cell's printed output, the value of its last expression (as text) and an error's traceback are
  stored in the executed notebook, which is written atomically (also after a failure, with the error).

The exit status is 0 when every cell ran, 1 when one raised. The process stops itself when its parent
dies, so a killed sweep worker leaves no orphan writing results.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import math
import os
import sys
import threading
import time
import tokenize
import traceback
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from nbhelpers.core.io import write_text_atomic

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


class NotebookError(ValueError):
    """A notebook that cannot be run: the message says what is wrong."""


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def read_notebook(path: str | os.PathLike) -> dict[str, Any]:
    """The notebook at ``path`` as nbformat-4 JSON."""
    path = Path(path)
    try:
        nb = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise NotebookError(f"cannot read notebook {path}: {err}") from None
    if nb.get("nbformat") != 4 or not isinstance(nb.get("cells"), list):
        raise NotebookError(f"{path} is not an nbformat-4 notebook")
    return nb


def notebook_parameters(path: str | os.PathLike) -> dict[str, str]:
    """Names assigned in the cell tagged ``parameters`` -> the source of their default value."""
    return _declared_parameters(read_notebook(path))


def _declared_parameters(nb: dict[str, Any]) -> dict[str, str]:
    """:func:`notebook_parameters` of a notebook already read."""
    cells = [c for c in nb["cells"] if c.get("cell_type") == "code" and PARAMETERS_TAG in _tags(c)]
    if not cells:
        return {}
    source = _source(cells[0])
    out: dict[str, str] = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            for target in targets:
                if isinstance(target, ast.Name):
                    out[target.id] = ast.get_source_segment(source, node.value) or ""
    return out


def _literal(value: Any) -> str:
    """Python source for a JSON value, as papermill writes it (``float('nan')``: ``nan`` is no name)."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _parameters_cell(parameters: dict[str, Any], with_id: bool = True) -> dict[str, Any]:
    lines = ["# Parameters"] + [f"{name} = {_literal(value)}" for name, value in parameters.items()]
    cell = {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": "\n".join(lines) + "\n",
    }
    if with_id:  # cell ids exist from nbformat 4.5 on; an older notebook would be invalid with one
        cell["id"] = uuid.uuid4().hex[:8]
    return cell


def inject_parameters(nb: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``nb`` with an ``injected-parameters`` cell after its ``parameters`` cell (at the top without one)."""
    cells = [c for c in nb["cells"] if INJECTED_TAG not in _tags(c)]
    at = next((i + 1 for i, c in enumerate(cells) if PARAMETERS_TAG in _tags(c)), 0)
    if parameters:
        cells.insert(at, _parameters_cell(parameters, with_id=nb.get("nbformat_minor", 0) >= 5))
    return {**nb, "cells": cells}


def _statement_starts(source: str) -> set[int] | None:
    """Numbers (from 1) of the lines on which a statement starts; None when the source does not tokenize."""
    starts: set[int] = set()
    depth, at_start = 0, True
    skip = (tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENCODING, tokenize.ENDMARKER)
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL):
                at_start = at_start or depth == 0
                continue
            if token.type in skip:
                continue
            if at_start and depth == 0:
                starts.add(token.start[0])
            at_start = False
            if token.type == tokenize.OP and token.string in "([{":
                depth += 1
            elif token.type == tokenize.OP and token.string in ")]}":
                depth = max(0, depth - 1)
    except (tokenize.TokenError, SyntaxError):
        return None
    return starts


def _without_magics(source: str) -> str:
    """Drop IPython line magics (``%matplotlib inline``) and shell escapes (``!cmd``, with a warning):
    they mean nothing outside IPython. Only lines that start a statement are such lines; a ``%`` or ``!``
    that continues an expression or sits inside a string is code."""
    lines = source.splitlines()
    starts = _statement_starts(source)
    kept = []
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("%", "!")) and (starts is None or number in starts):
            if line.lstrip().startswith("!"):
                print(f"[notebook_runner] shell line skipped (IPython only): {line.strip()}", file=sys.stderr)
            indent = line[: len(line) - len(line.lstrip())]
            kept.append(f"{indent}pass")  # keeps a block that held only the magic valid
        else:
            kept.append(line)
    return "\n".join(kept)


class _Tee(io.TextIOBase):
    """Write to the cell's buffer and to the process stream (the run's log)."""

    def __init__(self, buffer: io.StringIO, stream: TextIO) -> None:
        self.buffer_, self.stream = buffer, stream

    def write(self, text: str) -> int:
        self.buffer_.write(text)
        self.stream.write(text)
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _display_text(value: Any) -> str:
    """Text for a displayed value: Markdown as written, tables whole (pandas' repr truncates them)."""
    markdown = getattr(value, "_repr_markdown_", None)
    if callable(markdown):
        return str(markdown())
    to_string = getattr(value, "to_string", None)
    if callable(to_string):
        try:
            return str(to_string())
        except TypeError:
            pass
    return repr(value)


def _display(*values: Any) -> None:
    """Stand-in for IPython's ``display``: prints each value as text."""
    for value in values:
        print(_display_text(value))


def _run_cell(source: str, namespace: dict[str, Any], name: str) -> Any:
    """Execute ``source``; the value of a final expression statement (None otherwise)."""
    tree = ast.parse(source, filename=name)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body = tree.body[:-1]
    # dont_inherit: the cells must not run under this module's ``from __future__ import annotations``
    exec(compile(tree, name, "exec", dont_inherit=True), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), name, "eval", dont_inherit=True), namespace)


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(_Tee(out, sys.__stdout__)),
        contextlib.redirect_stderr(_Tee(err, sys.__stderr__)),
    ):
        yield out, err


def _write_atomic(path: Path, nb: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def run_notebook(
    notebook: str | os.PathLike, output: str | os.PathLike, parameters: dict[str, Any] | None = None
) -> bool:
    """Execute ``notebook`` with ``parameters`` in this process; save the executed copy to ``output``.

    Returns True when every cell ran; on the first raising cell, records its traceback, saves, returns False.
    Runs in the current working directory (the sweep starts it in the notebook's folder).
    """
    import matplotlib

    matplotlib.use("Agg")  # before any chapter code imports pyplot
    import matplotlib.pyplot as plt

    output = Path(output)
    parameters = dict(parameters or {})
    nb = read_notebook(notebook)
    declared = _declared_parameters(nb)
    for name in parameters:
        if declared and name not in declared:  # papermill's warning: a typo would otherwise go unnoticed
            print(f"[notebook_runner] Passed unknown parameter: {name}", file=sys.stderr)
    nb = inject_parameters(nb, parameters)
    for cell in nb["cells"]:  # as papermill does: no output of an earlier execution survives
        if cell.get("cell_type") == "code":
            cell["execution_count"], cell["outputs"] = None, []
    # The cells run as the __main__ module, so that what they define can be pickled (torch.save, workers).
    main_module = types.ModuleType("__main__")
    main_module.__dict__["display"] = _display
    saved_main = sys.modules.get("__main__")
    sys.modules["__main__"] = main_module
    try:
        return _run_cells(nb, output, main_module.__dict__, plt, matplotlib)
    finally:
        if saved_main is not None:
            sys.modules["__main__"] = saved_main


def _run_cells(
    nb: dict[str, Any], output: Path, namespace: dict[str, Any], plt: Any, matplotlib: Any
) -> bool:
    """:func:`run_notebook`'s loop over the cells of ``nb`` in ``namespace``."""
    count = 0
    for index, cell in enumerate(nb["cells"]):
        if cell.get("cell_type") != "code":
            continue
        count += 1
        cell["execution_count"], cell["outputs"] = count, []
        started = time.monotonic()
        error = None
        with _captured() as (out, err):
            try:
                value = _run_cell(_without_magics(_source(cell)), namespace, f"<cell {index}>")
            except BaseException as exc:  # noqa: BLE001 - any failure of chapter code ends the run
                value, error = None, exc
                traceback.print_exc()
        for name, buffer in (("stdout", out), ("stderr", err)):
            if buffer.getvalue():
                cell["outputs"].append({"output_type": "stream", "name": name, "text": buffer.getvalue()})
        if value is not None and not isinstance(value, matplotlib.figure.Figure):
            cell["outputs"].append(
                {
                    "output_type": "execute_result",
                    "execution_count": count,
                    "data": {"text/plain": _display_text(value)},
                    "metadata": {},
                }
            )
        cell.setdefault("metadata", {})["execution_seconds"] = round(time.monotonic() - started, 3)
        plt.close("all")
        if error is not None:
            cell["outputs"].append(
                {
                    "output_type": "error",
                    "ename": type(error).__name__,
                    "evalue": str(error),
                    "traceback": traceback.format_exception(error),
                }
            )
            _write_atomic(output, nb)
            return False
        _write_atomic(output, nb)  # progress survives a kill: the cells so far, with their output
    return True


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[-1][:1]
    except OSError:  # no /proc (macOS) or the process just went
        return True
    return state != "Z"


def exit_when_gone(pid: int, interval: float = 1.0) -> None:
    """Stop this process (status 137) once process ``pid`` has died.

    A background thread polls every ``interval`` seconds, so a killed sweep leaves no run behind.
    """

    def watch() -> None:
        while process_alive(pid):
            time.sleep(interval)
        os._exit(137)

    threading.Thread(target=watch, name="exit-when-gone", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nbhelpers.runs.notebook_runner",
        description="Execute a chapter notebook without Jupyter: cells in order, one namespace, Agg figures.",
    )
    parser.add_argument("notebook", help="the notebook to run")
    parser.add_argument("output", help="where the executed notebook goes")
    parser.add_argument(
        "--parameters-json", default="{}", metavar="JSON", help='e.g. \'{"attribute": "Smiling", "seed": 1}\''
    )
    args = parser.parse_args(argv)
    try:
        parameters = json.loads(args.parameters_json)
    except json.JSONDecodeError as err:
        parser.error(f"--parameters-json is not valid JSON: {err}")
    if not isinstance(parameters, dict):
        parser.error("--parameters-json must be a JSON object of name -> value")
    exit_when_gone(os.getppid())  # the sweep worker that started this run
    try:
        return 0 if run_notebook(args.notebook, args.output, parameters) else 1
    except NotebookError as err:
        print(f"nbhelpers.runs.notebook_runner: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
