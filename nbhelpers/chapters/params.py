"""The chapters' papermill parameters, checked at the top of each chapter.

papermill passes ``-p figure8 false`` as the string ``"false"`` (truthy) and ``-p attacks cw`` as the string
``"cw"`` (which a loop reads as the letters c, w). Each chapter's first code cell therefore runs

    globals().update(check_parameters(ids.LEARNED, globals()))

which reads the chapter's parameters (``CHAPTER_PARAMETERS``), turns the spellings users type into the values
the chapter expects (``"false"``, ``"no"``, ``"0"`` -> False; ``"cw,fmn"`` -> ``["cw", "fmn"]``; ``"200"`` ->
200; ``"None"`` -> None) and refuses anything else with the parameter's name and what it accepts. The sweep
checks its ``--param`` values with the same table before any run starts (``check_values``).
"""

from __future__ import annotations

import ast
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nbhelpers.chapters import ids
from nbhelpers.chapters.paper_values import CONVENTIONS
from nbhelpers.chapters.profiles import PROFILES
from nbhelpers.core.device import VALID_DEVICES
from nbhelpers.science.data import canonical_task
from nbhelpers.science.datasets import ASYMMETRIC_BASES

# nbhelpers.science.attacks.ATTACKS, repeated so that checking parameters imports no torch (the sweep's
# planning); tests/test_params.py keeps the two equal.
ATTACKS = ("gradient", "cw", "fmn", "ddn")
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
NONE_WORDS = ("none", "null", "")

Check = Callable[[str, Any], Any]  # (parameter name, value) -> the checked value; raises ParameterError


class ParameterError(ValueError):
    """A chapter parameter of the wrong type or out of range; the message names it and what it accepts."""


def _fail(name: str, value: Any, accepted: str) -> ParameterError:
    return ParameterError(f"parameter {name}={value!r}: expected {accepted}")


def _is_text(value: Any) -> bool:
    return isinstance(value, str | np.str_)


# ---------------------------------------------------------------------------------------------------------
# Checks of one value: each returns the value the chapter uses.


def boolean(name: str, value: Any) -> bool:
    """True/False, 1/0, or (any case) "true"/"false", "yes"/"no", "1"/"0"."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if _is_text(value):
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    spellings = "/".join(f'"{w}"' for pair in zip(TRUE_WORDS, FALSE_WORDS, strict=True) for w in pair)
    raise _fail(name, value, f"True or False (or {spellings}, any case)")


def integer(minimum: int = 0) -> Check:
    """A whole number >= ``minimum``: an int, a float without fraction, or its digits as text."""

    def check(name: str, value: Any) -> int:
        number: Any = None
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            number = int(value)
        elif isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
            number = int(value)
        elif _is_text(value) and re.fullmatch(r"\s*[+-]?\d+\s*", str(value)):
            number = int(str(value))
        if number is None or number < minimum:
            raise _fail(name, value, f"an integer >= {minimum}")
        return number

    return check


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0 (or its text, e.g. "2.5")."""
    number = _number(value)
    if number is None or not (math.isfinite(number) and number > 0):
        raise _fail(name, value, "a finite number > 0")
    return number


def fraction(name: str, value: Any) -> float:
    """A number strictly between 0 and 1 (or its text)."""
    number = _number(value)
    if number is None or not 0 < number < 1:
        raise _fail(name, value, "a number strictly between 0 and 1")
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if _is_text(value):
        try:
            return float(str(value).strip())
        except ValueError:
            return None
    return None


def optional(check: Check) -> Check:
    """None (or "None", "null", "" as text), else what ``check`` accepts."""

    def checked(name: str, value: Any) -> Any:
        if value is None or (_is_text(value) and str(value).strip().lower() in NONE_WORDS):
            return None
        try:
            return check(name, value)
        except ParameterError as err:
            raise ParameterError(f"{err} or None") from None

    return checked


def one_of(choices: Sequence[str]) -> Check:
    """One of ``choices`` (any case)."""

    def check(name: str, value: Any) -> str:
        if _is_text(value):
            by_key = {c.lower(): c for c in choices}
            found = by_key.get(str(value).strip().lower())
            if found is not None:
                return found
        raise _fail(name, value, f"one of {', '.join(map(repr, choices))}")

    return check


def names(choices: Sequence[str]) -> Check:
    """A non-empty list of distinct names from ``choices``; text like "cw", "cw,fmn", "cw fmn" or "['cw']"
    is read as a list (never as letters)."""
    valid = ", ".join(map(repr, choices))
    accepted = (
        f"a list of names from {valid}, e.g. {list(choices[:2])} (or text like {','.join(choices[:2])!r})"
    )

    def check(name: str, value: Any) -> list[str]:
        items = value
        if _is_text(value):
            text = str(value).strip()
            if text.startswith(("[", "(")):
                try:
                    items = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise _fail(name, value, accepted) from None
            else:
                items = [word for word in re.split(r"[\s,]+", text) if word]
        if not isinstance(items, list | tuple) or not all(_is_text(item) for item in items):
            raise _fail(name, value, accepted)
        by_key = {c.lower(): c for c in choices}
        unknown = [item for item in items if str(item).strip().lower() not in by_key]
        if unknown:
            raise ParameterError(
                f"parameter {name}={value!r}: unknown name(s) {unknown}; expected {accepted}"
            )
        out = [by_key[str(item).strip().lower()] for item in items]
        if not out:
            raise _fail(name, value, f"at least one name: {accepted}")
        if len(set(out)) != len(out):
            raise _fail(name, value, f"each name once: {accepted}")
        return out

    return check


def text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not _is_text(value) or not str(value).strip():
        raise _fail(name, value, "a non-empty string")
    return str(value).strip()


