"""Distances to the Bayes-optimal boundary beyond two Gaussians: affine subspaces (Lemma 3), Gaussian
mixtures (Theorem 1) and discrete probability tables (Lemma A.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.linalg
from scipy import ndimage
from scipy.special import logsumexp

from nbhelpers.science.theory.quadric import Gaussian, QuadricBoundary, _as_array, _check_points

# ----------------------------------------------------------------------------------------------
# Affine subspaces (Lemma 3).


def subspace_distance(mu1: npt.ArrayLike, A1: npt.ArrayLike, mu2: npt.ArrayLike, A2: npt.ArrayLike) -> float:
    """Minimal distance between the affine subspaces mu1 + A1 z1 and mu2 + A2 z2.

    ``min_{z1, z2} ||mu1 + A1 z1 - mu2 - A2 z2||``: the residual of one least-squares problem.
    mu_i [d]; A_i [d, k_i].
    """
    mu1, mu2 = _as_array(mu1, "mu1", 1), _as_array(mu2, "mu2", 1)
    A1, A2 = _as_array(A1, "A1", 2), _as_array(A2, "A2", 2)
    stacked = np.concatenate([A1, -A2], axis=1)  # [d, k1 + k2]
    z = scipy.linalg.lstsq(stacked, mu2 - mu1)[0]
    return float(np.linalg.norm(mu1 - mu2 + stacked @ z))


def point_subspace_distance(x: npt.ArrayLike, mu: npt.ArrayLike, A: npt.ArrayLike) -> np.ndarray:
    """Distances [n] from points x [n, d] to the affine subspace mu [d] + A [d, k] z."""
    mu, A = _as_array(mu, "mu", 1), _as_array(A, "A", 2)
    x = _check_points(x, mu.shape[0])
    q = np.linalg.qr(A)[0]  # orthonormal basis of the directions
    r = x - mu
    return np.linalg.norm(r - (r @ q) @ q.T, axis=1)


# ----------------------------------------------------------------------------------------------
# Gaussian mixtures (Theorem 1).


class GaussianMixture:
    """A Gaussian mixture sum_k w_k N(mu_k, S_k).

    Args:
        weights: [K] positive, normalised here.
        components: K :class:`Gaussian` of the same dimension.
    """

    def __init__(self, weights: Sequence[float], components: Sequence[Gaussian]):
        w = _as_array(weights, "weights", 1)
        if len(components) != w.shape[0] or w.shape[0] == 0:
            raise ValueError(
                f"need one weight per component: {w.shape[0]} weights, {len(components)} components"
            )
        if np.any(w <= 0):
            raise ValueError("mixture weights must be positive")
        if len({c.dim for c in components}) != 1:
            raise ValueError("all mixture components must have the same dimension")
        self.log_weights = np.log(w / w.sum())
        self.components = list(components)

    @property
    def dim(self) -> int:
        return self.components[0].dim

    def component_log_probs(self, x: npt.ArrayLike) -> np.ndarray:
        """log(w_k N(x; mu_k, S_k)) [n, K] for x [n, d]."""
        x = _check_points(x, self.dim)
        return np.stack([c.log_pdf(x) for c in self.components], axis=1) + self.log_weights

    def log_prob(self, x: npt.ArrayLike) -> np.ndarray:
        """log p(x) [n]."""
        return np.logaddexp.reduce(self.component_log_probs(x), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n samples [n, d] and their component indices [n]."""
        k = rng.choice(len(self.components), size=n, p=np.exp(self.log_weights))
        x = np.empty((n, self.dim))
        for j, comp in enumerate(self.components):
            x[k == j] = comp.sample(int((k == j).sum()), rng)
        return x, k


@dataclass
class MixtureDistances:
    """Boundary distances of points under two well-separated Gaussian mixtures.

    distance [n]: the smallest pair-quadric distance (see :func:`mixture_boundary_distance`);
    points [n, d]: the matching closest points; pair [n, 2]: the (class-1, class-2) components;
    residual [n]: ``|log p1 - log p2|`` of the full mixtures at those points (0 when the pair
    boundary is the mixture boundary there).
    """

    distance: np.ndarray
    points: np.ndarray
    pair: np.ndarray
    residual: np.ndarray


