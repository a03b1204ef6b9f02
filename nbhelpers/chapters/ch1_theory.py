"""Chapter 1, the theory: Figure 3, the lemma sweeps, mixtures, tables, the sigma slider.

The computations are :mod:`nbhelpers.science.theory`'s; each ``plot_*`` function takes the result of one of
them (or computes it, for the self-contained panels) and returns the matplotlib Figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from nbhelpers.core.progress import tqdm
from nbhelpers.science import theory

#: Figure 3's panels: (letter, shape, kind) of the 2-D models of :func:`theory.toy_model`.
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
CLASS_COLORS = ("tab:blue", "tab:orange")
_BOUNDARY = {"colors": "black", "linewidths": 1.2}


def _draw_boundary(ax, model, grid: int = 400) -> None:
    """The zero contour of ``model.log_ratio`` over the model's extent."""
    x0, x1, y0, y1 = model.extent
    gx, gy = np.meshgrid(np.linspace(x0, x1, grid), np.linspace(y0, y1, grid))
    vals = model.log_ratio(np.stack([gx.ravel(), gy.ravel()], axis=1)).reshape(gx.shape)
    ax.contour(gx, gy, vals, levels=[0.0], **_BOUNDARY)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _scatter_classes(ax, x1: np.ndarray, x2: np.ndarray, size: float = 4.0) -> None:
    style = {"s": size, "linewidths": 0, "zorder": 3}  # above the boundary line
    ax.scatter(x2[:, 0], x2[:, 1], color=CLASS_COLORS[1], alpha=0.5, label="class 2", **style)
    ax.scatter(x1[:, 0], x1[:, 1], color=CLASS_COLORS[0], alpha=0.7, label="class 1", **style)


# Panels whose class 1 is too small to see: (centre, half-width) of a zoomed inset.
_FIGURE3_ZOOM = {"e": ((-0.3, 0.0), 0.2)}


def _zoom_inset(ax, model, x1: np.ndarray, x2: np.ndarray, centre, half: float) -> None:
    """An inset showing the square of half-width ``half`` around ``centre``, boundary included."""
    inset = ax.inset_axes([0.6, 0.6, 0.38, 0.38])
    cx, cy = centre
    zoomed = type(model)(model.g1, model.g2, extent=(cx - half, cx + half, cy - half, cy + half))
    _draw_boundary(inset, zoomed, grid=200)
    _scatter_classes(inset, x1, x2, size=3)
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_aspect("equal")
    ax.indicate_inset_zoom(inset, edgecolor="gray")