def folder(name: str, value: Any) -> str:
    """A folder path: a non-empty string or path (not checked for existence here)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return text(name, value)


def device(name: str, value: Any) -> str:
    """One of ``VALID_DEVICES`` or "cuda:N"."""
    if _is_text(value):
        word = str(value).strip().lower()
        if word in VALID_DEVICES or re.fullmatch(r"cuda:\d+", word):
            return word
    raise _fail(name, value, f"one of {', '.join(map(repr, VALID_DEVICES))} or 'cuda:N'")


def task_or_nothing(name: str, value: Any) -> str:
    """ "dataset:attribute" (e.g. "mnist:0_vs_6"), canonical; "" or None for none."""
    if value is None or (_is_text(value) and not str(value).strip()):
        return ""
    accepted = "'dataset:attribute' (e.g. 'mnist:0_vs_6') or '' for none"
    if not _is_text(value) or str(value).count(":") != 1:
        raise _fail(name, value, accepted)
    dataset, attribute = str(value).split(":")
    try:
        return ":".join(canonical_task(dataset, attribute))
    except ValueError as err:
        raise ParameterError(f"parameter {name}={value!r}: {err}") from None


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed passed to a function: an integer >= 0 (strict: no text), else ``ValueError`` naming ``name``."""
    if isinstance(seed, bool | np.bool_) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"{name} must be an integer >= 0 (a random seed), got {seed!r}")
    return int(seed)


# ---------------------------------------------------------------------------------------------------------
# The chapters' parameters.

_COUNT = integer(0)
_POSITIVE = integer(1)
_TASK = {"dataset": text, "attribute": text}
_RUN = {"profile": one_of(tuple(PROFILES)), "seed": _COUNT, "device": device}

#: Each chapter's papermill parameters -> their check (the names of its ``parameters`` cell, in its order).
CHAPTER_PARAMETERS: dict[str, dict[str, Check]] = {
    ids.THEORY: {
        **_RUN,
        "n_sigmas": _POSITIVE,
        "n_check": _POSITIVE,
        "slider_frames": _POSITIVE,
    },
    ids.DATASETS: {
        **_TASK,
        **_RUN,
        "data_dir": optional(folder),
        "outlier_step": positive_number,
        "outlier_weight": fraction,
        "asymmetric_base": one_of(ASYMMETRIC_BASES),
        "compare_with": task_or_nothing,
    },
    ids.BAYES: {
        **_TASK,
        **_RUN,
        "data_dir": optional(folder),
        "n_attack": optional(_POSITIVE),
        "attacks": names(ATTACKS),
        "gradient_step": optional(positive_number),
        "results_dir": optional(folder),
        "outlier_step": positive_number,
        "outlier_weight": fraction,
        "asymmetric_base": one_of(ASYMMETRIC_BASES),
    },
    ids.LEARNED: {
        **_TASK,
        **_RUN,
        "data_dir": optional(folder),
        "n_attack": optional(_POSITIVE),
        "n_score": _POSITIVE,
        "attacks": names(ATTACKS),
        "sweep_attacks": names(ATTACKS),
        "figure8": boolean,
        "results_dir": optional(folder),
    },
    ids.REAL: {
        "dataset": one_of(("celeba",)),  # the attribute: the chapter's check_real_attribute, with its choices
        "attribute": text,
        **_RUN,
        "data_dir": optional(folder),
        "n_attack": optional(_POSITIVE),
        "attacks": names(ATTACKS),
        "results_dir": optional(folder),
    },
    ids.SUMMARY: {
        "profile": _RUN["profile"],
        "seed": optional(_COUNT),
        "device": device,
        "results_dir": optional(folder),
        "paper_results_dir": optional(folder),
        "convention": one_of(CONVENTIONS),
    },
    ids.LEADERBOARD: {
        "profile": _RUN["profile"],
        "seed": optional(_COUNT),
        "device": device,
        "results_dir": optional(folder),
        "paper_results_dir": optional(folder),
    },
}


def check_values(chapter: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (a subset of ``chapter``'s parameters) checked: {name: value the chapter uses}.

    Names the chapter does not check pass unchanged. Every bad value is reported in one ``ParameterError``.
    """
    checks = CHAPTER_PARAMETERS.get(str(chapter))
    if checks is None:
        valid = ", ".join(CHAPTER_PARAMETERS)
        raise ValueError(f"no parameter checks for chapter {chapter!r}: chapters with parameters are {valid}")
    out: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in values.items():
        if name not in checks:
            out[name] = value
            continue
        try:
            out[name] = checks[name](name, value)
        except ParameterError as err:
            problems.append(str(err))
    if problems:
        raise ParameterError(f"{chapter}: " + "; ".join(problems))
    if "dataset" in out and "attribute" in out and chapter != ids.REAL:
        try:
            out["dataset"], out["attribute"] = canonical_task(out["dataset"], out["attribute"])
        except ValueError as err:
            raise ParameterError(f"{chapter}: parameters dataset/attribute: {err}") from None
    return out


def check_parameters(chapter: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter of ``chapter`` read from ``namespace`` (the notebook's ``globals()``), checked.

    Returns {name: value} for ``namespace.update``; raises ``ParameterError`` naming each bad parameter
    and what it accepts.
    """
    checks = CHAPTER_PARAMETERS.get(str(chapter))
    if checks is None:
        return check_values(chapter, {})  # raises with the valid chapters
    missing = [name for name in checks if name not in namespace]
    if missing:
        raise ParameterError(
            f"{chapter}: the parameters {', '.join(missing)} are not set: run the cells above"
        )
    return check_values(chapter, {name: namespace[name] for name in checks})
