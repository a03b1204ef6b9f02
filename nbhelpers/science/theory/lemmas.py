"""The paper's theory as experiments: the two-class models of Figure 3 and of Lemmas 1-3, sweeps of exact
distances while one scale goes to 0, Theorem 1 (mixtures) and Lemma A.1 (discrete tables), and the check of
the exact distance against independent rulers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from nbhelpers.core.progress import tqdm
from nbhelpers.science.theory.mixtures import (
    GaussianMixture,
    discrete_level_distance,
    discrete_tables,
    mixture_boundary_distance,
    point_subspace_distance,
    sample_table,
    subspace_distance,
)
from nbhelpers.science.theory.quadric import (
    Gaussian,
    QuadricBoundary,
    _as_array,
    _check_points,
    boundary_distance,
    ray_boundary_distance_2d,
)

# ----------------------------------------------------------------------------------------------
# Two-class models with one interface (log_ratio, sample, distance): the 2-D models of Figure 3.


@dataclass
class GaussianPair:
    """Two Gaussian classes with equal priors; distances are exact (:class:`QuadricBoundary`)."""

    g1: Gaussian
    g2: Gaussian
    extent: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0)
    quadric: QuadricBoundary = field(init=False, repr=False)

    def __post_init__(self):
        self.quadric = QuadricBoundary.from_gaussians(self.g1, self.g2)

    def log_ratio(self, x: npt.ArrayLike) -> np.ndarray:
        """log p1 - log p2 [n] at x [n, d]."""
        return self.quadric.log_ratio(x)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n points of each class: ([n, d], [n, d])."""
        return self.g1.sample(n, rng), self.g2.sample(n, rng)

    def distance(self, x: npt.ArrayLike) -> np.ndarray:
        """Exact boundary distances [n]."""
        return self.quadric.closest_points(x)[0]


@dataclass
class MixturePair:
    """Two Gaussian-mixture classes with equal priors; distances by :func:`mixture_boundary_distance`."""

    mix1: GaussianMixture
    mix2: GaussianMixture
    extent: tuple[float, float, float, float] = (-3.0, 3.0, -3.0, 3.0)

    def log_ratio(self, x: npt.ArrayLike) -> np.ndarray:
        return self.mix1.log_prob(x) - self.mix2.log_prob(x)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return self.mix1.sample(n, rng)[0], self.mix2.sample(n, rng)[0]

    def distance(self, x: npt.ArrayLike) -> np.ndarray:
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

    def log_ratio(self, x: npt.ArrayLike) -> np.ndarray:
        i, j = self._cells(x)
        return self.log_p1[i, j] - self.log_p2[i, j]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return sample_table(self.log_p1, n, rng).astype(float), sample_table(self.log_p2, n, rng).astype(
            float
        )

    def distance(self, x: npt.ArrayLike) -> np.ndarray:
        i, j = self._cells(x)
        return discrete_level_distance(self.log_p1, self.log_p2, self.metric)[0][i, j]


def _rotation(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _ellipse(sd_major: float, sd_minor: float, deg: float) -> np.ndarray:
    r = _rotation(deg)
    return r @ np.diag([sd_major**2, sd_minor**2]) @ r.T


TOY_SHAPES = ("spherical", "elliptical", "discrete", "mixture")
TOY_KINDS = ("symmetric", "asymmetric")


def toy_model(shape: str, kind: str) -> GaussianPair | MixturePair | DiscretePair:
    """One of the eight 2-D two-class models of the paper's Figure 3: ``shape`` (one of ``TOY_SHAPES``)
    x ``kind`` (one of ``TOY_KINDS``).

    Symmetric models give both classes the same smallest variance; asymmetric ones give class 1
    a much smaller variance in some direction than class 2 has there (Lemma 1).
    """
    shapes, kinds = TOY_SHAPES, TOY_KINDS
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


def lemma1_sweep(
    sigmas: npt.ArrayLike, dim: int, n_points: int, seed: int = 0, progress: bool = False
) -> DistanceSweep:
    """Exact distances of class-1 and class-2 samples of :func:`lemma1_model` for each sigma1."""
    sigmas = _check_sweep_args(sigmas, dim, n_points)
    d1, d2, _ = _sweep("Lemma 1", lambda s: lemma1_model(s, dim, seed), sigmas, dim, n_points, seed, progress)
    return DistanceSweep("Lemma 1", dim, sigmas, d1, d2, reference=0.0, scale=1.0)


def lemma2_sweep(
    sigmas: npt.ArrayLike,
    dim: int,
    n_points: int,
    seed: int = 0,
    separation: float = 2.0,
    progress: bool = False,
) -> DistanceSweep:
    """Exact distances of both classes' samples of :func:`lemma2_model` for each sigma."""
    sigmas = _check_sweep_args(sigmas, dim, n_points)
    make = lambda s: lemma2_model(s, dim, seed, separation)  # noqa: E731
    d1, d2, _ = _sweep("Lemma 2", make, sigmas, dim, n_points, seed, progress)
    return DistanceSweep("Lemma 2", dim, sigmas, d1, d2, reference=separation / 2, scale=separation / 2)


def lemma3_sweep(
    sigmas: npt.ArrayLike, dim: int, n_points: int, seed: int = 0, rank: int = 6, progress: bool = False
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
        model = toy_model("mixture", kind)
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
        model = toy_model("discrete", kind)
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
