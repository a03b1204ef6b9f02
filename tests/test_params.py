"""The chapters' parameters checked at the top of each chapter (nbhelpers.chapters.params)."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from nbhelpers.chapters import ids
from nbhelpers.chapters import params as P
from nbhelpers.runs import notebook_runner as runner
from tests.conftest import ROOT

BOOK = ROOT / "book"
CHAPTERS = [BOOK / f"{chapter}.ipynb" for chapter in ids.CHAPTERS]


def parameters_cell_and_next(chapter: Path) -> tuple[str, str]:
    """The source of a chapter's parameters cell and of the code cell after it."""
    cells = [c for c in nbformat.read(chapter, as_version=4).cells if c.cell_type == "code"]
    at = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    return cells[at].source, cells[at + 1].source


def defaults(chapter: Path) -> dict:
    namespace: dict = {}
    exec(parameters_cell_and_next(chapter)[0], namespace)  # plain assignments of literals
    return {k: v for k, v in namespace.items() if k != "__builtins__"}


# ---------------------------------------------------------------------------------------------------------
# One value.


@pytest.mark.parametrize(
    "value", [True, 1, np.bool_(True), "True", "true", "TRUE", " yes ", "Yes", "1", np.str_("true")]
)
def test_true_spellings(value):
    assert P.boolean("figure8", value) is True


@pytest.mark.parametrize("value", [False, 0, np.bool_(False), "False", "false", "NO", "no", "0", " 0 "])
def test_false_spellings(value):
    assert P.boolean("figure8", value) is False


@pytest.mark.parametrize("value", ["maybe", "", "on", 2, -1, 0.5, None, ["false"]])
def test_other_bools_are_refused_with_the_name_and_the_spellings(value):
    with pytest.raises(P.ParameterError, match=r"figure8=.*: expected True or False \(or \"true\"/\"false\""):
        P.boolean("figure8", value)


@pytest.mark.parametrize(
    ("value", "expected"), [(0, 0), (7, 7), ("12", 12), (" 3 ", 3), (4.0, 4), (np.int64(5), 5)]
)
def test_integers(value, expected):
    assert P.integer(0)("seed", value) == expected


@pytest.mark.parametrize("value", [-1, "-1", 2.5, "two", True, None, math.inf, "1e3"])
def test_bad_integers_are_refused_with_the_name(value):
    with pytest.raises(P.ParameterError, match=r"parameter seed=.*: expected an integer >= 0"):
        P.integer(0)("seed", value)


def test_optional_values():
    check = P.optional(P.integer(1))
    assert [check("n_attack", v) for v in (None, "None", "none", "null", "", 5, "5")] == [None] * 5 + [5, 5]
    with pytest.raises(P.ParameterError, match=r"n_attack=0: expected an integer >= 1 or None"):
        check("n_attack", 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("cw", ["cw"]),
        ("CW", ["cw"]),
        ("cw,fmn", ["cw", "fmn"]),
        ("cw, fmn ddn", ["cw", "fmn", "ddn"]),
        ("['cw', 'fmn']", ["cw", "fmn"]),
        ('("ddn",)', ["ddn"]),
        (["gradient", "cw"], ["gradient", "cw"]),
        (("fmn",), ["fmn"]),
    ],
)
def test_names_read_text_as_a_list_never_as_letters(value, expected):
    assert P.names(P.ATTACKS)("attacks", value) == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("c", r"unknown name\(s\) \['c'\]"),
        (["cw", "pgd"], r"unknown name\(s\) \['pgd'\]; expected a list of names from 'gradient', 'cw'"),
        ("", "expected at least one name"),
        ([], "expected at least one name"),
        ("cw,cw", "expected each name once"),
        (5, "expected a list of names"),
        ("[cw", "expected a list of names"),
        ([1, 2], "expected a list of names"),
    ],
)
def test_bad_names_are_refused_with_the_name_and_the_valid_ones(value, match):
    with pytest.raises(P.ParameterError, match=r"parameter attacks=.*" + match):
        P.names(P.ATTACKS)("attacks", value)


