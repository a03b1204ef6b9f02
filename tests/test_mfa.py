"""The MFA model: density against a dense mixture, EM on planted mixtures, sampling, I/O, bad input."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from scipy.optimize import linear_sum_assignment

from nbhelpers.science import mfa as mfa_module
from nbhelpers.science import mfa_init
from nbhelpers.science.mfa import MFA


def random_mfa(K: int, d: int, l: int, *, isotropic: bool, seed: int, noise=(0.05, 0.3), scale=4.0) -> MFA:  # noqa: E741
    """A planted model: well separated means, random loadings, noise variances drawn in ``noise``."""
    g = torch.Generator().manual_seed(seed)
    mu = scale * torch.randn(K, d, generator=g, dtype=torch.float64)
    A = torch.randn(K, d, l, generator=g, dtype=torch.float64)
    lo, hi = noise
    shape = (K,) if isotropic else (K, d)
    D = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    pi = 0.5 + torch.rand(K, generator=g, dtype=torch.float64)
    return MFA.from_parameters(mu, A, D, pi, isotropic=isotropic)


def dense_mixture(model: MFA) -> torch.distributions.MixtureSameFamily:
    """The same mixture with dense [K, d, d] covariances."""
    cov = torch.stack([model.covariance(k) for k in range(model.K)])
    return torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=model.log_pi),
        torch.distributions.MultivariateNormal(model.mu, covariance_matrix=cov),
    )


def direct_component_log_prob(model: MFA, x: torch.Tensor) -> torch.Tensor:
    """[n, K] log-densities from explicit residuals in the form that never cancels,
    ||D^-1/2 (r - A m)||^2 + ||m||^2 (the model itself expands r = x - mu into matrix products)."""
    A, D, mu = model.A.double(), model.log_D.double().exp(), model.mu.double()
    r_w = (x.double()[None] - mu[:, None]) / D.sqrt()[:, None]  # [K, n, d]
    A_w = A / D.sqrt()[:, :, None]
    L = A_w.mT @ A_w + torch.eye(model.l, dtype=torch.float64)
    m = torch.linalg.solve(L, A_w.mT @ r_w.mT)  # [K, l, n]
    mahalanobis = (r_w - (A_w @ m).mT).square().sum(2) + m.square().sum(1)
    logdet = D.log().sum(1) + torch.linalg.slogdet(L).logabsdet
    return (-0.5 * (model.d * math.log(2 * math.pi) + logdet[:, None] + mahalanobis)).T


def evaluation_points(model: MFA, n: int, seed: int) -> torch.Tensor:
    """Samples of the model (on its components, where Woodbury cancels most) plus far-off points."""
    g = torch.Generator().manual_seed(seed)
    x, _ = model.sample(n, generator=g)
    far = model.mu[0] + 3 * torch.randn(n // 4, model.d, generator=g, dtype=torch.float64)
    return torch.cat([x, far])


# ---------------------------------------------------------------------------- density
@pytest.mark.parametrize("isotropic", [False, True], ids=["diagonal", "isotropic"])
def test_log_prob_matches_dense_mixture(isotropic):
    model = random_mfa(K=4, d=7, l=3, isotropic=isotropic, seed=1)
    x = evaluation_points(model, 200, seed=2)
    dense = dense_mixture(model)
    torch.testing.assert_close(model.log_prob(x), dense.log_prob(x), rtol=1e-6, atol=0)
    per_component = dense.component_distribution.log_prob(x[:, None, :])
    torch.testing.assert_close(model.component_log_prob(x), per_component, rtol=1e-6, atol=0)
    posterior = torch.softmax(per_component + model.log_pi, dim=1)
    torch.testing.assert_close(model.responsibilities(x), posterior, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("isotropic", [False, True], ids=["diagonal", "isotropic"])
def test_log_prob_tiny_noise_high_dimension(isotropic):
    """D = 1e-4 in d = 500: on-manifold points make both Woodbury terms ~1e6 while their difference is ~d."""
    noise = (1e-4, 1e-4 if isotropic else 3e-4)
    model = random_mfa(K=3, d=500, l=5, isotropic=isotropic, seed=3, noise=noise)
    x = evaluation_points(model, 40, seed=4)
    expected = dense_mixture(model).log_prob(x)
    torch.testing.assert_close(model.log_prob(x), expected, rtol=1e-6, atol=0)


def test_log_prob_at_image_scale_matches_the_direct_residual_form():
    """d = 12288 pixels in [0, 1], D near the 1e-4 floor: the expanded products cancel ~|x|^2 / D ~ 3e7."""
    g = torch.Generator().manual_seed(11)
    K, d, l = 3, 12288, 10  # noqa: E741
    mu = 0.2 + 0.6 * torch.rand(K, d, generator=g, dtype=torch.float64)
    A = 0.02 * torch.randn(K, d, l, generator=g, dtype=torch.float64)
    D = 1e-4 + 1e-3 * torch.rand(K, d, generator=g, dtype=torch.float64)
    model = MFA.from_parameters(mu, A, D)
    x, _ = model.sample(20, generator=g)
    expected = direct_component_log_prob(model, x)
    assert expected.abs().min() > 1e4  # a regime where float32 expanded sums would be off by nats
    torch.testing.assert_close(model.component_log_prob(x), expected, rtol=0, atol=1e-6)


def test_chunked_evaluation_and_em_equal_unchunked(monkeypatch):
    model = random_mfa(K=3, d=8, l=2, isotropic=False, seed=5)
    x = evaluation_points(model, 100, seed=6)
    whole = model.component_log_prob(x)
    fit_whole = MFA(3, 8, 2).fit(x, n_iter=3, progress=False)
    for name in ("CHUNK_BYTES", "CPU_CHUNK_BYTES"):
        monkeypatch.setattr(mfa_module, name, 8 * 8 * 7)  # 7 float64 rows of d = 8 per chunk
    assert model._rows_per_chunk() == 7
    torch.testing.assert_close(model.component_log_prob(x), whole, rtol=1e-12, atol=0)
    fit_chunked = MFA(3, 8, 2).fit(x, n_iter=3, progress=False)
    for name, value in fit_whole.state_dict().items():
        torch.testing.assert_close(fit_chunked.state_dict()[name], value, rtol=1e-10, atol=1e-12)


def test_gradient_matches_dense_autograd():
    model = random_mfa(K=3, d=6, l=2, isotropic=False, seed=7)
    x = evaluation_points(model, 30, seed=8).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_prob(x).sum(), x)
    x_dense = x.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(dense_mixture(model).log_prob(x_dense).sum(), x_dense)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-9)
    # float32 input: computed in the model's float64, gradient comes back in float32
    x32 = x.detach().float().requires_grad_(True)
    (grad32,) = torch.autograd.grad(model.log_prob(x32).sum(), x32)
    assert grad32.dtype == torch.float32
    torch.testing.assert_close(grad32.double(), expected, rtol=1e-4, atol=1e-4)


def test_float32_model_close_to_float64():
    model = random_mfa(K=3, d=50, l=4, isotropic=False, seed=9, noise=(1e-3, 1e-2))
    model32 = MFA.from_parameters(
        model.mu, model.A, model.log_D.exp(), model.log_pi.exp(), dtype=torch.float32
    )
    x = evaluation_points(model, 50, seed=10)
    out = model32.log_prob(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), model.log_prob(x), rtol=1e-4, atol=1e-2)


# ---------------------------------------------------------------------------- sampling
def test_sampling_statistics_match_model():
    model = random_mfa(K=2, d=4, l=2, isotropic=False, seed=11, scale=3.0)
    n = 200_000
    x, index = model.sample(n, generator=torch.Generator().manual_seed(12))
    assert x.shape == (n, 4) and index.shape == (n,)
    pi = model.log_pi.exp()
    freq = torch.bincount(index, minlength=2).double() / n
    torch.testing.assert_close(freq, pi, rtol=0, atol=5 * math.sqrt(0.25 / n))
    covs = torch.stack([model.covariance(k) for k in range(2)])
    for k in range(2):
        xk = x[index == k]
        torch.testing.assert_close(xk.mean(0), model.mu[k], rtol=0, atol=0.03)
        torch.testing.assert_close(torch.cov(xk.T), covs[k], rtol=0.05, atol=0.03)
    mean = pi @ model.mu
    second = torch.einsum("k,kij->ij", pi, covs + model.mu[:, :, None] * model.mu[:, None, :])
    torch.testing.assert_close(x.mean(0), mean, rtol=0, atol=0.03)
    torch.testing.assert_close(torch.cov(x.T), second - torch.outer(mean, mean), rtol=0.03, atol=0.05)


def test_noiseless_samples_lie_on_the_subspaces():
    model = random_mfa(K=2, d=5, l=2, isotropic=True, seed=13)
    x, index = model.sample(50_000, with_noise=False, generator=torch.Generator().manual_seed(14))
    for k in range(2):
        xk = x[index == k]
        torch.testing.assert_close(torch.cov(xk.T), model.A[k] @ model.A[k].T, rtol=0.05, atol=0.03)
        # no component off the span of A_k
        residual = (xk - model.mu[k]) - (xk - model.mu[k]) @ torch.linalg.pinv(model.A[k]).T @ model.A[k].T
        assert residual.abs().max() < 1e-10


def test_sampling_is_reproducible_with_a_generator():
    model = random_mfa(K=3, d=4, l=1, isotropic=False, seed=15)
    a = model.sample(100, generator=torch.Generator().manual_seed(0))
    b = model.sample(100, generator=torch.Generator().manual_seed(0))
    c = model.sample(100, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------- EM
def planted_data(isotropic: bool, n: int = 4000, seed: int = 20) -> tuple[MFA, torch.Tensor]:
    truth = random_mfa(K=3, d=12, l=2, isotropic=isotropic, seed=seed)
    x, _ = truth.sample(n, generator=torch.Generator().manual_seed(seed + 1))
    return truth, x


def assert_monotone(history: list[float]) -> None:
    """EM never lowers the likelihood (up to float64 rounding of the mean)."""
    h = np.array(history)
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:])), h


@pytest.mark.parametrize("isotropic", [False, True], ids=["MFA", "MPPCA"])
def test_em_is_monotone_and_recovers_planted_mixture(isotropic):
    truth, x = planted_data(isotropic)
    model = MFA(3, 12, 2, isotropic=isotropic).fit(x, n_iter=40, init="kmeans", seed=0, progress=False)
    history = np.array(model.history_)
    assert len(history) == 41
    assert_monotone(model.history_)
    # the maximum-likelihood fit explains its training data at least as well as the truth
    assert history[-1] >= truth.log_prob(x).mean().item() - 1e-3
    torch.testing.assert_close(torch.tensor(history[-1]), model.log_prob(x).mean(), rtol=1e-12, atol=0)

    cost = torch.cdist(truth.mu, model.mu).numpy()
    rows, match = linear_sum_assignment(cost)
    assert cost[rows, match].max() < 0.15  # means (planted at scale 4)
    pi_true, pi_fit = truth.log_pi.exp(), model.log_pi.exp()[match]
    torch.testing.assert_close(pi_fit, pi_true, rtol=0, atol=0.03)
    torch.testing.assert_close(model.log_D.exp()[match], truth.log_D.exp(), rtol=0.15, atol=0)
    for k, j in zip(rows, match, strict=True):
        angles = subspace_angles(truth.A[k].numpy(), model.A[j].numpy())
        assert angles.max() < 0.1, angles
        # loadings are identifiable up to rotation: compare A A^T
        gram_true, gram_fit = truth.A[k] @ truth.A[k].T, model.A[j] @ model.A[j].T
        assert torch.linalg.norm(gram_fit - gram_true) / torch.linalg.norm(gram_true) < 0.15
    if isotropic:
        assert torch.equal(model.log_D, model.log_D[:, :1].expand_as(model.log_D))


@pytest.mark.parametrize("isotropic", [False, True], ids=["MFA", "MPPCA"])
def test_em_from_random_init_is_monotone(isotropic):
    """Random centres may start in a poor local optimum (two centres in one cluster): EM still only climbs."""
    _, x = planted_data(isotropic)
    model = MFA(3, 12, 2, isotropic=isotropic).fit(x, n_iter=15, init="random", seed=0, progress=False)
    assert_monotone(model.history_)
    assert model.history_[-1] > model.history_[0] + 0.1


@pytest.mark.parametrize("isotropic", [False, True], ids=["MFA", "MPPCA"])
def test_em_from_perturbed_truth_returns_to_it(isotropic):
    """Every parameter must move: shifted means, perturbed loadings and inflated noise come back."""
    truth, x = planted_data(isotropic)
    g = torch.Generator().manual_seed(30)
    shift = torch.randn(3, 12, generator=g, dtype=torch.float64)
    start = MFA.from_parameters(
        truth.mu + 0.6 * shift / shift.norm(dim=1, keepdim=True),
        truth.A + 0.3 * torch.randn(3, 12, 2, generator=g, dtype=torch.float64),
        2 * truth.log_D.exp()[:, 0] if isotropic else 2 * truth.log_D.exp(),
        isotropic=isotropic,
    )
    model = start.fit(x, n_iter=40, init="current", progress=False)
    assert_monotone(model.history_)
    assert (model.mu - truth.mu).norm(dim=1).max() < 0.25  # sampling error is ~0.1 here
    torch.testing.assert_close(model.log_D.exp(), truth.log_D.exp(), rtol=0.15, atol=0)
    for k in range(3):
        assert subspace_angles(truth.A[k].numpy(), model.A[k].numpy()).max() < 0.1


def test_fit_is_deterministic_for_a_seed():
    _, x = planted_data(False, n=1500)
    fits = [MFA(3, 12, 2).fit(x, n_iter=5, init="random", seed=s, progress=False) for s in (3, 3, 4)]
    for name, value in fits[0].state_dict().items():
        assert torch.equal(value, fits[1].state_dict()[name]), name
    assert fits[0].history_ == fits[1].history_
    assert not torch.equal(fits[0].mu, fits[2].mu)


def test_fit_on_chunk_stream_equals_fit_on_tensor():
    _, x = planted_data(False, n=1500)
    kwargs = {"n_iter": 6, "batch_size": 256, "seed": 1, "progress": False}
    whole = MFA(3, 12, 2).fit(x, **kwargs)
    chunks = list(x.numpy().astype(np.float64).reshape(-1, 300, 12))
    streamed = MFA(3, 12, 2).fit(lambda: iter(chunks), **kwargs)
    listed = MFA(3, 12, 2).fit(chunks, **kwargs)
    for other in (streamed, listed):
        for name, value in whole.state_dict().items():
            torch.testing.assert_close(other.state_dict()[name], value, rtol=1e-9, atol=1e-12)


def test_float32_model_fits_like_float64():
    _, x = planted_data(False, n=2000)
    m64 = MFA(3, 12, 2).fit(x, n_iter=10, seed=0, progress=False)
    m32 = MFA(3, 12, 2, dtype=torch.float32).fit(x.float(), n_iter=10, seed=0, progress=False)
    assert m32.mu.dtype == torch.float32
    assert abs(m32.history_[-1] - m64.history_[-1]) < 1e-4 * abs(m64.history_[-1])


def test_variance_floor_and_tolerance():
    _, x = planted_data(False, n=1500)
    floored = MFA(3, 12, 2).fit(x, n_iter=3, min_variance=0.5, progress=False)
    assert floored.log_D.exp().min() >= 0.5 * (1 - 1e-12)
    early = MFA(3, 12, 2).fit(x, n_iter=200, tol=1e-3, progress=False)
    assert 2 <= len(early.history_) < 201
    assert early.history_[-1] - early.history_[-2] < 1e-3


def test_collapsed_component_is_reinitialised_with_a_warning():
    truth, x = planted_data(False, n=1500)
    model = MFA.from_parameters(
        torch.cat([truth.mu[:2], torch.full((1, 12), 1e3, dtype=torch.float64)]),
        truth.A,
        truth.log_D.exp(),
    )
    with pytest.warns(RuntimeWarning, match=r"component\(s\) \[2\] collapsed"):
        model.fit(x, n_iter=3, init="current", progress=False)
    assert all(math.isfinite(v) for v in model.history_)
    assert model.responsibilities(x)[:, 2].sum() > 10  # it now explains data again
    assert torch.cdist(model.mu[2:], x).min() < 10


@pytest.mark.parametrize("init", ["current", "kmeans"])
@pytest.mark.parametrize("scale", [1e160, 1e200])
def test_overflowing_data_are_refused_with_their_scale(init, scale):
    """Data whose summed squares overflow float64: a message about their scale, not NaN or LinAlgError."""
    x = torch.randn(200, 12, dtype=torch.float64) * scale
    with pytest.raises(ValueError, match=r"the data reach \|x\| = .*overflow float64; rescale them"):
        MFA(2, 12, 2).fit(x, n_iter=2, init=init, progress=False)


def test_a_failed_linear_algebra_step_names_the_data_scale(monkeypatch):
    def singular(*args, **kwargs):
        raise torch.linalg.LinAlgError("linalg.cholesky: The factorization could not be completed")

    monkeypatch.setattr(MFA, "_initialise", singular)
    x = torch.randn(50, 5, dtype=torch.float64) * 1e3
    with pytest.raises(FloatingPointError, match=r"linear-algebra step failed .*largest \|x\| = .*rescale"):
        MFA(2, 5, 2).fit(x, n_iter=1, progress=False)


def test_fit_on_too_few_samples_names_latent_dim():
    with pytest.raises(
        ValueError, match=r"at least max\(2, latent_dim\) = 3 samples .*latent_dim=3 .*got n=2"
    ):
        MFA(1, 5, 3).fit(torch.randn(2, 5, dtype=torch.float64), n_iter=1, progress=False)
    with pytest.raises(
        ValueError, match=r"at least max\(2, latent_dim\) = 2 samples .*latent_dim=1 .*got n=1"
    ):
        MFA(1, 5, 1).fit(torch.randn(1, 5, dtype=torch.float64), n_iter=1, progress=False)
    MFA(1, 5, 3).fit(torch.randn(3, 5, dtype=torch.float64), n_iter=1, progress=False)  # l samples fit
    MFA(1, 5, 1).fit(torch.randn(2, 5, dtype=torch.float64), n_iter=1, progress=False)


def test_fit_refuses_a_negative_seed():
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got -1"):
        MFA(2, 5, 2).fit(torch.randn(20, 5), seed=-1, progress=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    truth, x = planted_data(False, n=1500)
    cuda = copy.deepcopy(truth).to("cuda")
    x_cuda = x.cuda().requires_grad_(True)
    (grad,) = torch.autograd.grad(cuda.log_prob(x_cuda).sum(), x_cuda)
    x_cpu = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(truth.log_prob(x_cpu).sum(), x_cpu)
    torch.testing.assert_close(grad.cpu(), expected, rtol=1e-9, atol=1e-9)
    kwargs = {"n_iter": 5, "seed": 0, "progress": False}
    fit_cpu = MFA(3, 12, 2).fit(x, **kwargs)
    fit_cuda = MFA(3, 12, 2, device="cuda").fit(x, **kwargs)  # CPU data, CUDA model
    for name, value in fit_cpu.state_dict().items():
        torch.testing.assert_close(fit_cuda.state_dict()[name].cpu(), value, rtol=1e-7, atol=1e-9)
    samples, index = fit_cuda.sample(10, generator=torch.Generator().manual_seed(0))
    assert samples.device.type == "cuda" and index.device.type == "cuda"


# ---------------------------------------------------------------------------- persistence and buffers
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_save_load_round_trip(tmp_path, dtype):
    _, x = planted_data(True, n=600)
    model = MFA(3, 12, 2, isotropic=True, dtype=dtype).fit(x, n_iter=2, progress=False)
    path = model.save(tmp_path / "sub" / "model.safetensors")
    assert path.stat().st_mode & 0o777 == 0o644  # readable by others, like the exported samples
    loaded = MFA.load(path)
    assert (loaded.K, loaded.d, loaded.l, loaded.isotropic, loaded.dtype) == (3, 12, 2, True, dtype)
    assert loaded.history_ == model.history_
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert torch.equal(loaded.log_prob(x), model.log_prob(x))


def test_load_rejects_foreign_and_missing_files(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not written by MFA.save"):
        MFA.load(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError):
        MFA.load(tmp_path / "missing.safetensors")


def test_parameters_are_buffers_in_the_state_dict():
    model = MFA(2, 5, 1)
    assert set(model.state_dict()) == {"log_pi", "mu", "A", "log_D"}
    assert [p for p in model.parameters()] == []
    assert model.covariance(1).shape == (5, 5)
    torch.testing.assert_close(model.log_pi.exp().sum(), torch.tensor(1.0, dtype=torch.float64))


def test_a_prediction_under_inference_mode_leaves_the_model_differentiable():
    model = random_mfa(K=3, d=20, l=2, isotropic=False, seed=4)
    x = evaluation_points(model, 8, seed=5)
    with torch.inference_mode():
        expected = model.log_prob(x)  # fills the cache inside inference mode
    x_grad = x.clone().requires_grad_()
    out = model.log_prob(x_grad)
    (grad,) = torch.autograd.grad(out.sum(), x_grad)
    torch.testing.assert_close(out.detach(), expected)
    torch.testing.assert_close(grad, torch.func.grad(lambda v: dense_mixture(model).log_prob(v).sum())(x))


def test_a_model_made_under_inference_mode_evaluates():
    reference = random_mfa(K=2, d=10, l=2, isotropic=True, seed=6)
    x = evaluation_points(reference, 6, seed=7)
    with torch.inference_mode():
        model = MFA.from_parameters(reference.mu, reference.A, reference.log_D.exp(), reference.log_pi.exp())
        torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))
        torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))  # twice: nothing cached wrongly


def test_replaced_buffers_are_never_served_from_the_cache():
    # A new tensor of the same size may land at the address of the one it replaced, with a version
    # counter of 0 again: a cache keyed on address and version served the old parameters then.
    g = torch.Generator().manual_seed(0)
    model = MFA(2, 8, 2)
    x = torch.randn(4, 8, dtype=torch.float64, generator=g)
    stale = 0
    for _ in range(200):
        model.log_prob(x)
        model.A = torch.randn(2, 8, 2, dtype=torch.float64, generator=g)
        model.A = torch.randn(2, 8, 2, dtype=torch.float64, generator=g)
        fresh = MFA.from_parameters(model.mu, model.A, model.log_D.exp()).log_prob(x)
        stale += not torch.allclose(model.log_prob(x), fresh, rtol=1e-12, atol=0)
    assert stale == 0


def test_clear_cache_after_editing_buffers_behind_torchs_back():
    model = random_mfa(K=2, d=10, l=2, isotropic=False, seed=8)
    x = evaluation_points(model, 6, seed=9)
    before = model.log_prob(x)
    model.log_D.data.fill_(0.0)  # .data bypasses the version counter the cache is keyed on
    fresh = MFA.from_parameters(model.mu, model.A, torch.ones(2, 10), model.log_pi.exp())
    model.clear_cache()
    after = model.log_prob(x)
    torch.testing.assert_close(after, fresh.log_prob(x))
    assert (after - before).abs().min() > 1.0


def test_float32_mixture_sums_in_float64():
    # Two components 8e-7 apart in each pixel, seen from far away: log-densities of about -1.35e7
    # (float32 spacing 1.0 there) that differ by 0.72, so their softmax is right only in float64.
    d = 30
    mu = torch.zeros(2, d, dtype=torch.float32)
    mu[1] = 8e-7
    model32 = MFA.from_parameters(mu, torch.zeros(2, d, 1), torch.full((2, d), 1e-3), dtype=torch.float32)
    model64 = MFA(2, d, 1, dtype=torch.float64)
    model64.load_state_dict(model32.state_dict())  # the float32 values, exactly, as float64
    x = torch.full((1, d), 30.0, dtype=torch.float64)
    expected = model64.responsibilities(x)
    assert 0.6 < expected[0, 1] < 0.75  # the components really compete
    torch.testing.assert_close(model32.responsibilities(x).double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(model32.log_prob(x).double(), model64.log_prob(x), rtol=1e-7, atol=0)


def write_mfa_file(path, tensors: dict, **metadata) -> str:
    """A safetensors file like MFA.save's, with the given tensors and metadata entries replaced."""
    from safetensors.torch import save_file

    meta = {
        "format": "nbhelpers.science.mfa",
        "version": "1",
        "n_components": "2",
        "dim": "4",
        "latent_dim": "1",
        "isotropic": "false",
        "dtype": "float64",
        "history": "[]",
    }
    meta.update(metadata)
    meta = {k: v for k, v in meta.items() if v is not None}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    return str(path)


