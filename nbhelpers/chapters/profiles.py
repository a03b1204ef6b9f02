"""The run profiles: every size of a chapter run, "quick" (CPU in minutes, what CI builds) or "paper" (the
paper's sizes, meant for a GPU).

Every chapter starts from a ``profile`` parameter; ``get_profile`` turns it into sizes and rejects anything
else with the list of valid profiles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the science (torch) is imported lazily: the command line and sweep start faster
    from nbhelpers.science.attacks import AttackBudget


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
    # The EM's floor on every noise variance: std 0.01, the symmetric sigma (the authors' code: std 1e-3).
    min_variance: float = 1e-4

    def components(self, dataset: str, n_class_images: int) -> tuple[int, int]:
        """(components, latent dimension) of one class's MFA with ``n_class_images`` training images.

        MNIST: a fixed number of components (25 in the paper). CelebA: one component per
        ``celeba_images_per_component`` images (1000 in the paper), at least ``celeba_min_components``:
        our 15,723-face subset would otherwise give only a handful.
        """
        if dataset == "mnist":
            k, latent = self.mnist_components, self.mnist_latent_dim
        else:
            k = max(self.celeba_min_components, round(n_class_images / self.celeba_images_per_component))
            latent = self.celeba_latent_dim
        # EM needs a few samples per component and per latent factor
        k = max(1, min(k, n_class_images // (2 * (latent + 1))))
        return k, latent


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

    @property
    def budget(self) -> AttackBudget:
        """The attacks' iteration counts."""
        from nbhelpers.science.attacks import AttackBudget

        return AttackBudget(self.cw_steps, self.cw_binary_search_steps, self.cw_stepsize, self.min_norm_steps)


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
            # Figure 8's axes as the paper prints them: 200K-1M fresh training samples, 4-32 first-layer
            # filters, 10-20 layers (and TRADES beta 0, 2, 5, 10, the default).
            train_sizes=(200_000, 400_000, 600_000, 800_000, 1_000_000),
            cnn_widths=(4, 8, 16, 32),
            cnn_depths=(10, 15, 20),
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
