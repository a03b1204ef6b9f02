"""Exact distances to Bayes-optimal decision boundaries (paper section 2.1 and appendix A).

The core is :func:`boundary_distance`: the exact Euclidean distance from points to the
Bayes-optimal boundary of two Gaussians with equal priors. That boundary is the quadric
``{x : log N(x; mu1, S1) = log N(x; mu2, S2)}``; the distance comes from the Lagrange conditions
of ``min ||x - x0||`` on it, reduced to one monotone equation per point (see
:class:`QuadricBoundary`). Everything else here uses it as a ruler: the checks of Lemmas 1-3,
Theorem 1 (Gaussian mixtures) and Lemma A.1 (discrete tables), and the models of Figure 3.

All computations are float64 NumPy/SciPy on the CPU: the quantities are exact, not learned, and
the eigen-decompositions involved are small enough (``d <= 784``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from scipy import ndimage
from scipy.optimize import elementwise
from scipy.special import logsumexp

from nbhelpers.progress import tqdm

# Eigenvalues of (P2 - P1) / 2 below this fraction of the precision matrices' size are
# inversion round-off (they are exactly 0 when S1 == S2) and are set to 0.
_EIG_ZERO_RTOL = 64 * np.finfo(np.float64).eps  # round-off of P2 - P1, relative to the larger precision
# Eigenvalues within this relative gap of the extreme one share its pole (the "hard case").
_EIG_TIE_RTOL = 1e-10
# Smallest distance to the pole, relative, that the root search looks at before the hard case.
_POLE_FLOOR = 1e-14


def _as_array(value, name: str, ndim: int | None = None, copy: bool = True) -> np.ndarray:
    """A float64 NumPy array (a copy unless ``copy=False``) of an array-like or torch tensor,
    with a clear error on bad shape or non-finite values."""
    if hasattr(value, "detach"):  # torch tensors, on any device
        value = value.detach().cpu().numpy()
    try:
        arr = np.array(value, dtype=np.float64) if copy else np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array, got {type(value).__name__}") from err
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _cholesky(cov: np.ndarray, name: str) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive-definite matrix [d, d]."""
    d = cov.shape[0]
    if cov.shape != (d, d):
        raise ValueError(f"{name} must be a square [d, d] matrix, got shape {cov.shape}")
    scale = max(np.abs(cov).max(), np.finfo(float).tiny)
    if np.abs(cov - cov.T).max() > 1e-10 * scale:
        raise ValueError(f"{name} is not symmetric: pass (S + S.T) / 2")
    try:
        return np.linalg.cholesky((cov + cov.T) / 2)
    except np.linalg.LinAlgError:
        smallest = np.linalg.eigvalsh((cov + cov.T) / 2)[0]
        raise ValueError(
            f"{name} is not positive definite (smallest eigenvalue {smallest:.3g}): "
            "add a small ridge, e.g. S + 1e-9 * np.eye(d)"
        ) from None


