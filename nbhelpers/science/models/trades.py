"""TRADES adversarial training (Zhang et al., 2019), the paper's Figure 8 (right), with an L2 threat model.

Per mini-batch: loss = CE(f(x), y) + beta * KL(softmax f(x) || softmax f(x_adv)), where x_adv
maximises that KL inside the L2 ball ||x_adv - x|| <= eps intersected with the pixel box [0, 1],
found by projected gradient ascent (PGD) from a tiny random start, as in the TRADES reference code.

Defaults: ``eps = 1.5``, the mean L2 size below which the paper finds perturbations of 64x64 faces
imperceptible (section 2.2; the robust Bayes-optimal classifier needs about 3, appendix D.1);
``steps = 10`` as in TRADES; ``step_size = 2.5 * eps / steps`` (Madry et al.'s rule), so the
ascent can cross the ball and come back.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbhelpers.core.device import resolve_device
from nbhelpers.science.models.training import (
    ArrayLike,
    BatchLoss,
    Sampler,
    cross_entropy_loss,
    train_with_loss,
)

DEFAULT_EPS = 1.5
DEFAULT_STEPS = 10
#: Standard deviation of the random start around x (TRADES reference code).
INIT_STD = 0.001


def pgd_kl_l2(
    model: nn.Module,
    x: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """TRADES' inner maximisation: x_adv [n, ...] with ||x_adv - x||_2 <= eps per row, in [0, 1].

    Maximises KL(softmax f(x) || softmax f(x_adv)) by ``steps`` normalised-gradient ascent steps of
    length ``step_size`` (default 2.5 * eps / steps), each followed by projection onto the box and
    the ball. Runs the model in eval mode and leaves no gradients on its parameters.
    """
    step_size = 2.5 * eps / steps if step_size is None else step_size
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    delta = _project(x, INIT_STD * noise, eps)
    view = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(steps):
        delta.requires_grad_(True)
        log_p_adv = F.log_softmax(model(x + delta), dim=1)
        kl = F.kl_div(log_p_adv, p_clean, reduction="sum")
        (grad,) = torch.autograd.grad(kl, delta)
        norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
        delta = _project(x, delta.detach() + step_size * grad / norm, eps)
    model.train(was_training)
    return (x + delta).detach()


def trades_batch_loss(
    beta: float,
    *,
    eps: float = DEFAULT_EPS,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> BatchLoss:
    """The TRADES objective as a ``batch_loss`` for ``train_with_loss``; beta = 0 is plain cross-entropy."""
    _check_trades_args(beta, eps, steps, step_size)
    if beta == 0:
        # Without the robust term the attack is wasted work: skip it, which is exactly plain training.
        return cross_entropy_loss

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x_adv = pgd_kl_l2(model, x, eps=eps, steps=steps, step_size=step_size, generator=generator)
        logits = model(x)
        robust = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
        return F.cross_entropy(logits, y) + beta * robust, logits

    return loss


def fit_trades(
    model: nn.Module,
    x: ArrayLike | None,
    y: ArrayLike | None,
    beta: float,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    eps: float = DEFAULT_EPS,
    steps: int = DEFAULT_STEPS,
    step_size: float | None = None,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    sampler: Sampler | None = None,
    n_examples: int | None = None,
    precision: str = "float32",
) -> nn.Module:
    """Train ``model`` with the TRADES loss (beta >= 0; the paper's values are 0, 2, 5, 10).

    The loop, data order and optimiser are those of ``fit_classifier`` (same arguments), so beta = 0
    gives exactly the weights of plain training with the same seed. The PGD random starts use a
    separate generator seeded from ``seed`` on ``device``.

    Returns the model (eval mode) with ``history_``; "loss" there is the full TRADES loss.
    """
    _check_trades_args(beta, eps, steps, step_size)
    generator = torch.Generator(device=resolve_device(device)).manual_seed(seed + 1)
    return train_with_loss(
        model,
        x,
        y,
        trades_batch_loss(beta, eps=eps, steps=steps, step_size=step_size, generator=generator),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        progress=progress,
        sampler=sampler,
        n_examples=n_examples,
        precision=precision,
        desc=f"TRADES beta={beta:g}",
    )


def _project(x: Tensor, delta: Tensor, eps: float) -> Tensor:
    """Project delta so that x + delta lies in [0, 1] and ||delta||_2 <= eps per row."""
    delta = (x + delta).clamp(0.0, 1.0) - x
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    # Shrinking towards x keeps x + delta inside the box (a convex combination of two points in it).
    scale = (eps / norm).clamp(max=1.0).view((-1,) + (1,) * (x.dim() - 1))
    return delta * scale


def _check_trades_args(beta: float, eps: float, steps: int, step_size: float | None) -> None:
    if not (isinstance(beta, int | float) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta must be a finite number >= 0 (the paper uses 0, 2, 5, 10), got {beta!r}")
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps (L2 radius of the inner attack) must be > 0, got {eps!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if step_size is not None and not step_size > 0:
        raise ValueError(f"step_size must be > 0 (or None for 2.5 * eps / steps), got {step_size!r}")
