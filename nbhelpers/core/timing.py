"""Wall-clock timing of work that may run asynchronously on a GPU (the benchmarks in ``bench/`` use it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily, as in nbhelpers.core.device
    import torch


def synchronize(device: torch.device) -> None:
    """Wait until ``device`` has finished the work queued on it (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def calls_per_second(
    fn: Callable[[], object], device: torch.device, seconds: float, warmup: int = 1
) -> float:
    """Calls of ``fn()`` per second, its work on ``device`` finished, over at least ``seconds`` and at least
    one call, after ``warmup`` untimed calls (the allocator, cuDNN's choice of algorithm)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed
