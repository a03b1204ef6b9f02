"""The paper's datasets: class MFAs fitted to real images, and their symmetric/asymmetric variants.

Paper section 2 and appendix B.2. For one binary task we fit one MFA per class (``fit_class_models``),
then derive

* the *symmetric* pair: every component's noise set to the same small value, sigma = 0.01, so the
  pair approximates the conditions of Lemma 3 (robust Bayes-optimal classifier);
* the *asymmetric* pair: a base pair plus one outlier component per class with A = 0 and sigma = 0.5,
  centred at the global data mean plus (class 1) or minus (class 0) a step along the 50th principal
  direction of the whole task's training images, which approximates Lemma 1 (vulnerable Bayes-optimal
  classifier).

Appendix B.2 can be read two ways, and ``asymmetric_base`` names the reading: "fitted" (the default) adds
the outliers to the fitted models with their learned diagonal noise; "symmetric" adds them to the
symmetric pair (every component's noise sigma = 0.01), so that the two variants differ only by the
outliers. The paper leaves the step and the outlier's weight open; ``OUTLIER_STEP`` and
``OUTLIER_WEIGHT`` are our defaults (see chapter 2 for the reasoning) and both are parameters everywhere.
The EM's floor on the noise variance is ``min_variance`` (default ``MIN_VARIANCE``, a noise std of 0.01;
the authors' MFA code clips the noise std at 1e-3, a variance of 1e-6).
``nbhelpers.chapters.task_models.build_task_models`` does all of it at a profile's sizes and caches the
result, so later chapters reuse the models.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import write_json_atomic
from nbhelpers.core.versions import code_version
from nbhelpers.science.data import TaskData, source_label
from nbhelpers.science.mfa import MFA
from nbhelpers.science.models.training import Sampler

VARIANTS = ("fitted", "symmetric", "asymmetric")
SYMMETRIC_SIGMA = 0.01  # paper B.2
OUTLIER_SIGMA = 0.5  # paper B.2
OUTLIER_RANK = 50  # paper B.2: the eigenvector of the 50th largest eigenvalue
# Ours: the two outliers' means are 2 * step apart; at 5 sigma each side their samples are separable
# with error Phi(-5) ~ 3e-7, so the Bayes classifier stays ~100% accurate on them.
OUTLIER_STEP = 2.5
# Ours: a small share of samples comes from the outlier, enough to be visible, too few to dominate.
OUTLIER_WEIGHT = 0.05
MIN_VARIANCE = 1e-4  # EM variance floor (pixels in [0, 1]); equal to the symmetric sigma^2
# The readings of appendix B.2: the pair the asymmetric variant adds its outliers to.
ASYMMETRIC_BASES = ("fitted", "symmetric")
ASYMMETRIC_BASE = "fitted"


@dataclass
class TaskModels:
    """The generative models of one task: its fitted class MFAs and the two dataset variants.

    ``fitted``, ``symmetric`` and ``asymmetric`` are (class 0, class 1) MFA pairs; ``data_mean`` [d]
    and ``outlier_direction`` [d] (unit norm) define the asymmetric outliers, ``asymmetric_base`` the
    pair they were added to ("fitted" or "symmetric") and ``min_variance`` the EM's noise variance floor.
    ``profile`` names the sizes the models were fitted with (a label).
    """

    dataset: str
    attribute: str
    profile: str
    seed: int
    image_shape: tuple[int, int, int]
    class_names: tuple[str, str]
    fitted: tuple[MFA, MFA]
    symmetric: tuple[MFA, MFA]
    asymmetric: tuple[MFA, MFA]
    data_mean: np.ndarray
    outlier_direction: np.ndarray
    outlier_step: float
    outlier_weight: float
    n_train_images: tuple[int, int]
    history: tuple[list[float], list[float]] = field(default_factory=lambda: ([], []))
    source: str = ""
    asymmetric_base: str = ASYMMETRIC_BASE
    min_variance: float = MIN_VARIANCE
    fit_seconds: float | None = None  # wall time of the two MFA fits (None: not recorded)

    def pair(self, variant: str) -> tuple[MFA, MFA]:
        """The (class 0, class 1) models of ``variant``: "fitted", "symmetric" or "asymmetric"."""
        if variant not in VARIANTS:
            valid = ", ".join(map(repr, VARIANTS))
            raise ValueError(f"unknown variant {variant!r}: valid variants are {valid}")
        return getattr(self, variant)

    def outlier_means(self) -> np.ndarray:
        """[2, d]: the class-0 and class-1 outlier means of the asymmetric pair."""
        return np.stack([mfa.mu[-1].cpu().numpy() for mfa in self.asymmetric])

    def to(self, device: torch.device | str) -> TaskModels:
        """Move every model to ``device`` (in place); returns self."""
        for name in VARIANTS:
            for mfa in getattr(self, name):
                mfa.to(device)
        return self


def fit_class_models(
    task: TaskData,
    n_components: tuple[int, int],
    latent_dim: int,
    n_iter: int,
    *,
    batch_size: int = 4096,
    min_variance: float = MIN_VARIANCE,
    seed: int = 0,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> tuple[MFA, MFA]:
    """Fit one diagonal-noise MFA per class on the task's training images (paper B.1).

    ``n_components``: (class 0, class 1) numbers of components; ``latent_dim``: l; ``n_iter`` EM iterations
    on mini-batches of ``batch_size`` images, with the noise variances floored at ``min_variance``; class c
    is fitted with seed ``seed + c``. Returns the (class 0, class 1) models, each with ``history_``
    (log-likelihood per EM iteration).
    """
    torch_device = resolve_device(device)
    models = []
    for label in (0, 1):
        x = task.x_train[task.y_train == label]
        if len(x) < 4:
            raise ValueError(
                f"class {task.class_names[label]!r} of {task.dataset}/{task.attribute} has only {len(x)} "
                "training images: use a larger data set (see NBHELPERS_DATA_DIR)"
            )
        mfa = MFA(n_components[label], x.shape[1], latent_dim, device=torch_device)
        mfa.fit(
            torch.from_numpy(x),
            n_iter=n_iter,
            batch_size=batch_size,
            min_variance=min_variance,
            seed=seed + label,
            progress=progress,
        )
        models.append(mfa)
    return models[0], models[1]


def check_asymmetric_base(asymmetric_base: object) -> str:
    """``asymmetric_base`` checked: one of ``ASYMMETRIC_BASES``."""
    if not isinstance(asymmetric_base, str) or asymmetric_base not in ASYMMETRIC_BASES:
        valid = " or ".join(map(repr, ASYMMETRIC_BASES))
        raise ValueError(
            f"asymmetric_base must be {valid} (the pair the asymmetric outliers are added to), "
            f"got {asymmetric_base!r}"
        )
    return asymmetric_base


def check_min_variance(min_variance: object) -> float:
    """``min_variance`` checked: a number in (0, 1) (pixels lie in [0, 1]); returned as a float."""
    if (
        isinstance(min_variance, bool)
        or not isinstance(min_variance, (int, float, np.floating, np.integer))
        or not (math.isfinite(min_variance) and 0 < min_variance < 1)
    ):
        raise ValueError(
            "min_variance must be a number in (0, 1), the EM's floor on the noise variance (default "
            f"{MIN_VARIANCE:g}, a noise std of {math.sqrt(MIN_VARIANCE):g}), got {min_variance!r}"
        )
    return float(min_variance)


def make_symmetric(mfa: MFA, sigma: float = SYMMETRIC_SIGMA) -> MFA:
    """A copy of ``mfa`` whose every noise variance is sigma^2 (paper B.2, Lemma 3's conditions)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    D = torch.full((mfa.K,), sigma**2, dtype=torch.float64)
    return MFA.from_parameters(
        mfa.mu.cpu(), mfa.A.cpu(), D, mfa.log_pi.exp().cpu(), isotropic=True, dtype=mfa.dtype
    ).to(mfa.device)


def principal_direction(x: np.ndarray, rank: int = OUTLIER_RANK, seed: int = 0) -> np.ndarray:
    """Unit eigenvector [d] of the ``rank``-th largest eigenvalue of the covariance of x [n, d] (PCA)."""
    if not 1 <= rank <= min(x.shape):
        raise ValueError(f"rank must be in 1..{min(x.shape)} for data of shape {x.shape}, got {rank}")
    pca = PCA(n_components=rank, svd_solver="randomized", random_state=seed).fit(x)
    v = pca.components_[rank - 1].astype(np.float64)
    # PCA's sign is arbitrary: fix it. (The randomized solver's vector is a direction of about that variance,
    # not exactly the eigenvector on CelebA, where nearby eigenvalues are close; the paper asks no more.)
    return v * np.sign(v[np.argmax(np.abs(v))])


def add_outlier(mfa: MFA, mean: np.ndarray, weight: float, sigma: float = OUTLIER_SIGMA) -> MFA:
    """A copy of ``mfa`` with one extra spherical component N(mean, sigma^2 I) of mixing weight ``weight``.

    The existing weights are scaled by (1 - weight); the outlier's loadings are zero (A = 0).
    """
    if not 0 < weight < 1:
        raise ValueError(f"outlier weight (outlier_weight) must be in (0, 1), got {weight!r}")
    if not sigma > 0:
        raise ValueError(f"outlier sigma must be positive, got {sigma!r}")
    mu = torch.cat([mfa.mu.cpu(), torch.as_tensor(mean, dtype=mfa.dtype)[None]])
    A = torch.cat([mfa.A.cpu(), torch.zeros(1, mfa.d, mfa.l, dtype=mfa.dtype)])
    D = torch.cat([mfa.log_D.exp().cpu(), torch.full((1, mfa.d), sigma**2, dtype=mfa.dtype)])
    pi = torch.cat([mfa.log_pi.exp().cpu() * (1 - weight), torch.tensor([weight], dtype=mfa.dtype)])
    return MFA.from_parameters(mu, A, D, pi, dtype=mfa.dtype).to(mfa.device)


def make_asymmetric(
    pair: tuple[MFA, MFA],
    data_mean: np.ndarray,
    direction: np.ndarray,
    step: float = OUTLIER_STEP,
    weight: float = OUTLIER_WEIGHT,
    sigma: float = OUTLIER_SIGMA,
    asymmetric_base: str = ASYMMETRIC_BASE,
) -> tuple[MFA, MFA]:
    """The asymmetric pair (paper B.2): each class gains an outlier at data_mean -/+ step * direction.

    Class 0's outlier sits on the minus side, class 1's on the plus side. ``asymmetric_base``: "fitted"
    adds the outliers to ``pair`` as it is; "symmetric" first sets every noise std of ``pair`` to
    ``SYMMETRIC_SIGMA`` (``make_symmetric``), so the result is the symmetric pair plus the outliers.
    """
    asymmetric_base = check_asymmetric_base(asymmetric_base)
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"outlier_step must be positive and finite (the outliers' step), got {step!r}")
    if asymmetric_base == "symmetric":
        pair = (make_symmetric(pair[0]), make_symmetric(pair[1]))
    direction = np.asarray(direction, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    return (
        add_outlier(pair[0], data_mean - step * direction, weight, sigma),
        add_outlier(pair[1], data_mean + step * direction, weight, sigma),
    )


def derive_task_models(
    task: TaskData,
    fitted: tuple[MFA, MFA],
    *,
    profile: str = "",
    seed: int = 0,
    outlier_step: float = OUTLIER_STEP,
    outlier_weight: float = OUTLIER_WEIGHT,
    asymmetric_base: str = ASYMMETRIC_BASE,
    min_variance: float = MIN_VARIANCE,
    fit_seconds: float | None = None,
) -> TaskModels:
    """The task's models from its fitted class MFAs: the symmetric pair and the asymmetric pair, whose
    outliers sit at the mean of the task's training images -/+ ``outlier_step`` along their
    ``OUTLIER_RANK``-th principal direction (randomized PCA seeded by ``seed``), added to the pair that
    ``asymmetric_base`` names (``make_asymmetric``).

    ``profile``, ``min_variance`` (the fit's variance floor) and ``fit_seconds`` (its wall time) are
    recorded in the models.
    """
    asymmetric_base = check_asymmetric_base(asymmetric_base)
    data_mean = task.x_train.mean(axis=0).astype(np.float64)
    rank = min(OUTLIER_RANK, min(task.x_train.shape) - 1)
    direction = principal_direction(task.x_train, rank, seed)
    return TaskModels(
        dataset=task.dataset,
        attribute=task.attribute,
        profile=profile,
        seed=seed,
        image_shape=tuple(task.image_shape),
        class_names=tuple(task.class_names),
        fitted=fitted,
        symmetric=(make_symmetric(fitted[0]), make_symmetric(fitted[1])),
        asymmetric=make_asymmetric(
            fitted, data_mean, direction, outlier_step, outlier_weight, asymmetric_base=asymmetric_base
        ),
        data_mean=data_mean,
        outlier_direction=direction,
        outlier_step=outlier_step,
        outlier_weight=outlier_weight,
        n_train_images=(int((task.y_train == 0).sum()), int((task.y_train == 1).sum())),
        history=(list(fitted[0].history_), list(fitted[1].history_)),
        source=task.source,
        asymmetric_base=asymmetric_base,
        min_variance=check_min_variance(min_variance),
        fit_seconds=fit_seconds,
    )


def sample_dataset(
    pair: tuple[MFA, MFA], n_per_class: int, seed: int = 0, clip: bool = True, components: bool = False
) -> tuple[np.ndarray, ...]:
    """Draw a balanced labelled set from a model pair: x [2n, d] float32, y [2n] int64.

    Deterministic by ``seed`` (a CPU generator, so CPU and CUDA models give the same samples).
    ``clip`` keeps pixels in [0, 1], the box that attacks and learned classifiers work in.
    ``components``: also return [2n] int64, the index of the component (of its own class's model) each
    sample was drawn from; x and y are the same either way.
    """
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be at least 1, got {n_per_class}")
    generator = torch.Generator().manual_seed(seed)
    xs, ys, ks = [], [], []
    for label, mfa in enumerate(pair):
        with torch.no_grad():
            x, k = mfa.sample(n_per_class, generator=generator)
        x = x.float().cpu().numpy()
        xs.append(np.clip(x, 0.0, 1.0) if clip else x)
        ys.append(np.full(n_per_class, label, dtype=np.int64))
        ks.append(k.cpu().numpy().astype(np.int64))
    order = np.random.default_rng(seed).permutation(2 * n_per_class)
    drawn = np.concatenate(xs)[order], np.concatenate(ys)[order]
    return (*drawn, np.concatenate(ks)[order]) if components else drawn


def fresh_sampler(pair: tuple[MFA, MFA], device: str | torch.device = "auto") -> Sampler:
    """A ``Sampler`` of fresh samples of ``pair`` drawn on ``device`` (Figure 8's train-size sweep).

    Each call ``sampler(n, generator)`` takes a seed from the training loop's ``generator``, draws
    ceil(n / 2) samples per class with a generator on ``device`` seeded from it, clips them to [0, 1],
    shuffles and keeps the first n: x [n, d] float32 and y [n] int64, both on ``device`` (odd n: one class
    gets one less). The same seed gives the same samples on the same kind of device. Unlike
    ``sample_dataset``, whose CPU generator gives the same samples on every device, nothing passes through
    the host: there a 64-sample step of the paper's CelebA models costs about 55 ms (float64 noise in
    12,288 pixels), 43 min for the 3 million fresh samples of one task's sweep (``bench/bench_sampling.py``).
    ``pair`` stays where it is (a copy moves to ``device`` if it lives elsewhere).
    """
    device = resolve_device(device)
    models = tuple(mfa if mfa.device == device else copy.deepcopy(mfa).to(device) for mfa in pair)

    def sampler(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        draws = torch.Generator(device=device).manual_seed(seed)
        per_class = -(-n // 2)
        with torch.no_grad():
            x = torch.cat([mfa.sample(per_class, generator=draws)[0] for mfa in models])
        y = torch.arange(2, device=device).repeat_interleave(per_class)
        keep = torch.randperm(2 * per_class, generator=draws, device=device)[:n]
        return x[keep].clamp_(0.0, 1.0).float(), y[keep]

    return sampler


def save_task_models(models: TaskModels, folder: str | os.PathLike, portable: bool = False) -> Path:
    """Write every model (safetensors), the outlier geometry (npz) and a meta.json into ``folder``.

    ``portable``: meta.json names the data source by its label only (``data.source_label``), not by its
    folder's path: for files that leave this machine (exports)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        for label, mfa in enumerate(models.pair(variant)):
            mfa.save(folder / f"{variant}_class{label}.safetensors")
    np.savez(folder / "geometry.npz", data_mean=models.data_mean, outlier_direction=models.outlier_direction)
    meta = {
        key: getattr(models, key)
        for key in (
            "dataset",
            "attribute",
            "profile",
            "seed",
            "image_shape",
            "class_names",
            "outlier_step",
            "outlier_weight",
            "n_train_images",
            "history",
            "source",
            "asymmetric_base",
            "min_variance",
            "fit_seconds",
        )
    }
    meta["code_version"] = code_version()
    if portable:
        meta["source"] = source_label(models.source)
    write_json_atomic(folder / "meta.json", meta)  # written last: its presence marks a complete folder
    return folder


def load_task_models(folder: str | os.PathLike, device: str | torch.device = "auto") -> TaskModels:
    """Read a folder written by ``save_task_models``."""
    return _load(Path(folder), resolve_device(device))


def helix_surface(n: int, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    """[n, 3] points on a 2-D helical surface in R^3 (paper Figure 2, left) with a little noise."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 3 * math.pi, n)
    s = rng.uniform(-0.5, 0.5, n)
    points = np.stack([np.cos(t), np.sin(t), 0.3 * t + s], axis=1)
    return points + noise * rng.standard_normal((n, 3))


def _load(folder: Path, device: torch.device) -> TaskModels:
    meta = json.loads((folder / "meta.json").read_text())
    geometry = np.load(folder / "geometry.npz")
    pairs = {
        variant: tuple(MFA.load(folder / f"{variant}_class{label}.safetensors", device) for label in (0, 1))
        for variant in VARIANTS
    }
    return TaskModels(
        dataset=meta["dataset"],
        attribute=meta["attribute"],
        profile=meta["profile"],
        seed=meta["seed"],
        image_shape=tuple(meta["image_shape"]),
        class_names=tuple(meta["class_names"]),
        fitted=pairs["fitted"],
        symmetric=pairs["symmetric"],
        asymmetric=pairs["asymmetric"],
        data_mean=geometry["data_mean"],
        outlier_direction=geometry["outlier_direction"],
        outlier_step=meta["outlier_step"],
        outlier_weight=meta["outlier_weight"],
        n_train_images=tuple(meta["n_train_images"]),
        history=tuple(meta["history"]),
        source=meta["source"],
        # folders written before these were recorded hold the defaults' models
        asymmetric_base=meta.get("asymmetric_base", ASYMMETRIC_BASE),
        min_variance=meta.get("min_variance", MIN_VARIANCE),
        fit_seconds=meta.get("fit_seconds"),
    )