def good_tensors() -> dict[str, torch.Tensor]:
    model = random_mfa(K=2, d=4, l=1, isotropic=False, seed=3)
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_the_file_helper_writes_a_loadable_model(tmp_path):
    assert MFA.load(write_mfa_file(tmp_path / "ok.safetensors", good_tensors())).K == 2


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.update(log_pi=torch.tensor([5.0, 5.0], dtype=torch.float64)), r"sum to 296\.8.*not 1"),
        (lambda t: t.update(log_pi=torch.log(torch.tensor([0.2, 0.2], dtype=torch.float64))), "sum to 0.4"),
        (
            lambda t: t.update(mu=torch.zeros(2, 5, dtype=torch.float64)),
            r"mu has shape \[2, 5\] .*need \[2, 4\]",
        ),
        (lambda t: t.update(A=torch.zeros(2, 4, 2, dtype=torch.float64)), r"A has shape \[2, 4, 2\]"),
        (lambda t: t.update(log_pi=torch.zeros(3, dtype=torch.float64)), r"log_pi has shape \[3\]"),
        (lambda t: t.pop("A"), "holds the tensors log_D, log_pi, mu; an MFA file holds A, log_D"),
        (lambda t: t.update(extra=torch.zeros(1)), "holds the tensors A, extra"),
        (lambda t: t["log_D"].__setitem__((0, 1), math.inf), "NaN or inf values in log_D"),
        (lambda t: t["log_D"].__setitem__((1, 2), -1000.0), r"noise variances exp\(log_D\) must be positive"),
        (lambda t: t.update(mu=torch.zeros(2, 4, dtype=torch.int64)), "holds torch.int64 values"),
    ],
)
def test_load_checks_every_parameter(tmp_path, edit, match):
    tensors = good_tensors()
    edit(tensors)
    path = write_mfa_file(tmp_path / "bad.safetensors", tensors)
    with pytest.raises(ValueError, match=match) as err:
        MFA.load(path)
    assert path in str(err.value)


