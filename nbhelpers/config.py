"""One place for run profiles, device choice and the project's folders.

Every chapter starts from ``profile`` and ``device`` parameters; ``get_profile`` and
``get_device`` turn those strings into sizes and a ``torch.device``, and reject
anything else with the list of valid choices.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily: the command line and sweep workers start faster
    import torch

DATA_DIR_ENV = "NBHELPERS_DATA_DIR"
RESULTS_DIR_ENV = "NBHELPERS_RESULTS_DIR"
CACHE_DIR_ENV = "NBHELPERS_CACHE_DIR"
CHECKPOINTS_DIR_ENV = "NBHELPERS_CHECKPOINTS_DIR"

VALID_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TheorySizes:
    """Monte-Carlo sizes for the theory chapter."""

    n_points: int  # sampled points per distance histogram
    high_dim: int  # dimension of the "hundreds of dimensions" checks
    lemma3_dim: int  # ambient dimension for Lemma 3 (the paper's MNIST is 784)


@dataclass(frozen=True)
class MFASizes:
    """Mixture-of-factor-analyzers fits (paper appendix B.1)."""

    max_images_per_class: int | None  # real training images used per class (None: all)
    mnist_components: int  # the paper uses 25
    mnist_latent_dim: int  # the paper uses 6
    celeba_images_per_component: int  # the paper uses N_class / 1000
    celeba_min_components: int  # floor for our 15,723-face subset
    celeba_latent_dim: int  # the paper uses 10
    em_iterations: int
    batch_size: int  # data mini-batch for the E-step statistics


@dataclass(frozen=True)
class DatasetSizes:
    """Samples drawn from a symmetric/asymmetric model pair."""

    n_train_per_class: int
    n_test_per_class: int


@dataclass(frozen=True)
class AttackSizes:
    """Adversarial evaluation (paper appendix C)."""

    n_attack: int  # test samples attacked per model
    cw_steps: int  # the paper: 500
    cw_binary_search_steps: int  # the paper: 3
    cw_stepsize: float  # the paper: 0.01
    min_norm_steps: int  # FMN / DDN iterations


@dataclass(frozen=True)
class ModelSizes:
    """Learned classifiers (paper appendix B.3-B.5) and the Figure 8 sweeps."""

    cnn_width: int
    cnn_depth: int
    cnn_epochs: int
    svm_max_train: int
    train_sizes: tuple[int, ...]
    cnn_widths: tuple[int, ...]
    cnn_depths: tuple[int, ...]
    trades_betas: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0)
    trades_steps: int = 10  # PGD steps of the TRADES inner maximisation
    trades_eps: float = 1.5  # L2 radius of that inner attack
    cnn_batch_size: int = 64
    svm_gammas: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # searched for the RBF SVM


@dataclass(frozen=True)
class Profile:
    """All sizes of one run profile."""

    name: str
    description: str
    theory: TheorySizes
    mfa: MFASizes
    datasets: DatasetSizes
    attacks: AttackSizes
    models: ModelSizes
    extra: dict = field(default_factory=dict)


PROFILES: dict[str, Profile] = {
    "quick": Profile(
        name="quick",
        description="CPU in minutes: small fits, few attacked samples, short sweeps (what CI builds).",
        theory=TheorySizes(n_points=400, high_dim=200, lemma3_dim=784),
        mfa=MFASizes(
            max_images_per_class=300,
            mnist_components=4,
            mnist_latent_dim=6,
            celeba_images_per_component=100,
            celeba_min_components=2,
            celeba_latent_dim=6,
            em_iterations=8,
            batch_size=1024,
        ),
        datasets=DatasetSizes(n_train_per_class=500, n_test_per_class=100),
        attacks=AttackSizes(
            n_attack=16, cw_steps=100, cw_binary_search_steps=3, cw_stepsize=0.01, min_norm_steps=100
        ),
        models=ModelSizes(
            cnn_width=8,
            cnn_depth=4,
            cnn_epochs=6,
            svm_max_train=1000,
            train_sizes=(1000, 4000),
            cnn_widths=(4, 8, 16),  # 8 and 4 below: the base CNN, a point of each line at no cost
            cnn_depths=(2, 4, 6),
            trades_betas=(0.0, 2.0, 10.0),
            trades_steps=3,
        ),
    ),
    "paper": Profile(
        name="paper",
        description="The paper's sizes (appendix B): meant for a GPU.",
        theory=TheorySizes(n_points=5000, high_dim=784, lemma3_dim=784),
        mfa=MFASizes(
            max_images_per_class=None,
            mnist_components=25,
            mnist_latent_dim=6,
            celeba_images_per_component=1000,
            celeba_min_components=4,
            celeba_latent_dim=10,
            em_iterations=40,
            batch_size=4096,
        ),
        datasets=DatasetSizes(n_train_per_class=10000, n_test_per_class=1000),
        attacks=AttackSizes(
            n_attack=1000, cw_steps=500, cw_binary_search_steps=3, cw_stepsize=0.01, min_norm_steps=1000
        ),
        models=ModelSizes(
            cnn_width=32,
            cnn_depth=6,
            cnn_epochs=20,
            svm_max_train=20000,
            train_sizes=(1000, 10000, 100000, 1000000),
            cnn_widths=(16, 32, 64, 128, 256),
            cnn_depths=(4, 6, 8, 12, 16),
        ),
    ),
}


def get_profile(name: str) -> Profile:
    """Return the sizes of profile ``name`` ("quick" or "paper")."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(p) for p in PROFILES)
        raise ValueError(f"unknown profile {name!r}: valid profiles are {valid}") from None


def get_device(name: str = "auto") -> torch.device:
    """Resolve a device name: "auto" picks ``cuda`` when present, else ``cpu``."""
    import torch

    if name not in VALID_DEVICES:
        valid = ", ".join(repr(d) for d in VALID_DEVICES)
        raise ValueError(f"unknown device {name!r}: valid devices are {valid}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available: use 'auto' or 'cpu'")
    return torch.device(name)


def project_root(start: Path | None = None) -> Path:
    """The book's root: the nearest folder at or above ``start`` (default: cwd) holding ``_toc.yml``.

    Chapters execute inside ``book/``; this lets them find the shared results and cache
    folders. Falls back to ``start`` itself outside a checkout.
    """
    start = Path.cwd() if start is None else Path(start)
    for folder in (start, *start.parents):
        if (folder / "_toc.yml").exists():
            return folder
    return start


def results_dir() -> Path:
    """Where chapters write their JSON results (``$NBHELPERS_RESULTS_DIR`` or ``<root>/results``)."""
    env = os.environ.get(RESULTS_DIR_ENV)
    return Path(env) if env else project_root() / "results"


def cache_dir() -> Path:
    """Where trained models are cached between chapters (``$NBHELPERS_CACHE_DIR`` or ``<root>/.cache``)."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env) if env else project_root() / ".cache"


def checkpoints_dir() -> Path:
    """Where interrupted chapter runs keep their finished steps (``nbhelpers.checkpoints``):
    ``$NBHELPERS_CHECKPOINTS_DIR`` or ``<cache>/checkpoints``."""
    env = os.environ.get(CHECKPOINTS_DIR_ENV)
    return Path(env) if env else cache_dir() / "checkpoints"


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to anything but "" or "0"."""
    return os.environ.get(name, "").strip() not in ("", "0")


def data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The user's data folder: ``explicit`` if given, else ``$NBHELPERS_DATA_DIR``, else None (sample)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else None


def seed_everything(seed: int) -> None:
    """Seed numpy's legacy global state and torch (CPU and CUDA)."""
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)
