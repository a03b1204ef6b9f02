"""An MFA on disk: ``save_mfa`` writes a safetensors file (the parameters, with the configuration and the EM
history in its metadata), ``load_mfa`` reads one back without executing code and checks every parameter
against the metadata. ``MFA.save`` and ``MFA.load`` call them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import atomic_path
from nbhelpers.science.mfa import _DTYPES, MFA

__all__ = ["FILE_FORMAT", "FILE_VERSION", "load_mfa", "save_mfa"]

FILE_FORMAT = "nbhelpers.science.mfa"  # the metadata's "format": the module that first wrote these files
FILE_VERSION = "1"


def save_mfa(model: MFA, path: str | os.PathLike) -> Path:
    """Write ``model`` to a safetensors file (config and ``history_`` in its metadata), atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().contiguous().cpu() for name, value in model.named_buffers()}
    metadata = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "n_components": str(model.K),
        "dim": str(model.d),
        "latent_dim": str(model.l),
        "isotropic": json.dumps(model.isotropic),
        "dtype": str(model.dtype).removeprefix("torch."),
        "history": json.dumps(model.history_),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_mfa(path: str | os.PathLike, map_location: torch.device | str = "cpu", cls: type[MFA] = MFA) -> MFA:
    """Read a model written by ``save_mfa`` (``MFA.save``) onto ``map_location``, as a ``cls``; no code is
    executed.

    The file's metadata and every parameter are checked (shapes against the metadata, finite values,
    normalised mixing weights, positive noise variances); a file that fails raises ``ValueError`` naming
    it and what is wrong.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MFA file at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        size = path.stat().st_size
        raise ValueError(
            f"cannot read the MFA file {path} ({size} bytes): it is empty, truncated or not a "
            f"safetensors file ({type(err).__name__}: {err}); save the model again with MFA.save"
        ) from None
    if metadata.get("format") != FILE_FORMAT:
        found = metadata.get("format")
        raise ValueError(f"{path} was not written by MFA.save (metadata format={found!r})")
    config = _read_metadata(path, metadata)
    device = resolve_device(map_location)
    try:
        model = cls(
            config["n_components"],
            config["dim"],
            config["latent_dim"],
            isotropic=config["isotropic"],
            dtype=config["dtype"],
            device=device,
        )
    except ValueError as err:
        raise ValueError(
            f"{path}: its metadata describe no valid MFA ({err}): save the model again"
        ) from None
    _check_parameters(path, tensors, model)
    model.load_state_dict(tensors)
    model.history_ = config["history"]
    return model


def _read_metadata(path: Path, metadata: dict[str, str]) -> dict[str, object]:
    """The configuration an MFA file's metadata hold, checked; raises ``ValueError`` naming ``path``."""

    def fail(problem: str) -> ValueError:
        return ValueError(f"{path}: bad MFA metadata, {problem}; save the model again with MFA.save")

    missing = [k for k in ("n_components", "dim", "latent_dim", "isotropic", "dtype") if k not in metadata]
    if missing:
        raise fail(f"{', '.join(missing)} missing")
    config: dict[str, object] = {}
    for key in ("n_components", "dim", "latent_dim"):
        try:
            config[key] = int(metadata[key])
        except ValueError:
            raise fail(f"{key}={metadata[key]!r} is not an integer") from None
    if metadata["dtype"] not in _DTYPES:
        raise fail(f"dtype={metadata['dtype']!r} is not one of {', '.join(_DTYPES)}")
    config["dtype"] = metadata["dtype"]
    for key, default in (("isotropic", None), ("history", "[]")):
        text = metadata.get(key, default)
        try:
            config[key] = json.loads(text)
        except json.JSONDecodeError as err:
            raise fail(f"{key}={text!r} is not valid JSON ({err})") from None
    if not isinstance(config["isotropic"], bool):
        raise fail(f"isotropic={metadata['isotropic']!r} is not true or false")
    history = config["history"]
    if not isinstance(history, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in history
    ):
        raise fail(f"history={metadata.get('history')!r} is not a list of numbers")
    return config


def _check_parameters(path: Path, tensors: dict[str, Tensor], model: MFA) -> None:
    """Refuse loaded parameters that do not make the MFA ``model``'s metadata describe; names ``path``."""
    K, d, l = model.K, model.d, model.l  # noqa: E741
    shapes = {"log_pi": (K,), "mu": (K, d), "A": (K, d, l), "log_D": (K, d)}
    if set(tensors) != set(shapes):
        raise ValueError(
            f"{path} holds the tensors {', '.join(sorted(tensors)) or 'none'}; an MFA file holds "
            f"{', '.join(sorted(shapes))}: save the model again with MFA.save"
        )
    for name, shape in shapes.items():
        value = tensors[name]
        if tuple(value.shape) != shape:
            raise ValueError(
                f"{path}: {name} has shape {list(value.shape)} but the metadata (n_components={K}, dim={d}, "
                f"latent_dim={l}) need {list(shape)}; save the model again with MFA.save"
            )
        if not value.is_floating_point():
            raise ValueError(f"{path}: {name} holds {value.dtype} values, not floating-point numbers")
    bad = [name for name, value in tensors.items() if not torch.isfinite(value).all()]
    if bad:
        raise ValueError(
            f"{path} holds NaN or inf values in {', '.join(sorted(bad))}: refit or re-save the model"
        )
    total = float(torch.logsumexp(tensors["log_pi"].double(), 0).exp())
    if abs(total - 1.0) > 1e-4:
        raise ValueError(
            f"{path}: the mixing weights exp(log_pi) sum to {total:.6g}, not 1; the file was edited or "
            "damaged: refit or re-save the model"
        )
    variances = tensors["log_D"].to(model.dtype).exp()
    if not (variances > 0).all():
        raise ValueError(
            f"{path}: noise variances exp(log_D) must be positive, but some underflow to 0 "
            f"(log_D down to {float(tensors['log_D'].min()):.4g}): refit or re-save the model"
        )
    if model.isotropic and not torch.allclose(tensors["log_D"], tensors["log_D"][:, :1].expand(K, d)):
        raise ValueError(
            f"{path}: the metadata say isotropic, but the noise variances log_D differ within a component: "
            "refit or re-save the model"
        )