def test_load_refuses_an_isotropic_file_with_unequal_noise(tmp_path):
    path = write_mfa_file(tmp_path / "iso.safetensors", good_tensors(), isotropic="true")
    with pytest.raises(ValueError, match="isotropic, but the noise variances log_D differ") as err:
        MFA.load(path)
    assert path in str(err.value)


@pytest.mark.parametrize(
    ("metadata", "match"),
    [
        ({"history": "[1.0, "}, r"history='\[1.0, ' is not valid JSON"),
        ({"history": '{"a": 1}'}, "history=.* is not a list of numbers"),
        ({"isotropic": "maybe"}, "isotropic='maybe' is not valid JSON"),
        ({"isotropic": "1"}, "isotropic='1' is not true or false"),
        ({"n_components": "two"}, "n_components='two' is not an integer"),
        ({"dtype": "float16"}, "dtype='float16' is not one of float32, float64"),
        ({"latent_dim": None}, "latent_dim missing"),
        ({"latent_dim": "4"}, r"describe no valid MFA \(latent_dim=4 must be smaller than dim=4"),
        ({"dim": "5"}, r"mu has shape \[2, 4\] but the metadata .*dim=5"),
    ],
)
def test_load_names_the_file_of_bad_metadata(tmp_path, metadata, match):
    path = write_mfa_file(tmp_path / "meta.safetensors", good_tensors(), **metadata)
    with pytest.raises(ValueError, match=match) as err:
        MFA.load(path)
    assert path in str(err.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"",
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw[:7],
        lambda raw: b"not a safetensors file at all, just text\n" * 10,
        lambda raw: b"\xff" * 64,
    ],
    ids=["empty", "truncated", "cut-in-header", "text", "garbage"],
)
def test_load_of_a_damaged_file_names_it(tmp_path, damage):
    path = MFA(2, 4, 1).save(tmp_path / "model.safetensors")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=r"cannot read the MFA file .*empty, truncated or not a safetensors"):
        MFA.load(path)
    with pytest.raises(ValueError) as err:
        MFA.load(path)
    assert str(path) in str(err.value)


