"""Minimum-L2 attacks from foolbox 3 for any torch classifier on [0, 1] inputs.

- ``"cw"``: Carlini & Wagner L2 with the paper's settings (appendix C.1: 500 iterations,
  3 binary-search steps, learning rate 0.01; the counts come from an ``AttackBudget``). The
  initial constant 0.01 is the default of the CleverHans implementation the paper used.
- ``"fmn"``: Fast Minimum Norm (Pintor et al., 2021) with ``max_stepsize = 0.1`` (foolbox's
  default 1.0 overshoots on [0, 1] inputs whose boundary lies at L2 ~ 0.1-1). foolbox 3.3.4's
  L2 version never shrinks the perturbation: its projection onto the epsilon-ball computes
  ``factor = min(1, norms / norms)`` (always 1) and takes the norm of ``x`` instead of
  ``x - x0``. ``_FixedL2FMNAttack`` overrides that one method with the intended projection.
- ``"ddn"``: Decoupled Direction and Norm (Rony et al., 2019), foolbox defaults.

All three minimise the perturbation with an unlimited budget (``epsilons=None``).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from nbhelpers.core.progress import tqdm

FOOLBOX_ATTACKS = ("cw", "fmn", "ddn")


@dataclass(frozen=True)
class AttackBudget:
    """Iteration counts of the minimum-norm attacks; the defaults are the paper's (appendix C.1)."""

    cw_steps: int = 500  # Carlini & Wagner iterations per binary-search step
    cw_binary_search_steps: int = 3
    cw_stepsize: float = 0.01  # CW's learning rate
    min_norm_steps: int = 1000  # FMN / DDN iterations


PAPER_BUDGET = AttackBudget()


@dataclass
class FoolboxAttackResult:
    """Outcome per sample: ``x_adv`` ``[n, ...]`` (the clean input where the attack failed),
    ``success`` ``[n]`` bool (the model's label at ``x_adv`` differs from ``y``) and ``l2`` ``[n]``
    float64 (``inf`` where it failed)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor


def _foolbox() -> Any:
    """Import foolbox, silencing the scipy DeprecationWarning its import triggers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import foolbox
    return foolbox


@functools.cache
def _fixed_fmn_class() -> type:
    """foolbox's ``L2FMNAttack`` with its L2-ball projection repaired (see the module docstring)."""
    fb = _foolbox()
    import eagerpy as ep
    from foolbox.devutils import atleast_kd, flatten

    class _FixedL2FMNAttack(fb.attacks.L2FMNAttack):
        def project(self, x: Any, x0: Any, epsilon: Any) -> Any:
            """Scale ``x - x0`` ``[n, ...]`` down onto the L2 ball of radius ``epsilon`` ``[n]``."""
            delta = x - x0
            norms = ep.maximum(flatten(delta).norms.l2(axis=-1), 1e-12)
            return x0 + delta * atleast_kd(ep.minimum(1, epsilon / norms), x.ndim)

    return _FixedL2FMNAttack


def make_foolbox_attack(name: str, budget: AttackBudget = PAPER_BUDGET, **overrides: Any) -> Any:
    """The foolbox attack ``name`` ("cw", "fmn", "ddn") with ``budget``'s iteration counts.

    ``overrides`` replace constructor arguments (e.g. ``steps=50``).
    """
    sizes = budget
    fb = _foolbox()
    if name == "cw":
        kwargs = {
            "binary_search_steps": sizes.cw_binary_search_steps,
            "steps": sizes.cw_steps,
            "stepsize": sizes.cw_stepsize,
            "initial_const": 1e-2,
        }
        cls = fb.attacks.L2CarliniWagnerAttack
    elif name == "fmn":
        kwargs = {"steps": sizes.min_norm_steps, "max_stepsize": 0.1}
        cls = _fixed_fmn_class()
    elif name == "ddn":
        kwargs = {"steps": sizes.min_norm_steps}
        cls = fb.attacks.DDNAttack
    else:
        valid = ", ".join(repr(a) for a in FOOLBOX_ATTACKS)
        raise ValueError(f"unknown foolbox attack {name!r}: valid names are {valid}")
    kwargs.update(overrides)
    return cls(**kwargs)


