"""Steps of a chapter run: long computations a run may keep and reuse after a crash.

A chapter function that trains or attacks runs each such step as ``checkpoints.run(step, fn, **inputs)``:
``fn`` a module-level function and ``inputs`` every argument it takes, by name. What was computed is then a
function of what is passed, so a store of finished steps (``nbhelpers.runs.checkpoints.Checkpoints``) can key
each one by its function and inputs alone, and a forgotten input cannot reuse a stale step. ``device`` and
``progress`` (:data:`UNTRACKED`) choose where and how visibly a step runs, not what it computes.
Without a store (``NO_CHECKPOINTS``) every step is computed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

#: Inputs that do not change a step's outcome.
UNTRACKED = ("device", "progress")


class Steps(Protocol):
    """Runs ``fn(**inputs)`` as the step ``step``, or returns its value kept by an earlier run."""

    def run(self, step: str, fn: Callable[..., T], /, **inputs: Any) -> T: ...


def check_step_function(fn: Callable[..., Any]) -> None:
    """Refuse a step function whose outcome may depend on more than its arguments: a lambda, a nested
    function or one that closes over variables (a key of its arguments would miss them)."""
    qualname = getattr(fn, "__qualname__", "")
    if "<" in qualname or getattr(fn, "__closure__", None) or qualname != getattr(fn, "__name__", None):
        raise ValueError(
            f"step function {qualname or fn!r} must be a module-level function taking every input as an "
            "argument (no lambda, nested function or closure)"
        )


class ComputeEachTime:
    """Keeps nothing: every step is computed."""

    def run(self, step: str, fn: Callable[..., T], /, **inputs: Any) -> T:
        check_step_function(fn)
        return fn(**inputs)

    def __repr__(self) -> str:
        return "NO_CHECKPOINTS"


NO_CHECKPOINTS = ComputeEachTime()
