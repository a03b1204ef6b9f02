"""How an MFA fit starts: clusters of the data, then a PCA per cluster (``MFA.fit``'s inits).

``kmeans`` clusters in torch on the data's device: the points are projected on their dominant principal
directions (``_principal_sketch``), k-means++ restarts and Lloyd iterations run there, batched, and
``_cluster_pcas`` finds each cluster's mean, variances and top principal directions from the same sketch in
one pass over the data. ``sklearn_cluster_pcas`` is the start used before it, scikit-learn's KMeans and PCA on
the host: kept as ``init="sklearn-kmeans"`` to compare with and to reproduce fits made with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from nbhelpers.core.checks import check_int as _check_int

KMEANS_SKETCH_DIM = 64  # principal directions the "kmeans" init clusters in (``kmeans``)
KMEANS_SKETCH_SAMPLE = 1000  # rows they are estimated from
# k-means++ restarts of the "kmeans" init: cheap in the sketch, and three merged two of 20 planted
# components in 4 of 6 seeds (scikit-learn's three on every point did too), ten in none
KMEANS_RESTARTS = 10
KMEANS_RESTART_SAMPLE = 2000  # points the restarts run on, before the best is refined on all


@dataclass(frozen=True)
class KMeansResult:
    """Outcome of ``kmeans``: ``centres`` [K, d] and ``labels`` [m] (int64) on the data's device,
    ``inertia`` the summed squared distance of the points to their centres, ``n_iter`` the Lloyd
    iterations run on all points and ``restart`` the index of the restart kept."""

    centres: Tensor
    labels: Tensor
    inertia: float
    n_iter: int
    restart: int


def _square_norms(x: Tensor) -> Tensor:
    """||x_i||^2 of x [m, d] -> [m], without a [m, d] temporary."""
    return torch.linalg.vector_norm(x, dim=1).square()


def _square_distances(x: Tensor, x_sq: Tensor, centres: Tensor) -> Tensor:
    """||x_i - c_j||^2 for x [m, d] (``x_sq`` [m] its squared norms) and centres [c, d] -> [m, c], >= 0:
    one matrix product (float64 data lose ~1e-16 |x|^2 to the expansion)."""
    return torch.addmm(x_sq[:, None] + _square_norms(centres), x, centres.T, alpha=-2).clamp_min_(0)


def _uniform(generator: torch.Generator, shape: tuple[int, ...], device: torch.device) -> Tensor:
    """Float64 uniforms in [0, 1) from a CPU generator: the same numbers for a CPU and a CUDA fit."""
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(device)


def _cluster_sums(x: Tensor, labels: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Sums [R, k, d] and counts [R, k] (float) of the rows of x [m, d] with each label of labels [R, m]."""
    R = len(labels)
    offsets = k * torch.arange(R, device=x.device)[:, None]
    counts = torch.bincount((labels + offsets).reshape(-1), minlength=R * k).reshape(R, k).to(x.dtype)
    if x.device.type == "cpu":  # scattered adds: a tenth of a matrix product's time, deterministic on a CPU
        sums = x.new_zeros(R, k, x.shape[1])
        for r in range(R):  # restarts, not components
            sums[r].index_add_(0, labels[r], x)
    else:  # a GPU's scattered float adds land in any order: the one-hot product is deterministic
        sums = torch.nn.functional.one_hot(labels, k).to(x.dtype).mT @ x
    return sums, counts


