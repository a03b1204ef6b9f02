"""Seeded mini-batch training of the torch classifiers (paper appendix B.3: Adam, cross-entropy).

Two data sources share one loop: a fixed training set ``(x, y)`` visited once per epoch in a
seeded random order, or a ``sampler`` that draws fresh examples at every step (the paper's
Figure 8 grows the training set up to 1M examples by sampling the generative model on the fly).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nbhelpers.core.device import resolve_device
from nbhelpers.core.progress import tqdm

ArrayLike = np.ndarray | Tensor
#: ``sampler(n, generator) -> (x [n, d] or [n, C, H, W], y [n])``: n fresh labelled examples.
Sampler = Callable[[int, torch.Generator], tuple[ArrayLike, ArrayLike]]
#: ``batch_loss(model, x, y) -> (loss [], clean logits [n, 2])``: the objective minimised per step.
BatchLoss = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, Tensor]]
#: Arithmetic of the training steps' forward and backward passes. "bfloat16" is mixed precision:
#: ``torch.autocast`` runs convolutions and matrix products in bfloat16 while the weights, their gradients
#: and the Adam step stay float32 (bfloat16 has float32's range, so no loss scaling is needed).
PRECISIONS = ("float32", "bfloat16")
#: Seconds between two updates of the progress bar's running loss and accuracy (each waits for the device).
POSTFIX_SECONDS = 0.5


def as_labelled_tensors(
    x: ArrayLike, y: ArrayLike, what: str = "x", dtype: torch.dtype | None = torch.float32
) -> tuple[Tensor, Tensor]:
    """Check and convert a labelled set: x [n, ...] (>= 2 dims) as ``dtype`` (None keeps it), y int64 [n].

    Labels must be 0 or 1; uint8 pixels and integer features are refused (scale them to [0, 1] first).
    """
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    if x.dtype == torch.uint8:
        raise ValueError(f"{what} holds uint8 pixels: divide by 255 to get floats in [0, 1] first")
    if not x.is_floating_point():
        raise ValueError(f"{what} must hold floats in [0, 1], got dtype {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{what} must have shape [n, d] or [n, C, H, W], got {list(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape [n] = [{x.shape[0]}] to match {what}, got {list(y.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty: need at least one example")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError("labels must be the integers 0 and 1, got non-integer values")
    y = y.long()
    if not bool(((y == 0) | (y == 1)).all()):
        found = sorted({int(v) for v in y.unique()})
        raise ValueError(f"labels must be 0 or 1 (binary task), found {found}")
    return (x if dtype is None else x.to(dtype)), y


def cross_entropy_loss(model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Plain training objective: mean cross-entropy of logits [n, 2] against labels [n]."""
    logits = model(x)
    return F.cross_entropy(logits, y), logits


def fit_classifier(
    model: nn.Module,
    x: ArrayLike | None = None,
    y: ArrayLike | None = None,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    sampler: Sampler | None = None,
    n_examples: int | None = None,
    precision: str = "float32",
) -> nn.Module:
    """Train ``model`` with Adam on the cross-entropy; see ``train_with_loss`` for the arguments.

    Returns the model (moved to ``device``, in eval mode) with ``history_`` set.
    """
    return train_with_loss(
        model,
        x,
        y,
        cross_entropy_loss,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        device=device,
        progress=progress,
        sampler=sampler,
        n_examples=n_examples,
        precision=precision,
        desc="train",
    )


