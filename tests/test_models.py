"""The learned classifiers: SVM torch modules against scikit-learn, CNN training, TRADES, input checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.exceptions import NotFittedError
from sklearn.svm import SVC
from sklearn.utils.estimator_checks import check_estimator

from nbhelpers.science.data.files import SAMPLE_DIR
from nbhelpers.science.data.tasks import load_task
from nbhelpers.science.models import (
    CNN,
    RBFSVM,
    LinearSVM,
    LinearSVMModule,
    RBFSVMModule,
    accuracy,
    fit_classifier,
    fit_trades,
    kernel_matrix,
    pgd_kl_l2,
    search_gamma,
    squared_distances,
)

# --------------------------------------------------------------------------------------------------
# Small data sets
# --------------------------------------------------------------------------------------------------


def blobs(n: int, d: int, seed: int, shift: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping classes in [0, 1]^d: float32 [n, d], labels int64 [n]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    x = 0.5 + 0.12 * rng.standard_normal((n, d))
    x[:, : d // 4] += np.where(y[:, None] == 1, shift, -shift)
    return np.clip(x, 0, 1).astype(np.float32), y.astype(np.int64)


def ring(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A non-linear task in [0, 1]^2: class 1 inside a circle, class 0 in an annulus around it."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    radius = np.where(y == 1, rng.uniform(0.0, 0.2, n), rng.uniform(0.3, 0.45, n))
    angle = rng.uniform(0, 2 * np.pi, n)
    x = 0.5 + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return x.astype(np.float32), y.astype(np.int64)


def stripes(n: int, seed: int, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Images 1 x side x side flattened to [n, side^2]: horizontal (0) or vertical (1) stripes + noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    period = torch.randint(3, 6, (n, 1, 1), generator=g).float()
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    coords = torch.arange(side).float()
    rows = coords.view(1, side, 1).expand(n, side, side)
    cols = coords.view(1, 1, side).expand(n, side, side)
    along = torch.where(y.view(n, 1, 1) == 1, cols, rows)
    img = (
        0.5
        + 0.3 * torch.sin(2 * math.pi * along / period + phase)
        + 0.1 * torch.randn(n, side, side, generator=g)
    )
    return img.clamp(0, 1).reshape(n, -1).numpy(), y.numpy()


@pytest.fixture(scope="module")
def svm_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, y = blobs(240, 40, seed=1)
    x_test, _ = blobs(60, 40, seed=2)
    return x, y, x_test


def sklearn_decision(model: LinearSVM | RBFSVM, x_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """scikit-learn's own decision function of the fitted SVC (built-in kernel or precomputed Gram)."""
    if model.precomputed_:
        gram = kernel_matrix(x_test, x_train, model._kernel, model.gamma_, device="cpu")
        return model.svc_.decision_function(gram)
    return model.svc_.decision_function(x_test.astype(np.float64))


# --------------------------------------------------------------------------------------------------
# SVMs
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("precomputed", [False, True])
@pytest.mark.parametrize(
    "make",
    [lambda p: LinearSVM(precomputed=p, device="cpu"), lambda p: RBFSVM(0.05, precomputed=p, device="cpu")],
    ids=["linear", "rbf"],
)
def test_svm_torch_module_matches_sklearn(svm_data, make, precomputed):
    x, y, x_test = svm_data
    model = make(precomputed).fit(x, y)
    assert model.precomputed_ is precomputed
    assert 0 < model.support_.shape[0] < x.shape[0]
    reference = sklearn_decision(model, x, x_test)
    module = model.to_torch()
    f = module.decision_function(torch.from_numpy(x_test)).numpy()
    np.testing.assert_allclose(f, reference, rtol=0, atol=1e-5)
    logits = module(torch.from_numpy(x_test).double())
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).numpy(), reference, rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits.sum(1).numpy(), 0.0, atol=1e-12)
    # The estimator's own predictions follow the sign of the decision function, like sklearn's.
    np.testing.assert_array_equal(model.predict(x_test), (reference > 0).astype(int))
    assert model.score(x, y) > 0.85


