"""The paper's gradient attack on the Bayes-optimal MFA classifier (appendix C.2).

"Our attack performs multiple fixed-size steps in the direction of the gradient of the
difference in log-likelihood between the source and target Gaussian components, until the
decision boundary is crossed." The paper leaves the choice of components and the step size
open; this implementation fixes them as follows (all are constructor parameters):

- source component ``s``: the MAP component of the sample's true class,
  ``argmax_k log pi_k + log p_k(x)``, re-picked at every iterate (``track_source``): once the
  start component has lost, another component of the own class (e.g. the asymmetric models'
  broad outlier) holds the decision, and a gradient that ignores it wanders; the re-picked
  source cuts the mean L2 on the asymmetric test pair from 0.34 to 0.14 and changes nothing on
  the symmetric one;
- targets: the ``n_targets`` most likely components of the other class at ``x``; each is
  attacked separately and the smallest successful perturbation is kept;
- steps of L2 length ``step_size`` along the normalised gradient of
  ``(log pi_t + log p_t(x)) - (log pi_s + log p_s(x))``, kept in the pixel box: gradient
  entries that push a pixel already on a bound outwards are zeroed before normalising, and
  the new point is clipped;
- stop as soon as the FULL classifier (all components of both classes) changes its decision,
  then ``bisection_steps`` halvings of the last step, along the clipped path it took, put the result
  on the decision boundary (within ``step_size / 2**bisection_steps``).

Defaults: ``step_size = 0.05`` on the [0, 1] pixel scale is 2-5% of the perturbations of the
paper's symmetric datasets (mean L2 ~ 1.5-3). Halving it changes the mean L2 by < 0.01% on the
symmetric test pair, ~1% on the asymmetric pair (mean L2 0.14, where the path bends) and on a
pair of unequal full-covariance Gaussians (``tests/test_attacks.py``); lower it for models whose
perturbations are that small. ``max_steps = 400`` allows paths of length 20; 12 bisection steps
locate the boundary to ~1e-5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nbhelpers.core.progress import finish_early, tqdm
from nbhelpers.science.classifier import BayesClassifier


@dataclass
class GradientAttackResult:
    """Outcome per attacked sample.

    x_adv: ``[n, ...]`` (the input's shape and dtype): the smallest successful adversarial,
        or the clean input where the attack failed.
    success: ``[n]`` bool: the classifier's label at ``x_adv`` differs from the true label.
    l2: ``[n]`` float64 ``||x_adv - x||`` (``inf`` where the attack failed).
    target: ``[n]`` int64: index of the other class's component whose direction won (-1: failed or
        misclassified already, where ``x_adv = x``).
    steps: ``[n]`` int64: fixed-size steps taken by the winning target.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    l2: torch.Tensor
    target: torch.Tensor
    steps: torch.Tensor


