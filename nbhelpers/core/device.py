"""The one place that turns a device name into a ``torch.device``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the command line and sweep workers start faster
    import torch

VALID_DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """A ``torch.device`` as it is, or a name: "auto" picks ``cuda`` when present, else ``cpu``; "cpu",
    "cuda" and "cuda:N" name one.

    Anything else raises with the list of valid names; "cuda" without a GPU raises too.
    """
    import torch

    if isinstance(device, torch.device):
        return device
    is_indexed_cuda = isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit()
    if device not in VALID_DEVICES and not is_indexed_cuda:
        valid = ", ".join(repr(d) for d in VALID_DEVICES)
        raise ValueError(f"unknown device {device!r}: valid devices are {valid} (or 'cuda:N')")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but no CUDA GPU is available: use 'auto' or 'cpu'")
    return torch.device(device)