def mixture_boundary_distance(
    x: npt.ArrayLike, mix1: GaussianMixture, mix2: GaussianMixture
) -> MixtureDistances:
    """Distances [n] from x [n, d] to the Bayes boundary of two well-separated Gaussian mixtures.

    Under well-separation (the paper's Theorem 1) each class's likelihood is its MAP component's,
    ``log p_c(x) = max_k log(w_ck N_ck(x))``. For a point on class 1's side with MAP component j,
    the straight segment to the nearest boundary point must cross ``{w_1j N_1j = w_2k N_2k}`` for
    some class-2 component k, so ``min_k`` of these pair-quadric distances (prior ratio
    ``log w_1j / w_2k``) is a lower bound on the distance to the boundary of that max-likelihood
    classifier, and it is the distance when j and k are still the MAP components at the closest point,
    i.e. when the full mixture ratio vanishes there (``residual`` ~ 0). The exact mixture uses
    log-sum-exp instead of max; where components of a class overlap, the two differ by up to log K and
    the number is then neither the exact distance nor a bound on it (two equal components of a class
    shift its boundary by log 2): a ``residual`` well away from 0 says so.
    """
    if mix1.dim != mix2.dim:
        raise ValueError(f"the mixtures differ in dimension: {mix1.dim} vs {mix2.dim}")
    x = _check_points(x, mix1.dim)
    n = x.shape[0]
    lp1, lp2 = mix1.component_log_probs(x), mix2.component_log_probs(x)
    side1 = logsumexp(lp1, axis=1) >= logsumexp(lp2, axis=1)
    own = np.where(side1, lp1.argmax(axis=1), lp2.argmax(axis=1))
    dist = np.full(n, np.inf)
    points = np.full(x.shape, np.nan)
    pair = np.zeros((n, 2), dtype=int)
    for j, c1 in enumerate(mix1.components):
        for k, c2 in enumerate(mix2.components):
            rows = np.flatnonzero((side1 & (own == j)) | (~side1 & (own == k)))
            if rows.size == 0:
                continue
            quad = QuadricBoundary.from_gaussians(c1, c2, mix1.log_weights[j] - mix2.log_weights[k])
            d, p = quad.closest_points(x[rows])
            better = d < dist[rows]
            dist[rows[better]] = d[better]
            points[rows[better]] = p[better]
            pair[rows[better]] = (j, k)
    residual = np.full(n, np.inf)
    ok = np.isfinite(dist)
    residual[ok] = np.abs(mix1.log_prob(points[ok]) - mix2.log_prob(points[ok]))
    return MixtureDistances(dist, points, pair, residual)


# ----------------------------------------------------------------------------------------------
# Discrete tables (Lemma A.1).


def discrete_level_distance(
    log_p1: npt.ArrayLike, log_p2: npt.ArrayLike, metric: str = "taxicab"
) -> tuple[np.ndarray, np.ndarray]:
    """Number of quantisation-level changes to reach the other class, for every cell.

    Args:
        log_p1, log_p2: log-probability tables [L1, L2] of the two classes (features = the two
            indices). A cell is class 1 when ``log_p1 > log_p2`` (ties go to class 2).
        metric: "taxicab" (L1: total level changes over all features) or "chessboard" (L-inf:
            the largest change of any one feature).

    Returns:
        distance [L1, L2]: for each cell, the exact level distance to the nearest cell of the
        other class (``inf`` where the other class has no cell); class1 [L1, L2] boolean.
    """
    valid = ("taxicab", "chessboard")
    if metric not in valid:
        raise ValueError(f"unknown metric {metric!r}: valid metrics are {valid}")
    log_p1, log_p2 = _as_array(log_p1, "log_p1", 2), _as_array(log_p2, "log_p2", 2)
    if log_p1.shape != log_p2.shape:
        raise ValueError(f"tables differ in shape: {log_p1.shape} vs {log_p2.shape}")
    class1 = log_p1 > log_p2
    distance = np.full(class1.shape, np.inf)
    for mask in (class1, ~class1):
        if mask.all() or not mask.any():
            continue
        # Chamfer transforms with the 3x3 neighbourhood are exact for these two metrics.
        dt = ndimage.distance_transform_cdt(mask, metric=metric).astype(float)
        distance[mask] = dt[mask]
    return distance, class1


def _log_normalise(log_table: np.ndarray) -> np.ndarray:
    return log_table - logsumexp(log_table)


def discrete_tables(kind: str, levels: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The two log-probability tables [levels, levels] of Figure 3c ("symmetric") or 3g ("asymmetric").

    Features are the two coordinates quantised to ``levels`` levels. Symmetric: two discretised
    Gaussian blobs of equal width (their smallest table entries are equal). Asymmetric: class 1
    puts all but 1e-9 of its mass on one level of feature 0 (``p1(f0 = k) -> 1``), class 2 is a
    broad blob with every entry positive.
    """
    valid = ("symmetric", "asymmetric")
    if kind not in valid:
        raise ValueError(f"unknown kind {kind!r}: valid kinds are {valid}")
    i, j = np.meshgrid(np.arange(levels), np.arange(levels), indexing="ij")
    blob = lambda ci, cj, s: -((i - ci) ** 2 + (j - cj) ** 2) / (2 * s**2)  # noqa: E731
    if kind == "symmetric":
        mid, s = (levels - 1) / 2, 0.12 * levels  # mirror-image tables: equal smallest entries
        log_p1 = _log_normalise(blob(mid, mid - 0.2 * levels, s))
        return log_p1, log_p1[:, ::-1].copy()
    k = levels // 2
    on_row = -((np.arange(levels) - 0.5 * levels) ** 2) / (2 * (0.2 * levels) ** 2)
    leak = 1e-9
    log_p1 = np.full((levels, levels), np.log(leak / (levels * (levels - 1))))
    log_p1[k] = np.log1p(-leak) + on_row - logsumexp(on_row)
    log_p2 = _log_normalise(blob(0.55 * levels, 0.5 * levels, 0.3 * levels))
    return log_p1, log_p2


def sample_table(log_p: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n cells [n, 2] (integer levels) drawn from a log-probability table [L1, L2]."""
    flat = np.exp(log_p.ravel() - logsumexp(log_p))
    cells = rng.choice(flat.size, size=n, p=flat / flat.sum())
    return np.stack(np.unravel_index(cells, log_p.shape), axis=1)
