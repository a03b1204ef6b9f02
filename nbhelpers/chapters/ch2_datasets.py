"""Chapter 2, the datasets: MFA training, samples, outlier means, the learned noise, the helix, Bayes
accuracy. The models themselves are ``task_models.build_task_models``'s."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from nbhelpers.chapters.plotting import show_image
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import to_hwc
from nbhelpers.science.datasets import (
    OUTLIER_SIGMA,
    SYMMETRIC_SIGMA,
    TaskModels,
    helix_surface,
    sample_dataset,
)
from nbhelpers.science.mfa import MFA


def plot_training_curves(models: TaskModels) -> Figure:
    """Mean log-likelihood per image against EM iteration, one line per class."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, history in enumerate(models.history):
        k = models.fitted[label].K
        ax.plot(range(len(history)), history, marker="o", label=f"{models.class_names[label]} (K={k})")
    ax.set_xlabel("EM iteration (0 = initialisation)")
    ax.set_ylabel("mean log-likelihood per image")
    ax.set_title(f"MFA training, {models.dataset}/{models.attribute}")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_class_samples(models: TaskModels, variant: str = "symmetric", n: int = 8, seed: int = 0) -> Figure:
    """Figure 2 (right): ``n`` samples of each class from the ``variant`` pair, one row per class."""
    x, y = sample_dataset(models.pair(variant), n, seed=seed)
    images = to_hwc(x, models.image_shape)
    fig, axes = plt.subplots(2, n, figsize=(1.1 * n, 2.6))
    for label in (0, 1):
        for col, image in enumerate(images[y == label][:n]):
            show_image(axes[label, col], image)
        axes[label, 0].set_ylabel(models.class_names[label], rotation=0, ha="right", va="center")
    fig.suptitle(f"{variant} samples, {models.dataset}/{models.attribute}")
    fig.tight_layout()
    return fig


def plot_outlier_means(models: TaskModels) -> Figure:
    """Figure 10: the data mean and the two outlier means of the asymmetric pair (and their difference)."""
    means = models.outlier_means()
    panels = [models.data_mean, means[0], means[1]]
    titles = ["data mean", f"outlier of {models.class_names[0]}", f"outlier of {models.class_names[1]}"]
    images = to_hwc(np.stack(panels).astype(np.float32), models.image_shape)
    diff = to_hwc((means[1] - models.data_mean)[None].astype(np.float32), models.image_shape)[0]
    fig, axes = plt.subplots(1, 4, figsize=(8.5, 2.5))
    for ax, image, title in zip(axes, images, titles, strict=False):
        show_image(ax, image)
        ax.set_title(title, fontsize=9)
    scale = np.abs(diff).max() or 1.0
    axes[3].imshow(diff.mean(axis=-1), cmap="coolwarm", vmin=-scale, vmax=scale)
    axes[3].set_title(f"step along PC 50 (x{models.outlier_step:g})", fontsize=9)
    axes[3].set_xticks([])
    axes[3].set_yticks([])
    fig.tight_layout()
    return fig


def fit_helix_mfa(n: int = 3000, n_components: int = 12, seed: int = 0) -> tuple[np.ndarray, MFA]:
    """Points [n, 3] on a helical surface and a 2-D-latent MFA fitted to them (Figure 2, left)."""
    points = helix_surface(n, seed)
    mfa = MFA(n_components, 3, 2).fit(torch.from_numpy(points), n_iter=60, seed=seed, progress=False)
    return points, mfa


def plot_helix_mfa(points: np.ndarray, mfa: MFA) -> Figure:
    """Figure 2 (left): the sampled helix and each component's 2-sigma patch of its latent plane."""
    fig = plt.figure(figsize=(5.5, 5))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(*points.T, s=1, alpha=0.25, color="tab:blue")
    grid = np.linspace(-2, 2, 5)
    z1, z2 = np.meshgrid(grid, grid)
    latent = np.stack([z1.ravel(), z2.ravel()])  # [2, 25]
    colors = plt.cm.tab20(np.linspace(0, 1, mfa.K))
    for k in range(mfa.K):
        mu, A = mfa.mu[k].cpu().numpy(), mfa.A[k].cpu().numpy()
        patch = (mu[:, None] + A @ latent).reshape(3, 5, 5)
        ax.plot_surface(*patch, color=colors[k], alpha=0.6, linewidth=0)
    ax.set_title(f"MFA with {mfa.K} components, latent dimension 2")
    ax.view_init(elev=20, azim=35)
    return fig


def bayes_accuracy_table(models: TaskModels, n_per_class: int, seed: int = 0) -> pd.DataFrame:
    """Accuracy of each variant's Bayes classifier on a fresh balanced sample of that variant: on the
    samples as the datasets hold them (pixels clipped to [0, 1]) and on the same draws unclipped, where the
    classifier is exactly optimal. Clipping moves a sample off a thin component (sigma = 0.01) by many of its
    standard deviations, which a broad outlier of either class then explains better: the asymmetric pair on
    the symmetric base loses accuracy that way."""
    rows = []
    for variant in ("symmetric", "asymmetric"):
        pair = models.pair(variant)
        x, y = sample_dataset(pair, n_per_class, seed=seed, clip=False)
        classifier = BayesClassifier(*pair)
        accuracy = {}
        for name, points in (("Bayes accuracy", np.clip(x, 0.0, 1.0)), ("unclipped", x)):
            with torch.no_grad():
                predicted = classifier.predict(torch.from_numpy(points).to(classifier.device)).cpu().numpy()
            accuracy[name] = float((predicted == y).mean())
        rows.append(
            {
                "dataset": f"{models.dataset}/{models.attribute}",
                "variant": variant,
                "asymmetric base": models.asymmetric_base if variant == "asymmetric" else "",
                "test samples": len(y),
                "Bayes accuracy": accuracy["Bayes accuracy"],
                "Bayes accuracy, unclipped samples": accuracy["unclipped"],
                "components (class 0, class 1)": f"{pair[0].K}, {pair[1].K}",
            }
        )
    return pd.DataFrame(rows)


def noise_table(models: TaskModels) -> pd.DataFrame:
    """The noise standard deviations behind the two variants, per class: the fitted models' learned
    diagonal noise (min, median, max over components and pixels), the symmetric sigma and the outlier's."""
    rows = []
    for label, mfa in enumerate(models.fitted):
        sigma = torch.exp(0.5 * mfa.log_D).double().cpu().numpy().ravel()
        rows.append(
            {
                "class": models.class_names[label],
                "components K": mfa.K,
                "latent dim l": mfa.l,
                "learned sigma: min": sigma.min(),
                "median": float(np.median(sigma)),
                "max": sigma.max(),
                "share at the floor sigma = 0.01": float((sigma <= SYMMETRIC_SIGMA * 1.001).mean()),
                "symmetric sigma": SYMMETRIC_SIGMA,
                "outlier sigma": OUTLIER_SIGMA,
                "outlier / median learned": OUTLIER_SIGMA / float(np.median(sigma)),
            }
        )
    return pd.DataFrame(rows).set_index("class")
