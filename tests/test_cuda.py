"""The same numbers on a CUDA GPU as on the CPU: attacks, SVM kernels and CNN training (skipped without one).

The paper profile is meant for a GPU, so the code paths it takes there (models moved to ``cuda``, Gram
matrices computed on the GPU, foolbox batches of ``CUDA_BATCH_SIZE``) are checked against the CPU results
the rest of the suite pins down.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.science.attacks import L2ComponentGradientAttack, run_attacks, run_foolbox_attack
from nbhelpers.science.models import CNN, RBFSVM, LinearSVM, accuracy, fit_classifier, kernel_matrix
from tests.test_attacks import BELOW_TOL, unequal_pair
from tests.test_models import blobs, stripes

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# The attack iterations these tests were sized for (CW's steps are overridden to 100 below).
QUICK = get_profile("quick").attacks.budget


def test_gradient_attack_on_cuda_matches_cpu():
    model, x, y, exact = unequal_pair()
    on_cpu = L2ComponentGradientAttack()(model, x, y)
    on_gpu = L2ComponentGradientAttack()(copy.deepcopy(model).to("cuda"), x.cuda(), y.cuda())
    assert on_gpu.x_adv.device.type == "cuda"
    assert on_gpu.success.all() and on_cpu.success.all()
    # float64 on both: the same steps, up to the last bisection halving (0.05 / 2**12)
    torch.testing.assert_close(on_gpu.l2.cpu(), on_cpu.l2, rtol=0, atol=2e-5)
    assert (on_gpu.l2.cpu() / exact).min() > 1 - BELOW_TOL


def test_kernel_matrix_and_rbf_svm_on_cuda_match_cpu():
    x, y = blobs(300, 40, seed=1)
    x_test, _ = blobs(60, 40, seed=2)
    for kernel, gamma in (("rbf", 0.05), ("linear", None)):
        np.testing.assert_allclose(
            kernel_matrix(x, x, kernel, gamma, device="cuda"),
            kernel_matrix(x, x, kernel, gamma, device="cpu"),
            rtol=0,
            atol=1e-12,
        )
    for cls, kwargs in ((RBFSVM, {"gamma": 0.05}), (LinearSVM, {})):
        on_cpu = cls(**kwargs, precomputed=True, device="cpu").fit(x, y)
        on_gpu = cls(**kwargs, precomputed=True, device="cuda").fit(x, y)
        np.testing.assert_array_equal(on_gpu.support_, on_cpu.support_)
        expected = on_cpu.decision_function(x_test)
        np.testing.assert_allclose(on_gpu.decision_function(x_test), expected, atol=1e-9)
        module = on_gpu.to_torch().to("cuda")
        f = module.decision_function(torch.from_numpy(x_test).double().cuda())
        np.testing.assert_allclose(f.cpu().numpy(), expected, atol=1e-6)


@pytest.fixture(scope="module")
def cuda_cnn() -> tuple[CNN, torch.Tensor, torch.Tensor]:
    """A CNN trained on the GPU on stripe images, and 64 test images [64, 256] with their labels."""
    x, y = stripes(512, seed=0)
    x_test, y_test = stripes(64, seed=1)
    model = CNN((1, 16, 16), 8, 4, seed=0)
    model = fit_classifier(model, x, y, epochs=6, batch_size=32, lr=3e-3, seed=0, device="cuda")
    return model, torch.from_numpy(x_test), torch.from_numpy(y_test)


def test_cnn_trains_on_cuda(cuda_cnn):
    model, x_test, y_test = cuda_cnn
    assert next(model.parameters()).device.type == "cuda"
    assert model.history_["loss"][-1] < 0.5 * model.history_["loss"][0]
    assert accuracy(model, x_test, y_test, device="cuda") > 0.95


def test_foolbox_cw_on_cuda_matches_cpu(cuda_cnn):
    model, x_test, y_test = cuda_cnn
    on_gpu = run_foolbox_attack(model, x_test, y_test, "cw", budget=QUICK, steps=100, device="cuda")
    on_cpu = run_foolbox_attack(
        copy.deepcopy(model).cpu(), x_test, y_test, "cw", budget=QUICK, steps=100, device="cpu"
    )
    assert on_gpu.x_adv.device == x_test.device  # results come back where the inputs live
    assert on_gpu.success.float().mean() > 0.9 and on_cpu.success.float().mean() > 0.9
    # float32 convolutions differ in the last bits between cuDNN and the CPU, which can tip CW's binary
    # search on a borderline sample: nearly every sample agrees closely, and the mean very closely
    # (on an H100 every sample agreed in success and within 2% in L2)
    assert int((on_gpu.success != on_cpu.success).sum()) <= 1
    ok = on_gpu.success & on_cpu.success
    ratio = (on_gpu.l2[ok] / on_cpu.l2[ok]).numpy()
    assert np.mean(np.abs(ratio - 1) < 0.02) >= 0.9 and np.abs(ratio - 1).max() < 0.1
    assert abs(float(on_gpu.l2[ok].mean() / on_cpu.l2[ok].mean()) - 1) < 0.005


def test_run_attacks_on_cuda_agrees_with_cw(cuda_cnn):
    model, x_test, y_test = cuda_cnn
    result = run_attacks(model, x_test, y_test, ["fmn"], budget=QUICK, device="cuda", progress=False)
    assert result.x_adv.device.type == "cpu" and result.success.float().mean() > 0.9
    l2 = result.per_attack_l2["fmn"][result.success]
    assert torch.isfinite(l2).all() and (l2 > 0).all()
    # the minimum-norm attack's L2 agrees with the CW one on the same model within a few percent
    cw = run_foolbox_attack(model, x_test, y_test, "cw", budget=QUICK, steps=100, device="cuda")
    both = result.success & cw.success
    assert abs(float(result.l2[both].mean() / cw.l2[both].mean()) - 1) < 0.1


def test_fresh_samples_are_drawn_on_the_gpu_and_the_pair_stays_on_the_cpu():
    from nbhelpers.science.datasets import fresh_sampler
    from tests.test_experiments import tiny_pair

    pair = tiny_pair()
    sampler = fresh_sampler(pair, "cuda")
    x, y = sampler(4000, torch.Generator().manual_seed(0))
    assert x.device.type == "cuda" and y.device.type == "cuda" and x.dtype == torch.float32
    assert pair[0].device.type == "cpu"
    again, _ = sampler(4000, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)  # the same seed, the same samples on the same GPU
    for label, mfa in enumerate(pair):
        assert (x[y == label].mean(0).cpu() - mfa.mu[0].float()).abs().max() < 0.01
