"""Attacks against known boundaries: never below the exact distance, close above it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from nbhelpers.science.attacks import (
    ATTACKS,
    L2ComponentGradientAttack,
    make_foolbox_attack,
    run_attacks,
    run_foolbox_attack,
)
from nbhelpers.science.attacks import foolbox_attacks as fa
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.mfa import MFA
from nbhelpers.science.theory import closest_boundary_points
from tests.test_classifier import isotropic_pair, subspace_pair

# float32 inputs and bisection put the found point up to ~1e-6 (relative) on the near side
BELOW_TOL = 1e-5


def unequal_pair(d: int = 12, n: int = 16, seed: int = 0):
    """Two full-covariance Gaussians (rank-2 + unequal diagonal), their samples and exact distances.

    Returns the classifier, x [2n, d], y [2n] and the exact boundary distance [2n] of
    ``theory.closest_boundary_points``, whose closest points must lie inside the pixel box.
    """
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=gen, dtype=torch.float64)
    e /= e.norm()
    mfas = []
    for sign in (-1, 1):
        loadings = 0.03 * torch.randn(1, d, 2, generator=gen, dtype=torch.float64)
        noise = (0.02 + 0.04 * torch.rand(1, d, generator=gen, dtype=torch.float64)) ** 2
        mfas.append(MFA.from_parameters((0.5 + sign * 0.15 * e)[None], loadings, noise))
    x = torch.cat([m.sample(n, generator=gen)[0] for m in mfas])
    y = torch.arange(2).repeat_interleave(n)
    dist, points = closest_boundary_points(
        x.numpy(), *(t.numpy() for m in mfas for t in (m.mu[0], m.covariance(0)))
    )
    assert 0 < points.min() and points.max() < 1, "the test needs boundary points inside the box"
    return BayesClassifier(*mfas), x, y, torch.as_tensor(dist)


def test_gradient_attack_hits_the_isotropic_boundary():
    model, x, y, exact = isotropic_pair()
    for dtype in (torch.float64, torch.float32):
        out = L2ComponentGradientAttack()(model, x.to(dtype), y)
        assert out.success.all()
        assert out.x_adv.dtype == dtype and out.x_adv.shape == x.shape
        ratio = out.l2 / exact
        # the boundary is a hyperplane along the gradient: exact up to the bisection precision
        assert ratio.min() > 1 - BELOW_TOL
        assert ratio.max() < 1 + 0.05 / 2**12 / exact.min() + 1e-5
        assert (model.predict(out.x_adv) != y).all()
        assert (out.target == 0).all()  # the other class's only component


def test_gradient_attack_bar_is_complete_only_when_every_row_was_decided(monkeypatch):
    from tqdm.std import tqdm as text_tqdm

    bars = []

    class Recorded(text_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})
            bars.append(self)

    monkeypatch.setattr("nbhelpers.science.attacks.gradient.tqdm", Recorded)
    model, x, y, _ = isotropic_pair()
    L2ComponentGradientAttack()(model, x, y, progress=True)  # every row flips within a few steps
    assert bars[-1].n == bars[-1].total < 401  # ended early, shown complete
    capped = L2ComponentGradientAttack(step_size=1e-4, max_steps=3)(model, x, y, progress=True)
    assert not capped.success.any()
    assert (bars[-1].n, bars[-1].total) == (3, 4)  # stopped by the step cap: not shown as done


def test_gradient_attack_on_unequal_covariances():
    model, x, y, exact = unequal_pair()
    out = L2ComponentGradientAttack()(model, x, y)
    assert out.success.all()
    ratio = (out.l2 / exact).numpy()
    # the gradient flow of the component log-ratio is not the shortest path when the covariances
    # differ (curved boundary): never below, a few percent above in the median
    assert ratio.min() > 1 - BELOW_TOL
    assert np.median(ratio) < 1.10 and ratio.max() < 1.35


@pytest.mark.parametrize(
    "name,median_tol,max_tol", [("cw", 0.01, 0.05), ("fmn", 0.001, 0.01), ("ddn", 0.01, 0.05)]
)
def test_foolbox_attacks_hit_the_isotropic_boundary(name, median_tol, max_tol):
    model, x, y, exact = isotropic_pair(n=12)
    out = run_foolbox_attack(model, x.float(), y, name, batch_size=32)
    assert out.success.all()
    ratio = (out.l2 / exact).numpy()
    assert ratio.min() > 1 - BELOW_TOL
    assert np.median(ratio) < 1 + median_tol and ratio.max() < 1 + max_tol
    assert (model.predict(out.x_adv) != y).all()


def test_foolbox_batches_do_not_change_ddn_and_bad_sizes_are_refused():
    """DDN treats every sample on its own: splitting 12 samples into batches of 5 gives the same
    perturbations as the device's default batch (all 12 at once). 200 steps, not the paper's 1000:
    the batching, not the convergence, is under test."""
    model, x, y, _ = isotropic_pair(n=12)
    assert fa.CPU_BATCH_SIZE >= 12 and fa.CUDA_BATCH_SIZE >= 1000  # the paper profile's 1000 in one batch
    budget = fa.AttackBudget(min_norm_steps=200)
    whole = run_foolbox_attack(model, x.float(), y, "ddn", budget=budget)
    split = run_foolbox_attack(model, x.float(), y, "ddn", budget=budget, batch_size=5)
    assert whole.success.all()
    torch.testing.assert_close(split.l2, whole.l2, rtol=1e-5, atol=1e-6)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
            run_foolbox_attack(model, x.float(), y, "ddn", batch_size=bad)


def test_foolbox_attacks_on_unequal_covariances():
    model, x, y, exact = unequal_pair()
    ratios = {
        name: (run_foolbox_attack(model, x.float(), y, name).l2 / exact).numpy() for name in ("cw", "fmn")
    }
    for ratio in ratios.values():
        assert ratio.min() > 1 - BELOW_TOL
    assert ratios["fmn"].max() < 1.01
    assert np.median(ratios["cw"]) < 1.02


def test_ddn_gives_the_same_numbers_whatever_torchs_global_random_state():
    """Far from the boundary the Bayes classifier's float32 logits give a zero cross-entropy gradient,
    which DDN replaces by a random direction: the draws must come from the call's own seed."""
    from nbhelpers.science.datasets import sample_dataset
    from tests.test_experiments import tiny_pair

    pair = tiny_pair(gap=0.3)
    x, y = (torch.from_numpy(a) for a in sample_dataset(pair, 8, seed=1000))
    model = BayesClassifier(*pair)
    xr = x.clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(model(xr), y).backward()
    assert int((xr.grad.flatten(1).norm(dim=1) == 0).sum()) > 0  # the case that draws at random

    outcomes = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        outcomes.append(run_foolbox_attack(model, x, y, "ddn", device="cpu"))
        assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
    assert bool(outcomes[0].success.all())
    assert torch.equal(outcomes[0].l2, outcomes[1].l2) and torch.equal(outcomes[0].x_adv, outcomes[1].x_adv)
    other = run_foolbox_attack(model, x, y, "ddn", device="cpu", seed=1)
    assert not torch.equal(other.l2, outcomes[0].l2)  # the seed is what sets the draws


def test_fmn_projection_is_repaired():
    # foolbox 3.3.4's own L2 FMN never shrinks its first overshooting steps
    model, x, y, exact = isotropic_pair(n=8)
    fb_attack = make_foolbox_attack("fmn")
    assert type(fb_attack).__name__ == "_FixedL2FMNAttack"
    fixed = run_foolbox_attack(model, x.float(), y, fb_attack)
    broken = run_foolbox_attack(model, x.float(), y, type(fb_attack).__mro__[1](steps=100, max_stepsize=0.1))
    assert (fixed.l2 / exact).max() < 1.001
    assert (broken.l2 / exact).max() > 1.2


def test_targets_are_capped_by_the_other_class_alone():
    """A class of one component must not cut the other class's samples to one target: class 0 as one
    Gaussian or as three identical copies is the same classifier, and gets the same attack."""
    d = 4
    mu0 = torch.full((d,), 0.5, dtype=torch.float64)
    means1 = torch.stack(
        [mu0 + 0.3 * torch.eye(d, dtype=torch.float64)[0], mu0 + 0.3 * torch.eye(d)[1].double()]
    )
    means1 = torch.cat([means1, (mu0 + 0.12 * torch.eye(d, dtype=torch.float64)[2])[None]])
    mfa1 = MFA.from_parameters(means1, torch.zeros(3, d, 1), torch.tensor([3e-3, 3e-3, 2e-5]), isotropic=True)
    x, y = mu0[None].float(), torch.zeros(1, dtype=torch.long)
    results = []
    for k0 in (1, 3):
        mfa0 = MFA.from_parameters(
            mu0[None].repeat(k0, 1), torch.zeros(k0, d, 1), torch.full((k0,), 3e-3), isotropic=True
        )
        results.append(
            L2ComponentGradientAttack(n_targets=3, step_size=0.002)(BayesClassifier(mfa0, mfa1), x, y)
        )
    one, three = results
    # the thin third component is the nearest way across; with a cap of one target it was never tried
    assert one.target.item() == three.target.item() == 2
    assert one.l2.item() == pytest.approx(three.l2.item(), rel=1e-6)
    assert one.l2.item() < 0.11


