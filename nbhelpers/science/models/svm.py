"""Linear and RBF support vector machines (paper appendices B.4 and B.5).

scikit-learn's libsvm ``SVC`` solves the dual problem; the decision function
f(x) = sum_i alpha_i K(sv_i, x) + b is then evaluated in torch (float64 inside) by the modules
returned by ``to_torch()``, so that gradient attacks and foolbox can attack the SVMs like any
network: logits = [-f(x) / 2, f(x) / 2].

libsvm evaluates kernels one pair at a time without BLAS, which dominates its fit time on
12288-pixel faces. The precomputed path computes the whole Gram matrix with one chunked torch
matrix product (on the GPU when present) and fits ``SVC(kernel="precomputed")``, which solves
the same problem (see ``bench/bench_svm.py``).
"""

from __future__ import annotations

import math
import numbers
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.svm import SVC
from sklearn.utils import Tags
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor, nn

from nbhelpers.core.device import resolve_device
from nbhelpers.core.progress import tqdm
from nbhelpers.science.models.training import ArrayLike, as_labelled_tensors

VALID_PRECOMPUTED = ("auto", True, False)
#: ``precomputed="auto"`` uses the Gram path from this many training samples on (on 1000 CelebA
#: faces it fits 5-7x faster than libsvm's own kernel on one CPU thread, bench/README.md)...
AUTO_MIN_SAMPLES = 1000
#: ...as long as the float64 Gram matrix [n, n] stays below this size.
AUTO_MAX_GRAM_BYTES = 8 * 2**30
#: Support vectors per block in the torch decision function: bounds a block to ~128 MiB of float64.
SV_BLOCK_ELEMENTS = 2**24


# --------------------------------------------------------------------------------------------------
# Kernel matrices in torch
# --------------------------------------------------------------------------------------------------


def squared_distances(
    a: ArrayLike,
    b: ArrayLike,
    *,
    device: str | torch.device = "auto",
    chunk_size: int = 1024,
    progress: bool = False,
) -> np.ndarray:
    """||a_i - b_j||^2 as float64 [n, m] for a [n, d], b [m, d], computed on ``device`` in row chunks."""
    return _pairwise(a, b, "sqdist", None, device, chunk_size, progress)


def kernel_matrix(
    a: ArrayLike,
    b: ArrayLike,
    kernel: str,
    gamma: float | None = None,
    *,
    device: str | torch.device = "auto",
    chunk_size: int = 1024,
    progress: bool = False,
) -> np.ndarray:
    """Kernel matrix float64 [n, m]: "linear" a_i . b_j or "rbf" exp(-gamma ||a_i - b_j||^2).

    Same formulas as libsvm (the RBF distance as |a|^2 + |b|^2 - 2 a.b), in float64.
    """
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"unknown kernel {kernel!r}: valid kernels are 'linear', 'rbf'")
    if kernel == "rbf" and not (gamma is not None and gamma > 0):
        raise ValueError(f"the rbf kernel needs gamma > 0, got {gamma!r}")
    return _pairwise(a, b, kernel, gamma, device, chunk_size, progress)


def _pairwise(
    a: ArrayLike,
    b: ArrayLike,
    op: str,
    gamma: float | None,
    device: str | torch.device,
    chunk_size: int,
    progress: bool,
) -> np.ndarray:
    device = resolve_device(device)
    # K(a, a) is symmetric: compute each row block against the columns from its own start only.
    symmetric = a is b
    a, b = _as_matrix(a, "a"), _as_matrix(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b need the same number of features, got {a.shape[1]} and {b.shape[1]}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    b64 = b.to(device=device, dtype=torch.float64)
    b_sq = (b64 * b64).sum(1)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float64)
    starts = range(0, a.shape[0], chunk_size)
    for start in tqdm(starts, desc=f"{op} Gram", disable=not progress, leave=False):
        stop = min(start + chunk_size, a.shape[0])
        first = start if symmetric else 0
        a64 = a[start:stop].to(device=device, dtype=torch.float64)
        block = a64 @ b64[first:].T
        if op != "linear":
            block = ((a64 * a64).sum(1)[:, None] + b_sq[None, first:] - 2.0 * block).clamp_min_(0.0)
            if op == "rbf":
                block = torch.exp(block.mul_(-gamma))
        block = block.cpu().numpy()
        if symmetric:
            # Mirror the block; its square part gets its upper triangle, so K is exactly symmetric.
            square = block[:, : stop - start]
            block[:, : stop - start] = np.triu(square) + np.triu(square, 1).T
            out[stop:, start:stop] = block[:, stop - start :].T
        out[start:stop, first:] = block
    return out