def _kmeans_plusplus(x: Tensor, x_sq: Tensor, k: int, restarts: int, generator: torch.Generator) -> Tensor:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; 2 + ln k candidates per centre, as in
    scikit-learn) of x [m, d], ``restarts`` independent seedings batched: row indices [R, k].

    Each new centre is the candidate, drawn with probability proportional to the squared distance to
    the nearest centre so far, that lowers the summed squared distance most. Points that sit on a
    centre are never drawn (when every point does, a uniform draw)."""
    m, R = len(x), restarts
    trials = 2 + int(math.log(k))
    runs = torch.arange(R, device=x.device)
    index = (_uniform(generator, (R, 1), x.device) * m).long()  # [R, 1] the first centres, uniform
    potential = _square_distances(x, x_sq, x[index[:, 0]]).T  # [R, m] distance to the nearest centre
    for _ in range(1, k):
        u = _uniform(generator, (R, trials), x.device)
        cdf = potential.cumsum(1)  # [R, m]
        total = cdf[:, -1:]
        drawn = torch.searchsorted(cdf, u * total, right=True).clamp_max_(m - 1)  # [R, trials]
        candidates = torch.where(total > 0, drawn, (u * m).long())
        d_cand = _square_distances(x, x_sq, x[candidates.reshape(-1)]).T.reshape(R, trials, m)
        d_cand = torch.minimum(d_cand, potential[:, None])  # [R, trials, m]
        best = d_cand.sum(2).argmin(1)  # [R]
        potential = d_cand[runs, best]
        index = torch.cat([index, candidates[runs, best][:, None]], dim=1)
    return index


def _lloyd(
    x: Tensor, x_sq: Tensor, centres: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Up to ``max_iter`` Lloyd iterations on x [m, d] for R batched runs from centres [R, k, d]; a run
    is done when no label changes or its centres' summed squared shift is at most ``tol``.

    The assignment is one matrix product [m, d] x [d, R k]. A cluster left empty moves to the point
    farthest from its centre (distinct points for several empty ones). Returns the centres [R, k, d],
    the labels [R, m] of the points' nearest centre, their squared distances [R, m] to it, and the
    number of iterations run (0: the assignment to the given centres only).
    """
    R, k, d = centres.shape
    m = len(x)

    def assign(c: Tensor) -> tuple[Tensor, Tensor]:
        dist, labels = _square_distances(x, x_sq, c.reshape(R * k, d)).reshape(m, R, k).min(2)
        return labels.T.contiguous(), dist.T

    labels, dist = assign(centres)
    for iteration in range(1, max_iter + 1):
        sums, counts = _cluster_sums(x, labels, k)
        new = sums / counts.clamp_min(1)[:, :, None]
        empty = counts == 0
        reseeded = bool(empty.any())
        if reseeded:
            farthest = dist.topk(k, dim=1).indices  # [R, k]
            rank = (empty.long().cumsum(1) - 1).clamp_min(0)  # the j-th empty cluster takes the j-th farthest
            new = torch.where(empty[:, :, None], x[farthest.gather(1, rank)], new)
        shift = (new - centres).square().sum((1, 2))  # [R]
        centres = new
        new_labels, dist = assign(centres)
        done = torch.equal(new_labels, labels) or bool((shift <= tol).all())
        labels = new_labels
        if done and not reseeded:
            return centres, labels, dist, iteration
    return centres, labels, dist, max_iter