def test_bisection_follows_the_clipped_path_of_the_last_step():
    """A linear boundary (two isotropic Gaussians); pixel 0 starts 0.02 above the bound 0 and the steps push
    it down by ~0.035 each. The box-constrained distance to the boundary is known: bisecting the chord of a
    clipped step used to land 4% beyond it, bisecting along the step lands on it."""
    d = 8
    e = torch.zeros(d, dtype=torch.float64)
    e[0], e[1] = -1.0, 1.0
    e /= e.norm()
    mu0 = torch.full((d,), 0.5, dtype=torch.float64)
    mfas = [
        MFA.from_parameters(m[None], torch.zeros(1, d, 1), torch.full((1,), 0.01), isotropic=True)
        for m in (mu0, mu0 + 0.3 * e)
    ]
    model = BayesClassifier(*mfas)
    x = mu0.clone()
    x[0], x[1] = 0.02, 0.2
    w, c = 0.3 * e, float(0.3 * e @ (mu0 + 0.15 * e))

    def box_distance(point: torch.Tensor) -> float:  # the shortest move in the box onto w.x = c
        lo, hi = 0.0, 100.0
        for _ in range(200):
            t = (lo + hi) / 2
            lo, hi = (lo, t) if float(w @ (point + torch.clamp(t * w, -point, 1 - point))) >= c else (t, hi)
        return float(torch.clamp(hi * w, -point, 1 - point).norm())

    found = L2ComponentGradientAttack(step_size=0.05)(
        model, x[None].float(), torch.zeros(1, dtype=torch.long)
    )
    assert bool(found.success) and float(found.x_adv.min()) >= 0.0
    assert found.l2.item() == pytest.approx(box_distance(x), rel=2e-3)


def test_halving_the_step_changes_little():
    for model, x, y in (subspace_pair()[:3], subspace_pair(outlier_sigma=0.5), unequal_pair()[:3]):
        coarse = L2ComponentGradientAttack(step_size=0.05)(model, x, y).l2.mean()
        fine = L2ComponentGradientAttack(step_size=0.025)(model, x, y).l2.mean()
        assert abs(float(fine / coarse) - 1) < 0.02


def test_asymmetric_model_is_far_less_robust():
    sym, x, y = subspace_pair()
    asym, x_same, _ = subspace_pair(outlier_sigma=0.5)
    assert torch.equal(x, x_same)
    assert (sym.predict(x) == y).all() and (asym.predict(x) == y).all()
    l2_sym = L2ComponentGradientAttack()(sym, x, y).l2
    out_asym = L2ComponentGradientAttack()(asym, x, y)
    assert out_asym.success.all()
    assert float(out_asym.l2.mean() / l2_sym.mean()) < 0.3
    # the winning direction is the other class's broad outlier (its last component)
    assert (out_asym.target == 3).float().mean() > 0.9
    # a source fixed at the clean sample ignores the own class's outlier once its component lost
    fixed = L2ComponentGradientAttack(track_source=False)(asym, x, y).l2
    assert float(fixed.mean() / out_asym.l2.mean()) > 1.5