class L2ComponentGradientAttack:
    """Fixed-size L2 gradient steps from the source component towards target components.

    Args:
        step_size: L2 length of every step (> 0).
        max_steps: steps allowed per target before giving up (>= 1).
        n_targets: most likely components of the other class tried per sample (>= 1;
            capped at that class's number of components).
        bisection_steps: halvings of the last step once the decision flipped (>= 0).
        bounds: the pixel box every iterate stays in.
        batch_size: samples attacked together (each expands to ``n_targets`` rows).
        track_source: re-pick the source component at every iterate (True) or keep the one
            chosen at the clean sample (False).
    """

    def __init__(
        self,
        step_size: float = 0.05,
        max_steps: int = 400,
        n_targets: int = 3,
        bisection_steps: int = 12,
        bounds: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 256,
        track_source: bool = True,
    ):
        if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a positive number, got {step_size!r}")
        for name, value, low in (
            ("max_steps", max_steps, 1),
            ("n_targets", n_targets, 1),
            ("bisection_steps", bisection_steps, 0),
            ("batch_size", batch_size, 1),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds!r}")
        self.step_size = float(step_size)
        self.max_steps = max_steps
        self.n_targets = n_targets
        self.bisection_steps = bisection_steps
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.batch_size = batch_size
        self.track_source = bool(track_source)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(step_size={self.step_size}, max_steps={self.max_steps}, "
            f"n_targets={self.n_targets}, bisection_steps={self.bisection_steps}, bounds={self.bounds}, "
            f"track_source={self.track_source})"
        )

    def __call__(
        self, model: BayesClassifier, x: torch.Tensor, y: torch.Tensor, *, progress: bool = False
    ) -> GradientAttackResult:
        """Attack samples ``x`` ``[n, d]`` or ``[n, C, H, W]`` with true labels ``y`` ``[n]`` (0/1).

        Iterates live in ``x``'s dtype and device; the model evaluates them in its own dtype.
        """
        if not hasattr(model, "class_component_log_probs"):
            raise TypeError(
                "the gradient attack needs the MFA component densities: pass a BayesClassifier, "
                f"not {type(model).__name__} (use the 'cw', 'fmn' or 'ddn' attacks for other models)"
            )
        n = x.shape[0]
        if n == 0:
            raise ValueError("no samples to attack: x is empty")
        y = torch.as_tensor(y, device=x.device).long().reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"x has {n} samples but y has {y.shape[0]} labels")
        if not bool(((y == 0) | (y == 1)).all()):
            raise ValueError("labels y must be 0 or 1")
        if float(x.min()) < self.bounds[0] or float(x.max()) > self.bounds[1]:
            raise ValueError(f"inputs leave the pixel box {self.bounds}: scale them to it first")

        flat = x.reshape(n, -1).to(model.device)
        y = y.to(model.device)
        parts = [
            self._attack_batch(
                model, flat[i : i + self.batch_size], y[i : i + self.batch_size], progress, i, n
            )
            for i in range(0, n, self.batch_size)
        ]
        x_adv, success, l2, target, steps = (torch.cat(p).to(x.device) for p in zip(*parts, strict=True))
        return GradientAttackResult(x_adv.reshape(x.shape), success, l2, target, steps)

    def _attack_batch(
        self, model: BayesClassifier, x: torch.Tensor, y: torch.Tensor, progress: bool, start: int, total: int
    ) -> tuple[torch.Tensor, ...]:
        """One batch ``x`` ``[b, d]``: returns x_adv [b, d], success, l2, target, steps (each [b])."""
        b = x.shape[0]
        with torch.no_grad():
            lp0, lp1 = model.class_component_log_probs(x)
        # Each sample tries the other class's components, so the cap is that class's count, not the
        # smaller of the two: a class with fewer components pads its list with its most likely one
        # (a repeated row walks the same path and costs only time).
        n_targets = min(self.n_targets, max(lp0.shape[1], lp1.shape[1]))
        # [b] source component in the own class; [b, T] target components in the other class
        src = torch.where(y == 0, lp0.argmax(dim=1), lp1.argmax(dim=1))
        top0, top1 = (_top_padded(lp, n_targets) for lp in (lp0, lp1))
        tgt = torch.where((y == 0)[:, None], top1, top0)

        # rows = (sample, target) pairs
        rows_y = y.repeat_interleave(n_targets)
        rows_src = src.repeat_interleave(n_targets)
        rows_tgt = tgt.reshape(-1)
        x0 = x.repeat_interleave(n_targets, dim=0)
        prev, cur = x0.clone(), x0.clone()
        last_step = torch.zeros_like(x0)  # cur = clamp(prev + last_step): the step bisection halves
        n_rows = x0.shape[0]
        done = torch.zeros(n_rows, dtype=torch.bool, device=x.device)
        flipped = torch.zeros_like(done)
        steps = torch.zeros(n_rows, dtype=torch.long, device=x.device)
        low, high = self.bounds

        bar = tqdm(
            total=self.max_steps + 1,
            desc=f"gradient attack {start + b}/{total}",
            disable=not progress,
            leave=False,
        )
        for step in range(self.max_steps + 1):
            active = (~done).nonzero().squeeze(1)
            if active.numel() == 0:
                finish_early(bar)  # every row decided before max_steps: done, not failed
                break
            xa = cur[active]
            with torch.no_grad():
                la0, la1 = model.class_component_log_probs(xa)
            ya = rows_y[active]
            own_is_0 = ya == 0
            # the full classifier's decision (not the two components')
            lse0, lse1 = torch.logsumexp(la0, dim=1), torch.logsumexp(la1, dim=1)
            now_flipped = torch.where(own_is_0, lse1 > lse0, lse0 >= lse1)
            if step == self.max_steps:
                flipped[active] = now_flipped
                done[active] = True
                break
            src_a, tgt_a = rows_src[active], rows_tgt[active]
            if self.track_source:
                src_a = torch.where(own_is_0, la0.argmax(dim=1), la1.argmax(dim=1))
            # the priors are constant in x: the objective's gradient is that of the two log-densities
            grad = model.component_log_prob_grad(xa, 1 - ya, tgt_a) - model.component_log_prob_grad(
                xa, ya, src_a
            )
            grad = grad.to(x.dtype)
            # pixels on a bound cannot move further out: drop those entries before normalising
            grad = torch.where(((xa <= low) & (grad < 0)) | ((xa >= high) & (grad > 0)), 0.0, grad)
            norm = grad.norm(dim=1)
            stuck = (norm == 0) & ~now_flipped
            flipped[active] = now_flipped
            done[active] = now_flipped | stuck
            move = active[~now_flipped & ~stuck]
            keep = ~(now_flipped | stuck)
            prev[move] = cur[move]
            last_step[move] = self.step_size * grad[keep] / norm[keep, None]
            cur[move] = (xa[keep] + last_step[move]).clamp(low, high)
            steps[move] += 1
            bar.set_postfix(active=int(move.numel()), refresh=False)
            bar.update()
        bar.close()

        hi = self._bisect(model, prev, last_step, cur, rows_y, flipped)
        l2 = torch.where(flipped, (hi - x0).double().norm(dim=1), torch.inf).reshape(b, n_targets)
        best_l2, best_t = l2.min(dim=1)
        success = torch.isfinite(best_l2)
        pick = torch.arange(b, device=x.device) * n_targets + best_t
        x_adv = torch.where(success[:, None], hi[pick], x)
        target = torch.where(success & (best_l2 > 0), tgt.gather(1, best_t[:, None])[:, 0], -1)
        return x_adv, success, best_l2, target, steps[pick]

    @torch.no_grad()
    def _bisect(
        self,
        model: BayesClassifier,
        prev: torch.Tensor,
        last_step: torch.Tensor,
        cur: torch.Tensor,
        y: torch.Tensor,
        flipped: torch.Tensor,
    ) -> torch.Tensor:
        """Halve the last steps ``bisection_steps`` times; the flipped ends, each ``[rows, d]``.

        The points tried are ``clamp(prev + t * last_step)`` for t in [0, 1], the path the step took
        (``cur`` at t = 1), not the chord from ``prev`` to ``cur``: where the step pushed a pixel through
        a bound the two differ, and a point of the chord lies off the path, further from the sample.
        """
        rows = flipped.nonzero().squeeze(1)
        low, high = self.bounds
        start, step, hi_r = prev[rows], last_step[rows], cur[rows]
        t_lo = torch.zeros(rows.numel(), 1, dtype=torch.float64, device=cur.device)
        t_hi = torch.ones_like(t_lo)
        for _ in range(self.bisection_steps):
            if rows.numel() == 0:
                break
            t_mid = (t_lo + t_hi) / 2
            mid = (start + t_mid.to(start.dtype) * step).clamp(low, high)
            mid_flipped = (model.predict(mid) != y[rows])[:, None]
            hi_r = torch.where(mid_flipped, mid, hi_r)
            t_hi = torch.where(mid_flipped, t_mid, t_hi)
            t_lo = torch.where(mid_flipped, t_lo, t_mid)
        out = cur.clone()
        out[rows] = hi_r
        return out


def _top_padded(log_probs: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[b, k]`` of the ``k`` largest entries of each row of ``log_probs`` ``[b, K]``, best
    first; rows with fewer than ``k`` components repeat their best one."""
    top = log_probs.topk(min(k, log_probs.shape[1]), dim=1).indices
    return torch.cat([top, top[:, :1].expand(-1, k - top.shape[1])], dim=1)