class Gaussian:
    """A multivariate normal N(mean, cov) with its Cholesky factor cached.

    Args:
        mean: [d]
        cov: [d, d], symmetric positive definite.
    """

    def __init__(self, mean, cov):
        self.mean = _as_array(mean, "mean", 1)
        self.cov = _as_array(cov, "cov", 2)
        if self.cov.shape != (self.dim, self.dim):
            raise ValueError(f"cov must be [{self.dim}, {self.dim}] to match mean, got {self.cov.shape}")
        self.chol = _cholesky(self.cov, "cov")
        self.logdet = 2.0 * np.log(np.diag(self.chol)).sum()

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def precision(self) -> np.ndarray:
        """The inverse covariance [d, d], from the Cholesky factor."""
        inv_chol = scipy.linalg.solve_triangular(self.chol, np.eye(self.dim), lower=True)
        return inv_chol.T @ inv_chol

    def mahalanobis2(self, x: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances [n] of points x [n, d] to the mean."""
        white = scipy.linalg.solve_triangular(self.chol, (x - self.mean).T, lower=True)
        return (white**2).sum(axis=0)

    def log_pdf(self, x) -> np.ndarray:
        """log N(x; mean, cov) for x [n, d] -> [n]."""
        x = _check_points(x, self.dim)
        return -0.5 * (self.mahalanobis2(x) + self.logdet + self.dim * np.log(2 * np.pi))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples [n, d]."""
        return self.mean + rng.standard_normal((n, self.dim)) @ self.chol.T


def _check_points(x, dim: int, name: str = "x") -> np.ndarray:
    """Points as a float64 array [n, dim] (a single point [dim] becomes [1, dim]); read-only use."""
    x = _as_array(x, name, copy=False)
    if x.ndim == 1 and dim == x.shape[0]:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must be points [n, {dim}], got shape {x.shape}")
    return x


class QuadricBoundary:
    """The Bayes-optimal boundary of two Gaussians, ``{x : f(x) = 0}`` with

    ``f(x) = log N(x; mu1, S1) - log N(x; mu2, S2) + log_prior_ratio``

    (``log_prior_ratio = log pi1 / pi2``, 0 for equal priors). Class 1 wins where ``f > 0``.

    **Exact distance.** Around a point ``x0`` the quadratic ``f`` is exactly
    ``f(x0 + y) = f0 + g.y + y^T A y`` with ``A = (P2 - P1) / 2`` (``P_i = S_i^-1``),
    ``g = grad f(x0)``, ``f0 = f(x0)``. With ``A = V diag(lam) V^T`` (one ``eigh`` for all
    points) and ``u = V^T y``, ``b = V^T g``, the Lagrange conditions of ``min ||u||`` subject to
    ``sum(lam u^2 + b u) + f0 = 0`` give ``u_i = t b_i / s_i`` with ``s_i = 1 - 2 t lam_i`` and the
    secular equation in the multiplier ``t``::

        phi(t) = f0 + t * sum_i b_i^2 (1 + s_i) / (2 s_i^2) = 0.

    It has up to ``2d`` real roots (all the stationary points). The global minimiser is the one
    with ``I - 2 t diag(lam)`` positive semi-definite (Moré 1993, the trust-region / S-lemma
    condition for one quadratic constraint), i.e. ``t`` between the two poles nearest 0, where
    ``phi' = sum b_i^2 / s_i^3 > 0``: there ``phi`` is strictly increasing, so that root is
    unique and is bracketed between 0 and the pole (``f0 < 0``; ``f0 > 0`` is the same problem for
    ``-f``). It is found with SciPy's vectorised bracketing solver (Chandrupatla), in ``t`` near 0
    and in the pole distance ``s`` near the pole, to machine precision in both. Degenerate cases:
    ``A = 0`` (equal covariances) is the hyperplane closed form; when ``b`` has no component along
    the extreme eigenvector (the "hard case") the root sits on the pole and the missing norm is
    put along that eigenvector; a boundary that does not exist on the point's side gives ``inf``.

    Args:
        mu1, mu2: means [d].
        S1, S2: covariances [d, d], symmetric positive definite.
        log_prior_ratio: ``log(pi1 / pi2)``; 0 for the paper's equal priors.
    """

    def __init__(self, mu1, S1, mu2, S2, log_prior_ratio: float = 0.0):
        self.g1 = Gaussian(mu1, S1)
        self.g2 = Gaussian(mu2, S2)
        if self.g1.dim != self.g2.dim:
            raise ValueError(f"the two Gaussians differ in dimension: {self.g1.dim} vs {self.g2.dim}")
        self.log_prior_ratio = float(log_prior_ratio)
        self.prec1 = self.g1.precision
        self.prec2 = self.g2.precision
        a_mat = (self.prec2 - self.prec1) / 2
        lam, self.eigvecs = np.linalg.eigh((a_mat + a_mat.T) / 2)
        scale = max(np.linalg.norm(self.prec1), np.linalg.norm(self.prec2))
        lam[np.abs(lam) <= _EIG_ZERO_RTOL * scale] = 0.0
        self.eigvals = lam

    @classmethod
    def from_gaussians(cls, g1: Gaussian, g2: Gaussian, log_prior_ratio: float = 0.0) -> QuadricBoundary:
        return cls(g1.mean, g1.cov, g2.mean, g2.cov, log_prior_ratio)

    @property
    def dim(self) -> int:
        return self.g1.dim

    @property
    def is_hyperplane(self) -> bool:
        """True when the covariances are equal (the boundary is a hyperplane or empty)."""
        return bool(np.all(self.eigvals == 0))

    def log_ratio(self, x) -> np.ndarray:
        """``f(x)`` [n] for points x [n, d]: positive on class 1's side."""
        x = _check_points(x, self.dim)
        return (
            -0.5 * (self.g1.mahalanobis2(x) - self.g2.mahalanobis2(x))
            - 0.5 * (self.g1.logdet - self.g2.logdet)
            + self.log_prior_ratio
        )

    def gradient(self, x) -> np.ndarray:
        """``grad f(x)`` [n, d] for x [n, d]."""
        x = _check_points(x, self.dim)
        return -(x - self.g1.mean) @ self.prec1 + (x - self.g2.mean) @ self.prec2

    def closest_points(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances [n] from x [n, d] to the boundary and the closest boundary points [n, d].

        A point with no boundary on its side (possible only when one class wins everywhere)
        gets distance ``inf`` and a NaN point.
        """
        x = _check_points(x, self.dim)
        f0 = self.log_ratio(x)
        beta = self.gradient(x) @ self.eigvecs  # [n, d] gradient in eigen-coordinates
        u = np.zeros_like(x)
        neg, pos = f0 < 0, f0 > 0  # f0 == 0: already on the boundary, u = 0
        if self.is_hyperplane:
            norm2 = (beta**2).sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                u = -(f0 / norm2)[:, None] * beta  # the hyperplane's orthogonal projection
            u[f0 == 0] = 0.0
        else:
            # f > 0 is the problem for -f: flip lam, b and f0 together.
            u[neg] = _solve_secular(self.eigvals, beta[neg], f0[neg])
            u[pos] = _solve_secular(-self.eigvals, -beta[pos], -f0[pos])
        dist = np.linalg.norm(u, axis=1)
        dist[~np.isfinite(dist)] = np.inf
        return dist, x + u @ self.eigvecs.T


def _phi_terms(t: np.ndarray, s: np.ndarray, beta2: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """phi = f0 + t * sum_i b_i^2 (1 + s_i) / (2 s_i^2) for [m] multipliers, [m, d] pole distances."""
    return f0 + t * (beta2 * (1 + s) / (2 * s**2)).sum(axis=1)


def _solve_secular(lam: np.ndarray, beta: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """The global minimiser u [m, d] of ||u|| s.t. sum(lam u^2 + beta u) + f0 = 0, for f0 < 0.

    lam [d] is shared by all m points; beta [m, d]; f0 [m] (all negative). The root t > 0 of the
    increasing secular function lies in [0, t_hi) with t_hi = 1 / (2 max lam) (or [0, inf)).
    Rows whose boundary is unreachable get NaN.
    """
    m, d = beta.shape
    u = np.full((m, d), np.nan)
    if m == 0:
        return u
    beta2 = beta**2
    lam_max = lam.max()
    if lam_max <= 0:  # no pole on this side: bracket by expansion
        t = _root_without_pole(lam, beta2, f0)
        ok = np.isfinite(t)
        u[ok] = t[ok, None] * beta[ok] / (1 - 2 * t[ok, None] * lam)
        return u

    t_hi = 0.5 / lam_max
    ratio = lam / lam_max  # <= 1; the pole of index i is at t = t_hi / ratio_i
    gap = 1.0 - ratio  # pole distances s_i at t = t_hi, exact also for ties

    def phi_t(t, idx):  # in t: accurate while t <= t_hi / 2
        s = 1 - 2 * t[:, None] * lam
        return _phi_terms(t, s, beta2[idx], f0[idx])

    def phi_s(s_max, idx):  # in s_max = 1 - t / t_hi: accurate near the pole
        s = gap + s_max[:, None] * ratio
        return _phi_terms((1 - s_max) * t_hi, s, beta2[idx], f0[idx])

    rows = np.arange(m)
    near_zero = phi_t(np.full(m, t_hi / 2), rows) >= 0
    idx = rows[near_zero]
    if idx.size:
        res = elementwise.find_root(phi_t, (np.zeros(idx.size), np.full(idx.size, t_hi / 2)), args=(idx,))
        t = res.x
        u[idx] = t[:, None] * beta[idx] / (1 - 2 * t[:, None] * lam)
    idx = rows[~near_zero]
    if idx.size:
        regular = phi_s(np.full(idx.size, _POLE_FLOOR), idx) >= 0
        ridx = idx[regular]
        if ridx.size:
            lo, hi = np.full(ridx.size, _POLE_FLOOR), np.full(ridx.size, 0.5)
            s_max = elementwise.find_root(phi_s, (lo, hi), args=(ridx,)).x
            s = gap + s_max[:, None] * ratio
            u[ridx] = ((1 - s_max) * t_hi)[:, None] * beta[ridx] / s
        hidx = idx[~regular]
        if hidx.size:
            u[hidx] = _hard_case(lam_max, gap, t_hi, beta[hidx], f0[hidx])
    return u


def _root_without_pole(lam: np.ndarray, beta2: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Root t > 0 [m] of phi when all lam <= 0 (phi increasing on [0, inf)); inf if phi stays < 0."""
    m = f0.shape[0]

    def phi(t, idx):
        return _phi_terms(t, 1 - 2 * t[:, None] * lam, beta2[idx], f0[idx])

    norm2 = beta2.sum(axis=1)
    with np.errstate(divide="ignore"):
        hi = -f0 / norm2  # phi(t) <= f0 + t ||b||^2 here, so the root is at least this
    t = np.full(m, np.inf)
    todo = np.isfinite(hi)
    for _ in range(200):  # x4 per round: 200 rounds reach beyond 1e120
        idx = np.flatnonzero(todo)
        if idx.size == 0:
            break
        up = phi(hi[idx], idx) >= 0
        found = idx[up]
        if found.size:
            lo = np.zeros(found.size)
            t[found] = elementwise.find_root(phi, (lo, hi[found]), args=(found,)).x
        todo[found] = False
        hi[idx[~up]] *= 4
    return t


def _hard_case(lam_max: float, gap: np.ndarray, t_hi: float, beta: np.ndarray, f0: np.ndarray) -> np.ndarray:
    """Minimiser at the pole t = t_hi: the components along the extreme eigenvalue take the slack."""
    tied = gap <= _EIG_TIE_RTOL
    free = ~tied
    u = np.zeros_like(beta)
    u[:, free] = t_hi * beta[:, free] / gap[free]
    rest = f0 + t_hi * (beta[:, free] ** 2 * (1 + gap[free]) / (2 * gap[free] ** 2)).sum(axis=1)
    b_norm = np.linalg.norm(beta[:, tied], axis=1)
    # lam_max a^2 + |b_tied| a + rest = 0 with a >= 0 along b_tied (or the first tied axis if b_tied = 0).
    disc = np.maximum(b_norm**2 - 4 * lam_max * rest, b_norm**2)
    a = (-b_norm + np.sqrt(disc)) / (2 * lam_max)
    direction = np.zeros((beta.shape[0], int(tied.sum())))
    has_b = b_norm > 0
    direction[has_b] = beta[has_b][:, tied] / b_norm[has_b, None]
    direction[~has_b, 0] = 1.0
    u[:, tied] = a[:, None] * direction
    return u


def closest_boundary_points(
    x, mu1, S1, mu2, S2, log_prior_ratio: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 distances [n] from x [n, d] to the Bayes boundary of N(mu1, S1) vs N(mu2, S2),
    and the closest boundary points [n, d]. See :class:`QuadricBoundary` for the method."""
    return QuadricBoundary(mu1, S1, mu2, S2, log_prior_ratio).closest_points(x)


def boundary_distance(x, mu1, S1, mu2, S2, log_prior_ratio: float = 0.0) -> np.ndarray:
    """Exact L2 distance [n] from each point of x [n, d] to the Bayes-optimal boundary of two
    Gaussians N(mu1 [d], S1 [d, d]) and N(mu2, S2) with equal priors (or ``log_prior_ratio``).

    Not an attack: the exact minimiser of ``||delta||`` with ``log N1(x + delta) = log N2(x + delta)``
    (float64; inputs may be NumPy arrays or torch tensors on any device).
    """
    return closest_boundary_points(x, mu1, S1, mu2, S2, log_prior_ratio)[0]


# ----------------------------------------------------------------------------------------------
# An independent numerical ruler in 2-D: first crossings along rays.


def ray_boundary_distance_2d(
    x,
    log_ratio: Callable[[np.ndarray], np.ndarray],
    r_max: float,
    r_min: float = 1e-7,
    n_angles: int = 180,
    n_radii: int = 128,
    n_linear: int = 256,
    zoom_levels: int = 3,
    progress: bool = False,
) -> np.ndarray:
    """Distance [n] from 2-D points x [n, 2] to the zero set of ``log_ratio`` by brute force.

    For each point, rays in ``n_angles`` directions are scanned at ``n_radii`` geometric radii in
    ``[r_min, r_max]`` (small distances) merged with ``n_linear`` evenly spaced ones (thin regions
    far away; a region thinner than ``r_max / n_linear`` along a ray can be missed). The first sign
    change of ``log_ratio`` along each ray is refined by bracketing root finding, the best
    direction is re-scanned ``zoom_levels`` times on a finer fan of angles, and the distance is the
    smallest first crossing. Uses no structure of the boundary, so it checks
    :func:`boundary_distance` and the mixture distances. Points with no crossing within ``r_max``
    get ``inf``.

    Args:
        log_ratio: maps points [m, 2] to values [m]; its sign gives the class.
    """
    x = _check_points(x, 2)
    if not 0 < r_min < r_max:
        raise ValueError(f"need 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}")
    radii = np.union1d(np.geomspace(r_min, r_max, n_radii), np.linspace(r_min, r_max, n_linear))
    out = np.full(x.shape[0], np.inf)
    for i in tqdm(range(x.shape[0]), desc="ray search", disable=not progress):
        x0 = x[i]
        sign0 = np.sign(log_ratio(x0[None, :]))[0]
        if sign0 == 0:
            out[i] = 0.0
            continue
        angles = np.linspace(0, 2 * np.pi, n_angles, endpoint=False)
        width = 2 * np.pi / n_angles
        best_r, best_a = _first_crossings(x0, sign0, angles, radii, log_ratio)
        for _ in range(zoom_levels):
            if not np.isfinite(best_r):
                break
            angles = best_a + np.linspace(-width, width, 33)
            width /= 16
            r, a = _first_crossings(x0, sign0, angles, radii, log_ratio)
            if r < best_r:
                best_r, best_a = r, a
        out[i] = best_r
    return out


def _first_crossings(x0, sign0, angles, radii, log_ratio) -> tuple[float, float]:
    """Smallest first-crossing radius over the given ray angles, and its angle."""
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # [K, 2]
    pts = x0 + radii[None, :, None] * dirs[:, None, :]  # [K, J, 2]
    vals = log_ratio(pts.reshape(-1, 2)).reshape(len(angles), len(radii))
    crossed = np.sign(vals) != sign0
    has = crossed.any(axis=1)
    if not has.any():
        return np.inf, np.nan
    first = crossed.argmax(axis=1)[has]
    lo = np.where(first > 0, radii[np.maximum(first - 1, 0)], 0.0)
    hi = radii[first]
    rays = dirs[has]

    def along(r, k):
        return log_ratio(x0 + r[:, None] * rays[k])

    r = elementwise.find_root(along, (lo, hi), args=(np.arange(rays.shape[0]),)).x
    k = int(np.argmin(r))
    return float(r[k]), float(angles[has][k])


# ----------------------------------------------------------------------------------------------
# Affine subspaces (Lemma 3).


def subspace_distance(mu1, A1, mu2, A2) -> float:
    """Minimal distance between the affine subspaces mu1 + A1 z1 and mu2 + A2 z2.

    ``min_{z1, z2} ||mu1 + A1 z1 - mu2 - A2 z2||``: the residual of one least-squares problem.
    mu_i [d]; A_i [d, k_i].
    """
    mu1, mu2 = _as_array(mu1, "mu1", 1), _as_array(mu2, "mu2", 1)
    A1, A2 = _as_array(A1, "A1", 2), _as_array(A2, "A2", 2)
    stacked = np.concatenate([A1, -A2], axis=1)  # [d, k1 + k2]
    z = scipy.linalg.lstsq(stacked, mu2 - mu1)[0]
    return float(np.linalg.norm(mu1 - mu2 + stacked @ z))


def point_subspace_distance(x, mu, A) -> np.ndarray:
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

    def component_log_probs(self, x) -> np.ndarray:
        """log(w_k N(x; mu_k, S_k)) [n, K] for x [n, d]."""
        x = _check_points(x, self.dim)
        return np.stack([c.log_pdf(x) for c in self.components], axis=1) + self.log_weights

    def log_prob(self, x) -> np.ndarray:
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


def mixture_boundary_distance(x, mix1: GaussianMixture, mix2: GaussianMixture) -> MixtureDistances:
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


def discrete_level_distance(log_p1, log_p2, metric: str = "taxicab") -> tuple[np.ndarray, np.ndarray]:
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


# ----------------------------------------------------------------------------------------------
# Two-class models with one interface (log_ratio, sample, distance): the panels of Figure 3.


@dataclass
class GaussianPair:
    """Two Gaussian classes with equal priors; distances are exact (:class:`QuadricBoundary`)."""

    g1: Gaussian
    g2: Gaussian
    extent: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0)
    quadric: QuadricBoundary = field(init=False, repr=False)

    def __post_init__(self):
        self.quadric = QuadricBoundary.from_gaussians(self.g1, self.g2)

    def log_ratio(self, x) -> np.ndarray:
        """log p1 - log p2 [n] at x [n, d]."""
        return self.quadric.log_ratio(x)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points of each class: ([n, d], [n, d])."""
        return self.g1.sample(n, rng), self.g2.sample(n, rng)

    def distance(self, x) -> np.ndarray:
        """Exact boundary distances [n]."""
        return self.quadric.closest_points(x)[0]


@dataclass
class MixturePair:
    """Two Gaussian-mixture classes with equal priors; distances by :func:`mixture_boundary_distance`."""

    mix1: GaussianMixture
    mix2: GaussianMixture
    extent: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0)

    def log_ratio(self, x) -> np.ndarray:
        return self.mix1.log_prob(x) - self.mix2.log_prob(x)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.mix1.sample(n, rng)[0], self.mix2.sample(n, rng)[0]

    def distance(self, x) -> np.ndarray:
        return mixture_boundary_distance(x, self.mix1, self.mix2).distance


@dataclass
class DiscretePair:
    """Two probability tables over quantised 2-D features; distances in quantisation levels (L1).

    Points are level coordinates [n, 2]; a real-valued point belongs to the cell it rounds to.
    """

    log_p1: np.ndarray
    log_p2: np.ndarray
    metric: str = "taxicab"

    @property
    def extent(self) -> tuple[float, float, float, float]:
        n0, n1 = self.log_p1.shape
        return (-0.5, n0 - 0.5, -0.5, n1 - 0.5)

    def _cells(self, x) -> tuple[np.ndarray, np.ndarray]:
        x = _check_points(x, 2)
        i = np.clip(np.rint(x[:, 0]).astype(int), 0, self.log_p1.shape[0] - 1)
        j = np.clip(np.rint(x[:, 1]).astype(int), 0, self.log_p1.shape[1] - 1)
        return i, j

    def log_ratio(self, x) -> np.ndarray:
        i, j = self._cells(x)
        return self.log_p1[i, j] - self.log_p2[i, j]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_table(self.log_p1, n, rng).astype(float), sample_table(self.log_p2, n, rng).astype(
            float
        )

    def distance(self, x) -> np.ndarray:
        i, j = self._cells(x)
        return discrete_level_distance(self.log_p1, self.log_p2, self.metric)[0][i, j]


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _ellipse(sd_major: float, sd_minor: float, deg: float) -> np.ndarray:
    r = _rotation(deg)
    return r @ np.diag([sd_major**2, sd_minor**2]) @ r.T


FIGURE3_PANELS = (
    ("a", "spherical", "symmetric"),
    ("b", "elliptical", "symmetric"),
    ("c", "discrete", "symmetric"),
    ("d", "mixture", "symmetric"),
    ("e", "spherical", "asymmetric"),
    ("f", "elliptical", "asymmetric"),
    ("g", "discrete", "asymmetric"),
    ("h", "mixture", "asymmetric"),
)


def figure3_model(shape: str, kind: str) -> GaussianPair | MixturePair | DiscretePair:
    """One of the eight 2-D models of Figure 3 (``shape`` x ``kind``, see FIGURE3_PANELS).

    Symmetric models give both classes the same smallest variance; asymmetric ones give class 1
    a much smaller variance in some direction than class 2 has there (Lemma 1).
    """
    shapes, kinds = ("spherical", "elliptical", "discrete", "mixture"), ("symmetric", "asymmetric")
    if shape not in shapes:
        raise ValueError(f"unknown shape {shape!r}: valid shapes are {shapes}")
    if kind not in kinds:
        raise ValueError(f"unknown kind {kind!r}: valid kinds are {kinds}")
    sym = kind == "symmetric"
    if shape == "discrete":
        return DiscretePair(*discrete_tables(kind))
    if shape == "spherical":
        if sym:
            return GaussianPair(
                Gaussian([-1.5, 0], 0.5**2 * np.eye(2)), Gaussian([1.5, 0], 0.5**2 * np.eye(2))
            )
        return GaussianPair(Gaussian([-0.3, 0], 0.03**2 * np.eye(2)), Gaussian([0.5, 0], np.eye(2)))
    if shape == "elliptical":
        if sym:
            return GaussianPair(
                Gaussian([-1.2, 0], _ellipse(1.2, 0.3, 70)), Gaussian([1.2, 0], _ellipse(1.2, 0.3, 110))
            )
        return GaussianPair(
            Gaussian([0, -0.3], _ellipse(1.2, 0.02, 20)), Gaussian([0, 0.3], _ellipse(1.0, 0.8, 0))
        )
    if sym:
        c1 = [Gaussian(m, 0.35**2 * np.eye(2)) for m in ([-1.4, -1.4], [1.4, 1.4])]
        c2 = [Gaussian(m, 0.35**2 * np.eye(2)) for m in ([-1.4, 1.4], [1.4, -1.4])]
    else:
        c1 = [
            Gaussian([-1.6, -0.6], _ellipse(0.45, 0.02, 10)),
            Gaussian([1.6, 0.6], _ellipse(0.45, 0.02, -10)),
        ]
        c2 = [Gaussian([-1.6, 0.3], 0.5**2 * np.eye(2)), Gaussian([1.6, -0.3], 0.5**2 * np.eye(2))]
    return MixturePair(GaussianMixture([1, 1], c1), GaussianMixture([1, 1], c2))


# ----------------------------------------------------------------------------------------------
# The lemmas as experiments: exact distances of sampled points while one scale goes to 0.


@dataclass
class DistanceSweep:
    """Exact boundary distances of sampled points over a sweep of one scale parameter.

    sigmas [m]: the swept scale; d1, d2 [m, n]: distances of class-1 / class-2 samples;
    reference: the lemma's limit (0 for Lemma 1, half the mean or subspace distance otherwise);
    scale: the yardstick distances are compared with (class 2's standard deviation along the
    critical direction for Lemma 1, the reference itself for Lemmas 2-3); extra: per-point
    arrays [m, n] some lemmas add (e.g. ``half_other``: half the distance to the other subspace).
    """

    lemma: str
    dim: int
    sigmas: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    reference: float
    scale: float
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def relative_error(self) -> np.ndarray:
        """|mean distance / reference - 1| [m] over both classes (lemmas with reference > 0)."""
        both = np.concatenate([self.d1, self.d2], axis=1)
        return np.abs(both.mean(axis=1) / self.reference - 1)

    def relative_spread(self) -> np.ndarray:
        """Standard deviation of the distances / reference [m] over both classes."""
        both = np.concatenate([self.d1, self.d2], axis=1)
        return both.std(axis=1) / self.reference


def _random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((dim, dim)))[0]


def _check_sweep_args(sigmas, dim: int, n_points: int) -> np.ndarray:
    sigmas = _as_array(sigmas, "sigmas", 1)
    if sigmas.size == 0 or np.any(sigmas <= 0):
        raise ValueError("sigmas must be a non-empty list of positive scales")
    if dim < 2:
        raise ValueError(f"dim must be at least 2, got {dim}")
    if n_points < 2:
        raise ValueError(f"n_points must be at least 2, got {n_points}")
    return sigmas


def lemma1_model(sigma1: float, dim: int, seed: int = 0) -> GaussianPair:
    """Lemma 1's asymmetric pair in ``dim`` dimensions.

    Class 2 has a random full-rank covariance (variances in [0.5, 2] along random axes, exactly 1
    along the critical direction d). Class 1 has its own random covariance with variance
    ``sigma1^2`` along d and variances in [1, 2] along its other axes, so that d is its direction of
    minimal variance, as the lemma requires, for every ``sigma1 < 1``; the means are 1 apart. Only
    ``sigma1`` changes with ``sigma1``: the random draws depend on ``seed`` and ``dim`` alone.
    """
    rng = np.random.default_rng((seed, 1, dim))
    rot2 = _random_rotation(dim, rng)
    var2 = rng.uniform(0.5, 2.0, dim)
    var2[0] = 1.0  # sigma2 = 1 along d = rot2[:, 0]
    # Class 1's axes: d plus a random basis of its orthogonal complement.
    rest = rng.standard_normal((dim, dim - 1))
    rest -= np.outer(rot2[:, 0], rot2[:, 0] @ rest)
    rot1 = np.concatenate([rot2[:, :1], np.linalg.qr(rest)[0]], axis=1)
    var1 = np.concatenate([[sigma1**2], rng.uniform(1.0, 2.0, dim - 1)])
    mu2 = rng.standard_normal(dim)
    mu2 /= np.linalg.norm(mu2)
    cov1 = rot1 @ np.diag(var1) @ rot1.T
    cov2 = rot2 @ np.diag(var2) @ rot2.T
    return GaussianPair(Gaussian(np.zeros(dim), (cov1 + cov1.T) / 2), Gaussian(mu2, (cov2 + cov2.T) / 2))


def lemma2_model(sigma: float, dim: int, seed: int = 0, separation: float = 2.0) -> GaussianPair:
    """Lemma 2's symmetric isotropic pair: N(mu_i, sigma^2 I), means ``separation`` apart."""
    rng = np.random.default_rng((seed, 2, dim))
    direction = rng.standard_normal(dim)
    direction /= np.linalg.norm(direction)
    cov = sigma**2 * np.eye(dim)
    return GaussianPair(Gaussian(-separation / 2 * direction, cov), Gaussian(separation / 2 * direction, cov))


@dataclass
class LowRankPair:
    """Lemma 3's pair N(mu_i, A_i A_i^T + sigma^2 I) with A1, A2 [d, k] of equal singular values."""

    pair: GaussianPair
    A1: np.ndarray
    A2: np.ndarray

    @property
    def subspace_distance(self) -> float:
        """Minimal distance between the affine subspaces mu_i + A_i z (least squares)."""
        return subspace_distance(self.pair.g1.mean, self.A1, self.pair.g2.mean, self.A2)


def lemma3_model(
    sigma: float, dim: int, rank: int = 6, seed: int = 0, separation: float = 10.0
) -> LowRankPair:
    """Lemma 3's symmetric low-rank + sigma^2 I pair in ``dim`` dimensions.

    A_i = U_i diag(s) V_i^T with random orthonormal U_i [d, k], V_i [k, k] and the same singular
    values s (1 down to 0.5); the means are ``separation`` apart in a random direction.
    """
    if not 0 < rank < dim:
        raise ValueError(f"rank must be in 1..dim-1, got rank={rank} for dim={dim}")
    rng = np.random.default_rng((seed, 3, dim, rank))
    singular = np.linspace(1.0, 0.5, rank)

    def factor() -> np.ndarray:
        u = np.linalg.qr(rng.standard_normal((dim, rank)))[0]
        return u @ np.diag(singular) @ _random_rotation(rank, rng).T

    A1, A2 = factor(), factor()
    mu2 = rng.standard_normal(dim)
    mu2 *= separation / np.linalg.norm(mu2)
    noise = sigma**2 * np.eye(dim)
    pair = GaussianPair(Gaussian(np.zeros(dim), A1 @ A1.T + noise), Gaussian(mu2, A2 @ A2.T + noise))
    return LowRankPair(pair, A1, A2)


def _sweep(lemma, make, sigmas, dim, n_points, seed, progress) -> tuple[np.ndarray, np.ndarray, list]:
    """Distances [m, n] of n fresh samples per class for each model make(sigma)."""
    rng = np.random.default_rng((seed, 10, dim))
    d1 = np.empty((len(sigmas), n_points))
    d2 = np.empty((len(sigmas), n_points))
    models, samples = [], []
    for i, sigma in enumerate(tqdm(sigmas, desc=f"{lemma}, d={dim}", disable=not progress)):
        model = make(sigma)
        pair = model.pair if isinstance(model, LowRankPair) else model
        x1, x2 = pair.sample(n_points, rng)
        d1[i], d2[i] = pair.distance(x1), pair.distance(x2)
        models.append(model)
        samples.append(x1)
    return d1, d2, list(zip(models, samples, strict=True))


def lemma1_sweep(sigmas, dim: int, n_points: int, seed: int = 0, progress: bool = False) -> DistanceSweep:
    """Exact distances of class-1 and class-2 samples of :func:`lemma1_model` for each sigma1."""
    sigmas = _check_sweep_args(sigmas, dim, n_points)
    d1, d2, _ = _sweep("Lemma 1", lambda s: lemma1_model(s, dim, seed), sigmas, dim, n_points, seed, progress)
    return DistanceSweep("Lemma 1", dim, sigmas, d1, d2, reference=0.0, scale=1.0)


def lemma2_sweep(
    sigmas, dim: int, n_points: int, seed: int = 0, separation: float = 2.0, progress: bool = False
) -> DistanceSweep:
    """Exact distances of both classes' samples of :func:`lemma2_model` for each sigma."""
    sigmas = _check_sweep_args(sigmas, dim, n_points)
    make = lambda s: lemma2_model(s, dim, seed, separation)  # noqa: E731
    d1, d2, _ = _sweep("Lemma 2", make, sigmas, dim, n_points, seed, progress)
    return DistanceSweep("Lemma 2", dim, sigmas, d1, d2, reference=separation / 2, scale=separation / 2)


def lemma3_sweep(
    sigmas, dim: int, n_points: int, seed: int = 0, rank: int = 6, progress: bool = False
) -> DistanceSweep:
    """Exact distances of both classes' samples of :func:`lemma3_model` for each sigma.

    ``extra["half_other"]`` [m, n]: half the distance of each class-1 sample to class 2's
    subspace, the per-point lower bound of the proof in appendix A.1 (as sigma -> 0).
    """
    sigmas = _check_sweep_args(sigmas, dim, n_points)
    make = lambda s: lemma3_model(s, dim, rank, seed)  # noqa: E731
    d1, d2, runs = _sweep("Lemma 3", make, sigmas, dim, n_points, seed, progress)
    half_other = np.stack([point_subspace_distance(x1, m.pair.g2.mean, m.A2) / 2 for m, x1 in runs])
    half = runs[0][0].subspace_distance / 2
    return DistanceSweep("Lemma 3", dim, sigmas, d1, d2, half, half, {"half_other": half_other})


# ----------------------------------------------------------------------------------------------
# Theorem 1 (mixtures) and Lemma A.1 (discrete tables) as experiments.


@dataclass
class MixtureCheck:
    """One mixture model of Theorem 1: exact pair-quadric distances and their brute-force check.

    d1, d2 [n]: distances of class-1 / class-2 samples; max_residual: the largest
    ``|log p1 - log p2|`` of the full mixtures at the closest points (0: the pair boundary is the
    mixture boundary); brute1, brute2 [n_check]: ray-search distances of the first ``n_check``
    samples of each class; max_rel_diff: largest relative difference between the two rulers.
    """

    kind: str
    model: MixturePair
    x1: np.ndarray
    x2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    max_residual: float
    brute1: np.ndarray
    brute2: np.ndarray
    max_rel_diff: float


def theorem1_experiment(
    n_points: int, seed: int = 0, n_check: int = 20, progress: bool = False
) -> dict[str, MixtureCheck]:
    """Theorem 1 on the 2-D mixtures of Figure 3d (symmetric) and 3h (asymmetric)."""
    if n_check > n_points:
        raise ValueError(f"n_check ({n_check}) cannot exceed n_points ({n_points})")
    out = {}
    for kind in ("symmetric", "asymmetric"):
        model = figure3_model("mixture", kind)
        rng = np.random.default_rng((seed, 20, kind == "symmetric"))
        x1, x2 = model.sample(n_points, rng)
        m1 = mixture_boundary_distance(x1, model.mix1, model.mix2)
        m2 = mixture_boundary_distance(x2, model.mix1, model.mix2)
        r_max = max(abs(v) for v in model.extent) * 3
        brute1 = ray_boundary_distance_2d(x1[:n_check], model.log_ratio, r_max, progress=progress)
        brute2 = ray_boundary_distance_2d(x2[:n_check], model.log_ratio, r_max, progress=progress)
        exact = np.concatenate([m1.distance[:n_check], m2.distance[:n_check]])
        brute = np.concatenate([brute1, brute2])
        out[kind] = MixtureCheck(
            kind,
            model,
            x1,
            x2,
            m1.distance,
            m2.distance,
            float(max(m1.residual.max(), m2.residual.max())),
            brute1,
            brute2,
            float(np.max(np.abs(exact - brute) / brute)),
        )
    return out


@dataclass
class DiscreteCheck:
    """Lemma A.1 on one pair of 100 x 100 tables: level distances of sampled cells.

    d1, d2 [n]: L1 (taxicab) level distances of class-1 / class-2 samples; d1_inf, d2_inf: the
    same in L-inf (chessboard); min_p1, min_p2: the smallest table entries.
    """

    kind: str
    model: DiscretePair
    x1: np.ndarray
    x2: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    d1_inf: np.ndarray
    d2_inf: np.ndarray
    min_p1: float
    min_p2: float


def lemma_a1_experiment(n_points: int, seed: int = 0) -> dict[str, DiscreteCheck]:
    """Level distances of samples from the symmetric (Fig. 3c) and asymmetric (Fig. 3g) tables."""
    out = {}
    for kind in ("symmetric", "asymmetric"):
        model = figure3_model("discrete", kind)
        rng = np.random.default_rng((seed, 30, kind == "symmetric"))
        x1, x2 = model.sample(n_points, rng)
        c1, c2 = x1.astype(int), x2.astype(int)
        taxi = discrete_level_distance(model.log_p1, model.log_p2, "taxicab")[0]
        cheb = discrete_level_distance(model.log_p1, model.log_p2, "chessboard")[0]
        out[kind] = DiscreteCheck(
            kind,
            model,
            x1,
            x2,
            taxi[c1[:, 0], c1[:, 1]],
            taxi[c2[:, 0], c2[:, 1]],
            cheb[c1[:, 0], c1[:, 1]],
            cheb[c2[:, 0], c2[:, 1]],
            float(np.exp(model.log_p1.min())),
            float(np.exp(model.log_p2.min())),
        )
    return out


def figure3_distances(
    n_points: int, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Samples and exact boundary distances for the eight panels of Figure 3.

    Returns {panel letter: (x1 [n, 2], x2 [n, 2], d1 [n], d2 [n])}; discrete panels measure in
    quantisation levels (L1), the others in the plane's units.
    """
    out = {}
    for i, (letter, shape, kind) in enumerate(FIGURE3_PANELS):
        model = figure3_model(shape, kind)
        rng = np.random.default_rng((seed, 40, i))
        x1, x2 = model.sample(n_points, rng)
        out[letter] = (x1, x2, model.distance(x1), model.distance(x2))
    return out


def ratio_model(ratio: float) -> GaussianPair:
    """The 2-D pair of the interactive panel: class 1's smallest standard deviation is ``ratio``
    times class 2's along the same (vertical) direction; ratio = 1 is almost symmetric."""
    if ratio <= 0:
        raise ValueError(f"ratio must be positive, got {ratio}")
    return GaussianPair(
        Gaussian([0.0, -1.0], np.diag([1.2**2, ratio**2])),
        Gaussian([0.0, 1.0], np.eye(2)),
        extent=(-3.5, 3.5, -3.5, 3.5),
    )


@dataclass
class RulerCheck:
    """Checks of :func:`boundary_distance` against independent answers.

    isotropic_err: largest |exact - |projection - midpoint|| (equal isotropic covariances);
    hyperplane_err: largest |exact - |w.x + c| / ||w||| (equal non-isotropic covariances);
    brute_rel_err: largest relative difference to the 2-D ray search on random quadrics
    (ellipses and hyperbolas); residual: largest |f(closest point)| / |f(x)| and kkt_sine: largest
    sine of the angle between x - closest point and grad f there, both in ``high_dim`` dimensions.
    example, x, closest: a 2-D hyperbolic example with points and their closest boundary points.
    """

    isotropic_err: float
    hyperplane_err: float
    brute_rel_err: float
    residual: float
    kkt_sine: float
    example: GaussianPair
    x: np.ndarray
    closest: np.ndarray


def random_spd(dim: int, rng: np.random.Generator, low: float = 0.2, high: float = 2.0) -> np.ndarray:
    """A random covariance [dim, dim] with eigenvalues uniform in [low, high] along random axes."""
    rot = _random_rotation(dim, rng)
    cov = rot @ np.diag(rng.uniform(low, high, dim)) @ rot.T
    return (cov + cov.T) / 2


def ruler_check(seed: int = 0, high_dim: int = 200, n_points: int = 200, n_brute: int = 30) -> RulerCheck:
    """Run the checks of :class:`RulerCheck` on random models drawn with ``seed``."""
    rng = np.random.default_rng((seed, 50))
    # Equal isotropic covariances: the boundary is the bisecting hyperplane of the means.
    mu1, mu2 = rng.standard_normal(high_dim), rng.standard_normal(high_dim)
    x = rng.standard_normal((n_points, high_dim)) + mu1
    exact = boundary_distance(x, mu1, 0.3 * np.eye(high_dim), mu2, 0.3 * np.eye(high_dim))
    unit = (mu2 - mu1) / np.linalg.norm(mu2 - mu1)
    isotropic_err = np.abs(exact - np.abs((x - (mu1 + mu2) / 2) @ unit)).max()
    # Equal non-isotropic covariances: hyperplane w.x + c = 0, w = P (mu1 - mu2).
    cov = random_spd(high_dim, rng)
    w = np.linalg.solve(cov, mu1 - mu2)
    c = -w @ (mu1 + mu2) / 2
    exact = boundary_distance(x, mu1, cov, mu2, cov)
    hyperplane_err = np.abs(exact - np.abs(x @ w + c) / np.linalg.norm(w)).max()
    # Random 2-D quadrics against the ray search.
    rel = []
    for _ in range(3):
        quad = QuadricBoundary(
            rng.standard_normal(2), random_spd(2, rng), rng.standard_normal(2), random_spd(2, rng)
        )
        pts = 1.5 * rng.standard_normal((n_brute // 3, 2))
        exact = quad.closest_points(pts)[0]
        brute = ray_boundary_distance_2d(pts, quad.log_ratio, r_max=30.0)
        rel.append(np.abs(exact - brute) / brute)
    # High dimension, unequal covariances: the closest points are on the boundary and stationary.
    quad = QuadricBoundary(mu1, random_spd(high_dim, rng), mu2, random_spd(high_dim, rng))
    dist, closest = quad.closest_points(x)
    residual = np.abs(quad.log_ratio(closest)).max() / np.abs(quad.log_ratio(x)).min()
    grad = quad.gradient(closest)
    unit_grad = grad / np.linalg.norm(grad, axis=1, keepdims=True)
    step = x - closest
    off_normal = step - (step * unit_grad).sum(axis=1, keepdims=True) * unit_grad
    kkt_sine = (np.linalg.norm(off_normal, axis=1) / dist).max()
    # A 2-D hyperbolic example for the figure.
    example = GaussianPair(
        Gaussian([-0.6, 0.0], _ellipse(1.0, 0.35, 80)), Gaussian([0.6, 0.0], _ellipse(1.0, 0.35, 10))
    )
    ex = example.g1.sample(12, rng)
    closest_ex = example.quadric.closest_points(ex)[1]
    return RulerCheck(
        float(isotropic_err),
        float(hyperplane_err),
        float(np.concatenate(rel).max()),
        float(residual),
        float(kkt_sine),
        example,
        ex,
        closest_ex,
    )