def test_misclassified_samples_cost_nothing():
    model, x, y, _ = isotropic_pair(n=4)
    wrong = y.clone()
    wrong[:2] = 1 - wrong[:2]
    out = L2ComponentGradientAttack()(model, x, wrong)
    assert out.success.all()
    assert torch.equal(out.x_adv[:2], x[:2]) and (out.l2[:2] == 0).all() and (out.target[:2] == -1).all()
    assert (out.l2[2:] > 0.05).all()


def test_max_steps_too_small_fails_cleanly():
    model, x, y, exact = isotropic_pair(n=4)
    out = L2ComponentGradientAttack(step_size=0.01, max_steps=2)(model, x, y)
    assert not out.success.any()  # every boundary is > 0.02 away
    assert torch.isinf(out.l2).all() and torch.equal(out.x_adv, x) and (out.target == -1).all()
    assert exact.min() > 0.02


def test_images_and_several_batches():
    model, x, y, _ = isotropic_pair(d=12, n=5)
    flat = L2ComponentGradientAttack()(model, x, y)
    images = L2ComponentGradientAttack(batch_size=3)(model, x.reshape(10, 3, 2, 2), y)
    assert images.x_adv.shape == (10, 3, 2, 2)
    np.testing.assert_allclose(images.l2.numpy(), flat.l2.numpy(), rtol=1e-12)


def test_run_attacks_keeps_the_smallest():
    model, x, y = subspace_pair(n=4)
    result = run_attacks(model, x.float(), y, ["gradient", "fmn"], progress=False)
    stacked = torch.stack([result.per_attack_l2["gradient"], result.per_attack_l2["fmn"]])
    np.testing.assert_array_equal(result.l2.numpy(), stacked.min(0).values.numpy())
    assert result.success.all() and (result.clean_pred == y).all()
    names = np.array(["gradient", "fmn"])[stacked.argmin(0).numpy()]
    assert result.attack == names.tolist()
    delta = (result.x_adv.double() - x.float().double()).norm(dim=1)
    np.testing.assert_allclose(delta.numpy(), result.l2.numpy(), rtol=1e-6)


def test_bad_parameters_raise():
    for kwargs in ({"step_size": 0}, {"step_size": -0.1}, {"step_size": float("nan")}, {"n_targets": 0}):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            L2ComponentGradientAttack(**kwargs)
    with pytest.raises(ValueError, match="max_steps"):
        L2ComponentGradientAttack(max_steps=0)
    model, x, y, _ = isotropic_pair(n=2)
    with pytest.raises(ValueError, match="valid names are 'gradient', 'cw', 'fmn', 'ddn'"):
        run_attacks(model, x, y, ["gradient", "pgd"])
    with pytest.raises(ValueError, match="no samples"):
        run_attacks(model, x[:0], y[:0], ["gradient"])
    with pytest.raises(ValueError, match="no samples"):
        L2ComponentGradientAttack()(model, x[:0], y[:0])
    with pytest.raises(ValueError, match="pixel box"):
        L2ComponentGradientAttack()(model, x * 4, y)
    with pytest.raises(ValueError, match="valid names"):
        make_foolbox_attack("boundary")
    with pytest.raises(TypeError, match="BayesClassifier"):
        L2ComponentGradientAttack()(torch.nn.Linear(16, 2), x.float(), y)
    assert ATTACKS == ("gradient", "cw", "fmn", "ddn")


def test_failed_cw_is_not_counted_as_a_black_image_success():
    """foolbox's CW returns zeros where it fails; a model calling black 'class 1' must not make that a hit."""

    class Brightness(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            score = x.flatten(1).mean(1, keepdim=True) - 0.3  # bright -> class 0, black -> class 1
            return torch.cat([score, -score], dim=1) * 10

    x = torch.full((3, 16), 0.9)
    y = torch.zeros(3, dtype=torch.long)
    model = Brightness()
    assert model(torch.zeros_like(x)).argmax(1).tolist() == [1, 1, 1]
    # one step with a tiny constant cannot cross the boundary 0.6 away in every pixel
    result = run_foolbox_attack(model, x, y, "cw", steps=1, binary_search_steps=1, initial_const=1e-6)
    assert not result.success.any()
    assert torch.isinf(result.l2).all()
