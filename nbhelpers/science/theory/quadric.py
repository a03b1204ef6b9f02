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

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import scipy.linalg
from scipy.optimize import elementwise

from nbhelpers.core.progress import tqdm

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

    def log_pdf(self, x: npt.ArrayLike) -> np.ndarray:
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

    def log_ratio(self, x: npt.ArrayLike) -> np.ndarray:
        """``f(x)`` [n] for points x [n, d]: positive on class 1's side."""
        x = _check_points(x, self.dim)
        return (
            -0.5 * (self.g1.mahalanobis2(x) - self.g2.mahalanobis2(x))
            - 0.5 * (self.g1.logdet - self.g2.logdet)
            + self.log_prior_ratio
        )

    def gradient(self, x: npt.ArrayLike) -> np.ndarray:
        """``grad f(x)`` [n, d] for x [n, d]."""
        x = _check_points(x, self.dim)
        return -(x - self.g1.mean) @ self.prec1 + (x - self.g2.mean) @ self.prec2

    def closest_points(self, x: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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

    def phi_t(t: np.ndarray, idx: np.ndarray) -> np.ndarray:  # in t: accurate while t <= t_hi / 2
        s = 1 - 2 * t[:, None] * lam
        return _phi_terms(t, s, beta2[idx], f0[idx])

    def phi_s(
        s_max: np.ndarray, idx: np.ndarray
    ) -> np.ndarray:  # in s_max = 1 - t / t_hi: accurate near the pole
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

    def phi(t: np.ndarray, idx: np.ndarray) -> np.ndarray:
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
    x: npt.ArrayLike,
    mu1: npt.ArrayLike,
    S1: npt.ArrayLike,
    mu2: npt.ArrayLike,
    S2: npt.ArrayLike,
    log_prior_ratio: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact L2 distances [n] from x [n, d] to the Bayes boundary of N(mu1, S1) vs N(mu2, S2),
    and the closest boundary points [n, d]. See :class:`QuadricBoundary` for the method."""
    return QuadricBoundary(mu1, S1, mu2, S2, log_prior_ratio).closest_points(x)


def boundary_distance(
    x: npt.ArrayLike,
    mu1: npt.ArrayLike,
    S1: npt.ArrayLike,
    mu2: npt.ArrayLike,
    S2: npt.ArrayLike,
    log_prior_ratio: float = 0.0,
) -> np.ndarray:
    """Exact L2 distance [n] from each point of x [n, d] to the Bayes-optimal boundary of two
    Gaussians N(mu1 [d], S1 [d, d]) and N(mu2, S2) with equal priors (or ``log_prior_ratio``).

    Not an attack: the exact minimiser of ``||delta||`` with ``log N1(x + delta) = log N2(x + delta)``
    (float64; inputs may be NumPy arrays or torch tensors on any device).
    """
    return closest_boundary_points(x, mu1, S1, mu2, S2, log_prior_ratio)[0]


# ----------------------------------------------------------------------------------------------
# An independent numerical ruler in 2-D: first crossings along rays.


def ray_boundary_distance_2d(
    x: npt.ArrayLike,
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

    def along(r: np.ndarray, k: np.ndarray) -> np.ndarray:
        return log_ratio(x0 + r[:, None] * rays[k])

    r = elementwise.find_root(along, (lo, hi), args=(np.arange(rays.shape[0]),)).x
    k = int(np.argmin(r))
    return float(r[k]), float(angles[has][k])
