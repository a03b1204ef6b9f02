"""Run several attacks on one model and keep, per sample, the smallest successful perturbation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from nbhelpers.attacks.foolbox_attacks import FOOLBOX_ATTACKS, run_foolbox_attack
from nbhelpers.attacks.gradient import L2ComponentGradientAttack
from nbhelpers.config import get_device, get_profile

if TYPE_CHECKING:
    from nbhelpers.checkpoints import Checkpoints

ATTACKS = ("gradient", *FOOLBOX_ATTACKS)


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


def run_attacks(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attacks: list[str] | tuple[str, ...] = ("gradient",),
    *,
    profile: str = "quick",
    device: str = "auto",
    gradient_kwargs: dict[str, Any] | None = None,
    foolbox_kwargs: dict[str, dict[str, Any]] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    checkpoints: Checkpoints | None = None,
    checkpoint_tag: str = "",
) -> AttackResult:
    """Attack ``x`` ``[n, ...]`` (in [0, 1]; true labels ``y`` ``[n]``) with each attack in ``attacks``.

    Names: "gradient" (``L2ComponentGradientAttack``, needs a ``BayesClassifier``; its
    constructor takes ``gradient_kwargs``), "cw", "fmn", "ddn" (foolbox, sizes from ``profile``;
    ``foolbox_kwargs[name]`` overrides constructor arguments). The model is moved to ``device``.
    ``batch_size``: samples per foolbox batch (None: ``run_foolbox_attack``'s default for the device).
    ``checkpoints``: keep each attack's outcome there as it finishes (step ``attack_<tag>_<name>``), and
    load it instead of attacking when an earlier run with the same model, inputs and settings saved it.
    """
    if isinstance(attacks, str):
        attacks = [attacks]
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown or not attacks:
        valid = ", ".join(repr(a) for a in ATTACKS)
        raise ValueError(f"unknown attack name(s) {unknown or attacks!r}: valid names are {valid}")
    if len(set(attacks)) != len(attacks):
        raise ValueError(f"attack names repeat in {list(attacks)!r}: list each once")
    if x.shape[0] == 0:
        raise ValueError("no samples to attack: x is empty")
    y = torch.as_tensor(y).long().reshape(-1).cpu()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    dev = get_device(device)
    model = model.to(dev).eval()
    x = x.detach().cpu()
    with torch.no_grad():
        clean_pred = model(x.to(dev)).argmax(dim=1).cpu()

    # The code behind an attack's outcome: the attacks and, for a model of this package, the model's module.
    code = [__name__]
    if type(model).__module__.startswith("nbhelpers."):
        code.append(type(model).__module__)
    per_attack_l2: dict[str, torch.Tensor] = {}
    best_l2 = torch.full((x.shape[0],), torch.inf, dtype=torch.float64)
    best_x = x.clone()
    best_name = [""] * x.shape[0]
    for name in attacks:
        settings = (gradient_kwargs if name == "gradient" else (foolbox_kwargs or {}).get(name)) or {}

        def attack(name: str = name, settings: dict[str, Any] = settings) -> dict[str, torch.Tensor]:
            if name == "gradient":
                out = L2ComponentGradientAttack(**settings)(model, x.to(dev), y.to(dev), progress=progress)
            else:
                out = run_foolbox_attack(
                    model,
                    x,
                    y,
                    name,
                    profile=profile,
                    batch_size=batch_size,
                    device=dev,
                    progress=progress,
                    **settings,
                )
            return {"x_adv": out.x_adv.cpu(), "l2": out.l2.cpu()}

        if checkpoints is None:
            out = attack()
        else:
            inputs = (model, x, y, name, get_profile(profile).attacks, settings, batch_size)
            step = "_".join(part for part in ("attack", checkpoint_tag, name) if part)
            out = checkpoints.cached(step, inputs, attack, code=code)
        l2 = out["l2"]
        per_attack_l2[name] = l2
        better = l2 < best_l2
        best_l2 = torch.where(better, l2, best_l2)
        best_x[better] = out["x_adv"][better].to(x.dtype)
        for i in better.nonzero().squeeze(1).tolist():
            best_name[i] = name
    return AttackResult(clean_pred, best_x, torch.isfinite(best_l2), best_l2, best_name, per_attack_l2)
