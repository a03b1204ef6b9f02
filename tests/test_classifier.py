"""The Bayes-optimal MFA classifier; also the small model pairs the attack/bound tests share."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.mfa import MFA
from tests.test_mfa import direct_component_log_prob


def isotropic_pair(
    d: int = 16, gap: float = 0.4, sigma: float = 0.05, n: int = 24, seed: int = 0
) -> tuple[BayesClassifier, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two isotropic Gaussians N(0.5 -/+ gap/2 e, sigma^2 I) (A = 0) and n samples of each class.

    Returns the classifier, x [2n, d], y [2n] and the exact boundary distance [2n]: the boundary
    is the hyperplane e . (x - 0.5) = 0.
    """
    gen = torch.Generator().manual_seed(seed)
    e = torch.randn(d, generator=gen, dtype=torch.float64)
    e /= e.norm()
    mfas = [
        MFA.from_parameters(
            (0.5 + sign * gap / 2 * e)[None], torch.zeros(1, d, 1), torch.full((1,), sigma**2), isotropic=True
        )
        for sign in (-1, 1)
    ]
    x = torch.cat([mfa.sample(n, generator=gen)[0] for mfa in mfas])
    y = torch.arange(2).repeat_interleave(n)
    return BayesClassifier(*mfas), x, y, ((x - 0.5) @ e).abs()


def subspace_pair(
    d: int = 48,
    k: int = 3,
    latent: int = 2,
    sigma: float = 0.01,
    outlier_sigma: float | None = None,
    n: int = 12,
    seed: int = 0,
) -> tuple[BayesClassifier, torch.Tensor, torch.Tensor]:
    """A symmetric pair: k low-rank components per class with the same isotropic noise ``sigma``.

    With ``outlier_sigma`` each class gets one more component (A = 0, noise ``outlier_sigma``)
    near the mean of all component means, 0.05 away in a random direction of its own: the
    paper's asymmetric construction (outliers of both classes at one shared mean would tie).
    The n samples per class come from the low-rank components only, so both variants are
    attacked on the same x [2n, d].
    """
    gen = torch.Generator().manual_seed(seed)
    mus = 0.2 + 0.6 * torch.rand(2, k, d, generator=gen, dtype=torch.float64)
    loadings = 0.02 * torch.randn(2, k, d, latent, generator=gen, dtype=torch.float64)
    sym = [
        MFA.from_parameters(mus[c], loadings[c], torch.full((k,), sigma**2), isotropic=True) for c in range(2)
    ]
    x = torch.cat([mfa.sample(n, generator=gen)[0] for mfa in sym]).clamp(0, 1)
    y = torch.arange(2).repeat_interleave(n)
    if outlier_sigma is None:
        return BayesClassifier(*sym), x, y
    centre = mus.reshape(-1, d).mean(0)
    offsets = torch.randn(2, d, generator=gen, dtype=torch.float64)
    asym = [
        MFA.from_parameters(
            torch.cat([mus[c], (centre + 0.05 * offsets[c] / offsets[c].norm())[None]]),
            torch.cat([loadings[c], torch.zeros(1, d, latent, dtype=torch.float64)]),
            torch.tensor([sigma**2] * k + [outlier_sigma**2]),
            isotropic=True,
        )
        for c in range(2)
    ]
    return BayesClassifier(*asym), x, y


def _scipy_log_density(mfa: MFA, x: np.ndarray) -> np.ndarray:
    """log sum_k pi_k N(x; mu_k, C_k) with dense covariances: [n]."""
    terms = [
        mfa.log_pi[k].item() + multivariate_normal(mfa.mu[k].numpy(), mfa.covariance(k).numpy()).logpdf(x)
        for k in range(mfa.K)
    ]
    return logsumexp(np.stack(terms, axis=1), axis=1)


def test_logits_are_shifted_class_log_densities():
    model, x, y = subspace_pair(d=12, k=2, latent=2, sigma=0.05, n=5)
    expected = np.stack([_scipy_log_density(m, x.numpy()) for m in model.mfas], axis=1)  # [n, 2]
    np.testing.assert_allclose(model.class_log_densities(x).numpy(), expected, rtol=1e-10)
    logits = model(x)
    assert logits.dtype == torch.float64 and logits.shape == (10, 2)
    np.testing.assert_allclose(logits.numpy(), expected - expected.mean(1, keepdims=True), atol=1e-8)
    np.testing.assert_array_equal(model.predict(x).numpy(), expected.argmax(1))
    assert (model.predict(x) == y).float().mean() == 1.0


def test_component_log_probs_include_priors():
    model, x, _ = subspace_pair(d=12, k=3, latent=2, sigma=0.05, n=4)
    model.mfas[1].log_pi.copy_(torch.tensor([0.7, 0.2, 0.1]).log())
    lp0, lp1 = model.class_component_log_probs(x)
    assert lp0.shape == (8, 3) and lp1.shape == (8, 3)
    np.testing.assert_allclose(torch.logsumexp(lp1, 1).numpy(), _scipy_log_density(model.mfas[1], x.numpy()))
    direct = model.mfas[1].component_log_prob(x) + torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64).log()
    np.testing.assert_allclose(lp1.numpy(), direct.numpy())


