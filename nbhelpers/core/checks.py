"""Checks of plain arguments shared by the science modules."""

from __future__ import annotations

import numpy as np


def check_int(name: str, value: object, minimum: int) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``; else a ValueError naming
    ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
