"""The symmetric/asymmetric constructions of paper appendix B.2 and the dataset release path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbhelpers.science.attacks.gradient import L2ComponentGradientAttack
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.datasets import (
    OUTLIER_SIGMA,
    add_outlier,
    check_asymmetric_base,
    check_min_variance,
    fresh_sampler,
    make_asymmetric,
    make_symmetric,
    principal_direction,
    sample_dataset,
)
from nbhelpers.science.mfa import MFA


def _random_mfa(K: int = 3, d: int = 40, latent: int = 3, seed: int = 0, offset: float = 0.0) -> MFA:
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 + offset + 0.1 * torch.randn(K, d, generator=g, dtype=torch.float64)
    A = 0.05 * torch.randn(K, d, latent, generator=g, dtype=torch.float64)
    D = 0.001 + 0.01 * torch.rand(K, d, generator=g, dtype=torch.float64)
    pi = torch.tensor([0.5, 0.3, 0.2][:K], dtype=torch.float64)
    return MFA.from_parameters(mu, A, D, pi)


def test_symmetric_sets_every_noise_variance_and_keeps_the_rest():
    mfa = _random_mfa()
    sym = make_symmetric(mfa, sigma=0.01)
    assert torch.allclose(sym.log_D.exp(), torch.full_like(mfa.log_D, 1e-4))
    assert torch.equal(sym.mu, mfa.mu) and torch.equal(sym.A, mfa.A)
    assert torch.allclose(sym.log_pi, mfa.log_pi)
    with pytest.raises(ValueError, match="sigma must be positive"):
        make_symmetric(mfa, sigma=0.0)


def test_outlier_component_has_zero_loadings_and_its_weight():
    mfa = _random_mfa()
    mean = np.full(mfa.d, 0.4)
    out = add_outlier(mfa, mean, weight=0.05)
    assert out.K == mfa.K + 1
    assert torch.allclose(out.log_pi.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert out.log_pi[-1].exp().item() == pytest.approx(0.05)
    assert torch.allclose(out.log_pi[:-1].exp(), mfa.log_pi.exp() * 0.95)
    assert torch.count_nonzero(out.A[-1]) == 0
    assert torch.allclose(out.log_D[-1].exp(), torch.full((mfa.d,), OUTLIER_SIGMA**2, dtype=torch.float64))
    assert np.allclose(out.mu[-1].numpy(), mean)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="outlier weight"):
            add_outlier(mfa, mean, weight=bad)


def test_asymmetric_outliers_sit_on_either_side_of_the_mean():
    pair = (_random_mfa(seed=1), _random_mfa(seed=2, offset=0.1))
    d = pair[0].d
    mean = np.full(d, 0.5)
    direction = np.zeros(d)
    direction[7] = 3.0  # not unit: the construction normalises it
    a0, a1 = make_asymmetric(pair, mean, direction, step=2.5, weight=0.05)
    assert a0.mu[-1, 7].item() == pytest.approx(0.5 - 2.5)
    assert a1.mu[-1, 7].item() == pytest.approx(0.5 + 2.5)
    assert torch.linalg.norm(a1.mu[-1] - a0.mu[-1]).item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="step must be positive"):
        make_asymmetric(pair, mean, direction, step=0.0)


def test_principal_direction_is_the_requested_eigenvector():
    rng = np.random.default_rng(0)
    d = 60
    scales = 3.0 * 0.93 ** np.arange(d)  # distinct variances, neighbours 14% apart
    perm = rng.permutation(d)  # column perm[k] carries the k-th largest variance
    x = np.empty((20000, d))
    x[:, perm] = rng.standard_normal((20000, d)) * scales
    for rank in (1, 10, 50):
        v = principal_direction(x, rank=rank, seed=0)
        assert np.linalg.norm(v) == pytest.approx(1.0)
        assert abs(v[perm[rank - 1]]) > 0.95
    with pytest.raises(ValueError, match="rank must be in"):
        principal_direction(x, rank=0)


def test_sampled_sets_are_balanced_deterministic_and_bayes_separable():
    pair = (_random_mfa(seed=1), _random_mfa(seed=2, offset=0.2))
    sym = (make_symmetric(pair[0]), make_symmetric(pair[1]))
    x1, y1 = sample_dataset(sym, 300, seed=5)
    x2, y2 = sample_dataset(sym, 300, seed=5)
    x3, _ = sample_dataset(sym, 300, seed=6)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    assert x1.dtype == np.float32 and x1.shape == (600, pair[0].d)
    assert np.bincount(y1).tolist() == [300, 300]
    assert x1.min() >= 0.0 and x1.max() <= 1.0
    predicted = BayesClassifier(*sym).predict(torch.from_numpy(x1)).numpy()
    assert (predicted == y1).mean() > 0.99
    with pytest.raises(ValueError, match="n_per_class"):
        sample_dataset(sym, 0)


def test_symmetric_base_sets_the_regular_noise_and_keeps_the_outliers():
    pair = (_random_mfa(seed=1), _random_mfa(seed=2, offset=0.1))
    mean, direction = np.full(pair[0].d, 0.5), np.eye(pair[0].d)[3]
    fitted = make_asymmetric(pair, mean, direction, step=0.5, weight=0.05)
    default = make_asymmetric(pair, mean, direction, step=0.5, weight=0.05, asymmetric_base="fitted")
    symmetric = make_asymmetric(pair, mean, direction, step=0.5, weight=0.05, asymmetric_base="symmetric")
    for base, fit, sym in zip(pair, fitted, symmetric, strict=True):
        assert torch.equal(fit.log_D[:-1], base.log_D)  # "fitted": the learned noise, 0.001-0.011 here
        assert torch.allclose(sym.log_D[:-1].exp(), torch.full_like(base.log_D, 1e-4))  # sigma = 0.01
        for model in (fit, sym):  # the same outlier, sigma 0.5, either way
            assert torch.allclose(model.log_D[-1].exp(), torch.full((base.d,), 0.25, dtype=torch.float64))
        assert torch.equal(sym.mu, fit.mu) and torch.equal(sym.A, fit.A)
        assert torch.allclose(sym.log_pi, fit.log_pi)
    assert all(torch.equal(a.log_D, b.log_D) for a, b in zip(default, fitted, strict=True))
    assert fitted[1].mu[-1, 3].item() == pytest.approx(0.5 + 0.5)
    for bad in ("Symmetric", "sym", None, 1):
        with pytest.raises(ValueError, match="asymmetric_base must be 'fitted' or 'symmetric'"):
            make_asymmetric(pair, mean, direction, asymmetric_base=bad)
    assert check_asymmetric_base("symmetric") == "symmetric"


def test_min_variance_must_be_a_variance_of_pixels():
    assert check_min_variance(1e-6) == 1e-6 and isinstance(check_min_variance(np.float32(0.5)), float)
    for bad in (0, 0.0, -1e-4, 1.0, 2, float("nan"), float("inf"), True, "1e-4", None):
        with pytest.raises(ValueError, match=r"min_variance must be a number in \(0, 1\)"):
            check_min_variance(bad)


def _line_pair(noise_std: float) -> tuple[MFA, MFA]:
    """Two one-component classes in R^3: lines along x at y = 0.3 (class 0) and y = 0.7 (class 1), both at
    z = 0.5, with per-axis noise std ``noise_std``. Lemma 3's midpoint lies 0.2 from either line."""
    A = torch.tensor([[[0.15], [0.0], [0.0]]], dtype=torch.float64)
    D = torch.full((1, 3), noise_std**2, dtype=torch.float64)
    return tuple(
        MFA.from_parameters(torch.tensor([[0.5, y, 0.5]], dtype=torch.float64), A, D) for y in (0.3, 0.7)
    )


