"""Subspace distances, the rigorous certified radius and the sigma -> 0 limit of Lemma 3."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from nbhelpers.chapters.ch3_figures import _plot_distance_histogram
from nbhelpers.science.attacks import L2ComponentGradientAttack, run_foolbox_attack
from nbhelpers.science.bounds import (
    certified_radius,
    mahalanobis_terms,
    nearest_subspace_distances,
    subspace_distances,
)
from nbhelpers.science.mfa import MFA
from tests.test_classifier import isotropic_pair, subspace_pair


def test_subspace_distances_match_least_squares():
    gen = torch.Generator().manual_seed(3)
    mu = torch.rand(3, 9, generator=gen, dtype=torch.float64)
    loadings = torch.randn(3, 9, 2, generator=gen, dtype=torch.float64)
    loadings[2] = 0  # a point "subspace": the outlier component of the asymmetric models
    mfa = MFA.from_parameters(mu, loadings, torch.full((3, 9), 0.01))
    x = torch.rand(5, 9, generator=gen, dtype=torch.float64)
    got = subspace_distances(x, mfa).numpy()
    for k in range(2):
        a = loadings[k].numpy()
        z = np.linalg.lstsq(a, (x - mu[k]).numpy().T, rcond=None)[0]
        np.testing.assert_allclose(got[:, k], np.linalg.norm((x - mu[k]).numpy() - (a @ z).T, axis=1))
    np.testing.assert_allclose(got[:, 2], (x - mu[2]).norm(dim=1).numpy())
    on_subspace = mu[0] + (loadings[0] @ torch.tensor([[0.3], [-1.2]], dtype=torch.float64))[:, 0]
    assert subspace_distances(on_subspace[None], mfa)[0, 0] < 1e-12


def test_mahalanobis_terms_reproduce_the_densities():
    model, x, _ = subspace_pair(d=20, k=3, latent=2, sigma=0.03, n=4)
    mfa = model.mfas[1]
    m, c, lipschitz = mahalanobis_terms(x, mfa)
    np.testing.assert_allclose((-0.5 * m - c).numpy(), mfa.component_log_prob(x).numpy(), rtol=1e-10)
    np.testing.assert_allclose(lipschitz.numpy(), np.full(3, 1 / 0.03))


def test_a_float32_model_gets_float64_mahalanobis_terms():
    model, x, _ = subspace_pair(d=2000, k=3, latent=2, sigma=0.01, n=4)
    mfa = model.mfas[1]
    mfa32 = MFA.from_parameters(mfa.mu, mfa.A, mfa.log_D.exp(), mfa.log_pi.exp(), dtype=torch.float32)
    # the same parameters and points rounded to float32, evaluated in float64: only that rounding may differ
    x32 = x.float()
    mfa64 = MFA(mfa.K, mfa.d, mfa.l, dtype=torch.float64)
    mfa64.load_state_dict(mfa32.state_dict())  # the float32 values, exactly, as float64
    expected = mahalanobis_terms(x32.double(), mfa64)
    m32, c32, _ = mahalanobis_terms(x32, mfa32)
    assert m32.dtype == c32.dtype == torch.float64
    torch.testing.assert_close(m32, expected[0], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(c32, expected[1], rtol=1e-12, atol=1e-9)
    assert subspace_distances(x32, mfa32).dtype == torch.float64


def test_certified_radius_below_every_attack():
    model, x, y = subspace_pair()
    radius = certified_radius(model, x, y)
    assert (radius > 0).all()
    attacks = {
        "gradient": L2ComponentGradientAttack()(model, x, y).l2,
        "fmn": run_foolbox_attack(model, x.float(), y, "fmn").l2,
        "ddn": run_foolbox_attack(model, x.float(), y, "ddn").l2,
    }
    for name, l2 in attacks.items():
        assert (l2 >= radius * (1 - 1e-6)).all(), name
    # and not vacuous: within 10% of the best attack on this well-separated pair
    best = torch.stack(list(attacks.values())).min(0).values
    assert (radius / best).min() > 0.9


def test_certified_radius_is_sound_on_the_asymmetric_model():
    model, x, y = subspace_pair(outlier_sigma=0.5)
    radius = certified_radius(model, x, y)
    l2 = run_foolbox_attack(model, x.float(), y, "fmn").l2
    assert (l2 >= radius * (1 - 1e-6)).all()
    # the attack's point lies beyond the radius; so do points just inside it along the same line
    out = L2ComponentGradientAttack()(model, x, y)
    inside = x + (out.x_adv - x) * (radius / out.l2 * (1 - 1e-9))[:, None]
    assert (model.predict(inside) == y).all()


def test_certified_radius_below_the_exact_distance():
    model, x, y, exact = isotropic_pair()
    radius = certified_radius(model, x, y)
    assert (radius <= exact).all() and (radius > 0.5 * exact).all()


def test_certified_radius_tends_to_the_lemma3_limit():
    errors = []
    for sigma in (1e-2, 1e-3, 1e-4):
        model, x, y = subspace_pair(sigma=sigma)
        dist = nearest_subspace_distances(model, x, y)
        radius = certified_radius(model, x, y).numpy()
        errors.append(np.abs(radius / dist.limit - 1).max())
        # the sigma -> 0 half-distance is no guarantee at finite sigma, but the limit is its lower side
        assert (dist.limit <= dist.half_other).all()
    assert errors[0] < 0.02 and errors[2] < 1e-4
    assert errors[0] > errors[1] > errors[2]


def test_misclassified_samples_have_zero_radius():
    model, x, y, _ = isotropic_pair(n=3)
    flipped = 1 - y
    assert (certified_radius(model, x, flipped) == 0).all()


def test_figure11_plot():
    model, x, y = subspace_pair(n=6)
    dist = nearest_subspace_distances(model, x, y)
    np.testing.assert_allclose(dist.half_other, dist.other / 2)
    fig = _plot_distance_histogram(dist)
    assert len(fig.axes) == 1
    l2 = L2ComponentGradientAttack()(model, x, y).l2
    fig2 = _plot_distance_histogram(dist, attack_l2=l2, certified=certified_radius(model, x, y))
    assert len(fig2.axes) == 2
    plt.close("all")


def test_bad_inputs_raise():
    model, x, y = subspace_pair(n=2)
    with pytest.raises(ValueError, match="labels"):
        certified_radius(model, x, y[:2])
    with pytest.raises(ValueError, match="0 or 1"):
        certified_radius(model, x, y + 1)
    with pytest.raises(ValueError, match=r"\[n, 48\]"):
        subspace_distances(x[:, :5], model.mfas[0])