@pytest.mark.parametrize("cls,kwargs", [(LinearSVM, {}), (RBFSVM, {"gamma": 0.05})], ids=["linear", "rbf"])
def test_precomputed_gram_svc_equals_builtin_kernel_svc(svm_data, cls, kwargs):
    x, y, x_test = svm_data
    builtin = cls(**kwargs, precomputed=False, device="cpu").fit(x, y)
    gram = cls(**kwargs, precomputed=True, device="cpu").fit(x, y)
    np.testing.assert_array_equal(gram.support_, builtin.support_)
    np.testing.assert_allclose(gram.dual_coef_, builtin.dual_coef_, atol=1e-6)
    np.testing.assert_allclose(
        gram.decision_function(x_test), builtin.svc_.decision_function(x_test.astype(np.float64)), atol=1e-5
    )


def test_linear_svm_weight_vector_equals_sklearn_coef(svm_data):
    x, y, _ = svm_data
    model = LinearSVM(precomputed=True, device="cpu").fit(x, y)
    reference = LinearSVM(precomputed=False, device="cpu").fit(x, y).svc_.coef_[0]
    np.testing.assert_allclose(model.coef_, reference, atol=1e-6)


def test_rbf_gamma_scale_matches_sklearn_default(svm_data):
    x, y, x_test = svm_data
    model = RBFSVM(precomputed=False, device="cpu").fit(x, y)  # gamma="scale" is the default
    assert model.gamma_ == pytest.approx(1.0 / (x.shape[1] * x.astype(np.float64).var()))
    np.testing.assert_allclose(model.svc_._gamma, model.gamma_)
    np.testing.assert_allclose(model.decision_function(x_test), sklearn_decision(model, x, x_test), atol=1e-5)


def test_kernel_matrices_match_direct_formulas():
    rng = np.random.default_rng(0)
    a, b = rng.random((7, 5)), rng.random((4, 5))
    direct = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(squared_distances(a, b, device="cpu", chunk_size=3), direct, atol=1e-12)
    np.testing.assert_allclose(
        kernel_matrix(a, b, "rbf", 0.7, device="cpu", chunk_size=2), np.exp(-0.7 * direct)
    )
    np.testing.assert_allclose(kernel_matrix(a, b, "linear", device="cpu"), a @ b.T)
    # K(a, a) takes the half-matrix path: the same numbers, and exactly symmetric for libsvm.
    self_direct = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    for chunk in (1, 3, 7, 50):
        gram = kernel_matrix(a, a, "rbf", 0.7, device="cpu", chunk_size=chunk)
        np.testing.assert_allclose(gram, np.exp(-0.7 * self_direct), atol=1e-12)
        np.testing.assert_array_equal(gram, gram.T)


@pytest.mark.parametrize("cls,kwargs", [(LinearSVM, {}), (RBFSVM, {"gamma": 2.0})], ids=["linear", "rbf"])
def test_gradients_flow_through_svm_modules(cls, kwargs):
    x, y = ring(80, seed=3)
    module = cls(**kwargs, device="cpu").fit(x, y).to_torch()
    x_test = torch.from_numpy(ring(5, seed=4)[0]).double().requires_grad_(True)
    # Finite differences against autograd, on logits and on the decision function.
    assert torch.autograd.gradcheck(module, (x_test,), eps=1e-6, atol=1e-6)
    f = module.decision_function(x_test)
    (grad,) = torch.autograd.grad(f.sum(), x_test)
    assert grad.abs().sum() > 0


def test_svm_module_accepts_images_and_rejects_wrong_width(svm_data):
    x, y, x_test = svm_data
    module = RBFSVM(0.05, device="cpu").fit(x, y).to_torch()
    flat = module(torch.from_numpy(x_test))
    images = module(torch.from_numpy(x_test).reshape(-1, 1, 5, 8))
    assert flat.dtype == torch.float32 and flat.shape == (x_test.shape[0], 2)
    torch.testing.assert_close(images, flat)
    with pytest.raises(ValueError, match=r"\[n, 40\]"):
        module(torch.zeros(3, 41))


def test_rbf_svm_learns_nonlinear_task_and_linear_does_not():
    x, y = ring(300, seed=5)
    x_test, y_test = ring(200, seed=6)
    assert RBFSVM(10.0, device="cpu").fit(x, y).score(x_test, y_test) > 0.95
    assert LinearSVM(device="cpu").fit(x, y).score(x_test, y_test) < 0.75