# Samples per foolbox batch when none is given: a GPU needs big batches to fill up (the paper profile's
# 1000 attacked samples go in one), while on a CPU the size hardly changes the speed and small ones keep
# memory low.
CPU_BATCH_SIZE = 128
CUDA_BATCH_SIZE = 1024


def default_batch_size(device: torch.device | str) -> int:
    """Samples per foolbox batch on ``device`` when none is given."""
    return CUDA_BATCH_SIZE if torch.device(device).type == "cuda" else CPU_BATCH_SIZE


@contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's CPU generator (and ``device``'s, on CUDA) seeded with ``seed``, restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def run_foolbox_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | Any = "cw",
    *,
    budget: AttackBudget = PAPER_BUDGET,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> FoolboxAttackResult:
    """Attack ``x`` (``[n, ...]``, the model's input shape, values in [0, 1]) with true labels ``y`` ``[n]``.

    ``attack`` is a name from ``FOOLBOX_ATTACKS`` (built by ``make_foolbox_attack`` with
    ``budget`` and ``overrides``) or a ready foolbox attack. ``device`` defaults to where the model's
    parameters/buffers live. Results come back on ``x``'s device. ``batch_size``: samples attacked
    together (default: ``default_batch_size(device)``). ``seed``: the random draws of an attack (DDN
    replaces a zero gradient, as a Bayes classifier's far-from-the-boundary float32 logits give, by a random
    direction) come from generators seeded from it and each batch's start, torch's global random state
    left as it was, so that the same call gives the same numbers.
    """
    if x.shape[0] == 0:
        raise ValueError("no samples to attack: x is empty")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor in [0, 1], got {x.dtype}")
    y = torch.as_tensor(y).long().reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("inputs leave the pixel box [0, 1]: scale them to it first")
    if device is None:
        device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    device = torch.device(device)
    if batch_size is None:
        batch_size = default_batch_size(device)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    fb = _foolbox()
    fb_attack = make_foolbox_attack(attack, budget, **overrides) if isinstance(attack, str) else attack
    model.eval()
    fmodel = fb.PyTorchModel(model, bounds=(0, 1), device=device)

    parts = []
    label = attack if isinstance(attack, str) else type(attack).__name__
    for i in tqdm(range(0, x.shape[0], batch_size), desc=f"{label} attack", disable=not progress):
        xb = x[i : i + batch_size].to(device)
        yb = y[i : i + batch_size].to(device)
        with _seeded(hash((seed, i)) & 0xFFFF_FFFF, device):
            _, x_adv, _ = fb_attack(fmodel, xb, fb.criteria.Misclassification(yb), epsilons=None)
        x_adv = x_adv.detach()
        with torch.no_grad():
            success = model(x_adv).argmax(dim=1) != yb
        # foolbox's CW returns an all-zero image where it found nothing; a model that labels that
        # black image as the other class would turn the failure into a huge "success"
        placeholder = (x_adv == 0).flatten(1).all(1) & (xb != 0).flatten(1).any(1)
        success &= ~placeholder
        # failed attacks return arbitrary points (CW: zeros): report the clean input instead
        x_adv = torch.where(success.reshape(-1, *[1] * (xb.dim() - 1)), x_adv, xb)
        l2 = torch.where(success, (x_adv - xb).reshape(len(xb), -1).double().norm(dim=1), torch.inf)
        parts.append((x_adv.to(x.device), success.to(x.device), l2.to(x.device)))
    x_adv, success, l2 = (torch.cat(p) for p in zip(*parts, strict=True))
    return FoolboxAttackResult(x_adv, success, l2)