def test_gemm_densities_match_explicit_residuals():
    # CelebA-like noise (sigma = 0.01) in d = 2000: the expanded quadratic form stays exact enough
    model, x, _ = subspace_pair(d=2000, k=3, latent=4, sigma=0.01, n=3)
    for c, lp in enumerate(model.class_component_log_probs(x)):
        ref = direct_component_log_prob(model.mfas[c], x) + model.mfas[c].log_pi
        assert (lp - ref).abs().max() < 1e-6 and ref.abs().min() > 1e3
    # parameters changed in place after construction are picked up (the cached terms are recomputed)
    with torch.no_grad():
        model.mfas[0].mu.add_(0.01)
        model.mfas[0].log_D.sub_(0.1)
    ref = direct_component_log_prob(model.mfas[0], x) + model.mfas[0].log_pi
    assert (model.class_component_log_probs(x)[0] - ref).abs().max() < 1e-6


def test_closed_form_gradients_match_autograd():
    model, x, _ = subspace_pair(d=30, k=3, latent=2, sigma=0.05, n=6)
    cls = torch.tensor([0, 1, 0, 1, 1, 0] * 2)
    comp = torch.tensor([0, 2, 2, 1, 0, 1] * 2)
    xr = x.clone().requires_grad_(True)
    lp0, lp1 = model.class_component_log_probs(xr)
    picked = torch.where(cls == 0, lp0.gather(1, comp[:, None])[:, 0], lp1.gather(1, comp[:, None])[:, 0])
    (expected,) = torch.autograd.grad(picked.sum(), xr)
    got = model.component_log_prob_grad(x, cls, comp)
    np.testing.assert_allclose(
        got.numpy(), expected.numpy(), rtol=1e-8, atol=1e-8 * expected.abs().max().item()
    )
    # an index that names no component is refused, not answered with uninitialised rows
    with pytest.raises(ValueError, match="cls must hold class labels 0 or 1"):
        model.component_log_prob_grad(x, torch.full_like(cls, 2), comp)
    with pytest.raises(ValueError, match="outside its class's range"):
        model.component_log_prob_grad(x, cls, torch.full_like(comp, 3))
    with pytest.raises(ValueError, match="outside its class's range"):
        model.component_log_prob_grad(x, cls, torch.full_like(comp, -1))


def test_float32_models_are_evaluated_in_float64():
    model, x, _ = subspace_pair(d=12, k=2, latent=2, sigma=0.05, n=3)
    expected = model.class_log_densities(x)
    low = BayesClassifier(
        *(MFA.from_parameters(m.mu, m.A, m.log_D.exp(), dtype=torch.float32) for m in model.mfas)
    )
    np.testing.assert_allclose(low.class_log_densities(x).numpy(), expected.numpy(), rtol=1e-5)
    assert low.class_log_densities(x).dtype == torch.float64
    mixed = BayesClassifier(low.mfas[0], model.mfas[1])
    np.testing.assert_allclose(mixed.class_log_densities(x).numpy(), expected.numpy(), rtol=1e-5)


def test_float32_logits_keep_the_difference():
    # near the boundary of a d = 3000, sigma = 0.01 pair the log-densities are ~1e4 (float32 steps
    # ~1e-3) while their difference is ~1
    model, x, _, _ = isotropic_pair(d=3000, gap=0.2, sigma=0.01, n=4)
    e = model.mfas[1].mu[0] - model.mfas[0].mu[0]
    e /= e.norm()
    t = torch.linspace(-2e-4, 2e-4, 8, dtype=torch.float64)
    noise = 0.005 * torch.randn(8, 3000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x32 = (0.5 + noise + t[:, None] * e).float()
    exact = model.class_log_densities(x32.double())
    assert exact.abs().min() > 5e3
    diff64 = (exact[:, 1] - exact[:, 0]).numpy()
    assert 0.05 < np.abs(diff64).max() < 50
    logits = model(x32)
    assert logits.dtype == torch.float32
    diff32 = (logits[:, 1] - logits[:, 0]).double().numpy()
    np.testing.assert_allclose(diff32, diff64, rtol=1e-5, atol=1e-6)
    naive = exact.float().double()  # what casting the raw log-densities would give
    assert np.abs((naive[:, 1] - naive[:, 0]).numpy() - diff64).max() > 100 * np.abs(diff32 - diff64).max()


def test_images_are_flattened_and_gradients_flow():
    model, x, _ = subspace_pair(d=12, k=2, latent=2, sigma=0.05, n=3)
    images = x.reshape(6, 3, 2, 2).float().requires_grad_(True)
    logits = model(images)
    np.testing.assert_allclose(logits.detach().numpy(), model(x).float().numpy(), rtol=1e-6)
    (logits[:, 1] - logits[:, 0]).sum().backward()
    assert images.grad is not None and images.grad.shape == images.shape and images.grad.abs().sum() > 0


def test_bad_inputs_raise():
    model, x, _ = subspace_pair(d=12, k=2, latent=2, n=2)
    with pytest.raises(ValueError, match=r"\[n, 12\]"):
        model(x[:, :10])
    with pytest.raises(TypeError, match="floating-point"):
        model((x * 255).to(torch.uint8))
    other = MFA(2, 10, 2)
    with pytest.raises(ValueError, match="dimension"):
        BayesClassifier(model.mfas[0], other)