def test_search_gamma_picks_largest_gamma_that_keeps_accuracy():
    x, y = ring(200, seed=7)
    x_val, y_val = ring(200, seed=8)
    gammas = [1e4, 1.0, 10.0, 1e3]
    best, table = search_gamma(x, y, x_val, y_val, gammas, min_accuracy=0.95, device="cpu")
    assert [row["gamma"] for row in table] == sorted(gammas)
    by_gamma = {row["gamma"]: row for row in table}
    # A huge bandwidth memorises the training set (train 100%) but misclassifies unseen points.
    assert by_gamma[1e4]["train_accuracy"] == 1.0 and by_gamma[1e4]["val_accuracy"] < 0.95
    assert by_gamma[best]["val_accuracy"] >= 0.95 and by_gamma[best]["selected"]
    assert all(row["val_accuracy"] < 0.95 for row in table if row["gamma"] > best)
    assert sum(row["selected"] for row in table) == 1
    # The table's numbers are those of an RBFSVM fitted with that gamma.
    refit = RBFSVM(best, precomputed=False, device="cpu").fit(x, y)
    assert refit.score(x_val, y_val) == pytest.approx(by_gamma[best]["val_accuracy"])
    assert refit.support_.shape[0] == by_gamma[best]["n_support"]


def test_search_gamma_gives_the_same_table_in_parallel():
    x, y = ring(200, seed=7)
    x_val, y_val = ring(200, seed=8)
    gammas = [1e4, 1.0, 10.0, 1e3]
    serial = search_gamma(x, y, x_val, y_val, gammas, min_accuracy=0.95, device="cpu", n_jobs=1)
    threaded = search_gamma(x, y, x_val, y_val, gammas, min_accuracy=0.95, device="cpu", n_jobs=3)
    assert threaded == serial and [row["gamma"] for row in threaded[1]] == sorted(gammas)
    with pytest.raises(ValueError, match="n_jobs must be a positive integer or None"):
        search_gamma(x, y, x_val, y_val, gammas, device="cpu", n_jobs=0)


