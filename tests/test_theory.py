"""The exact boundary-distance ruler and every statement of the theory chapter, with numbers."""

from __future__ import annotations

import itertools

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget_link import Link
from matplotlib.figure import Figure

from nbhelpers.chapters import ch1_theory as theory_plots
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.chapters.widgets import figure_to_png, image_slider
from nbhelpers.science import theory

SIZES = get_profile("quick").theory


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------------
# The ruler: exact distance to the quadric boundary of two Gaussians.


def test_isotropic_equal_covariance_is_projection_to_the_midpoint(rng):
    d = 7
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d) + 2
    x = rng.standard_normal((50, d)) * 2
    dist, closest = theory.closest_boundary_points(x, mu1, 0.5 * np.eye(d), mu2, 0.5 * np.eye(d))
    unit = (mu2 - mu1) / np.linalg.norm(mu2 - mu1)
    expected = np.abs((x - (mu1 + mu2) / 2) @ unit)
    np.testing.assert_allclose(dist, expected, rtol=1e-12, atol=1e-12)
    # The closest point is the orthogonal projection onto the bisecting hyperplane.
    np.testing.assert_allclose((closest - (mu1 + mu2) / 2) @ unit, 0, atol=1e-12)


def test_a_small_difference_beside_a_very_thin_shared_direction_is_not_taken_for_equal_covariances():
    # both classes share a variance of 1e-10 along x1 (precision 1e10) and differ by 0.2% along x2: the
    # boundary is the pair of lines |x2| = c with 0.001 c^2 = 0.5 log 1.002, a quadric, not a hyperplane
    s1, s2 = np.diag([1e-10, 1.0]), np.diag([1e-10, 1 / 1.002])
    boundary = theory.QuadricBoundary(np.zeros(2), s1, np.zeros(2), s2)
    assert not boundary.is_hyperplane
    c = np.sqrt(0.5 * np.log(1.002) / 0.001)
    x = np.array([[0.0, 0.0], [0.0, 0.5], [0.0, 2.0]])
    dist, points = boundary.closest_points(x)
    np.testing.assert_allclose(dist, np.abs(np.abs(x[:, 1]) - c), rtol=1e-9)
    np.testing.assert_allclose(boundary.log_ratio(points), 0.0, atol=1e-12)


def test_equal_non_isotropic_covariance_is_the_hyperplane_formula(rng):
    d = 6
    cov = theory.random_spd(d, rng)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    x = rng.standard_normal((40, d))
    w = np.linalg.solve(cov, mu1 - mu2)
    c = -w @ (mu1 + mu2) / 2
    dist = theory.boundary_distance(x, mu1, cov, mu2, cov)
    np.testing.assert_allclose(dist, np.abs(x @ w + c) / np.linalg.norm(w), rtol=1e-10)
    assert theory.QuadricBoundary(mu1, cov, mu2, cov).is_hyperplane


@pytest.mark.parametrize("trial", range(3))
def test_matches_brute_force_ray_search_in_2d(trial):
    rng = np.random.default_rng(trial)
    mu1, mu2 = rng.standard_normal(2), rng.standard_normal(2)
    quad = theory.QuadricBoundary(mu1, theory.random_spd(2, rng), mu2, theory.random_spd(2, rng))
    x = 1.5 * rng.standard_normal((8, 2))
    exact = quad.closest_points(x)[0]
    brute = theory.ray_boundary_distance_2d(x, quad.log_ratio, r_max=30.0)
    np.testing.assert_allclose(exact, brute, rtol=1e-7)


def test_hard_cases_have_closed_forms():
    # Concentric circles: f = -3 r^2 / 8 + log 4, boundary radius sqrt(8 log 4 / 3); the centre
    # has zero gradient (every direction is optimal).
    radius = np.sqrt(8 * np.log(4) / 3)
    x = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 3.0]])
    dist, closest = theory.closest_boundary_points(x, [0, 0], np.eye(2), [0, 0], 4 * np.eye(2))
    np.testing.assert_allclose(dist, [radius, radius - 0.3, 3.0 - radius], rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(closest, axis=1), radius, rtol=1e-12)
    # Crossed ellipses: f = 3 (y^2 - x^2) / 8, boundary |y| = |x|; points on the axes are hard cases.
    x = np.array([[0.8, 0.0], [0.0, -0.5], [0.0, 0.0]])
    dist = theory.boundary_distance(x, [0, 0], np.diag([1.0, 4.0]), [0, 0], np.diag([4.0, 1.0]))
    np.testing.assert_allclose(dist, [0.8 / np.sqrt(2), 0.5 / np.sqrt(2), 0.0], atol=1e-12)
    # Nearly hard cases, just off the axis: distance (0.8 - delta) / sqrt(2) to the line y = x.
    delta = np.array([1e-3, 1e-9, 1e-15])
    x = np.stack([np.full(3, 0.8), delta], axis=1)
    dist = theory.boundary_distance(x, [0, 0], np.diag([1.0, 4.0]), [0, 0], np.diag([4.0, 1.0]))
    np.testing.assert_allclose(dist, (0.8 - delta) / np.sqrt(2), rtol=1e-12)