def train_with_loss(
    model: nn.Module,
    x: ArrayLike | None,
    y: ArrayLike | None,
    batch_loss: BatchLoss,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = False,
    sampler: Sampler | None = None,
    n_examples: int | None = None,
    precision: str = "float32",
    desc: str = "train",
) -> nn.Module:
    """Minimise ``batch_loss`` with Adam(lr) over mini-batches; the shared loop of all torch classifiers.

    Args:
        model: maps x [b, d] (or [b, C, H, W]) to logits [b, 2]; trained in place.
        x, y: a fixed training set, x [n, d] float in [0, 1] and y [n] in {0, 1}; each epoch visits it
            once in a random order (the last batch may be smaller). Leave both None with ``sampler``.
        batch_loss: ``(model, x_batch, y_batch) -> (loss, clean logits)``.
        epochs: passes over (x, y); with ``sampler``, the number of equal periods the ``n_examples``
            budget is split into (one ``history_`` entry each).
        batch_size: examples per Adam step.
        seed: seeds the shuffling (or the sampler's generator), so equal seeds give equal weights on CPU.
        device: "auto", "cpu", "cuda" or a ``torch.device``. A fixed training set moves there whole, once;
            a sampler's examples one batch at a time.
        sampler: ``sampler(n, generator) -> (x [n, ...], y [n])`` draws fresh examples for every step.
        n_examples: with ``sampler``, the total number of examples drawn (the training-set size).
        precision: "float32" (the book's) or "bfloat16" (mixed precision, see ``PRECISIONS``).

    Returns:
        The model on ``device`` in eval mode, with ``history_`` = dict of per-epoch lists "epoch",
        "loss" (mean batch loss), "accuracy" (running train accuracy) and "n_examples" (cumulative).
    """
    _check_positive_int(epochs, "epochs")
    _check_positive_int(batch_size, "batch_size")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if sampler is None:
        if x is None or y is None:
            raise ValueError("give a training set (x, y) or a sampler for fresh examples")
        if n_examples is not None:
            raise ValueError("n_examples is the sampler's budget: with a fixed (x, y) use epochs instead")
        x, y = as_labelled_tensors(x, y)
        epoch_sizes = [x.shape[0]] * epochs
    else:
        if x is not None or y is not None:
            raise ValueError("give either a training set (x, y) or a sampler, not both")
        if n_examples is None:
            raise ValueError("a sampler needs n_examples, the number of fresh training examples to draw")
        _check_positive_int(n_examples, "n_examples")
        if n_examples < epochs:
            raise ValueError(f"n_examples ({n_examples}) must be at least epochs ({epochs})")
        # Spread the budget over the epochs so every period logs about the same number of examples.
        epoch_sizes = [n_examples * (e + 1) // epochs - n_examples * e // epochs for e in range(epochs)]

    device = resolve_device(device)
    mixed_precision = precision_context(precision, device)
    model.to(device).train()
    if sampler is None:
        # The whole set moves once (20,000 CelebA faces: 1 GB), not a batch per step.
        x, y = x.to(device), y.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"epoch": [], "loss": [], "accuracy": [], "n_examples": []}
    seen = 0
    total_steps = sum(-(-size // batch_size) for size in epoch_sizes)
    with tqdm(total=total_steps, desc=desc, disable=not progress, leave=False) as bar:
        for epoch, size in enumerate(epoch_sizes, start=1):
            # The sums stay on the device: reading them waits for the device, so a step never does.
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            count, postfix_due = 0, 0.0
            order = torch.randperm(size, generator=generator).to(device) if sampler is None else None
            for start in range(0, size, batch_size):
                n_batch = min(batch_size, size - start)
                if sampler is None:
                    idx = order[start : start + n_batch]
                    xb, yb = x[idx], y[idx]
                else:
                    xb, yb = as_labelled_tensors(*sampler(n_batch, generator), what="sampled x")
                    if xb.shape[0] != n_batch:
                        raise ValueError(f"sampler returned {xb.shape[0]} examples, {n_batch} were asked for")
                    xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                with mixed_precision:
                    loss, logits = batch_loss(model, xb, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach().double() * n_batch
                correct += (logits.detach().argmax(1) == yb).sum()
                count += n_batch
                bar.update(1)
                if progress and time.monotonic() >= postfix_due:
                    postfix_due = time.monotonic() + POSTFIX_SECONDS
                    bar.set_postfix(loss=f"{float(loss_sum) / count:.4f}", acc=f"{int(correct) / count:.3f}")
            seen += count
            history["epoch"].append(epoch)
            history["loss"].append(float(loss_sum) / count)
            history["accuracy"].append(int(correct) / count)
            history["n_examples"].append(seen)
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", acc=f"{history['accuracy'][-1]:.3f}")
    model.eval()
    model.history_ = history
    return model


def precision_context(precision: str, device: torch.device) -> AbstractContextManager:
    """The context a training step runs in for ``precision`` (one of ``PRECISIONS``) on ``device``:
    bfloat16 autocast, or nothing for float32. Reusable: each step enters it anew."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be 'float32' or 'bfloat16' (mixed precision of the training steps), "
            f"got {precision!r}"
        )
    return torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16" else nullcontext()


@torch.no_grad()
def predict_logits(
    model: nn.Module, x: ArrayLike, *, batch_size: int = 512, device: str | torch.device = "auto"
) -> Tensor:
    """Logits [n, 2] of ``model`` on x [n, d] (or [n, C, H, W]), computed in batches; returned on the CPU."""
    _check_positive_int(batch_size, "batch_size")
    device = resolve_device(device)
    x = torch.as_tensor(x)
    model.to(device).eval()
    out = [model(x[i : i + batch_size].to(device).float()).cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, 2)


def accuracy(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    *,
    batch_size: int = 512,
    device: str | torch.device = "auto",
) -> float:
    """Fraction of x [n, ...] whose argmax logit equals the label y [n]."""
    x, y = as_labelled_tensors(x, y)
    pred = predict_logits(model, x, batch_size=batch_size, device=device).argmax(1)
    return float((pred == y).float().mean())


def _check_positive_int(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
