"""Running chapters without Jupyter: nbhelpers.runs.notebook_runner (the sweep's ``python`` engine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from nbhelpers.runs import notebook_runner as runner
from tests.conftest import ROOT

NO_JUPYTER = ROOT / "tests" / "data" / "no_jupyter"


def _notebook(path: Path, *cells: tuple[str, list[str]]) -> Path:
    nb = nbformat.v4.new_notebook()
    for source, tags in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# A test notebook"))
    nbformat.write(nb, path)
    return path


def _outputs(nb: dict, index: int) -> list[dict]:
    return nb["cells"][index]["outputs"]


@pytest.mark.parametrize("chapter", sorted((ROOT / "book").glob("0*.ipynb")), ids=lambda p: p.stem)
def test_parameters_are_read_as_papermill_reads_them(chapter):
    assert list(runner.notebook_parameters(chapter)) == list(papermill.inspect_notebook(chapter))


def test_cells_run_in_order_with_injected_parameters_and_their_output(tmp_path):
    source = _notebook(
        tmp_path / "in.ipynb",
        ('n = 2\nlabel: str = "default"', ["parameters"]),
        ("%matplotlib inline\nimport matplotlib.pyplot as plt\nprint('n is', n)\nn * 10", []),
        ("fig, ax = plt.subplots()\nax.plot([1, 2])\nfig", []),
        ("import pandas as pd\ndisplay(pd.DataFrame({'a': range(70)}))\nlabel", []),
    )
    assert runner.notebook_parameters(source) == {"n": "2", "label": '"default"'}
    out = tmp_path / "out.ipynb"
    assert runner.run_notebook(source, out, {"n": 3, "label": "given"}) is True
    nb = json.loads(out.read_text())
    assert nb["cells"][2]["metadata"]["tags"] == ["injected-parameters"]
    assert nb["cells"][2]["source"] == "# Parameters\nn = 3\nlabel = 'given'\n"
    assert _outputs(nb, 3)[0] == {"output_type": "stream", "name": "stdout", "text": "n is 3\n"}
    assert _outputs(nb, 3)[1]["data"] == {"text/plain": "30"}
    assert _outputs(nb, 4) == []  # a figure is not stored as text
    table = _outputs(nb, 5)[0]["text"]
    assert "69  69" in table and "rows x" not in table  # whole tables, not pandas' truncated repr
    assert _outputs(nb, 5)[1]["data"] == {"text/plain": "'given'"}
    assert [c["execution_count"] for c in nb["cells"][1:]] == [1, 2, 3, 4, 5]
    nbformat.validate(nbformat.reads(out.read_text(), as_version=4))


def test_the_runner_executes_what_papermill_would(tmp_path, capsys):
    """Non-finite parameters, '%' and '!' that are code, annotations, pickling, old outputs: as in Jupyter."""
    source = _notebook(
        tmp_path / "in.ipynb",
        ("f = 1.0\ng = [0.0]\nn = 1", ["parameters"]),
        ('y = (n\n     != 2)\nz = (7\n  % 3)\ntext = """\n% not a magic\n!not a shell line\n"""', []),
        ("!echo skipped\nif n:\n    %matplotlib inline\nprint('after the magics')", []),
        ("x: int = 1\nannotations = dict(__annotations__)", []),
        (
            "import pickle\ndef twice(v):\n    return 2 * v\n"
            "restored = pickle.loads(pickle.dumps(twice))(21)",
            [],
        ),
        ("print(f, g, y, z, repr(text), annotations, restored)", []),
    )
    # outputs of an earlier execution, in a cell that will not run
    stale = nbformat.read(source, as_version=4)
    stale.cells.append(nbformat.v4.new_code_cell("1 / 0"))
    stale.cells.append(nbformat.v4.new_code_cell("'never'", execution_count=7))
    stale.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="STALE\n")]
    nbformat.write(stale, source)
    out = tmp_path / "out.ipynb"
    params = {"f": float("nan"), "g": [float("inf"), float("-inf")], "n": 3, "unknown": 1}
    assert runner.run_notebook(source, out, params) is False  # stops at 1 / 0
    nb = json.loads(out.read_text())
    assert nb["cells"][2]["source"] == (
        "# Parameters\nf = float('nan')\ng = [float('inf'), float('-inf')]\nn = 3\nunknown = 1\n"
    )
    printed = _outputs(nb, 7)[0]["text"]
    assert (
        printed
        == "nan [inf, -inf] True 1 '\\n% not a magic\\n!not a shell line\\n' {'x': <class 'int'>} 42\n"
    )
    errors = "".join(
        o.get("text", "") for c in nb["cells"] for o in c.get("outputs", []) if o.get("name") == "stderr"
    )
    assert "Passed unknown parameter: unknown" in capsys.readouterr().err  # in the run's log, as papermill's
    assert "shell line skipped (IPython only): !echo skipped" in errors
    assert _outputs(nb, 9) == [] and nb["cells"][9]["execution_count"] is None  # nothing stale survives


def test_a_raising_cell_stops_the_run_and_is_recorded(tmp_path):
    source = _notebook(
        tmp_path / "in.ipynb",
        ("x = 1", ["parameters"]),
        ("print('before')\nraise KeyError('no such attribute')", []),
        ("print('never')", []),
    )
    out = tmp_path / "out.ipynb"
    assert runner.run_notebook(source, out) is False
    nb = json.loads(out.read_text())
    error = _outputs(nb, 2)[-1]
    assert (error["output_type"], error["ename"], error["evalue"]) == (
        "error",
        "KeyError",
        "'no such attribute'",
    )
    assert _outputs(nb, 2)[0]["text"] == "before\n"
    assert "outputs" not in nb["cells"][3] or _outputs(nb, 3) == []
    status = subprocess.run(
        [sys.executable, "-m", "nbhelpers.runs.notebook_runner", str(source), str(out)], capture_output=True
    ).returncode
    assert status == 1


def test_bad_notebooks_and_parameters_are_refused(tmp_path):
    (tmp_path / "bad.ipynb").write_text("{not json")
    with pytest.raises(runner.NotebookError, match="cannot read notebook"):
        runner.notebook_parameters(tmp_path / "bad.ipynb")
    (tmp_path / "old.ipynb").write_text(json.dumps({"nbformat": 3, "worksheets": []}))
    with pytest.raises(runner.NotebookError, match="not an nbformat-4 notebook"):
        runner.read_notebook(tmp_path / "old.ipynb")
    command = [sys.executable, "-m", "nbhelpers.runs.notebook_runner", "a.ipynb", "b.ipynb"]
    proc = subprocess.run([*command, "--parameters-json", "[1]"], capture_output=True, text=True)
    assert proc.returncode == 2 and "must be a JSON object" in proc.stderr
    proc = subprocess.run([*command], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "cannot read notebook a.ipynb" in proc.stderr


def test_a_chapter_runs_where_jupyter_is_not_installed(tmp_path):
    """Chapter 2 (data, MFA fits, datasets, figures) in a process that cannot import IPython or papermill."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_JUPYTER), str(ROOT)])}
    env["NBHELPERS_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("NBHELPERS_DATA_DIR", None)  # the sample shipped with the package
    check = "import importlib.util as u; print(u.find_spec('IPython'))"
    blocked = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError" in blocked.stderr
    parameters = {"dataset": "mnist", "attribute": "0_vs_6", "results_dir": str(tmp_path / "results")}
    out = tmp_path / "02.ipynb"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbhelpers.runs.notebook_runner",
            str(ROOT / "book" / "02_mfa_datasets.ipynb"),
            str(out),
            "--parameters-json",
            json.dumps(parameters),
        ],
        cwd=ROOT / "book",
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = json.loads(out.read_text())
    text = "".join(o.get("text", "") for c in nb["cells"] for o in c.get("outputs", []))
    assert "training images per class" in text and "Bayes" in text
    assert not [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]


# What were the plotting modules theory_plots, dataset_plots and summary: the chapters' tables and figures.
PLOTTING_MODULES = (
    "nbhelpers.chapters.ch1_theory",
    "nbhelpers.chapters.ch2_datasets",
    "nbhelpers.chapters.display",
    "nbhelpers.chapters.ch3_figures",
    "nbhelpers.chapters.ch4_learned",
    "nbhelpers.chapters.ch5_real",
    "nbhelpers.chapters.comparison",
    "nbhelpers.chapters.ch6_summary",
    "nbhelpers.runs.manifest",
)


def test_the_plotting_modules_import_where_jupyter_is_not_installed():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_JUPYTER), str(ROOT)])}
    code = f"import {', '.join(PLOTTING_MODULES)}; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == "ok\n", proc.stderr[-2000:]


def test_offline_wheels_pin_the_foolbox_of_the_requirements():
    pinned = [
        line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("foolbox==")
    ]
    script = (ROOT / "scripts" / "offline_wheels.sh").read_text()
    assert len(pinned) == 1 and f" {pinned[0]} " in script