def test_missing_boundary_gives_inf():
    # log N(0, I) - log N(0, 4I) - 5 <= log 4 - 5 < 0 everywhere: class 2 wins the whole plane.
    dist, closest = theory.closest_boundary_points(
        np.array([[0.0, 0.0], [1.0, 2.0]]), [0, 0], np.eye(2), [0, 0], 4 * np.eye(2), log_prior_ratio=-5.0
    )
    assert np.all(np.isinf(dist)) and np.all(np.isnan(closest))


def test_high_dimension_closest_points_are_on_the_boundary_stationary_and_global(rng):
    d = 60
    quad = theory.QuadricBoundary(
        rng.standard_normal(d), theory.random_spd(d, rng), rng.standard_normal(d), theory.random_spd(d, rng)
    )
    x = quad.g1.sample(30, rng)
    dist, closest = quad.closest_points(x)
    assert np.abs(quad.log_ratio(closest)).max() < 1e-9 * np.abs(quad.log_ratio(x)).max()
    grad = quad.gradient(closest)
    step = x - closest
    cosine = np.abs((step * grad).sum(1)) / (np.linalg.norm(step, axis=1) * np.linalg.norm(grad, axis=1))
    assert cosine.min() > 1 - 1e-10  # x - closest is normal to the boundary
    # No crossing along random rays is closer than the exact distance (global optimality).
    n_dirs, radii = 100, np.geomspace(1e-3, 50, 200)
    for i in range(5):
        dirs = rng.standard_normal((n_dirs, d))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        rays = x[i] + radii[None, :, None] * dirs[:, None, :]  # [n_dirs, n_radii, d]
        vals = quad.log_ratio(rays.reshape(-1, d)).reshape(n_dirs, radii.size)
        crossed = np.sign(vals) != np.sign(quad.log_ratio(x[i : i + 1]))
        assert crossed.any()
        first = radii[crossed.argmax(axis=1)[crossed.any(axis=1)]]
        assert first.min() >= dist[i]


def test_thin_class_distance_at_tiny_sigma():
    # Class 1 is a segment of width 1e-4 at x = 0: its points are within a few sigma1 of the boundary.
    x = np.array([[0.0, 0.0], [1e-4, 0.3]])
    dist = theory.boundary_distance(x, [0, 0], np.diag([1e-8, 1.0]), [0.5, 0.2], np.eye(2))
    brute = theory.ray_boundary_distance_2d(
        x, theory.QuadricBoundary([0, 0], np.diag([1e-8, 1.0]), [0.5, 0.2], np.eye(2)).log_ratio, r_max=5.0
    )
    np.testing.assert_allclose(dist, brute, rtol=1e-6)
    assert dist.max() < 1e-3


def test_accepts_torch_tensors_and_matches_numpy(rng):
    mu1, mu2 = rng.standard_normal(3), rng.standard_normal(3)
    s1, s2 = theory.random_spd(3, rng), theory.random_spd(3, rng)
    x = rng.standard_normal((5, 3))
    from_numpy = theory.boundary_distance(x, mu1, s1, mu2, s2)
    from_torch = theory.boundary_distance(
        *(torch.tensor(a, dtype=torch.float32) for a in (x, mu1, s1, mu2, s2))
    )
    np.testing.assert_allclose(from_torch, from_numpy, rtol=1e-4)


