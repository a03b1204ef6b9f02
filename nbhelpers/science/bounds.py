"""Lower bounds on the perturbation needed to fool the Bayes-optimal MFA classifier.

Two quantities (paper Lemma 3, appendix D.1 and Figure 11):

- the distance of a sample to the nearest component subspace ``{mu_k + A_k z}`` of the other
  class, and its half: the robustness radius of Lemma 3 in the limit sigma -> 0. For finite
  sigma it is NOT a guarantee: sampled points lie ~sigma*sqrt(d) off their own subspace and the
  finite-sigma classifier also weighs log-determinants and priors.
- a rigorous certified radius of the actual classifier at any sigma. With
  ``m_k(x) = (x - mu_k)^T C_k^-1 (x - mu_k)`` and ``C_k = A_k A_k^T + D_k``, ``sqrt(m_k)`` is
  Lipschitz in x with constant ``L_k = 1 / sqrt(min_j D_kj)`` (``C_k >= min_j D_kj I``). So for
  every ``||delta|| <= eps``, with ``c_k = (d log 2 pi + log det C_k) / 2``::

      log p_own(x+delta)   >= logsumexp_k [log pi_k - (sqrt(m_k(x)) + eps L_k)^2 / 2 - c_k]
      log p_other(x+delta) <= logsumexp_j [log pi_j - max(0, sqrt(m_j(x)) - eps L_j)^2 / 2 - c_j]

  (the own-class sum is at least its MAP-component term). The label cannot change while the
  first exceeds the second; the gap decreases in eps, so bisection finds the largest such eps.
  As sigma -> 0 the radius tends to ``(d_other - d_own) / 2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from nbhelpers.science.classifier import BayesClassifier
    from nbhelpers.science.mfa import MFA


def _as_rows(x: torch.Tensor, mfa: MFA) -> torch.Tensor:
    """``[n, d]`` or images ``[n, C, H, W]`` -> ``[n, d]`` float64 on the model's device.

    Float64 whatever the model's dtype: at d = 12,288 a float32 Mahalanobis sum is off by about a nat,
    which a certified radius cannot afford."""
    d = mfa.mu.shape[1]
    if x.dim() < 2 or x[0].numel() != d:
        raise ValueError(
            f"expected samples [n, {d}] or images with {d} pixels each, got shape {tuple(x.shape)}"
        )
    return x.reshape(x.shape[0], d).to(device=mfa.mu.device, dtype=torch.float64)


@torch.no_grad()
def subspace_distances(x: torch.Tensor, mfa: MFA, rtol: float = 1e-10) -> torch.Tensor:
    """Exact L2 distances ``[n, K]`` from samples ``x`` ``[n, d]`` to the affine subspaces ``{mu_k + A_k z}``.

    The subspace spanned by ``A_k`` ``[d, l]`` comes from its SVD; singular values below
    ``rtol * max`` are dropped, so a component with ``A_k = 0`` is the point ``mu_k``.
    """
    x = _as_rows(x, mfa)
    mu = mfa.mu.double()
    u, s, _ = torch.linalg.svd(mfa.A.double(), full_matrices=False)  # u [K, d, l], s [K, l]
    keep = s > rtol * s.amax(dim=1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
    basis = u * keep[:, None, :]  # [K, d, l], dropped directions zeroed
    out = torch.empty(x.shape[0], mfa.mu.shape[0], dtype=x.dtype, device=x.device)
    # one component at a time keeps memory at [n, d] and forms the residual explicitly (no cancellation)
    for k in range(mfa.mu.shape[0]):
        r = x - mu[k]
        out[:, k] = (r - (r @ basis[k]) @ basis[k].T).norm(dim=1)
    return out


@torch.no_grad()
def mahalanobis_terms(x: torch.Tensor, mfa: MFA) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-component Gaussian terms of the MFA at ``x`` ``[n, d]``.

    Returns ``m`` ``[n, K]`` (squared Mahalanobis distances, via Woodbury), ``c`` ``[K]`` (the
    normalisers, so ``log N(x; mu_k, C_k) = -m_k / 2 - c_k``) and ``lipschitz`` ``[K]`` (the
    constant ``1 / sqrt(min_j D_kj)`` of ``sqrt(m_k)``).
    """
    x = _as_rows(x, mfa)
    d = x.shape[1]
    mu, A, log_D = mfa.mu.double(), mfa.A.double(), mfa.log_D.double()
    inv_d = torch.exp(-log_D)  # [K, d]
    a_scaled = A * inv_d[:, :, None]  # D^-1 A  [K, d, l]
    eye = torch.eye(A.shape[2], dtype=x.dtype, device=x.device)
    chol = torch.linalg.cholesky(eye + A.transpose(1, 2) @ a_scaled)  # [K, l, l]
    m = torch.empty(x.shape[0], mu.shape[0], dtype=x.dtype, device=x.device)
    for k in range(mu.shape[0]):
        r = x - mu[k]
        v = torch.linalg.solve_triangular(chol[k], (r @ a_scaled[k]).T, upper=False)  # [l, n]
        m[:, k] = (r * r * inv_d[k]).sum(dim=1) - (v * v).sum(dim=0)
    logdet = log_D.sum(dim=1) + 2 * torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(dim=1)
    c = 0.5 * (d * math.log(2 * math.pi) + logdet)
    lipschitz = torch.exp(-0.5 * log_D.amin(dim=1))
    return m.clamp_min(0), c, lipschitz