def _boundary_distance(classifier: BayesClassifier, x0: torch.Tensor, label: int) -> float:
    """The distance from x0 to the decision boundary within the y-z plane through it (by symmetry the
    nearest boundary point of a point at the line's centre lies there): the first label change on 360 rays,
    each scanned in steps of 1e-4."""
    theta = torch.linspace(0, 2 * np.pi, 361, dtype=torch.float64)[:-1]
    rays = torch.stack([torch.zeros_like(theta), theta.cos(), theta.sin()], 1)
    t = torch.linspace(0, 0.3, 3001, dtype=torch.float64)
    points = x0[None, None, :] + t[None, :, None] * rays[:, None, :]
    flipped = (classifier.predict(points.reshape(-1, 3)) != label).reshape(len(theta), len(t))
    return float(t[flipped.float().argmax(dim=1)[flipped.any(dim=1)]].min())


def test_symmetric_base_makes_the_outlier_route_the_shortest():
    """Lemma 1 against Lemma 3 on a toy pair whose fitted noise (std 0.08) is broad next to sigma = 0.01.
    The outliers (sigma 0.5) sit at z = 0.4 and 0.6. Added to the fitted pair they change nothing: the
    boundary lies at Lemma 3's midpoint, 0.2 from each line, and the other class's regular component holds
    the adversarial. Added to the symmetric pair, the thin lines make the other class's outlier win 0.055
    away, under a third of the way."""
    mean, direction = np.full(3, 0.5), np.array([0.0, 0.0, 1.0])
    x = torch.tensor([[0.5 + 0.15 * z, y, 0.5] for y in (0.3, 0.7) for z in (-1, 0, 1)], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    attack = L2ComponentGradientAttack(step_size=0.001, max_steps=1000)
    expected = {"fitted": (0.2, 0), "symmetric": (0.0552, 1)}  # (distance, component holding the adversarial)
    for base, (distance, holder) in expected.items():
        pair = make_asymmetric(_line_pair(0.08), mean, direction, step=0.1, weight=0.05, asymmetric_base=base)
        classifier = BayesClassifier(*pair)
        assert torch.equal(classifier.predict(x), y)
        for label, centre in ((0, x[1]), (1, x[4])):
            assert _boundary_distance(classifier, centre, label) == pytest.approx(distance, abs=2e-4)
        result = attack(classifier, x, y)
        assert result.success.all()
        assert result.l2.numpy() == pytest.approx(np.full(6, distance), abs=1e-3)
        lp0, lp1 = classifier.class_component_log_probs(result.x_adv)
        held = torch.where(y == 1, lp0.argmax(dim=1), lp1.argmax(dim=1))  # the other class's winner
        assert held.tolist() == [holder] * 6  # component 1 is the outlier


def test_fresh_sampler_draws_balanced_clipped_samples_of_the_pair_on_its_device():
    pair = (_random_mfa(seed=1), _random_mfa(seed=2, offset=0.2))
    sym = (make_symmetric(pair[0]), make_symmetric(pair[1]))
    sampler = fresh_sampler(sym, "cpu")
    x, y = sampler(2001, torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32 and x.shape == (2001, pair[0].d) and y.dtype == torch.int64
    assert sorted(torch.bincount(y).tolist()) == [1000, 1001]  # ceil(n / 2) per class, the first n kept
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert 0.3 < float(y[:1000].float().mean()) < 0.7  # shuffled, not one class after the other
    # the samples of each class come from its own model: the Bayes-optimal classifier labels them all
    assert (BayesClassifier(*sym).predict(x.double()) == y).float().mean() > 0.99
    # each class's mean within sampling error of its mixture's mean (noise 0.01, loadings 0.05 per pixel)
    for label, mfa in enumerate(sym):
        expected = (mfa.log_pi.exp()[:, None] * mfa.mu).sum(0).clamp(0, 1).float()
        assert (x[y == label].mean(0) - expected).abs().max() < 0.03
    # the loop's generator seeds every call: the same state gives the same samples, the next call new ones
    again, _ = sampler(2001, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    first, _ = sampler(10, gen)
    second, _ = sampler(10, gen)
    assert torch.equal(x, again) and not torch.equal(first, second)
    assert sym[0].device.type == "cpu"  # the pair stays where it was


def test_sampled_components_come_with_the_same_samples():
    far = (_random_mfa(seed=1), _random_mfa(seed=2, offset=0.2))
    for mfa in far:  # components 0.3 apart per pixel: each sample lies nearest its own component's mean
        mfa.mu.copy_(mfa.mu[:1] + torch.tensor([[-0.3], [0.0], [0.3]], dtype=torch.float64))
    x, y = sample_dataset(far, 200, seed=3, clip=False)
    x2, y2, component = sample_dataset(far, 200, seed=3, clip=False, components=True)
    assert np.array_equal(x, x2) and np.array_equal(y, y2) and component.dtype == np.int64
    means = np.stack([mfa.mu.numpy() for mfa in far])  # [class, K, d]
    nearest = np.linalg.norm(x[:, None, :] - means[y], axis=2).argmin(axis=1)
    assert np.array_equal(component, nearest)
    # the weights 0.5 / 0.3 / 0.2 of each class, within sampling error of 400 draws
    assert np.bincount(component, minlength=3) / 400 == pytest.approx([0.5, 0.3, 0.2], abs=0.06)