def test_numbers_fractions_devices_tasks_and_choices():
    assert P.positive_number("outlier_step", "2.5") == 2.5 and P.positive_number("outlier_step", 3) == 3.0
    for bad in (0, -1, math.inf, math.nan, "inf", "x", True):
        with pytest.raises(P.ParameterError, match="outlier_step=.*: expected a finite number > 0"):
            P.positive_number("outlier_step", bad)
    assert P.fraction("outlier_weight", "0.05") == 0.05
    for bad in (0, 1, 1.5, -0.1, "half"):
        with pytest.raises(P.ParameterError, match="outlier_weight=.*: expected a number strictly between 0"):
            P.fraction("outlier_weight", bad)
    assert [P.device("device", d) for d in ("auto", "CPU", "cuda", "cuda:1")] == [
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
    ]
    with pytest.raises(
        P.ParameterError, match=r"device='gpu': expected one of 'auto', 'cpu', 'cuda' or 'cuda:N'"
    ):
        P.device("device", "gpu")
    assert P.task_or_nothing("compare_with", "MNIST:06") == "mnist:0_vs_6"
    assert P.task_or_nothing("compare_with", "") == "" and P.task_or_nothing("compare_with", None) == ""
    with pytest.raises(P.ParameterError, match="compare_with='mnist:6_vs_0': unknown MNIST pair"):
        P.task_or_nothing("compare_with", "mnist:6_vs_0")
    with pytest.raises(P.ParameterError, match="compare_with='mnist': expected 'dataset:attribute'"):
        P.task_or_nothing("compare_with", "mnist")
    assert P.one_of(("quick", "paper"))("profile", "Paper") == "paper"
    with pytest.raises(P.ParameterError, match="profile='full': expected one of 'quick', 'paper'"):
        P.one_of(("quick", "paper"))("profile", "full")


def test_check_seed_is_strict():
    assert P.check_seed(3) == 3 and P.check_seed(np.int32(2)) == 2
    for bad in (-1, "3", 1.0, True, None):
        with pytest.raises(ValueError, match=r"seed must be an integer >= 0 \(a random seed\)"):
            P.check_seed(bad)


def test_the_attack_names_are_the_science_layers():
    from nbhelpers.science.attacks import ATTACKS

    assert P.ATTACKS == ATTACKS


# ---------------------------------------------------------------------------------------------------------
# A chapter's parameters.


def test_papermill_command_line_values_are_read_as_the_chapter_means_them():
    """``papermill ... -p figure8 false -p attacks cw -p seed -1``: what papermill's CLI passes, checked."""
    from papermill.cli import _resolve_type

    given = {
        "figure8": _resolve_type("false"),
        "attacks": _resolve_type("cw"),
        "n_attack": _resolve_type("200"),
    }
    assert given == {"figure8": "false", "attacks": "cw", "n_attack": 200}  # papermill's own reading
    assert P.check_values(ids.LEARNED, given) == {"figure8": False, "attacks": ["cw"], "n_attack": 200}
    with pytest.raises(
        P.ParameterError, match=r"04_learned_classifiers: parameter seed=-1: expected an integer >= 0"
    ):
        P.check_values(ids.LEARNED, {"seed": _resolve_type("-1")})


def test_every_bad_parameter_is_named_at_once():
    with pytest.raises(P.ParameterError) as err:
        P.check_values(ids.BAYES, {"seed": -1, "attacks": "pgd", "outlier_weight": 2, "profile": "quick"})
    message = str(err.value)
    assert message.startswith("03_bayes_robustness: parameter seed=-1")
    assert "attacks='pgd': unknown name(s) ['pgd']" in message and "outlier_weight=2" in message


def test_the_task_is_checked_and_made_canonical():
    assert P.check_values(ids.LEARNED, {"dataset": "MNIST", "attribute": "06"}) == {
        "dataset": "mnist",
        "attribute": "0_vs_6",
    }
    with pytest.raises(P.ParameterError, match="dataset/attribute: unknown CelebA attribute 'Smilng'"):
        P.check_values(ids.LEARNED, {"dataset": "celeba", "attribute": "Smilng"})
    # chapter 5 takes CelebA alone; its own check_real_attribute names the five attributes it takes
    assert P.check_values(ids.REAL, {"dataset": "CelebA", "attribute": "smiling"})["dataset"] == "celeba"
    with pytest.raises(
        P.ParameterError, match="05_real_data: parameter dataset='mnist': expected one of 'celeba'"
    ):
        P.check_values(ids.REAL, {"dataset": "mnist", "attribute": "0_vs_6"})