def test_bad_inputs_name_the_problem():
    eye = np.eye(2)
    with pytest.raises(ValueError, match="not positive definite"):
        theory.boundary_distance(np.zeros((1, 2)), [0, 0], np.diag([1.0, -1.0]), [1, 0], eye)
    with pytest.raises(ValueError, match="not symmetric"):
        theory.boundary_distance(np.zeros((1, 2)), [0, 0], np.array([[1.0, 0.5], [0.0, 1.0]]), [1, 0], eye)
    with pytest.raises(ValueError, match=r"points \[n, 2\]"):
        theory.boundary_distance(np.zeros((1, 3)), [0, 0], eye, [1, 0], eye)
    with pytest.raises(ValueError, match="differ in dimension"):
        theory.boundary_distance(np.zeros((1, 2)), [0, 0], eye, [1, 0, 0], np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        theory.boundary_distance(np.full((1, 2), np.nan), [0, 0], eye, [1, 0], eye)


# ------------------------------------------------------------------------------------------------
# Lemma 1: asymmetric variances.


@pytest.mark.parametrize("dim", [2, SIZES.high_dim])
def test_lemma1_class1_gets_arbitrarily_close(dim):
    sweep = theory.lemma1_sweep([1e-4, 1e-3, 1e-2, 1e-1], dim, n_points=100, seed=0)
    mean1 = sweep.d1.mean(axis=1)
    assert mean1[0] < 1e-2 * sweep.scale  # class 2 has unit variance along the critical direction
    assert np.all(np.diff(mean1) > 0)  # falls with sigma1 over every decade ...
    assert mean1[-1] / mean1[0] > 100  # ... roughly in proportion to it
    assert sweep.d2.mean(axis=1).min() > 0.3  # class 2 stays far: only class 1 is vulnerable


def test_lemma1_direction_stays_class1s_minimal_variance_up_to_the_top_of_the_sweep():
    # the lemma needs d to be class 1's direction of minimal variance; the chapter sweeps sigma1 up to 1
    for dim in (2, 200):
        pair = theory.lemma1_model(0.99, dim, seed=0)
        values, vectors = np.linalg.eigh(pair.g1.cov)
        assert values[0] == pytest.approx(0.99**2, rel=1e-9)
        assert values[1] > 1.0
        assert vectors[:, 0] @ pair.g2.cov @ vectors[:, 0] == pytest.approx(1.0, rel=1e-9)


def test_lemma1_model_has_sigma1_as_smallest_class1_std():
    pair = theory.lemma1_model(1e-3, 5, seed=3)
    eig1 = np.linalg.eigvalsh(pair.g1.cov)
    assert eig1[0] == pytest.approx(1e-6, rel=1e-6)
    direction = np.linalg.eigh(pair.g1.cov)[1][:, 0]
    assert direction @ pair.g2.cov @ direction == pytest.approx(1.0, rel=1e-9)
    assert np.linalg.eigvalsh(pair.g2.cov)[0] > 0.4  # class 2 full rank


# ------------------------------------------------------------------------------------------------
# Lemma 2: symmetric isotropic.


@pytest.mark.parametrize("dim", [2, SIZES.high_dim])
def test_lemma2_distances_concentrate_at_half_the_mean_distance(dim):
    sweep = theory.lemma2_sweep([1e-3, 3e-2, 3e-1], dim, n_points=200, seed=0)
    assert sweep.reference == pytest.approx(1.0)
    err, spread = sweep.relative_error(), sweep.relative_spread()
    assert err[0] < 1e-2 and spread[0] < 1e-2
    assert spread[-1] > 0.1  # at sigma = 0.15 of the mean distance they do not concentrate yet
    assert np.all(np.diff(spread) > 0)


# ------------------------------------------------------------------------------------------------
# Lemma 3: symmetric low rank + sigma^2 I.


def test_subspace_distance_by_least_squares(rng):
    d, k = 12, 3
    basis = np.linalg.qr(rng.standard_normal((d, 2 * k + 1)))[0]
    A1, A2 = basis[:, :k] @ rng.standard_normal((k, k)), basis[:, k : 2 * k] @ rng.standard_normal((k, k))
    gap = 2.5 * basis[:, -1]  # orthogonal to both subspaces
    mu1 = rng.standard_normal(d)
    mu2 = mu1 + gap + A1 @ rng.standard_normal(k) + A2 @ rng.standard_normal(k)
    assert theory.subspace_distance(mu1, A1, mu2, A2) == pytest.approx(2.5, rel=1e-10)
    x = mu1 + gap + rng.standard_normal((4, k)) @ A1.T  # [4, d], all 2.5 off mu1 + A1 z
    np.testing.assert_allclose(theory.point_subspace_distance(x, mu1, A1), 2.5, rtol=1e-10)


def test_lemma3_distances_approach_half_the_subspace_distance():
    sweep = theory.lemma3_sweep([1e-3, 1e-1], SIZES.lemma3_dim, n_points=60, seed=0)
    model = theory.lemma3_model(1e-3, SIZES.lemma3_dim)
    np.testing.assert_allclose(
        np.linalg.svd(model.A1, compute_uv=False), np.linalg.svd(model.A2, compute_uv=False)
    )
    assert sweep.reference == pytest.approx(model.subspace_distance / 2)
    both = np.concatenate([sweep.d1[0], sweep.d2[0]])
    assert abs(both.mean() / sweep.reference - 1) < 0.05  # within a few percent of d / 2
    assert both.min() > 0.99 * sweep.reference  # and never closer: robust up to d / 2
    # The proof's per-point bound: at least half the distance to the other subspace.
    assert np.all(sweep.d1[0] >= 0.999 * sweep.extra["half_other"][0])
    assert sweep.relative_spread()[1] > sweep.relative_spread()[0]


# ------------------------------------------------------------------------------------------------
# Theorem 1: mixtures.


def test_theorem1_symmetric_mixture_robust_asymmetric_vulnerable():
    checks = theory.theorem1_experiment(n_points=150, seed=0, n_check=3)
    sym, asym = checks["symmetric"], checks["asymmetric"]
    # Symmetric: every sample is about a component-to-boundary distance (1.4 = 4 sigma) away.
    assert np.median(sym.d1) > 1.0 and np.median(sym.d2) > 1.0
    assert np.quantile(np.concatenate([sym.d1, sym.d2]), 0.05) > 0.5
    # Asymmetric: almost every class-1 sample is within a fifth of class 2's std (0.5) ...
    assert np.mean(asym.d1 < 0.1) > 0.95
    # ... while class 2 stays about as far as in the symmetric case.
    assert np.median(asym.d2) > 0.5
    # The pair-quadric distances are those of the full mixtures (the brute-force ray search).
    assert sym.max_residual < 1e-10
    assert sym.max_rel_diff < 1e-6 and asym.max_rel_diff < 1e-3


def test_overlapping_components_make_the_pair_distance_no_bound_and_the_residual_says_so():
    # class 1: two equal-weight unit Gaussians 0.01 apart, class 2: one at (3, 0); on the x1 axis the
    # full mixture's boundary is near x1 = 1.5, while the single pair's boundary shifts by log 2
    g = theory.Gaussian
    mix1 = theory.GaussianMixture([1, 1], [g([0, 0], np.eye(2)), g([0, 0.01], np.eye(2))])
    mix2 = theory.GaussianMixture([1], [g([3, 0], np.eye(2))])
    x = np.array([[3.0, 0.0], [0.0, 0.0]])
    found = theory.mixture_boundary_distance(x, mix1, mix2)
    brute = theory.ray_boundary_distance_2d(x, theory.MixturePair(mix1, mix2).log_ratio, r_max=10.0)
    np.testing.assert_allclose(brute, 1.5, atol=1e-2)
    assert found.distance[0] > brute[0] + 0.2  # above the true distance: not a lower bound here
    np.testing.assert_allclose(found.residual, np.log(2), atol=1e-2)


def test_mixture_pair_distance_is_a_lower_bound_and_exact_when_consistent(rng):
    model = theory.toy_model("mixture", "asymmetric")
    x1, x2 = model.sample(40, rng)
    x = np.concatenate([x1[:4], x2[:4], x1[4:], x2[4:]])
    res = theory.mixture_boundary_distance(x, model.mix1, model.mix2)
    consistent = res.residual < 1e-6  # the pair's boundary is the mixture's at the closest point
    assert consistent.mean() > 0.7
    brute = theory.ray_boundary_distance_2d(x[:8], model.log_ratio, r_max=9.0)
    # A lower bound (up to the log-sum-exp vs max difference of overlapping components) ...
    assert np.all(res.distance[:8] <= brute * (1 + 1e-4))
    # ... and exact where consistent.
    np.testing.assert_allclose(res.distance[:8][consistent[:8]], brute[consistent[:8]], rtol=1e-5)
    assert consistent[:8].sum() >= 4


# ------------------------------------------------------------------------------------------------
# Lemma A.1: discrete tables.


@pytest.mark.parametrize("metric", ["taxicab", "chessboard"])
def test_level_distance_matches_exhaustive_search(rng, metric):
    log_p1, log_p2 = rng.standard_normal((2, 9, 11))
    dist, class1 = theory.discrete_level_distance(log_p1, log_p2, metric)
    cells = list(itertools.product(range(9), range(11)))
    for i, j in cells:
        others = [(a, b) for a, b in cells if class1[a, b] != class1[i, j]]
        steps = [
            abs(a - i) + abs(b - j) if metric == "taxicab" else max(abs(a - i), abs(b - j)) for a, b in others
        ]
        assert dist[i, j] == min(steps)


def test_lemma_a1_asymmetric_tables_put_class1_one_level_away():
    checks = theory.lemma_a1_experiment(n_points=400, seed=0)
    sym, asym = checks["symmetric"], checks["asymmetric"]
    assert np.mean(asym.d1 == 1) > 0.99 and np.mean(asym.d1_inf == 1) > 0.99
    assert asym.min_p2 > 0  # p2 > 0 everywhere, as the lemma assumes
    # Symmetric tables (equal smallest entries) keep both classes many levels away.
    assert sym.min_p1 == pytest.approx(sym.min_p2, rel=1e-9)
    assert np.median(sym.d1) >= 10 and np.median(sym.d2) >= 10
    assert np.median(asym.d2) >= 10  # the asymmetry hurts class 1 only


def test_discrete_tables_reject_unknown_kind():
    with pytest.raises(ValueError, match="valid kinds are"):
        theory.discrete_tables("lopsided")
    with pytest.raises(ValueError, match="valid metrics"):
        theory.discrete_level_distance(np.zeros((2, 2)), np.ones((2, 2)), "euclid")


# ------------------------------------------------------------------------------------------------
# Figure 3 and the slider.


def test_figure3_asymmetric_panels_bring_class1_close():
    data = theory_plots.figure3_distances(n_points=150, seed=0)
    for top, bottom in ("ae", "bf", "cg", "dh"):
        sym1, asym1 = np.median(data[top][2]), np.median(data[bottom][2])
        assert asym1 < 0.1 * sym1, (top, bottom, sym1, asym1)
        assert np.median(data[bottom][3]) > 0.3 * np.median(data[top][3])  # class 2 stays far


def test_toy_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="valid shapes are"):
        theory.toy_model("cubic", "symmetric")
    with pytest.raises(ValueError, match="valid kinds are"):
        theory.toy_model("spherical", "lopsided")
    with pytest.raises(ValueError, match="positive"):
        theory.ratio_model(0.0)


