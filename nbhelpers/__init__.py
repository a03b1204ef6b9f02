"""nbhelpers: the computation behind the book "A Bayes-Optimal View on Adversarial Examples".

Chapters hold narrative, parameters and calls; every figure and number comes from a function in this
package, in three layers (imports point downwards only):

- ``nbhelpers.science``: the paper's mathematics and models;
- ``nbhelpers.chapters``: one module per chapter, with its figures, tables and the run profiles;
- ``nbhelpers.runs``: result files, checkpoints, provenance, the sweep and the command line;

on top of ``nbhelpers.core`` (devices, progress bars, files, versions).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "benchmark", "get_profile", "load_dataset", "resolve_device"]

# Imported on first use: ``import nbhelpers.core...`` stays light (no torch) for the command line.
_LAZY = {
    "benchmark": "nbhelpers.runs.benchmark",
    "get_profile": "nbhelpers.chapters.profiles",
    "load_dataset": "nbhelpers.science.release",
    "resolve_device": "nbhelpers.core.device",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nbhelpers' has no attribute {name!r}")