def test_unknown_chapters_and_missing_parameters_are_named():
    with pytest.raises(ValueError, match="no parameter checks for chapter '99_none'"):
        P.check_values("99_none", {})
    with pytest.raises(P.ParameterError, match="the parameters figure8, results_dir are not set"):
        P.check_parameters(
            ids.LEARNED,
            {
                k: v
                for k, v in defaults(BOOK / f"{ids.LEARNED}.ipynb").items()
                if k not in ("figure8", "results_dir")
            },
        )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_parameter_of_every_chapter_is_checked(chapter):
    assert list(P.CHAPTER_PARAMETERS[chapter.stem]) == list(runner.notebook_parameters(chapter))


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_defaults_pass_unchanged(chapter):
    values = defaults(chapter)
    assert P.check_parameters(chapter.stem, values) == values


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_checks_its_parameters_first(chapter):
    """The cell after the parameters cell takes the checked values before it uses any."""
    _, source = parameters_cell_and_next(chapter)
    constant = next(name for name in ids.__dict__ if getattr(ids, name) == chapter.stem and name.isupper())
    code = [
        line for line in source.splitlines() if line and not line.startswith(("%", "#", "import ", "from "))
    ]
    assert code[0] == f"globals().update(check_parameters(ids.{constant}, globals()))"


def check_cells(chapter: Path) -> list[str]:
    """The chapter's parameters cell, the next cell up to its parameter check (imports and the check) and a
    cell that prints the checked values as JSON."""
    parameters, source = parameters_cell_and_next(chapter)
    body = ast.parse("\n".join(line for line in source.splitlines() if not line.startswith("%"))).body
    upto = next(i for i, node in enumerate(body) if "check_parameters(" in ast.unparse(node))
    names = list(runner.notebook_parameters(chapter))
    show = f"import json\nprint(json.dumps({{name: globals()[name] for name in {names!r}}}))"
    return [parameters, "\n".join(ast.unparse(node) for node in body[: upto + 1]), show]


def check_notebook(tmp_path: Path, chapter: Path) -> Path:
    """A notebook of ``check_cells`` with the chapter's metadata (kernel, language)."""
    nb = nbformat.v4.new_notebook(metadata=nbformat.read(chapter, as_version=4).metadata)
    params, check, show = check_cells(chapter)
    nb.cells = [
        nbformat.v4.new_code_cell(params, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(check),
        nbformat.v4.new_code_cell(show),
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    return tmp_path / "in.ipynb"


def run_check(tmp_path: Path, chapter: Path, parameters: dict) -> tuple[bool, dict]:
    ok = runner.run_notebook(check_notebook(tmp_path, chapter), tmp_path / "out.ipynb", parameters)
    return ok, json.loads((tmp_path / "out.ipynb").read_text())


def test_chapter_4_through_the_notebook_runner(tmp_path):
    chapter = BOOK / f"{ids.LEARNED}.ipynb"
    ok, out = run_check(tmp_path, chapter, {"figure8": "false", "attacks": "cw", "n_attack": "200"})
    assert ok
    values = json.loads(out["cells"][3]["outputs"][0]["text"])
    assert values["figure8"] is False and values["attacks"] == ["cw"] and values["n_attack"] == 200
    assert values["sweep_attacks"] == ["ddn"] and values["seed"] == 0

    ok, out = run_check(tmp_path, chapter, {"seed": -1})
    assert not ok
    error = out["cells"][2]["outputs"][-1]
    assert error["ename"] == "ParameterError"
    assert error["evalue"] == "04_learned_classifiers: parameter seed=-1: expected an integer >= 0"


def test_chapter_4_through_papermill_command_line(tmp_path):
    """``papermill ... -p figure8 false -p attacks cw``: the chapter's cells get False and ["cw"] (a bad value
    stops the run: see the notebook runner's test above, which papermill's own run would only make slower)."""
    pytest.importorskip("papermill")
    notebook = check_notebook(tmp_path, BOOK / f"{ids.LEARNED}.ipynb")
    papermill = [sys.executable, "-m", "papermill", str(notebook), str(tmp_path / "out.ipynb")]
    args = ["-p", "figure8", "false", "-p", "attacks", "cw", "-p", "n_attack", "200", "--log-level", "ERROR"]
    subprocess.run([*papermill, *args], check=True, capture_output=True, text=True, timeout=300)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    values = json.loads(out.cells[-1].outputs[0]["text"])
    assert values["figure8"] is False and values["attacks"] == ["cw"] and values["n_attack"] == 200
