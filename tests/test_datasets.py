"""The symmetric/asymmetric constructions of paper appendix B.2 and the dataset release path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.datasets import (
    OUTLIER_SIGMA,
    add_outlier,
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