@torch.no_grad()
def certified_radius(
    classifier: BayesClassifier, x: torch.Tensor, y: torch.Tensor, bisection_steps: int = 60
) -> torch.Tensor:
    """Largest L2 radius ``[n]`` (float64) within which the classifier provably keeps label ``y`` ``[n]``.

    0 where ``x`` ``[n, d]`` (or images) is misclassified. Rigorous for any MFA pair (see the
    module docstring); bisection to relative precision ``2**-bisection_steps``.
    """
    y = torch.as_tensor(y).long().reshape(-1).to(classifier.device)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("labels y must be 0 or 1")
    terms = []
    for mfa in classifier.mfas:
        m, c, lip = mahalanobis_terms(x, mfa)
        terms.append((m.sqrt(), mfa.log_pi.double() - c, lip))

    def gap(eps: torch.Tensor) -> torch.Tensor:  # eps [n] -> own lower bound minus other upper bound [n]
        lower, upper = [], []
        for root_m, offset, lip in terms:
            lower.append(torch.logsumexp(offset - 0.5 * (root_m + eps[:, None] * lip) ** 2, dim=1))
            upper.append(
                torch.logsumexp(offset - 0.5 * (root_m - eps[:, None] * lip).clamp_min(0) ** 2, dim=1)
            )
        return torch.where(y == 0, lower[0] - upper[1], lower[1] - upper[0])

    n = x.shape[0]
    zero = torch.zeros(n, dtype=terms[0][0].dtype, device=classifier.device)
    certified = gap(zero) > 0
    # bracket: double hi until the bound fails (lower -> -inf, upper -> its maximum)
    hi = torch.ones_like(zero)
    for _ in range(200):
        failing = gap(hi) <= 0
        if bool(failing[certified].all()):
            break
        hi = torch.where(failing, hi, 2 * hi)
    lo = torch.zeros_like(zero)
    for _ in range(bisection_steps):
        mid = (lo + hi) / 2
        ok = gap(mid) > 0
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return torch.where(certified, lo, zero)


@dataclass
class SubspaceDistances:
    """Per-sample distances ``[n]`` (numpy float64) to the nearest component subspace.

    own: of the sample's own class; other: of the other class (Figure 11); half_other: the
    sigma -> 0 Lemma 3 radius ``other / 2``; limit: ``(other - own) / 2``, what the certified radius
    tends to as sigma -> 0 (triangle inequality on both distances).
    """

    own: np.ndarray
    other: np.ndarray

    @property
    def half_other(self) -> np.ndarray:
        return self.other / 2

    @property
    def limit(self) -> np.ndarray:
        return (self.other - self.own) / 2


def nearest_subspace_distances(
    classifier: BayesClassifier, x: torch.Tensor, y: torch.Tensor
) -> SubspaceDistances:
    """Distances of samples ``x`` ``[n, d]`` (labels ``y`` ``[n]``) to the nearest subspace of each class."""
    y = torch.as_tensor(y).long().reshape(-1).cpu().numpy()
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]} labels")
    nearest = np.stack(
        [subspace_distances(x, mfa).amin(dim=1).cpu().numpy() for mfa in classifier.mfas], axis=1
    )
    rows = np.arange(len(y))
    return SubspaceDistances(own=nearest[rows, y], other=nearest[rows, 1 - y])