def _principal_sketch(
    x: Tensor, q: int, sample_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """An orthonormal basis V [d, q] of the dominant principal subspace of x [m, d], and the scores
    (x - mean) V [m, q] of every point.

    V comes from a randomized range finder with one power iteration (Halko, Martinsson & Tropp 2011)
    on a seeded sample of ``sample_size`` rows (all if m is smaller): V spans S_c^T S_c Omega, Omega a
    Gaussian [d, q] test matrix from ``generator``. Then one matrix product of all of x with V gives
    the scores: about 1 + 2 ``sample_size`` / m passes of [m, d] x [d, q] in all, with small results
    (the centred points are never formed). When d <= q, V = I and the scores are the centred points."""
    m, d = x.shape
    if d <= q:
        return torch.eye(d, dtype=x.dtype, device=x.device), x - x.mean(0)
    omega = torch.randn(d, q, generator=generator, dtype=torch.float64).to(x.device)
    rows = torch.randperm(m, generator=generator)[: min(m, sample_size)].sort().values
    sample = x if len(rows) == m else x[rows.to(x.device)]
    y = sample @ omega  # [s, q]
    Q = torch.linalg.qr(y - y.mean(0)).Q  # [s, q] the range of S_c Omega (its columns sum to ~0)
    sums = torch.cat([Q.new_ones(len(Q), 1), Q], dim=1).T @ sample  # [1 + q, d]: sum and Q^T S at once
    right = torch.linalg.qr((sums[1:] - Q.sum(0)[:, None] * sums[0] / len(Q)).T).Q  # [d, q] S_c^T Q
    scores = x @ right  # [m, q]
    return right, scores - scores.mean(0)


def _kmeans_restarts(
    x: Tensor, k: int, n_init: int, max_iter: int, tol: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, int]:
    """k-means of x [m, p]: ``n_init`` greedy k-means++ seedings, each refined by at most ``max_iter``
    Lloyd iterations, batched, on a seeded sample of max(``KMEANS_RESTART_SAMPLE``, 20 k) points (all
    if m is smaller); the restart of lowest within-cluster sum of squares there is then refined on all
    points. Lloyd stops at a summed squared centre shift of ``tol`` times the mean variance of the
    features (scikit-learn's criterion). Returns centres [k, p], labels [m] and the restart's index."""
    m = len(x)
    scale = float(x.var(0).mean()) if m > 1 else 0.0
    rows = torch.randperm(m, generator=generator)[: min(m, max(KMEANS_RESTART_SAMPLE, 20 * k))]
    sample = x if len(rows) == m else x[rows.sort().values.to(x.device)]
    sample_sq = _square_norms(sample)
    seeds = _kmeans_plusplus(sample, sample_sq, k, n_init, generator)  # [R, k]
    centres, labels, dist, _ = _lloyd(sample, sample_sq, sample[seeds], max_iter, tol * scale)
    best = int(dist.sum(1).argmin())
    centres, labels = centres[best : best + 1], labels[best : best + 1]
    if len(sample) < m:
        centres, labels, _, _ = _lloyd(x, _square_norms(x), centres, max_iter, tol * scale)
    return centres[0], labels[0], best


def kmeans(
    x: ArrayLike,
    n_clusters: int,
    *,
    n_init: int = KMEANS_RESTARTS,
    sketch_dim: int = KMEANS_SKETCH_DIM,
    sketch_sample: int = KMEANS_SKETCH_SAMPLE,
    max_iter: int = 300,
    refine_iter: int = 1,
    tol: float = 1e-4,
    seed: int = 0,
    check_finite: bool = True,
) -> KMeansResult:
    """k-means of x [m, d] in torch, in float64 on x's device (no copy to the host).

    1. The points are projected on an orthonormal basis of their ``sketch_dim`` dominant principal
       directions, estimated from a seeded sample of ``sketch_sample`` of them (``_principal_sketch``;
       no projection when d is at most ``sketch_dim``): one matrix product of x with [d, sketch_dim],
       and two of the sample.
    2. There, ``n_init`` greedy k-means++ seedings are refined by at most ``max_iter`` Lloyd
       iterations, batched, on a sample of ``KMEANS_RESTART_SAMPLE`` points; the one of lowest
       within-cluster sum of squares is kept and refined on all points (``_kmeans_restarts``).
       Cluster structure lives in the top principal directions (k-means on the top ~k / eps of them
       is within 1 + eps of the optimum, Cohen et al. 2015), and there an iteration costs ~1/200 of
       one on faces.
    3. Its clusters' means over x are refined by at most ``refine_iter`` Lloyd iterations on x
       (0: every point takes the nearest of those means).

    Lloyd stops early when no label changes or the centres' summed squared shift is at most ``tol``
    times the mean variance of the features (scikit-learn's criterion). Empty clusters move to the
    points farthest from their centres. Where scikit-learn's three restarts run to convergence on x
    itself (30-90 iterations of two passes over 4,000 faces; ~17 MFA EM iterations of the same data,
    bench/README.md), this reads x about 2 + 2 ``refine_iter`` times.

    Random numbers come from a CPU generator seeded with ``seed``: the same seed gives the same
    clusters on a device, and the same draws on a CPU and a GPU. ``check_finite=False`` skips the
    check for NaN and inf (a pass over x) for data already checked.
    """
    k = _check_int("n_clusters", n_clusters, 1)
    n_init = _check_int("n_init", n_init, 1)
    sketch_dim = _check_int("sketch_dim", sketch_dim, 1)
    sketch_sample = _check_int("sketch_sample", sketch_sample, 1)
    max_iter = _check_int("max_iter", max_iter, 0)
    refine_iter = _check_int("refine_iter", refine_iter, 0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [m, d], got shape {tuple(x.shape)}")
    if len(x) < k:
        raise ValueError(f"n_clusters={k} exceeds the number of points m={len(x)}: use fewer clusters")
    x = x.to(torch.float64)
    if check_finite and not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf values: clean the data before clustering")
    generator = torch.Generator().manual_seed(seed)
    basis, scores = _principal_sketch(x, sketch_dim, sketch_sample, generator)
    centres, labels, restart = _kmeans_restarts(scores, k, n_init, max_iter, tol, generator)
    sums, counts = _cluster_sums(x, labels[None], k)
    mean = sums[0].sum(0) / len(x)
    if bool((counts == 0).any()):  # an empty cluster keeps its centre of the sketch, lifted to x's space
        sums[0] += (counts[0] == 0)[:, None] * (mean + centres @ basis.T)
    centres = sums[0] / counts[0].clamp_min(1)[:, None]
    x_sq = _square_norms(x)
    # the mean variance of a feature, from the squared norms (no [m, d] temporary)
    scale = float((x_sq.mean() - mean.square().sum()) * len(x) / max(len(x) - 1, 1)) / x.shape[1]
    centres, labels, dist, n_iter = _lloyd(x, x_sq, centres[None], refine_iter, tol * scale)
    return KMeansResult(centres[0], labels[0], float(dist.sum()), n_iter, restart)


def _cluster_pcas(
    x: Tensor,
    labels: Tensor,
    k: int,
    l: int,  # noqa: E741 (the paper's symbol)
    scores: Tensor,
    rows_per_chunk: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Per cluster of x [m, d] labelled ``labels`` [m] in range(k): means [k, d], variances [k, d] (ddof
    1), top-l PCA eigenvalues [k, l] and unit directions [k, l, d] of its covariance, and counts [k].

    A randomized range finder (Halko, Martinsson & Tropp 2011) whose test matrix is the basis V of
    ``_principal_sketch`` (``scores`` [m, q] = (x - mean) V): per cluster, an orthonormal basis Q
    [n, q] of R V, then B = Q^T R [q, d], R the cluster's centred points (never formed: its points and
    their mean enter separately), and the top-l eigenpairs of every B B^T from one batched eigh. One
    pass over x, in chunks of ``rows_per_chunk`` rows of a cluster (large temporaries cost page faults
    on a CPU): [1, Q]^T X (the sums and B at once) and the sums of squares. A cluster of fewer than
    l + 2 points takes the variances and PCA of all points (an empty one, the mean x[j]).
    """
    m, d = x.shape
    q = scores.shape[1]
    counts = torch.bincount(labels, minlength=k)
    small = counts < l + 2
    members = [(labels == j).nonzero()[:, 0] for j in range(k)]
    if bool(small.any()):
        members.append(torch.arange(m, device=x.device))  # all points: the small clusters' fallback
    G = len(members)
    sums, squares = x.new_zeros(G, 1 + q, d), x.new_zeros(G, d)
    # clusters have ragged sizes, so this one-off PCA loops over them
    for g, rows in enumerate(members):
        if len(rows) == 0:
            continue
        y = scores[rows]
        Q = torch.linalg.qr(y - y.mean(0)).Q  # [n, min(n, q)] basis of R V
        P = torch.cat([Q.new_ones(len(rows), 1), Q], dim=1)  # [n, 1 + min(n, q)]
        for start in range(0, len(rows), rows_per_chunk):
            part = slice(start, start + rows_per_chunk)
            xc = x[rows[part]]
            sums[g, : P.shape[1]] += P[part].T @ xc
            squares[g] += xc.new_ones(len(xc)) @ (xc * xc)  # a product: faster than a column sum
        sums[g, 1 : P.shape[1]] -= Q.sum(0)[:, None] * sums[g, 0] / len(rows)  # B = Q^T R
    n = torch.tensor([len(rows) for rows in members], dtype=x.dtype, device=x.device)
    mean = sums[:, 0] / n.clamp_min(1)[:, None]
    variance = ((squares - n[:, None] * mean.square()) / (n - 1).clamp_min(1)[:, None]).clamp_min(0)
    basis = sums[:, 1:]  # [G, q, d], zero rows where a group has fewer than q points
    evals, evecs = torch.linalg.eigh(basis @ basis.mT)  # [G, q] ascending, [G, q, q]
    sv2 = evals[:, -l:].flip(1).clamp_min(0)  # squared singular values of R, largest first
    top = evecs[:, :, -l:].flip(2)  # [G, q, l]
    directions = (top.mT @ basis) / sv2.sqrt().clamp_min(torch.finfo(torch.float64).tiny)[:, :, None]
    eigval = sv2 / (n - 1).clamp_min(1)[:, None]
    mean = torch.where(counts[:, None] > 0, mean[:k], x[:k])
    if G > k:  # small clusters borrow the global variances and PCA (the last group)
        variance = torch.where(small[:, None], variance[k], variance[:k])
        eigval = torch.where(small[:, None], eigval[k], eigval[:k])
        directions = torch.where(small[:, None, None], directions[k], directions[:k])
    return mean, variance, eigval, directions, counts.to(x.dtype)


def sklearn_cluster_pcas(
    x: Tensor,
    k: int,
    l: int,  # noqa: E741 (the paper's symbol)
    seed: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's KMeans (three k-means++ restarts on all m points of x [m, d]) and a PCA per cluster,
    on the host, returned as ``_cluster_pcas`` returns them (on x's device)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    points_all = x.cpu().numpy()
    labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(points_all).labels_
    d = x.shape[1]

    def pca(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        model = PCA(n_components=l, random_state=seed).fit(points)
        return points.var(0, ddof=1), model.explained_variance_, model.components_

    fallback = None
    mean, variance = np.empty((k, d)), np.empty((k, d))
    eigval, directions = np.empty((k, l)), np.empty((k, l, d))
    # clusters have ragged sizes, so this one-off PCA loops over them
    for j in range(k):
        points = points_all[labels == j]
        mean[j] = points.mean(0) if len(points) else points_all[j]
        if len(points) >= l + 2:
            variance[j], eigval[j], directions[j] = pca(points)
        else:  # too few points for an l-dimensional subspace: borrow the global one
            fallback = pca(points_all) if fallback is None else fallback
            variance[j], eigval[j], directions[j] = fallback
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return tuple(torch.from_numpy(v).to(x.device) for v in (mean, variance, eigval, directions, counts))


def cluster_start(
    x: Tensor,
    k: int,
    l: int,  # noqa: E741 (the paper's symbol)
    init: str,
    seed: int,
    rows_per_chunk: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Clusters of x [m, d] (float64) and their PCA: means [k, d], variances [k, d], top-l eigenvalues
    [k, l] and unit directions [k, l, d], counts [k].

    ``init``: "kmeans" (k-means in torch on x's device, in the sketch of ``_principal_sketch``, steps 1-2 of
    ``kmeans``; then ``_cluster_pcas`` from the same sketch, ``rows_per_chunk`` rows at a time), "random"
    (the nearest, in the sketch, of k random points) or "sklearn-kmeans" (``sklearn_cluster_pcas``).
    """
    if init == "sklearn-kmeans":
        return sklearn_cluster_pcas(x, k, l, seed)
    generator = torch.Generator().manual_seed(seed)
    _, scores = _principal_sketch(x, KMEANS_SKETCH_DIM, KMEANS_SKETCH_SAMPLE, generator)
    if init == "kmeans":
        _, labels, _ = _kmeans_restarts(scores, k, KMEANS_RESTARTS, 300, 1e-4, generator)
    elif init == "random":
        pick = np.random.default_rng(seed).choice(len(x), size=k, replace=False)
        centres = scores[torch.as_tensor(pick, device=x.device)]
        labels = _square_distances(scores, _square_norms(scores), centres).argmin(1)
    else:
        raise ValueError(f"unknown init {init!r}: valid starts are 'kmeans', 'random', 'sklearn-kmeans'")
    return _cluster_pcas(x, labels, k, l, scores, rows_per_chunk)