def figure3_distances(
    n_points: int, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Samples and exact boundary distances for the eight panels of Figure 3.

    Returns {panel letter: (x1 [n, 2], x2 [n, 2], d1 [n], d2 [n])}; discrete panels measure in
    quantisation levels (L1), the others in the plane's units.
    """
    out = {}
    for i, (letter, shape, kind) in enumerate(FIGURE3_PANELS):
        model = theory.toy_model(shape, kind)
        rng = np.random.default_rng((seed, 40, i))
        x1, x2 = model.sample(n_points, rng)
        out[letter] = (x1, x2, model.distance(x1), model.distance(x2))
    return out


def plot_figure3(data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> Figure:
    """The paper's Figure 3: eight 2-D models, symmetric (top) and asymmetric (bottom).

    Columns: spherical, elliptical, discrete (100 x 100 tables), mixture. Each panel shows the
    samples of :func:`figure3_distances` (``data``), the Bayes boundary ``log p1 = log p2``
    (black) and the median exact distance of each class's samples to it (levels when discrete).
    """
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.6))
    for ax, (letter, shape, kind) in zip(axes.ravel(), FIGURE3_PANELS, strict=True):
        model = theory.toy_model(shape, kind)
        x1, x2, d1, d2 = data[letter]
        _draw_boundary(ax, model, grid=100 if shape == "discrete" else 400)
        _scatter_classes(ax, x1, x2)
        unit = " levels" if shape == "discrete" else ""
        ax.set_title(f"({letter}) {shape}, {kind}", fontsize=10)
        ax.text(
            0.02,
            0.02,
            f"median distance\nclass 1: {np.median(d1):.3g}{unit}\nclass 2: {np.median(d2):.3g}{unit}",
            transform=ax.transAxes,
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        if letter in _FIGURE3_ZOOM:
            _zoom_inset(ax, model, x1, x2, *_FIGURE3_ZOOM[letter])
    axes[0, 0].legend(loc="upper right", fontsize=8, markerscale=3)
    fig.suptitle("Figure 3: far from the boundary when symmetric (top), close when asymmetric (bottom)")
    fig.tight_layout()
    return fig


def plot_ruler(check: theory.RulerCheck) -> Figure:
    """A hyperbolic boundary with sampled points joined to their exact closest boundary points."""
    fig, ax = plt.subplots(figsize=(5, 5))
    model = check.example
    _draw_boundary(ax, model)
    for p, q in zip(check.x, check.closest, strict=True):
        ax.plot([p[0], q[0]], [p[1], q[1]], color="gray", lw=0.8)
    ax.scatter(*check.x.T, s=14, color=CLASS_COLORS[0], zorder=3, label="class-1 samples")
    ax.scatter(*check.closest.T, s=14, color="crimson", marker="x", zorder=3, label="closest boundary point")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Exact distances to a quadric boundary")
    fig.tight_layout()
    return fig


def _band(ax, x: np.ndarray, d: np.ndarray, color: str, label: str, scale: float = 1.0) -> None:
    """Mean line [m] with the 5-95% band of d [m, n] / scale."""
    r = d / scale
    ax.fill_between(x, np.quantile(r, 0.05, axis=1), np.quantile(r, 0.95, axis=1), color=color, alpha=0.2)
    ax.plot(x, r.mean(axis=1), "o-", color=color, ms=3, label=label)


def plot_lemma1(sweeps: Sequence[theory.DistanceSweep]) -> Figure:
    """Lemma 1: mean distance (5-95% band) of class-1 samples against sigma1, log-log, per dimension;
    class-2 samples for contrast."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, sw in enumerate(sweeps):
        _band(ax, sw.sigmas, sw.d1, colors[2 * i], f"class 1, d = {sw.dim}")
        ax.plot(sw.sigmas, sw.d2.mean(axis=1), "--", color=colors[2 * i + 1], label=f"class 2, d = {sw.dim}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sigma_1 / \sigma_2$ (class 1's smallest std / class 2's along it)")
    ax.set_ylabel("distance to the Bayes boundary")
    ax.set_title("Lemma 1: asymmetric variances put class 1 on the boundary")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lemma2(sweeps: Sequence[theory.DistanceSweep]) -> Figure:
    """Lemma 2: distances of both classes divided by half the mean distance, against sigma."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, sw in enumerate(sweeps):
        both = np.concatenate([sw.d1, sw.d2], axis=1)
        _band(ax, sw.sigmas / (2 * sw.reference), both, colors[i], f"d = {sw.dim}", scale=sw.reference)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(r"$\sigma / \|\mu_1 - \mu_2\|$")
    ax.set_ylabel(r"distance / ($\|\mu_1 - \mu_2\| / 2$)")
    ax.set_title("Lemma 2: isotropic classes concentrate at half the mean distance")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_lemma3(sweep: theory.DistanceSweep) -> Figure:
    """Lemma 3: (left) distances / (d/2) against sigma; (right) at the smallest sigma, each class-1
    sample's distance against half its distance to class 2's subspace (the proof's lower bound)."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    _band(ax0, sweep.sigmas, sweep.d1, CLASS_COLORS[0], "class 1", scale=sweep.reference)
    _band(ax0, sweep.sigmas, sweep.d2, CLASS_COLORS[1], "class 2", scale=sweep.reference)
    ax0.axhline(1.0, color="black", lw=0.8)
    ax0.set_xscale("log")
    ax0.set_xlabel(r"$\sigma$ (off-subspace standard deviation)")
    ax0.set_ylabel("distance / (d / 2)")
    ax0.set_title(f"Lemma 3 in {sweep.dim} dimensions")
    ax0.legend(fontsize=8)
    i = int(np.argmin(sweep.sigmas))
    half = sweep.extra["half_other"][i]
    ax1.scatter(half, sweep.d1[i], s=6, color=CLASS_COLORS[0])
    lim = [min(half.min(), sweep.d1[i].min()), max(half.max(), sweep.d1[i].max())]
    ax1.plot(lim, lim, color="black", lw=0.8, label="distance = half the distance to the other subspace")
    ax1.axvline(sweep.reference, color="gray", ls=":", label="d / 2")
    ax1.set_xlabel("half the distance to class 2's subspace")
    ax1.set_ylabel("exact distance to the boundary")
    ax1.set_title(rf"class-1 samples at $\sigma$ = {sweep.sigmas[i]:.3g}")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _log_bins(values: Sequence[np.ndarray], n: int = 40) -> np.ndarray:
    v = np.concatenate([np.asarray(a)[np.isfinite(a) & (np.asarray(a) > 0)] for a in values])
    return np.geomspace(v.min() / 1.5, v.max() * 1.5, n)


def plot_theorem1(checks: dict[str, theory.MixtureCheck]) -> Figure:
    """Theorem 1: distance histograms for the symmetric and asymmetric mixtures (left), and the
    pair-quadric distances against the ray-search brute force (right)."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = _log_bins([c.d1 for c in checks.values()] + [c.d2 for c in checks.values()])
    for kind, ls in (("symmetric", "-"), ("asymmetric", "--")):
        c = checks[kind]
        for d, color, name in ((c.d1, CLASS_COLORS[0], "class 1"), (c.d2, CLASS_COLORS[1], "class 2")):
            ax0.hist(d, bins=bins, histtype="step", ls=ls, color=color, label=f"{kind}, {name}")
    ax0.set_xscale("log")
    ax0.set_xlabel("distance to the mixture boundary")
    ax0.set_ylabel("samples")
    ax0.legend(fontsize=8)
    ax0.set_title("Theorem 1: Figure 3d (symmetric) and 3h (asymmetric)")
    for kind, marker in (("symmetric", "o"), ("asymmetric", "s")):
        c = checks[kind]
        n = c.brute1.shape[0]
        exact = np.concatenate([c.d1[:n], c.d2[: c.brute2.shape[0]]])
        brute = np.concatenate([c.brute1, c.brute2])
        ax1.scatter(brute, exact, marker=marker, s=18, facecolors="none", edgecolors="k", label=kind)
    lim = [bins[0], bins[-1]]
    ax1.plot(lim, lim, color="gray", lw=0.8)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("ray-search brute force")
    ax1.set_ylabel("pair-quadric distance")
    ax1.set_title("two rulers agree")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_discrete(checks: dict[str, theory.DiscreteCheck]) -> Figure:
    """Lemma A.1: the class maps of both table pairs with samples, and level-distance histograms."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, kind in zip(axes[:2], ("symmetric", "asymmetric"), strict=True):
        c = checks[kind]
        class1 = c.model.log_p1 > c.model.log_p2
        ax.imshow(class1.T, origin="lower", cmap="Blues", alpha=0.25, extent=c.model.extent)
        _scatter_classes(ax, c.x1, c.x2, size=5)
        ax.set_title(f"{kind} tables (class-1 cells shaded)", fontsize=10)
        ax.set_xlabel("feature 0 (level)")
        ax.set_ylabel("feature 1 (level)")
    axes[0].legend(loc="upper right", fontsize=8, markerscale=3)
    top = int(max(max(c.d1.max(), c.d2.max()) for c in checks.values()))
    bins = np.arange(0.5, top + 1.5)
    for kind, ls in (("symmetric", "-"), ("asymmetric", "--")):
        c = checks[kind]
        axes[2].hist(c.d1, bins=bins, histtype="step", ls=ls, color=CLASS_COLORS[0], label=f"{kind}, class 1")
        axes[2].hist(c.d2, bins=bins, histtype="step", ls=ls, color=CLASS_COLORS[1], label=f"{kind}, class 2")
    axes[2].set_xlabel("quantisation levels to the boundary (L1)")
    axes[2].set_ylabel("samples")
    axes[2].set_title("Lemma A.1: level distances")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_ratio_panel(ratio: float, n_points: int = 300, seed: int = 0) -> Figure:
    """One frame of the sigma1/sigma2 slider: the 2-D model of :func:`theory.ratio_model` with its
    boundary (left) and the histograms of exact distances of both classes (right)."""
    model = theory.ratio_model(ratio)
    rng = np.random.default_rng((seed, 60))
    x1, x2 = model.sample(n_points, rng)
    d1, d2 = model.distance(x1), model.distance(x2)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4))
    _draw_boundary(ax0, model, grid=250)
    _scatter_classes(ax0, x1, x2, size=6)
    ax0.set_aspect("equal")
    ax0.set_title(rf"$\sigma_1/\sigma_2$ = {ratio:.3g}")
    ax0.legend(loc="upper right", fontsize=8, markerscale=3)
    bins = np.geomspace(1e-5, 10, 49)
    ax1.hist(np.clip(d1, bins[0], bins[-1]), bins=bins, color=CLASS_COLORS[0], alpha=0.7, label="class 1")
    ax1.hist(np.clip(d2, bins[0], bins[-1]), bins=bins, color=CLASS_COLORS[1], alpha=0.5, label="class 2")
    ax1.set_xscale("log")
    ax1.set_ylim(0, n_points * 0.6)
    ax1.set_xlabel("exact distance to the boundary")
    ax1.set_ylabel("samples")
    ax1.set_title(f"median: class 1 {np.median(d1):.2g}, class 2 {np.median(d2):.2g}")
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ratio_slider(
    ratios: Sequence[float], n_points: int = 300, seed: int = 0, dpi: int = 72, progress: bool = False
):
    """A slider over precomputed :func:`plot_ratio_panel` frames, one per ratio (works offline)."""
    ratios = list(ratios)
    frames = [plot_ratio_panel(r, n_points, seed) for r in tqdm(ratios, desc="frames", disable=not progress)]
    # imported here: the other plots of this module need no ipywidgets (a host without Jupyter)
    from nbhelpers.chapters.widgets import image_slider

    return image_slider(frames, [f"{r:.3g}" for r in ratios], "σ1/σ2", dpi=dpi)