def test_gamma_workers_are_bounded_by_gammas_cores_and_memory(monkeypatch):
    import nbhelpers.science.models.svm as svm

    monkeypatch.setattr(svm.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(svm, "_available_memory", lambda: 64 * 2**30)
    assert svm.gamma_workers(1000, 250, 5) == 5  # 10 MB per gamma: all five at once
    # 16,000 + 4,000 faces: 2.56 GB per gamma, 32 GiB usable -> 13, capped by the 5 gammas
    assert svm.gamma_workers(16000, 4000, 5) == 5
    monkeypatch.setattr(svm, "_available_memory", lambda: 8 * 2**30)  # 4 GiB usable: one at a time
    assert svm.gamma_workers(16000, 4000, 5) == 1
    monkeypatch.setattr(svm.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(svm, "_available_memory", lambda: None)  # unknown memory: cores decide
    assert svm.gamma_workers(1000, 250, 5) == 2
    assert svm.gamma_workers(16000, 4000, 5, n_jobs=4) == 4  # asked for: the caller's choice
    assert svm.gamma_workers(10, 5, 3, n_jobs=8) == 3


def test_search_gamma_warns_and_falls_back_when_no_gamma_is_accurate():
    rng = np.random.default_rng(9)
    x, x_val = rng.random((80, 3)).astype(np.float32), rng.random((80, 3)).astype(np.float32)
    y, y_val = rng.integers(0, 2, 80), rng.integers(0, 2, 80)  # labels are noise: nothing generalises
    with pytest.warns(UserWarning, match="no gamma reached"):
        best, table = search_gamma(x, y, x_val, y_val, [0.1, 1.0, 10.0], min_accuracy=0.99, device="cpu")
    assert best == max(table, key=lambda r: (r["val_accuracy"], -r["gamma"]))["gamma"]


def test_auto_mode_switches_to_the_gram_path_for_larger_sets(svm_data, monkeypatch):
    import nbhelpers.science.models.svm as svm

    x, y, _ = svm_data
    monkeypatch.setattr(svm, "AUTO_MIN_SAMPLES", 200)
    assert RBFSVM(0.05, device="cpu").fit(x[:150], y[:150]).precomputed_ is False
    assert RBFSVM(0.05, device="cpu").fit(x, y).precomputed_ is True
    monkeypatch.setattr(svm, "AUTO_MAX_GRAM_BYTES", 8 * 200**2)  # the 240 x 240 Gram no longer fits
    assert RBFSVM(0.05, device="cpu").fit(x, y).precomputed_ is False


@pytest.mark.parametrize("bad", ["yes", "Auto", 1, None])
def test_unknown_precomputed_mode_lists_valid_modes(svm_data, bad):
    x, y, _ = svm_data
    rbf, linear = RBFSVM(1.0, precomputed=bad), LinearSVM(precomputed=bad)  # __init__ only stores it
    with pytest.raises(ValueError, match=r"unknown precomputed mode.*'auto', True, False"):
        rbf.fit(x, y)
    with pytest.raises(ValueError, match="unknown precomputed mode"):
        linear.fit(x, y)


def test_svm_input_errors(svm_data):
    x, y, _ = svm_data
    for bad in (-1.0, 0, True, float("nan"), float("inf"), "auto", None):
        model = RBFSVM(bad)
        assert model.gamma is bad  # stored as given: fit checks it
        with pytest.raises(ValueError, match="gamma must be a number > 0 or 'scale'"):
            model.fit(x, y)
    # a gamma from numpy (e.g. picked from an array of candidates) is a number like any other
    model = RBFSVM(np.float32(0.5), device="cpu").fit(x, y)
    assert model.gamma_ == pytest.approx(0.5) and isinstance(model.gamma_, float)
    bad_settings = [
        ({"C": 0.0}, "C must be a number > 0"),
        ({"C": "1"}, "C must be a number > 0"),
        ({"chunk_size": 0}, "chunk_size must be >= 1"),
        ({"chunk_size": 2.5}, "chunk_size must be an integer >= 1"),
        ({"cache_size": -1.0}, "cache_size must be a number of MB > 0"),
        ({"progress": "yes"}, "progress must be True or False"),
        ({"device": "gpu"}, "unknown device 'gpu': valid devices are"),
    ]
    for cls in (LinearSVM, RBFSVM):
        for settings, message in bad_settings:
            with pytest.raises(ValueError, match=message):
                cls(**settings).fit(x, y)
    with pytest.raises(ValueError, match="needs two classes in y, got 1 class"):
        LinearSVM(device="cpu").fit(x, np.zeros_like(y))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        LinearSVM(device="cpu").fit(x, y + 0.5)


def legacy_svm_fit(
    x: np.ndarray, y: np.ndarray, kernel: str, gamma: float | str | None, precomputed: bool
) -> tuple[np.ndarray, np.ndarray, float, LinearSVMModule | RBFSVMModule]:
    """``LinearSVM`` / ``RBFSVM`` ``fit`` as it was before the estimators followed scikit-learn's
    conventions (commit f8d1e03), frozen here as the reference: libsvm on the float64 features, or on the
    torch Gram matrix, with the 0/1 labels as given. Returns (support_, dual_coef_, intercept_, module)."""
    x = x.reshape(x.shape[0], -1)
    if gamma == "scale":
        gamma = 1.0 / (x.shape[1] * float(x.astype(np.float64).var()))
    if precomputed:
        gram = kernel_matrix(x, x, kernel, gamma, device="cpu")
        svc = SVC(kernel="precomputed", C=1.0, cache_size=500.0).fit(gram, y)
    else:
        gamma_arg = {} if gamma is None else {"gamma": gamma}
        svc = SVC(kernel=kernel, C=1.0, cache_size=500.0, **gamma_arg).fit(x.astype(np.float64), y)
    sv, alpha, b = x[svc.support_], np.asarray(svc.dual_coef_[0], dtype=np.float64), float(svc.intercept_[0])
    if kernel == "linear":
        return svc.support_, alpha, b, LinearSVMModule(alpha @ sv.astype(np.float64), b)
    return svc.support_, alpha, b, RBFSVMModule(sv, alpha, b, gamma)


@pytest.mark.parametrize("precomputed", [False, True])
@pytest.mark.parametrize(
    "cls,kernel,gamma",
    [(LinearSVM, "linear", None), (RBFSVM, "rbf", 0.05), (RBFSVM, "rbf", "scale")],
    ids=["linear", "rbf", "rbf-scale"],
)
def test_svm_fits_exactly_as_before_the_sklearn_conventions(svm_data, cls, kernel, gamma, precomputed):
    x, y, x_test = svm_data  # fixed seeds; labels 0/1 as the book passes them
    support, alpha, b, reference = legacy_svm_fit(x, y, kernel, gamma, precomputed)
    args = () if gamma is None else (gamma,)
    model = cls(*args, precomputed=precomputed, device="cpu").fit(x, y)
    np.testing.assert_array_equal(model.support_, support)
    np.testing.assert_array_equal(model.dual_coef_, alpha)
    assert model.intercept_ == b
    assert model.support_vectors_.dtype == np.float32  # the data's dtype, as before
    f = reference.decision_function(torch.from_numpy(x_test)).numpy()
    np.testing.assert_array_equal(model.decision_function(x_test), f)
    predicted = model.predict(x_test)
    assert predicted.dtype == np.int64
    np.testing.assert_array_equal(predicted, (f > 0).astype(np.int64))
    # The torch module is the same module: same class, buffers (names, dtypes, values) and logits.
    module = model.to_torch()
    assert type(module) is type(reference)
    state, expected = module.state_dict(), reference.state_dict()
    assert list(state) == list(expected)
    for name, value in expected.items():
        assert state[name].dtype == value.dtype and torch.equal(state[name], value), name
    torch.testing.assert_close(
        module(torch.from_numpy(x_test)), reference(torch.from_numpy(x_test)), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    "estimator",
    [
        LinearSVM(device="cpu"),
        RBFSVM(device="cpu"),
        LinearSVM(precomputed=True, device="cpu"),
        RBFSVM(precomputed=True, device="cpu"),
    ],
    ids=["linear", "rbf", "linear-gram", "rbf-gram"],
)
def test_svms_pass_sklearn_check_estimator(estimator):
    # Every check must pass: none is marked as an expected failure. on_skip=None: the one check
    # skipped, check_array_api_input, needs SCIPY_ARRAY_API set and these estimators do not claim
    # array API support anyway. The precomputed=True variants put the torch Gram path through it too.
    check_estimator(estimator, on_skip=None, on_fail="raise")


def test_svm_defaults_follow_sklearn():
    common = {"C": 1.0, "precomputed": "auto", "device": "auto", "chunk_size": 1024, "cache_size": 500.0}
    assert LinearSVM().get_params() == {**common, "progress": False}
    assert RBFSVM().get_params() == {**common, "gamma": "scale", "progress": False}
    assert RBFSVM().gamma == SVC().gamma == "scale"
    # "scale" as sklearn's SVC resolves it, also for features without variance (gamma 1).
    x, y = np.full((6, 3), 0.5), np.array([0, 1] * 3)
    assert RBFSVM(device="cpu").fit(x, y).gamma_ == SVC().fit(x, y)._gamma == 1.0
    # __init__ stores its arguments as given, whatever they are (fit checks them).
    weird = RBFSVM(gamma=-1, C="x", precomputed="maybe", device="gpu", chunk_size=0, cache_size=None)
    assert weird.get_params()["gamma"] == -1 and weird.get_params()["device"] == "gpu"


@pytest.mark.parametrize("labels", [["cat", "dog"], [-1, 1], [3, 7], [False, True]], ids=str)
@pytest.mark.parametrize("cls,args", [(LinearSVM, ()), (RBFSVM, (0.05,))], ids=["linear", "rbf"])
def test_svms_take_any_two_labels(svm_data, cls, args, labels):
    x, y, x_test = svm_data
    named = np.array(labels)[y]  # 0 -> labels[0], 1 -> labels[1]
    model = cls(*args, device="cpu").fit(x, named)
    as_01 = cls(*args, device="cpu").fit(x, y)
    np.testing.assert_array_equal(model.classes_, np.array(labels))
    # The same SVM as with 0/1 labels: f > 0 means classes_[1], predict returns labels from classes_.
    f = model.decision_function(x_test)
    np.testing.assert_array_equal(f, as_01.decision_function(x_test))
    predicted = model.predict(x_test)
    assert predicted.dtype == model.classes_.dtype
    np.testing.assert_array_equal(predicted, np.where(f > 0, model.classes_[1], model.classes_[0]))
    assert model.score(x, named) == as_01.score(x, y)
    # The torch module's class index 1 is classes_[1].
    logits = model.to_torch()(torch.from_numpy(x_test))
    np.testing.assert_array_equal(model.classes_[logits.argmax(1).numpy()], predicted)
    # Labels in the other order, or unsorted in y, give the same sorted classes_ and the same f.
    flipped = cls(*args, device="cpu").fit(x, np.array(labels[::-1])[1 - y])
    np.testing.assert_array_equal(flipped.classes_, model.classes_)
    np.testing.assert_array_equal(flipped.decision_function(x_test), f)


@pytest.mark.parametrize("cls", [LinearSVM, RBFSVM])
def test_unfitted_svms_raise_not_fitted_error(svm_data, cls):
    _, _, x_test = svm_data
    model = cls(device="cpu")
    for method in (model.predict, model.decision_function):
        with pytest.raises(NotFittedError, match=f"This {cls.__name__} instance is not fitted yet"):
            method(x_test)
    with pytest.raises(NotFittedError):
        model.score(x_test, np.zeros(len(x_test)))
    with pytest.raises(NotFittedError):
        model.to_torch()


@pytest.mark.parametrize("cls", [LinearSVM, RBFSVM])
def test_svms_refuse_more_than_two_classes(svm_data, cls):
    x, y, _ = svm_data
    with pytest.raises(ValueError, match=r"Only binary classification is supported.*multiclass.*3 classes"):
        cls(device="cpu").fit(x, np.arange(len(y)) % 3)
    with pytest.raises(ValueError, match=r"Only binary.*4 classes"):
        cls(device="cpu").fit(x, np.array(["a", "b", "c", "d"])[np.arange(len(y)) % 4])
    assert cls().__sklearn_tags__().classifier_tags.multi_class is False


@pytest.mark.parametrize("cls,args", [(LinearSVM, ()), (RBFSVM, (0.05,))], ids=["linear", "rbf"])
def test_svms_take_images_and_check_the_number_of_features(svm_data, cls, args):
    x, y, x_test = svm_data
    images = cls(*args, device="cpu").fit(x.reshape(-1, 1, 5, 8), y)  # [n, C, H, W]: flattened
    flat = cls(*args, device="cpu").fit(x, y)
    assert images.n_features_in_ == flat.n_features_in_ == 40
    np.testing.assert_array_equal(images.dual_coef_, flat.dual_coef_)
    f = flat.decision_function(x_test)
    np.testing.assert_array_equal(images.decision_function(x_test.reshape(-1, 2, 4, 5)), f)
    np.testing.assert_array_equal(images.decision_function(torch.from_numpy(x_test)), f)  # tensors too
    np.testing.assert_array_equal(flat.predict(x_test.reshape(-1, 1, 5, 8)), flat.predict(x_test))
    with pytest.raises(ValueError, match=f"X has 41 features, but {cls.__name__} is expecting 40 features"):
        flat.predict(np.zeros((3, 41), dtype=np.float32))
    with pytest.raises(ValueError, match="X has 48 features"):
        flat.decision_function(np.zeros((3, 1, 6, 8), dtype=np.float32))
    assert flat.decision_function(np.zeros((0, 40), dtype=np.float32)).shape == (0,)


# --------------------------------------------------------------------------------------------------
# CNN and training
# --------------------------------------------------------------------------------------------------


def test_cnn_doubles_width_at_equally_spaced_strided_layers():
    model = CNN((3, 64, 64), width=8, depth=6)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 32, 32, 64]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert model.classifier.in_features == 64 * 8 * 8  # three halvings of 64
    # MNIST allows two halvings (28 -> 14 -> 7) before the maps get smaller than 4 pixels.
    mnist = CNN((1, 28, 28), width=4, depth=6)
    assert mnist.strided_layers == (2, 5) and mnist.classifier.in_features == 16 * 7 * 7
    assert mnist(torch.rand(5, 784)).shape == (5, 2)


def test_cnn_seed_fixes_initial_weights_without_touching_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b = CNN((1, 16, 16), 4, 2, seed=7), CNN((1, 16, 16), 4, 2, seed=7)
    assert torch.equal(torch.rand(1), before)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(CNN((1, 16, 16), 4, 2, seed=8).classifier.weight, a.classifier.weight)


def test_cnn_trains_to_high_accuracy_on_separable_images():
    x, y = stripes(256, seed=0)
    x_test, y_test = stripes(256, seed=1)
    model = CNN((1, 16, 16), width=8, depth=4, seed=0)
    model = fit_classifier(model, x, y, epochs=6, batch_size=32, lr=3e-3, seed=0, device="cpu")
    assert model.history_["epoch"] == list(range(1, 7))
    assert model.history_["n_examples"][-1] == 6 * 256
    assert model.history_["loss"][-1] < model.history_["loss"][0]
    assert accuracy(model, x, y, device="cpu") >= 0.98
    assert accuracy(model, x_test, y_test, device="cpu") >= 0.98


def test_training_is_reproducible_with_a_seed():
    x, y = stripes(64, seed=2)
    runs = [
        fit_classifier(CNN((1, 16, 16), 4, 2, seed=0), x, y, epochs=2, batch_size=16, seed=s, device="cpu")
        for s in (0, 0, 1)
    ]
    assert torch.equal(runs[0].classifier.weight, runs[1].classifier.weight)
    assert not torch.equal(runs[0].classifier.weight, runs[2].classifier.weight)


def test_mixed_precision_training_reaches_the_same_accuracy_on_real_digits():
    """The bfloat16 lever (issue: paper-profile throughput) on the bundled real digits 0 vs 6: the same
    accuracy as float32 training, float32 weights, and a loss that shows bfloat16 arithmetic was used."""
    task = load_task("mnist", "0_vs_6", data_dir=SAMPLE_DIR)
    fitted = {
        precision: fit_classifier(
            CNN((1, 28, 28), 8, 4, seed=0),
            task.x_train,
            task.y_train,
            epochs=3,
            batch_size=32,
            seed=0,
            device="cpu",
            precision=precision,
        )
        for precision in ("float32", "bfloat16")
    }
    full, mixed = fitted["float32"], fitted["bfloat16"]
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert mixed.history_["loss"] != full.history_["loss"]  # bfloat16 rounding changed the steps
    assert mixed.history_["loss"] == pytest.approx(full.history_["loss"], rel=0.05)
    test_accuracy = {p: accuracy(m, task.x_test, task.y_test, device="cpu") for p, m in fitted.items()}
    assert test_accuracy["float32"] >= 0.95
    assert abs(test_accuracy["bfloat16"] - test_accuracy["float32"]) <= 0.01
    # TRADES' inner attack runs under the same autocast
    x, y = stripes(64, seed=3)
    trades = fit_trades(CNN((1, 16, 16), 4, 2, seed=0), x, y, 1.0, epochs=2, batch_size=32, steps=2,
                        device="cpu", precision="bfloat16")  # fmt: skip
    assert trades.history_["loss"][-1] < trades.history_["loss"][0]


def test_fresh_sample_training_consumes_the_budget():
    seeds: list[int] = []
    drawn: list[int] = []

    def sampler(n: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n fresh stripes, a new seed from the training loop's generator at every step."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        seeds.append(seed)
        drawn.append(n)
        return stripes(n, seed=seed)

    model = CNN((1, 16, 16), 4, 2, seed=0)
    fit_classifier(model, sampler=sampler, n_examples=1001, epochs=3, batch_size=64, seed=0, device="cpu")
    # 1001 examples in 3 periods of 333, 334, 334: batches of 64 and a remainder each period.
    assert model.history_["n_examples"] == [333, 667, 1001]
    assert drawn == [64] * 5 + [13] + ([64] * 5 + [14]) * 2
    # Every step drew fresh examples: a new seed each time.
    assert len(set(seeds)) == len(seeds)


def test_training_input_errors():
    x, y = stripes(8, seed=0)
    model = CNN((1, 16, 16), 4, 2)
    opts = {"epochs": 1, "batch_size": 4, "device": "cpu"}
    with pytest.raises(ValueError, match="needs n_examples"):
        fit_classifier(model, sampler=lambda n, g: stripes(n, 0), **opts)
    with pytest.raises(ValueError, match="not both"):
        fit_classifier(model, x, y, sampler=lambda n, g: stripes(n, 0), n_examples=8, **opts)
    with pytest.raises(ValueError, match="a training set"):
        fit_classifier(model, **opts)
    with pytest.raises(ValueError, match="uint8"):
        fit_classifier(model, (x * 255).astype(np.uint8), y, **opts)
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        fit_classifier(model, x, y + 1, **opts)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        fit_classifier(model, x, y, epochs=1, batch_size=0, device="cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        fit_classifier(model, x, y, epochs=1, batch_size=4, device="gpu")
    with pytest.raises(ValueError, match="precision must be 'float32' or 'bfloat16'.*got 'fp16'"):
        fit_classifier(model, x, y, precision="fp16", **opts)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"width": 0}, "width must be an integer >= 1"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"depth": 2, "n_strided": 3}, "n_strided must be an integer in 0..depth=2"),
    ],
)
def test_cnn_rejects_bad_sizes(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CNN((1, 16, 16), **kwargs)


@pytest.mark.parametrize("shape", [(4, 255), (4, 2, 16, 16), (256,)])
def test_cnn_rejects_wrong_input_shape(shape):
    with pytest.raises(ValueError, match=r"\[n, 256\] or \[n, 1, 16, 16\]"):
        CNN((1, 16, 16), 4, 2)(torch.zeros(shape))


# --------------------------------------------------------------------------------------------------
# TRADES
# --------------------------------------------------------------------------------------------------


def test_trades_with_beta_zero_is_exactly_plain_training():
    x, y = stripes(96, seed=3)
    init = CNN((1, 16, 16), 4, 2, seed=0)
    opts = {"epochs": 2, "batch_size": 32, "seed": 5, "device": "cpu"}
    plain = fit_classifier(copy.deepcopy(init), x, y, **opts)
    trades0 = fit_trades(copy.deepcopy(init), x, y, 0.0, **opts)
    trades2 = fit_trades(copy.deepcopy(init), x, y, 2.0, eps=0.5, steps=3, **opts)
    for name, value in plain.state_dict().items():
        assert torch.equal(value, trades0.state_dict()[name]), name
    assert plain.history_ == trades0.history_
    assert not torch.equal(plain.classifier.weight, trades2.classifier.weight)


def test_pgd_kl_stays_in_the_ball_and_box_and_increases_the_kl():
    x, y = stripes(64, seed=4)
    model = fit_classifier(CNN((1, 16, 16), 4, 2, seed=0), x, y, epochs=2, batch_size=16, device="cpu")
    model.zero_grad(set_to_none=True)
    xb = torch.from_numpy(x[:16])
    g = torch.Generator().manual_seed(0)
    x_adv = pgd_kl_l2(model, xb, eps=0.5, steps=5, generator=g)
    dist = (x_adv - xb).flatten(1).norm(dim=1)
    assert float(dist.max()) <= 0.5 + 1e-5 and float(dist.min()) > 0.1
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    with torch.no_grad():
        p_clean = F.softmax(model(xb), 1)
        kl_adv = F.kl_div(F.log_softmax(model(x_adv), 1), p_clean, reduction="batchmean")
        noise = torch.randn(xb.shape, generator=g)
        x_rand = (xb + 0.5 * noise / noise.flatten(1).norm(dim=1, keepdim=True)).clamp(0, 1)
        kl_rand = F.kl_div(F.log_softmax(model(x_rand), 1), p_clean, reduction="batchmean")
    assert float(kl_adv) > 2 * float(kl_rand)
    assert all(param.grad is None for param in model.parameters())  # the attack leaves no gradients


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"beta": -1.0}, "beta must be a finite number >= 0"),
        ({"beta": float("nan")}, "beta must be a finite number >= 0"),
        ({"beta": 1.0, "eps": 0.0}, "eps .* must be > 0"),
        ({"beta": 1.0, "steps": 0}, "steps must be a positive integer"),
    ],
)
def test_trades_rejects_bad_parameters(kwargs, message):
    x, y = stripes(8, seed=0)
    with pytest.raises(ValueError, match=message):
        fit_trades(CNN((1, 16, 16), 4, 2), x, y, epochs=1, batch_size=4, device="cpu", **kwargs)