def test_plots_return_figures():
    figs = [
        theory_plots.plot_ratio_panel(0.01, n_points=50),
        theory_plots.plot_lemma1([theory.lemma1_sweep([1e-3, 1e-1], 2, n_points=20)]),
        theory_plots.plot_discrete(theory.lemma_a1_experiment(n_points=50)),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert [len(f.axes) for f in figs] == [2, 1, 3]
    for f in figs:
        plt.close(f)


def test_image_slider_links_slider_to_stack_in_the_browser():
    figs = [plt.figure(figsize=(1, 1)) for _ in range(3)]
    widget = image_slider(figs, ["a", "b", "c"], "pick")
    assert isinstance(widget, ipywidgets.VBox)
    slider, stack = widget.children
    assert isinstance(stack, ipywidgets.Stack) and len(stack.children) == 3
    assert all(img.value[:4] == b"\x89PNG" for img in stack.children)
    assert isinstance(widget.link, Link)
    assert widget.link.source == (slider, "index") and widget.link.target == (stack, "selected_index")
    assert [label for label, _ in slider.options] == ["a", "b", "c"]
    assert all(f.number not in plt.get_fignums() for f in figs)  # rendered figures are closed


def test_image_slider_rejects_bad_input():
    png = figure_to_png(plt.figure(figsize=(1, 1)))
    with pytest.raises(ValueError, match="one label per picture"):
        image_slider([png, png], ["only one"], "x")
    with pytest.raises(ValueError, match="neither a matplotlib Figure nor PNG"):
        image_slider([b"not a png"], ["a"], "x")
    with pytest.raises(ValueError, match="at least one"):
        image_slider([], [], "x")