def _as_matrix(x: ArrayLike, what: str) -> Tensor:
    """x [n, d] or [n, C, H, W] as a float tensor [n, d] (dtype kept, not copied)."""
    x = torch.as_tensor(x)
    if not x.is_floating_point() or x.dim() < 2:
        raise ValueError(
            f"{what} must be a float array of shape [n, d] or [n, C, H, W], got {x.dtype} {list(x.shape)}"
        )
    return x.reshape(x.shape[0], -1)


# --------------------------------------------------------------------------------------------------
# Torch modules
# --------------------------------------------------------------------------------------------------


class _SVMModule(nn.Module):
    """An SVM decision function f as a 2-logit classifier: logits [n, 2] = [-f/2, f/2]."""

    n_features: int

    def decision_function(self, x: Tensor) -> Tensor:
        """f(x) as float64 [n]; positive means class 1."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits [n, 2] (dtype of x) for x [n, d] or [n, C, H, W] with C*H*W = d."""
        f = self.decision_function(x)
        logits = torch.stack([-f / 2, f / 2], dim=1)
        return logits.to(x.dtype if x.is_floating_point() else torch.float32)

    def _flat64(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x[0].numel() != self.n_features:
            raise ValueError(
                f"SVM expects x of shape [n, {self.n_features}] (or [n, C, H, W] with C*H*W = "
                f"{self.n_features}), got {list(x.shape)}: use the features the SVM was fitted on"
            )
        return x.reshape(x.shape[0], -1).double()


class LinearSVMModule(_SVMModule):
    """f(x) = w . x + b with w [d], b held as float64 buffers."""

    def __init__(self, coef: ArrayLike, intercept: float) -> None:
        super().__init__()
        self.register_buffer("coef", torch.as_tensor(coef, dtype=torch.float64).reshape(-1).clone())
        self.register_buffer("intercept", torch.tensor(float(intercept), dtype=torch.float64))
        self.n_features = self.coef.shape[0]

    def decision_function(self, x: Tensor) -> Tensor:
        return self._flat64(x) @ self.coef.double() + self.intercept.double()


class RBFSVMModule(_SVMModule):
    """f(x) = sum_i alpha_i exp(-gamma ||x - sv_i||^2) + b; ``gamma`` is a float64 scalar buffer.

    Support vectors [m, d] stay in their stored dtype (the data's float32) and are cast to float64
    one block at a time, so a 20k x 12288 model needs no 2 GB float64 copy.
    """

    def __init__(
        self, support_vectors: ArrayLike, dual_coef: ArrayLike, intercept: float, gamma: float
    ) -> None:
        super().__init__()
        sv = torch.as_tensor(support_vectors)
        sv = sv.reshape(sv.shape[0], -1).clone()
        alpha = torch.as_tensor(dual_coef, dtype=torch.float64).reshape(-1).clone()
        if alpha.shape[0] != sv.shape[0]:
            raise ValueError(f"{sv.shape[0]} support vectors but {alpha.shape[0]} dual coefficients")
        self.register_buffer("support_vectors", sv)
        self.register_buffer("sv_sq_norms", (sv.double() ** 2).sum(1))
        self.register_buffer("dual_coef", alpha)
        self.register_buffer("intercept", torch.tensor(float(intercept), dtype=torch.float64))
        # A buffer, not a float: it is part of the model's state_dict (and so of checkpoint keys).
        self.register_buffer("gamma", torch.tensor(float(gamma), dtype=torch.float64))
        self.n_features = sv.shape[1]
        self.block = max(1, SV_BLOCK_ELEMENTS // max(1, self.n_features))

    def decision_function(self, x: Tensor) -> Tensor:
        x64 = self._flat64(x)
        x_sq = (x64 * x64).sum(1)
        f = self.intercept.double().expand(x64.shape[0])
        for s in range(0, self.support_vectors.shape[0], self.block):
            sv = self.support_vectors[s : s + self.block].double()
            d2 = x_sq[:, None] + self.sv_sq_norms[None, s : s + self.block].double() - 2.0 * x64 @ sv.T
            kernel = torch.exp(-self.gamma.double() * d2.clamp_min(0.0))
            f = f + kernel @ self.dual_coef[s : s + self.block].double()
        return f


# --------------------------------------------------------------------------------------------------
# scikit-learn estimators
# --------------------------------------------------------------------------------------------------


def _as_features(x: object) -> object:
    """What ``validate_data`` gets: a torch tensor as a numpy array, images [n, C, H, W] (any array with
    more than two dimensions) flattened in (C, H, W) order to [n, C*H*W]; anything else as given."""
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray) and x.ndim > 2:
        x = x.reshape(x.shape[0], -1)
    return x


class _KernelSVM(ClassifierMixin, BaseEstimator):
    """Shared fit / decision code of ``LinearSVM`` and ``RBFSVM``: binary classifiers of any two labels.

    scikit-learn conventions: ``__init__`` only stores the settings, ``fit`` checks them and the data
    (``validate_data``), methods of an unfitted estimator raise ``NotFittedError``.
    """

    _kernel = ""

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # one decision function f: two classes only
        return tags

    def fit(self, X: ArrayLike, y: ArrayLike) -> _KernelSVM:
        """Fit on X [n, d] (or images [n, C, H, W], flattened) and y [n] holding exactly two labels.

        Any two labels work (0/1, -1/1, strings): ``classes_`` holds them sorted, and f(x) > 0 means
        ``classes_[1]``. Integer features are converted to float64; float32 features are kept.

        Fitted attributes: ``svc_`` (the sklearn SVC, fitted on the class indices 0/1), ``precomputed_``
        (path used), ``support_`` [m], ``support_vectors_`` [m, d] (dtype of X), ``dual_coef_`` [m]
        (alpha_i * (+1 for classes_[1], -1 for classes_[0]) in float64), ``intercept_``, ``gamma_``,
        ``classes_``, ``n_features_in_`` (and ``feature_names_in_`` for a data frame), ``timings_``
        (seconds).
        """
        self._check_params()
        X, y = validate_data(self, _as_features(X), y, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        y_type = type_of_target(y, input_name="y", raise_unknown=True)
        if y_type != "binary":
            raise ValueError(
                f"Only binary classification is supported. The type of the target is {y_type}: "
                f"{type(self).__name__} separates two classes, y holds {len(np.unique(y))} classes"
            )
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(
                f"{type(self).__name__} needs two classes in y, got 1 class ({classes[0]!r}): "
                "a binary SVM cannot be fitted on one label"
            )
        if not X.flags.writeable:  # a read-only array (e.g. a memory map): torch needs a writable one
            X = X.copy()
        n = X.shape[0]
        gamma = self._resolve_gamma(X)
        precomputed = self._use_precomputed(n)
        t0 = time.perf_counter()
        if precomputed:
            svc = SVC(kernel="precomputed", C=self.C, cache_size=self.cache_size)
            features = kernel_matrix(
                X,
                X,
                self._kernel,
                gamma,
                device=self.device,
                chunk_size=self.chunk_size,
                progress=self.progress,
            )
        else:
            gamma_arg = {} if gamma is None else {"gamma": gamma}
            svc = SVC(kernel=self._kernel, C=self.C, cache_size=self.cache_size, **gamma_arg)
            features = X.astype(np.float64)
        t1 = time.perf_counter()
        # libsvm gets the class indices 0/1, so f > 0 stands for classes_[1] whatever the labels.
        svc.fit(features, y_index.astype(np.int64))
        t2 = time.perf_counter()
        self.timings_ = {"gram_s": t1 - t0 if precomputed else 0.0, "svc_s": t2 - t1}
        self.gamma_ = gamma
        self.precomputed_ = precomputed
        self.svc_ = svc
        self.classes_ = classes
        self.support_ = svc.support_
        self.support_vectors_ = X[svc.support_]
        self.dual_coef_ = np.asarray(svc.dual_coef_[0], dtype=np.float64)
        self.intercept_ = float(svc.intercept_[0])
        return self

    def to_torch(self) -> _SVMModule:
        """The fitted decision function as a torch module (float64 inside), logits [n, 2] = [-f/2, f/2]:
        class index 1 is ``classes_[1]``."""
        raise NotImplementedError

    def decision_function(self, X: ArrayLike) -> np.ndarray:
        """f(x) float64 [n] via the torch module on ``device``, X [n, d] (or [n, C, H, W]); f > 0 means
        ``classes_[1]``."""
        check_is_fitted(self)
        X = validate_data(
            self, _as_features(X), reset=False, dtype=(np.float64, np.float32), ensure_min_samples=0
        )
        device = resolve_device(self.device)
        module = self.to_torch().to(device)
        out = []
        with torch.no_grad():
            for start in range(0, X.shape[0], self.chunk_size):
                chunk = X[start : start + self.chunk_size]
                chunk = torch.from_numpy(chunk if chunk.flags.writeable else chunk.copy())
                out.append(module.decision_function(chunk.to(device)).cpu())
        return torch.cat(out).numpy() if out else np.empty(0)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Labels [n] from ``classes_``: ``classes_[1]`` where f(x) > 0, else ``classes_[0]``."""
        positive = self.decision_function(X) > 0  # raises NotFittedError first
        return self.classes_[positive.astype(np.intp)]

    def _check_params(self) -> None:
        """The settings, checked when ``fit`` starts (``__init__`` only stores them)."""
        if not (isinstance(self.precomputed, str) and self.precomputed == "auto") and not isinstance(
            self.precomputed, bool
        ):
            valid = ", ".join(repr(v) for v in VALID_PRECOMPUTED)
            raise ValueError(f"unknown precomputed mode {self.precomputed!r}: valid modes are {valid}")
        if not (_is_number(self.C) and self.C > 0):
            raise ValueError(f"C must be a number > 0 (the paper uses 1.0), got {self.C!r}")
        if not (isinstance(self.chunk_size, numbers.Integral) and not isinstance(self.chunk_size, bool)):
            raise ValueError(f"chunk_size must be an integer >= 1, got {self.chunk_size!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if not (_is_number(self.cache_size) and math.isfinite(self.cache_size) and self.cache_size > 0):
            raise ValueError(f"cache_size must be a number of MB > 0, got {self.cache_size!r}")
        if not isinstance(self.progress, (bool, np.bool_)):
            raise ValueError(f"progress must be True or False, got {self.progress!r}")
        resolve_device(self.device)  # raises with the list of valid devices

    def _use_precomputed(self, n: int) -> bool:
        if self.precomputed == "auto":
            return n >= AUTO_MIN_SAMPLES and 8 * n * n <= AUTO_MAX_GRAM_BYTES
        return bool(self.precomputed)

    def _resolve_gamma(self, x: np.ndarray) -> float | None:
        return None


def _is_number(value: object) -> bool:
    """A real number (numpy scalars too), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


class LinearSVM(_KernelSVM):
    """The paper's "standard 2-class linear SVC" (B.4): libsvm ``SVC(kernel="linear", C)``.

    A scikit-learn classifier of two labels (``check_estimator`` passes); every setting has a default
    and is checked by ``fit``.

    Args:
        C: soft-margin penalty > 0 (sklearn's default 1.0, as in the paper).
        precomputed: "auto" (Gram path from ``AUTO_MIN_SAMPLES`` samples), True or False.
        device: where Gram matrices and decision functions are computed ("auto", "cpu", "cuda").
        chunk_size: rows per torch block in Gram matrices and ``decision_function`` (>= 1).
        cache_size: libsvm's kernel cache in MB (> 0).
        progress: tqdm bar over the Gram matrix blocks.

    After ``fit``: ``coef_`` [d] and ``intercept_`` give f(x) = coef_ . x + intercept_ (f > 0 means
    ``classes_[1]``).
    """

    _kernel = "linear"

    def __init__(
        self,
        C: float = 1.0,
        *,
        precomputed: str | bool = "auto",
        device: str | torch.device = "auto",
        chunk_size: int = 1024,
        cache_size: float = 500.0,
        progress: bool = False,
    ) -> None:
        self.C = C
        self.precomputed = precomputed
        self.device = device
        self.chunk_size = chunk_size
        self.cache_size = cache_size
        self.progress = progress

    def fit(self, X: ArrayLike, y: ArrayLike) -> LinearSVM:
        super().fit(X, y)
        # w = sum_i alpha_i sv_i: libsvm's coef_ is unavailable on the precomputed path.
        self.coef_ = self.dual_coef_ @ self.support_vectors_.astype(np.float64)
        return self

    def to_torch(self) -> LinearSVMModule:
        check_is_fitted(self)
        return LinearSVMModule(self.coef_, self.intercept_)


class RBFSVM(_KernelSVM):
    """RBF-kernel SVM (B.5): libsvm ``SVC(kernel="rbf", gamma, C)``, K(a, b) = exp(-gamma ||a - b||^2).

    A scikit-learn classifier of two labels (``check_estimator`` passes); every setting has a default
    and is checked by ``fit``.

    Args:
        gamma: kernel coefficient 1 / (2 sigma^2) > 0, or "scale" (the default, as in sklearn's SVC)
            for 1 / (d * var(X)) (1 where X has no variance). The book does not use the default: it
            picks gamma with ``select_gamma`` (``search_gamma``'s table; the largest gamma that keeps
            high accuracy) and passes it here.
        C, precomputed, device, chunk_size, cache_size, progress: as in ``LinearSVM``.

    After ``fit``: ``gamma_`` is the gamma used.
    """

    _kernel = "rbf"

    def __init__(
        self,
        gamma: float | str = "scale",
        C: float = 1.0,
        *,
        precomputed: str | bool = "auto",
        device: str | torch.device = "auto",
        chunk_size: int = 1024,
        cache_size: float = 500.0,
        progress: bool = False,
    ) -> None:
        self.gamma = gamma
        self.C = C
        self.precomputed = precomputed
        self.device = device
        self.chunk_size = chunk_size
        self.cache_size = cache_size
        self.progress = progress

    def _check_params(self) -> None:
        super()._check_params()
        scale = isinstance(self.gamma, str) and self.gamma == "scale"
        if not (scale or (_is_number(self.gamma) and math.isfinite(self.gamma) and self.gamma > 0)):
            raise ValueError(f"gamma must be a number > 0 or 'scale', got {self.gamma!r}")

    def _resolve_gamma(self, x: np.ndarray) -> float:
        if isinstance(self.gamma, str):  # "scale", as sklearn's SVC computes it
            variance = float(x.astype(np.float64).var())
            return 1.0 / (x.shape[1] * variance) if variance != 0 else 1.0
        return float(self.gamma)

    def to_torch(self) -> RBFSVMModule:
        check_is_fitted(self)
        return RBFSVMModule(self.support_vectors_, self.dual_coef_, self.intercept_, self.gamma_)


# --------------------------------------------------------------------------------------------------
# Bandwidth search (paper B.5)
# --------------------------------------------------------------------------------------------------


def _available_memory() -> int | None:
    """Bytes of memory the system can still hand out (Linux), or None where that is not known."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gamma_workers(n_fit: int, n_val: int, n_gammas: int, n_jobs: int | None = None) -> int:
    """Gammas fitted at once by ``search_gamma``: ``n_jobs``, or (None) as many as there are gammas,
    cores, and float64 kernel matrices ([n_fit, n_fit] + [n_val, n_fit]) in half the available memory."""
    if n_jobs is not None:
        if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
            raise ValueError(f"n_jobs must be a positive integer or None (automatic), got {n_jobs!r}")
        return min(n_jobs, n_gammas)
    per_gamma = 8 * n_fit * (n_fit + n_val)
    memory = _available_memory()
    by_memory = n_gammas if memory is None else max(1, memory // 2 // max(per_gamma, 1))
    return max(1, min(n_gammas, os.cpu_count() or 1, by_memory))


def search_gamma(
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_val: ArrayLike,
    y_val: ArrayLike,
    gammas: Sequence[float],
    min_accuracy: float = 0.9,
    *,
    C: float = 1.0,
    device: str = "auto",
    chunk_size: int = 1024,
    progress: bool = False,
    n_jobs: int | None = None,
) -> tuple[float, list[dict]]:
    """The largest gamma whose RBF SVM keeps validation accuracy >= ``min_accuracy`` (paper B.5).

    Squared distances are computed once in torch and every gamma is fitted with
    ``SVC(kernel="precomputed")`` (the same solution as ``RBFSVM(gamma, C)``). libsvm is single-threaded
    and releases the GIL, so ``n_jobs`` gammas are fitted at once in threads (default: ``gamma_workers``);
    the table is the same for any ``n_jobs``.

    Args:
        x_train [n, d], y_train [n], x_val [k, d], y_val [k]: floats in [0, 1], labels in {0, 1}.
        gammas: candidate gammas (> 0), tried in increasing order.
        min_accuracy: validation accuracy a gamma must reach to be chosen.

    Returns:
        (best_gamma, table): table rows are dicts with "gamma", "train_accuracy", "val_accuracy",
        "n_support" and "selected". If no gamma reaches ``min_accuracy``, the one with the best
        validation accuracy is returned with a warning.
    """
    gammas = sorted(float(g) for g in gammas)
    if not gammas or gammas[0] <= 0:
        raise ValueError(f"gammas must be a non-empty list of numbers > 0, got {gammas}")
    if not 0 <= min_accuracy <= 1:
        raise ValueError(f"min_accuracy is a fraction in [0, 1], got {min_accuracy}")
    xt, yt = as_labelled_tensors(x_train, y_train, "x_train", dtype=None)
    xv, yv = as_labelled_tensors(x_val, y_val, "x_val", dtype=None)
    if yt.unique().numel() != 2:
        raise ValueError("y_train must hold both labels 0 and 1 to fit a binary SVM")
    workers = gamma_workers(len(yt), len(yv), len(gammas), n_jobs)
    y_tr, y_va = yt.numpy(), yv.numpy()
    opts = {"device": device, "chunk_size": chunk_size, "progress": progress}
    d2_train = squared_distances(xt, xt, **opts)
    d2_val = squared_distances(xv, xt, **opts)

    def fit(gamma: float) -> dict:
        gram = np.exp(-gamma * d2_train)
        svc = SVC(kernel="precomputed", C=C).fit(gram, y_tr)
        val_pred = svc.predict(np.exp(-gamma * d2_val))
        return {
            "gamma": gamma,
            "train_accuracy": float(svc.score(gram, y_tr)),
            "val_accuracy": float((val_pred == y_va).mean()),
            "n_support": int(svc.support_.shape[0]),
            "selected": False,
        }

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = pool.map(fit, gammas)  # in the order of gammas
        table = list(tqdm(rows, total=len(gammas), desc="gamma search", disable=not progress, leave=False))
    passing = [row for row in table if row["val_accuracy"] >= min_accuracy]
    if passing:
        best = passing[-1]
    else:
        best = max(table, key=lambda row: (row["val_accuracy"], -row["gamma"]))
        warnings.warn(
            f"no gamma reached validation accuracy {min_accuracy}; using gamma={best['gamma']:g} "
            f"(best, {best['val_accuracy']:.3f}). Try smaller gammas or a lower min_accuracy.",
            stacklevel=2,
        )
    best["selected"] = True
    return best["gamma"], table


#: Paper B.5 takes "the highest gamma that still provided a high classification accuracy": ours is the
#: largest gamma whose validation accuracy is within this many points of the best one (on real data the
#: best is far below 100%, so an absolute threshold would not do).
GAMMA_TOLERANCE = 0.02


#: Share of the SVM training set held out to choose gamma.
VAL_FRACTION = 0.2


def gamma_split(n: int, val_fraction: float = VAL_FRACTION, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``select_gamma``'s split of n rows: (validation rows, fitting rows), seeded."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(val_fraction * n))
    return order[:n_val], order[n_val:]


def select_gamma(
    x: np.ndarray,
    y: np.ndarray,
    gammas: Sequence[float],
    *,
    tolerance: float = GAMMA_TOLERANCE,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> tuple[float, list[dict]]:
    """The largest gamma whose validation accuracy is within ``tolerance`` of the best (paper B.5).

    x [n, d], y [n] are split at random (by ``seed``) into ``val_fraction`` validation and the rest for
    fitting; returns (gamma, table) with the table of ``search_gamma`` and "selected" set.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance is an accuracy difference in [0, 1), got {tolerance}")
    val, fit = gamma_split(len(y), val_fraction, seed)
    # min_accuracy=0 keeps search_gamma from warning: the selection rule is ours, applied below.
    _, table = search_gamma(
        x[fit], y[fit], x[val], y[val], gammas, min_accuracy=0.0, device=resolve_device(device).type
    )
    best = max(row["val_accuracy"] for row in table)
    chosen = max(row["gamma"] for row in table if row["val_accuracy"] >= best - tolerance - 1e-12)
    for row in table:
        row["selected"] = row["gamma"] == chosen
    return chosen, table
