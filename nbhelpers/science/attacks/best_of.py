"""Several attacks on one model: per sample, the smallest successful perturbation (paper section 2.1:
"the mean is calculated only over successful attacks").

``run_attack`` runs one named attack and returns its ``AttackOutcome``; ``smallest_per_sample`` keeps, per
sample, the smallest of several outcomes; ``run_attacks`` does both. Callers that keep finished attacks
between runs (the chapters' checkpoints) call ``run_attack`` once per attack themselves and
``smallest_per_sample`` at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nbhelpers.core.device import resolve_device
from nbhelpers.science.attacks.foolbox_attacks import (
    FOOLBOX_ATTACKS,
    PAPER_BUDGET,
    AttackBudget,
    run_foolbox_attack,
)
from nbhelpers.science.attacks.gradient import L2ComponentGradientAttack

ATTACKS = ("gradient", *FOOLBOX_ATTACKS)


@dataclass
class AttackOutcome:
    """One attack's outcome per sample (CPU tensors): ``x_adv`` ``[n, ...]`` (the clean input where it
    failed) and ``l2`` ``[n]`` float64 ``||x_adv - x||`` (``inf`` where it failed)."""

    x_adv: torch.Tensor
    l2: torch.Tensor


@dataclass
class AttackResult:
    """Best adversarial per sample over the attacks run (all tensors on the CPU).

    clean_pred: ``[n]`` int64 model labels at the clean inputs.
    x_adv: ``[n, ...]`` (the inputs' shape and dtype): the minimum-L2 successful adversarial, or
        the clean input where every attack failed.
    success: ``[n]`` bool: some attack changed the label away from ``y`` (a sample misclassified
        already counts as attacked with L2 = 0).
    l2: ``[n]`` float64 ``||x_adv - x||`` (``inf`` where all failed).
    attack: ``[n]`` name of the attack that found ``x_adv`` ("" where all failed).
    per_attack_l2: attack name -> ``[n]`` float64 L2 of that attack (``inf`` where it failed).
    """

    clean_pred: torch.Tensor
    x_adv: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor
    attack: list[str]
    per_attack_l2: dict[str, torch.Tensor] = field(default_factory=dict)


def check_attack_names(attacks: Sequence[str] | str) -> tuple[str, ...]:
    """``attacks`` as a tuple of names from ``ATTACKS``, each once; anything else raises."""
    names = (attacks,) if isinstance(attacks, str) else tuple(attacks)
    valid = ", ".join(repr(a) for a in ATTACKS)
    unknown = [a for a in names if a not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack name(s) {unknown}: valid names are {valid}")
    if not names:
        raise ValueError(f"no attack given: pass a list of one or more of {valid}")
    if len(set(names)) != len(names):
        raise ValueError(f"attack names repeat in {list(names)}: list each once")
    return names


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` [n, ...] detached and ``y`` as int64 [n], both on the CPU; empty or mismatched inputs raise."""
    if x.shape[0] == 0:
        raise ValueError("no samples to attack: x is empty")
    y = torch.as_tensor(y).long().reshape(-1).cpu()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    return x.detach().cpu(), y


@torch.no_grad()
def clean_predictions(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``model``'s labels [n] (int64, CPU) at x [n, ...]."""
    return model(x.to(device)).argmax(dim=1).cpu()


def run_attack(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    name: str,
    *,
    budget: AttackBudget = PAPER_BUDGET,
    settings: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> AttackOutcome:
    """Attack x [n, ...] (in [0, 1]; true labels y [n]) with the attack ``name``.

    "gradient": ``L2ComponentGradientAttack(**settings)`` (the model must be a ``BayesClassifier``);
    "cw", "fmn", "ddn": foolbox with ``budget``'s iteration counts, ``settings`` overriding constructor
    arguments. ``batch_size``: samples per foolbox batch (None: ``run_foolbox_attack``'s default).
    """
    (name,) = check_attack_names(name)
    x, y = check_inputs(x, y)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    settings = dict(settings or {})
    if name == "gradient":
        out = L2ComponentGradientAttack(**settings)(model, x.to(dev), y.to(dev), progress=progress)
    else:
        out = run_foolbox_attack(
            model, x, y, name, budget=budget, batch_size=batch_size, device=dev, progress=progress, **settings
        )
    return AttackOutcome(out.x_adv.detach().cpu(), out.l2.cpu())


def smallest_per_sample(
    x: torch.Tensor, clean_pred: torch.Tensor, outcomes: Mapping[str, AttackOutcome]
) -> AttackResult:
    """Per sample of x [n, ...], the smallest successful perturbation over ``outcomes`` (attack name ->
    outcome, in the order the attacks ran: a tie goes to the first)."""
    x = x.detach().cpu()
    best_l2 = torch.full((x.shape[0],), torch.inf, dtype=torch.float64)
    best_x = x.clone()
    best_name = [""] * x.shape[0]
    per_attack_l2: dict[str, torch.Tensor] = {}
    for name, outcome in outcomes.items():
        l2 = outcome.l2
        per_attack_l2[name] = l2
        better = l2 < best_l2
        best_l2 = torch.where(better, l2, best_l2)
        best_x[better] = outcome.x_adv[better].to(x.dtype)
        for i in better.nonzero().squeeze(1).tolist():
            best_name[i] = name
    return AttackResult(clean_pred, best_x, torch.isfinite(best_l2), best_l2, best_name, per_attack_l2)


def run_attacks(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: Sequence[str] | str = ("gradient",),
    *,
    budget: AttackBudget = PAPER_BUDGET,
    device: str | torch.device = "auto",
    gradient_kwargs: Mapping[str, Any] | None = None,
    foolbox_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
) -> AttackResult:
    """Attack x [n, ...] with each of ``attacks`` (``run_attack``) and keep the best per sample
    (``smallest_per_sample``).

    ``gradient_kwargs``: the gradient attack's constructor arguments; ``foolbox_kwargs[name]``: a foolbox
    attack's overrides.
    """
    names = check_attack_names(attacks)
    x, y = check_inputs(x, y)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    outcomes = {
        name: run_attack(
            model,
            x,
            y,
            name,
            budget=budget,
            settings=attack_settings(name, gradient_kwargs, foolbox_kwargs),
            batch_size=batch_size,
            device=dev,
            progress=progress,
        )
        for name in names
    }
    return smallest_per_sample(x, clean_predictions(model, x, dev), outcomes)


def attack_settings(
    name: str,
    gradient_kwargs: Mapping[str, Any] | None = None,
    foolbox_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The constructor arguments of attack ``name``: ``gradient_kwargs`` for "gradient", else
    ``foolbox_kwargs[name]`` (empty when not given)."""
    chosen = gradient_kwargs if name == "gradient" else (foolbox_kwargs or {}).get(name)
    return dict(chosen or {})
