"""What a run executes on: the device type (cpu or cuda) and the GPU's name, recorded in each run's stamp so
that later sweeps can estimate a run's time from the runs that came before it on the same kind of machine.

The GPU's name is read without touching CUDA (``nvidia-smi``, else the NVIDIA driver's ``/proc`` files): the
sweep's own process and its workers must not take GPU memory from the runs.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbhelpers.core.device import resolve_device
from nbhelpers.runs.sweep.plan import SweepError

DEVICE_TYPES = ("cpu", "cuda")
_PROC_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class Hardware:
    """A device type ("cpu" or "cuda") and, for "cuda", the GPU's name (None: not known)."""

    device_type: str
    gpu: str | None = None

    def describe(self) -> str:
        if self.device_type != "cuda":
            return self.device_type
        return f"cuda ({self.gpu})" if self.gpu else "cuda (GPU not named)"


def gpu_names() -> list[str]:
    """The names of this machine's NVIDIA GPUs in PCI order (``nvidia-smi``, else the driver's files under
    ``/proc``); [] where neither answers. Neither creates a CUDA context."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        names = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode == 0 and names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for info in sorted(_PROC_GPUS.glob("*/information")):
        try:
            for line in info.read_text(errors="replace").splitlines():
                if line.startswith("Model:"):
                    names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def gpu_name(visible: str | None = None, names: Sequence[str] | None = None) -> str | None:
    """The name of the GPU a process with ``CUDA_VISIBLE_DEVICES=visible`` runs on (its first one).

    On a machine whose GPUs all have one name (the usual case) that name. Otherwise the GPU numbered
    ``visible`` in PCI order, which is CUDA's order only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; None where
    that cannot be told (a UUID, or no name known)."""
    names = list(gpu_names() if names is None else names)
    if not names:
        return None
    if len(set(names)) == 1:
        return names[0]
    first = (visible or "0").split(",")[0].strip()
    return names[int(first)] if first.isdigit() and int(first) < len(names) else None


def device_type(device: str) -> str:
    """ "cpu" or "cuda" for a sweep's ``--device``: as named, "auto" as this machine resolves it (torch).

    A named "cuda" is taken at its word: planning for a GPU needs none here."""
    if device == "cpu" or device.startswith("cuda"):
        return "cuda" if device.startswith("cuda") else "cpu"
    try:
        return resolve_device(device).type
    except ValueError as err:
        raise SweepError(str(err)) from None


def planned_hardware(device: str) -> Hardware:
    """The hardware a sweep on this machine with ``--device device`` plans for; the GPU is named where this
    machine has one (else estimates take timings from any GPU)."""
    kind = device_type(device)
    return Hardware(kind, gpu_name(os.environ.get("CUDA_VISIBLE_DEVICES")) if kind == "cuda" else None)


def worker_hardware(device: str, envs: Sequence[dict[str, str]]) -> list[Hardware]:
    """The hardware of each local worker (``local_worker_envs``: one environment per worker)."""
    kind = device_type(device)
    if kind != "cuda":
        return [Hardware(kind) for _ in envs]
    names = gpu_names()
    default = os.environ.get("CUDA_VISIBLE_DEVICES")
    return [Hardware(kind, gpu_name(env.get("CUDA_VISIBLE_DEVICES", default), names)) for env in envs]