def test_load_rejects_a_file_with_nan_parameters(tmp_path):
    model = random_mfa(K=2, d=6, l=1, isotropic=False, seed=12)
    model.mu[1, 3] = float("nan")
    path = model.save(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="NaN or inf values in mu"):
        MFA.load(path)


# ---------------------------------------------------------------------------- k-means initialisation
def matched_accuracy(labels: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of points whose cluster maps to their planted component under the best one-to-one matching."""
    table = np.zeros((k, k))
    np.add.at(table, (labels, truth), 1)
    rows, cols = linear_sum_assignment(-table)
    return table[rows, cols].sum() / len(truth)


def test_kmeans_is_deterministic_for_a_seed():
    x = torch.randn(600, 80, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    runs = [mfa_init.kmeans(x, 6, seed=s) for s in (1, 1, 2)]
    assert torch.equal(runs[0].centres, runs[1].centres) and torch.equal(runs[0].labels, runs[1].labels)
    assert runs[0].inertia == runs[1].inertia
    assert not torch.equal(runs[0].labels, runs[2].labels)  # a structureless blob: the seed matters
    _, planted = planted_data(False, n=1500)
    fits = [MFA(3, 12, 2).fit(planted, n_iter=2, init="kmeans", seed=3, progress=False) for _ in range(2)]
    for name, value in fits[0].state_dict().items():
        assert torch.equal(value, fits[1].state_dict()[name]), name


def test_kmeans_recovers_twenty_planted_components_at_least_as_well_as_sklearn():
    """Twenty components of a planted MFA: all found with the default ten restarts, for three seeds, at a
    sum of squares no larger than that of scikit-learn's three restarts on every point."""
    from sklearn.cluster import KMeans

    truth = random_mfa(K=20, d=300, l=4, isotropic=False, seed=7)
    x, component = truth.sample(4000, generator=torch.Generator().manual_seed(8))
    reference = KMeans(n_clusters=20, n_init=3, random_state=0).fit(x.numpy())
    centres = torch.stack([x[component == k].mean(0) for k in range(20)])
    planted = (x - centres[component]).square().sum().item()  # the planted partition's sum of squares
    for seed in range(3):
        ours = mfa_init.kmeans(x, 20, seed=seed)
        assert matched_accuracy(ours.labels.numpy(), component.numpy(), 20) == 1.0
        assert ours.inertia == pytest.approx(planted, rel=1e-9)
        assert ours.inertia <= reference.inertia_ * (1 + 1e-9)
    # three restarts in the sketch merge two components for seed 0, as scikit-learn's three do
    three = mfa_init.kmeans(x, 20, n_init=3, seed=0)
    assert matched_accuracy(three.labels.numpy(), component.numpy(), 20) < 1.0


def test_kmeans_init_of_a_planted_mfa_matches_the_sklearn_init():
    """On three separated components (d = 12: the PCA per cluster is exact) both inits find the same
    clusters and so the same start; from it EM reaches the same likelihood, above the truth's."""
    truth, x = planted_data(False)
    ours = MFA(3, 12, 2).fit(x, n_iter=0, init="kmeans", seed=0, progress=False)
    reference = MFA(3, 12, 2).fit(x, n_iter=0, init="sklearn-kmeans", seed=0, progress=False)
    _, match = linear_sum_assignment(torch.cdist(reference.mu, ours.mu).numpy())
    torch.testing.assert_close(ours.mu[match], reference.mu, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.log_D[match], reference.log_D, rtol=0, atol=1e-10)
    torch.testing.assert_close(ours.log_pi[match], reference.log_pi, rtol=0, atol=1e-12)
    for j, k in enumerate(match):  # loadings up to the sign of each PCA direction
        torch.testing.assert_close(
            ours.A[k] @ ours.A[k].T, reference.A[j] @ reference.A[j].T, rtol=0, atol=1e-9
        )
    assert ours.history_[0] == pytest.approx(reference.history_[0], rel=1e-12)
    ours.fit(x, n_iter=10, init="current", progress=False)
    reference.fit(x, n_iter=10, init="current", progress=False)
    assert ours.history_[-1] == pytest.approx(reference.history_[-1], rel=1e-9)
    assert ours.history_[-1] > truth.log_prob(x).mean().item()


def test_kmeans_init_finds_each_cluster_subspace_in_high_dimension():
    """d = 2000 > the 64 sketched directions: the per-cluster PCA from the sketch still finds each
    planted subspace (angles to the truth's loadings) and every component's own points."""
    truth = random_mfa(K=4, d=2000, l=3, isotropic=False, seed=11, noise=(0.01, 0.02))
    x, component = truth.sample(2000, generator=torch.Generator().manual_seed(12))
    model = MFA(4, 2000, 3).fit(x, n_iter=0, seed=0, progress=False)
    labels = model.responsibilities(x).argmax(1)
    assert matched_accuracy(labels.numpy(), component.numpy(), 4) == 1.0
    _, match = linear_sum_assignment(torch.cdist(truth.mu, model.mu).numpy())
    for k, j in enumerate(match):
        assert subspace_angles(truth.A[k].numpy(), model.A[j].numpy()).max() < 0.02


def test_cluster_pca_equals_the_exact_pca_per_cluster():
    _, x = planted_data(False, n=900)
    labels = torch.arange(900) % 3
    mean, variance, eigval, directions, counts = mfa_init._cluster_pcas(x, labels, 3, 2, x - x.mean(0), 7)
    assert counts.tolist() == [300.0, 300.0, 300.0]
    for k in range(3):
        points = x[labels == k].numpy()
        values, vectors = np.linalg.eigh(np.cov(points, rowvar=False))
        np.testing.assert_allclose(mean[k], points.mean(0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(variance[k], points.var(0, ddof=1), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(eigval[k], values[::-1][:2], rtol=1e-9)
        overlap = np.abs(directions[k].numpy() @ vectors[:, ::-1][:, :2])  # unit vectors, up to sign
        np.testing.assert_allclose(overlap, np.eye(2), atol=1e-8)


def test_init_subset_equals_the_drawn_rows_and_checks_data_that_may_change():
    x = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    rows = np.sort(np.random.default_rng(3).choice(50, size=20, replace=False))
    chunks = list(x.split(16))  # chunks taken in part and whole
    for data in (x, x.numpy(), chunks, lambda: iter(chunks)):
        subset = mfa_module._Data(data, 6, 16, torch.float64, torch.device("cpu")).subset(20, seed=3)
        assert subset.dtype == torch.float64 and torch.equal(subset, x[rows].double())
    # a callable may give other data on another pass: fewer rows, or NaN where the first pass had none
    for second, match in (
        (chunks[:-1], "48 rows on a second pass, 50 on the first"),
        (
            [*chunks[:-1], torch.full((2, 6), float("nan"))],
            "NaN or inf",
        ),
    ):
        passes = iter([chunks, second])
        data = mfa_module._Data(
            lambda passes=passes: iter(next(passes)), 6, 16, torch.float64, torch.device("cpu")
        )
        with pytest.raises(ValueError, match=match):
            data.subset(50, seed=3)


def test_lloyd_reseeds_an_empty_cluster_at_the_farthest_point():
    _, x = planted_data(False, n=600)
    far = torch.full((1, 12), 1e3, dtype=torch.float64)
    start = torch.cat([x[:2], far])[None]  # [1, 3, d]: nothing is nearest to the third centre
    centres, labels, dist, _ = mfa_init._lloyd(x, mfa_init._square_norms(x), start, 50, 0.0)
    assert torch.isfinite(centres).all() and torch.isfinite(dist).all()
    assert torch.bincount(labels[0], minlength=3).min() > 0
    assert (centres[0, 2] - far[0]).norm() > 100  # it left the empty spot


def test_kmeans_with_fewer_distinct_points_than_clusters_gives_no_nan():
    rows = torch.randn(3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = rows.repeat(10, 1)  # three distinct points, five clusters: two stay empty
    result = mfa_init.kmeans(x, 5, seed=0)
    assert torch.isfinite(result.centres).all()
    assert result.inertia == pytest.approx(0.0, abs=1e-9)
    assert set(result.labels.tolist()) <= set(range(5))
    with pytest.warns(RuntimeWarning, match="collapsed"):  # EM then re-seeds the two empty components
        model = MFA(5, 40, 2).fit(x, n_iter=2, seed=0, progress=False)
    assert all(math.isfinite(v) for v in model.history_)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: mfa_init.kmeans(x[0], 2), r"x must be 2-D \[m, d\], got shape \(8,\)"),
        (lambda x: mfa_init.kmeans(x, 0), "n_clusters must be an integer >= 1, got 0"),
        (lambda x: mfa_init.kmeans(x, True), "n_clusters must be an integer >= 1, got True"),
        (lambda x: mfa_init.kmeans(x, 21), "n_clusters=21 exceeds the number of points m=20"),
        (lambda x: mfa_init.kmeans(x, 2, n_init=0), "n_init must be an integer >= 1, got 0"),
        (lambda x: mfa_init.kmeans(x, 2, sketch_dim=2.5), "sketch_dim must be an integer >= 1, got 2.5"),
        (lambda x: mfa_init.kmeans(x, 2, max_iter=-1), "max_iter must be an integer >= 0, got -1"),
        (lambda x: mfa_init.kmeans(x, 2, refine_iter=-1), "refine_iter must be an integer >= 0"),
        (lambda x: mfa_init.kmeans(x, 2, tol=-1e-3), "tol must be a number >= 0, got -0.001"),
        (lambda x: mfa_init.kmeans(x, 2, tol=float("nan")), "tol must be a number >= 0, got nan"),
        (lambda x: mfa_init.kmeans(x.index_fill(0, torch.tensor([3]), float("nan")), 2), "NaN or inf"),
    ],
)
def test_kmeans_refuses_bad_arguments(call, match):
    x = torch.randn(20, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match=match):
        call(x)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MFA(2, 5, 5), "latent_dim=5 must be smaller than dim=5"),
        (lambda: MFA(0, 5, 2), "n_components must be an integer >= 1"),
        (lambda: MFA(2, 5, 2, dtype=torch.float16), "unsupported dtype"),
        (lambda: MFA(2, 5, 2, device="gpu"), "unknown device 'gpu'"),
        (lambda: MFA(2, 5, 2).covariance(2), "out of range"),
        (lambda: MFA(2, 5, 2).log_prob(torch.zeros(3, 4)), r"shape \[n, 5\]"),
        (lambda: MFA(2, 5, 2).log_prob(torch.zeros(5)), r"shape \[n, 5\]"),
        (lambda: MFA(2, 5, 2).log_prob(torch.full((1, 5), float("nan"))), "NaN"),
        (lambda: MFA(2, 5, 2).fit(torch.zeros(10, 4), progress=False), r"expected \[c, 5\]"),
        (lambda: MFA(2, 5, 2).fit(torch.full((10, 5), float("nan")), progress=False), "NaN"),
        (lambda: MFA(20, 5, 2).fit(torch.randn(10, 5), progress=False), "n_components=20 exceeds"),
        (
            lambda: MFA(2, 5, 2).fit(torch.randn(10, 5), init="pca", progress=False),
            "unknown init 'pca': valid choices are 'kmeans', 'sklearn-kmeans', 'random', 'current'",
        ),
        (lambda: MFA(2, 5, 2).fit(torch.randn(10, 5), min_variance=0, progress=False), "min_variance"),
        (lambda: MFA(2, 5, 2).fit("data.npy", progress=False), "got str"),
        (lambda: MFA.from_parameters(torch.zeros(2, 3), torch.zeros(2, 3, 1), -torch.ones(2, 3)), "positive"),
        (
            lambda: MFA.from_parameters(
                torch.full((2, 3), float("nan")), torch.zeros(2, 3, 1), torch.ones(2, 3)
            ),
            "mu contains NaN",
        ),
        (
            lambda: MFA.from_parameters(
                torch.zeros(2, 3), torch.full((2, 3, 1), float("inf")), torch.ones(2, 3)
            ),
            "A contains NaN or inf",
        ),
    ],
)
def test_bad_input_raises_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
