"""Released datasets: one of the book's datasets in a folder of its own, with the models that generated it
and a card, and read back without refitting anything.

``export_dataset`` writes ``<out>/<dataset>_<attribute>_<variant>/``:

- ``data.npz``: x_train, y_train, x_test, y_test (float32 in [0, 1], flattened (C, H, W); labels int64),
  image_shape, class_names and where the samples came from;
- ``models/``: the fitted, symmetric and asymmetric MFA pairs (safetensors), the outlier geometry and the
  fit's log-likelihood history (``datasets.save_task_models``);
- ``dataset.json``: the card's numbers (task, construction and its parameters, MFA sizes and fit
  log-likelihood, the Bayes-optimal classifier's clean accuracy and mean L2, sample counts, code version,
  licence) and the SHA-256 of every other file;
- ``README.md``: the same card for people.

``load_dataset`` checks every checksum and returns the samples, the model pair and its Bayes-optimal
classifier, ready to use.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import save_npz_atomic, write_json_atomic, write_text_atomic
from nbhelpers.core.versions import code_version
from nbhelpers.science.attacks import L2ComponentGradientAttack
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import TaskData, source_label
from nbhelpers.science.datasets import (
    OUTLIER_RANK,
    OUTLIER_SIGMA,
    SYMMETRIC_SIGMA,
    VARIANTS,
    TaskModels,
    load_task_models,
    sample_dataset,
    save_task_models,
)

CARD_FILE = "dataset.json"
CARD_VERSION = 1
LICENCES = {
    "mnist": (
        "MNIST (Y. LeCun, C. Cortes, C. J. C. Burges) under the Creative Commons Attribution-Share Alike "
        "3.0 licence (CC BY-SA 3.0); these samples are derived from it and shared under the same terms. "
        "Cite: Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, Gradient-based learning applied to document "
        "recognition, Proc. IEEE 86(11), 1998."
    ),
    "celeba": (
        "CelebA (MMLAB, The Chinese University of Hong Kong): for non-commercial research purposes only, "
        "under the CelebA agreement, which covers data derived from its images, as these models and "
        "samples are; do not use them commercially, and redistribute them only within the agreement's "
        "terms. Cite: Z. Liu, P. Luo, X. Wang and X. Tang, Deep Learning Face Attributes in the Wild, "
        "ICCV 2015."
    ),
}
CONSTRUCTION = {
    "fitted": "the class MFAs fitted to the real images (paper appendix B.1), with their learned noise",
    "symmetric": (
        "the fitted class MFAs with every component's noise set to sigma = {sigma} (paper appendix B.2): "
        "the conditions of Lemma 3, a robust Bayes-optimal classifier"
    ),
    "asymmetric": (
        "the {base} class MFAs plus one outlier component per class (A = 0, sigma = {outlier}, weight "
        "{weight}) at the data mean -/+ {step} along the {rank}th principal direction (paper appendix "
        "B.2): the conditions of Lemma 1, a vulnerable Bayes-optimal classifier"
    ),
}


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bayes_robustness(
    pair: tuple[Any, Any], x: np.ndarray, y: np.ndarray, n_attack: int, device: str | torch.device = "cpu"
) -> dict[str, float | int | None]:
    """The Bayes-optimal classifier of ``pair`` on test samples x [n, d], y [n]: its clean accuracy on all of
    them and the mean / median L2 of the paper's gradient attack on the first ``n_attack`` that it classifies
    correctly and the attack flips (None where nothing was attacked)."""
    dev = resolve_device(device)
    classifier = BayesClassifier(*pair).to(dev)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y).long()
    with torch.no_grad():
        predicted = torch.cat(
            [classifier(xt[i : i + 512].to(dev)).argmax(1).cpu() for i in range(0, len(yt), 512)]
        )
    out: dict[str, float | int | None] = {
        "clean_accuracy": float((predicted == yt).double().mean()),
        "n_attacked": 0,
        "n_evaluated": 0,
        "mean_l2": None,
        "median_l2": None,
        "attack": "gradient (paper appendix C.2)",
    }
    if n_attack > 0:
        rows = torch.arange(min(n_attack, len(yt)))
        l2 = L2ComponentGradientAttack()(
            classifier, xt[rows].to(dev), yt[rows].to(dev), progress=False
        ).l2.cpu()
        ok = ((predicted[rows] == yt[rows]) & torch.isfinite(l2)).numpy()
        out["n_attacked"] = len(rows)
        out["n_evaluated"] = int(ok.sum())
        if ok.any():
            out["mean_l2"] = float(l2.numpy()[ok].mean())
            out["median_l2"] = float(np.median(l2.numpy()[ok]))
    return out


def export_dataset(
    models: TaskModels,
    out_dir: str | os.PathLike,
    variant: str = "symmetric",
    *,
    n_train_per_class: int,
    n_test_per_class: int,
    seed: int = 0,
    n_attack: int = 100,
    device: str | torch.device = "cpu",
) -> Path:
    """Export one dataset into ``<out_dir>/<dataset>_<attribute>_<variant>/`` (see the module docstring) and
    return that folder. Train and test draw from different seeds (``2 seed`` and ``2 seed + 1``, as the
    chapters draw them); the card's mean L2 comes from the gradient attack on ``n_attack`` test samples
    (0: not measured)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: valid variants are {', '.join(map(repr, VARIANTS))}")
    for name, count in (("n_train_per_class", n_train_per_class), ("n_test_per_class", n_test_per_class)):
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise ValueError(f"{name} must be a positive number of samples per class, got {count!r}")
    if isinstance(n_attack, bool) or not isinstance(n_attack, int | np.integer) or n_attack < 0:
        raise ValueError(
            f"n_attack must be a non-negative number of test samples (0: skip), got {n_attack!r}"
        )
    pair = models.pair(variant)
    x_train, y_train = sample_dataset(pair, n_train_per_class, seed=2 * seed)
    x_test, y_test = sample_dataset(pair, n_test_per_class, seed=2 * seed + 1)
    folder = Path(out_dir) / f"{models.dataset}_{models.attribute}_{variant}"
    folder.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(
        folder / "data.npz",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        image_shape=np.array(models.image_shape),
        class_names=np.array(models.class_names),
        dataset=np.array(models.dataset),
        attribute=np.array(models.attribute),
        variant=np.array(variant),
        asymmetric_base=np.array(models.asymmetric_base),
        min_variance=np.array(models.min_variance),
        profile=np.array(models.profile),
        seed=np.array(seed),
        source=np.array(source_label(models.source)),
    )
    save_task_models(models, folder / "models", portable=True)
    robustness = bayes_robustness(pair, x_test, y_test, int(n_attack), device)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (CARD_FILE, "README.md"))
    card = _card(models, variant, seed, (len(y_train), len(y_test)), robustness)
    card["checksums"] = {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}
    write_text_atomic(folder / "README.md", model_card(card))
    write_json_atomic(folder / CARD_FILE, card)  # written last: its presence marks a complete export
    return folder


def _card(
    models: TaskModels, variant: str, seed: int, counts: tuple[int, int], robustness: dict[str, Any]
) -> dict[str, Any]:
    """The card's numbers (``dataset.json`` less the checksums)."""
    construction = CONSTRUCTION[variant].format(
        sigma=SYMMETRIC_SIGMA,
        outlier=OUTLIER_SIGMA,
        weight=models.outlier_weight,
        step=models.outlier_step,
        rank=OUTLIER_RANK,
        base={"fitted": "fitted", "symmetric": f"symmetric (sigma = {SYMMETRIC_SIGMA})"}[
            models.asymmetric_base
        ],
    )
    pair = models.pair(variant)
    return {
        "card_version": CARD_VERSION,
        "dataset": models.dataset,
        "attribute": models.attribute,
        "variant": variant,
        "class_names": list(models.class_names),
        "image_shape": list(models.image_shape),
        "construction": construction,
        "parameters": {
            "symmetric_sigma": SYMMETRIC_SIGMA,
            "outlier_sigma": OUTLIER_SIGMA,
            "outlier_step": models.outlier_step,
            "outlier_weight": models.outlier_weight,
            "outlier_rank": OUTLIER_RANK,
            "asymmetric_base": models.asymmetric_base,
            "min_variance": models.min_variance,
        },
        "mfa": [
            {
                "class": models.class_names[label],
                "components": mfa.K,
                "latent_dim": mfa.l,
                "dim": mfa.d,
                "fitted_from_images": int(models.n_train_images[label]),
                "fit_log_likelihood_per_image": (
                    models.history[label][-1] if models.history[label] else None
                ),
            }
            for label, mfa in enumerate(pair)
        ],
        "samples": {
            "train": counts[0],
            "test": counts[1],
            "per_class": {"train": counts[0] // 2, "test": counts[1] // 2},
        },
        "seed": seed,
        "profile": models.profile,
        "fitted_to": source_label(models.source),
        "bayes_optimal": robustness,
        "code_version": code_version(),
        "licence": LICENCES.get(models.dataset, "see the source data's licence"),
    }


def model_card(card: dict[str, Any]) -> str:
    """The card as Markdown (the folder's ``README.md``)."""
    bayes = card["bayes_optimal"]
    mean = "not measured"
    if bayes["mean_l2"] is not None:
        mean = f"{bayes['mean_l2']:.3f} (median {bayes['median_l2']:.3f})"
    shape = " x ".join(map(str, card["image_shape"]))
    class_0, class_1 = card["class_names"]
    lines = [
        f"# {card['dataset']} / {card['attribute']}, {card['variant']} dataset",
        "",
        f"Labelled samples of a two-class generative model: class 0 is *{class_0}*, class 1 *{class_1}*; "
        f"images {shape} (C, H, W), flattened, pixels in [0, 1]. Made by the book *A Bayes-Optimal View on "
        "Adversarial Examples: an executable reproduction* (`nbhelpers`).",
        "",
        f"**Construction**: {card['construction']}.",
        "",
        "| class | components | latent dim | fitted from images | fit log-likelihood per image |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mfa in card["mfa"]:
        fit = mfa["fit_log_likelihood_per_image"]
        cells = (mfa["class"], mfa["components"], mfa["latent_dim"], mfa["fitted_from_images"])
        lines.append("| " + " | ".join(map(str, cells)) + f" | {'' if fit is None else f'{fit:.1f}'} |")
    samples = card["samples"]
    lines += [
        "",
        f"**Samples**: {samples['train']} train and {samples['test']} test (half per class), seed "
        f"{card['seed']} (profile `{card['profile']}`; the MFAs were fitted to the {card['fitted_to']}).",
        "",
        f"**Bayes-optimal classifier** (exact, from the models in `models/`): clean accuracy "
        f"{bayes['clean_accuracy']:.1%} on the test samples; mean L2 of the smallest perturbation that "
        f"flips it {mean} ({bayes['attack']}, {bayes['n_evaluated']} of {bayes['n_attacked']} attacked "
        "test samples). This is the robustness the data allows an accurate classifier: score yours against "
        "it with `python -m nbhelpers score`.",
        "",
        f"**Licence**: {card['licence']}",
        "",
        f"**Code version**: `{card['code_version']}`.",
        "",
        "**Load it**: `nbhelpers.load_dataset(folder)` checks the checksums below and returns the samples, "
        "the model pair and its Bayes-optimal classifier.",
        "",
        "| file | SHA-256 |",
        "| --- | --- |",
        *[f"| `{name}` | `{digest}` |" for name, digest in card["checksums"].items()],
        "",
    ]
    return "\n".join(lines)


@dataclass
class ReleasedDataset:
    """A released dataset read back: ``data`` (its samples as a ``TaskData``: variant, pair), ``models``
    (every pair of the task), ``classifier`` (the Bayes-optimal classifier of the variant's pair) and ``card``
    (``dataset.json``)."""

    data: TaskData
    models: TaskModels
    classifier: BayesClassifier
    card: dict[str, Any] = field(repr=False)


def verify_checksums(folder: str | os.PathLike) -> dict[str, Any]:
    """The card of an exported folder after checking every file it lists; a missing card, a missing file or a
    changed one raises ``ValueError`` naming it."""
    folder = Path(folder)
    card_path = folder / CARD_FILE
    if not card_path.is_file():
        raise ValueError(
            f"{folder} is not an exported dataset: it has no {CARD_FILE} (export one with "
            "`python -m nbhelpers export-dataset`; an export stopped half-way leaves none)"
        )
    try:
        card = json.loads(card_path.read_text())
        checksums = card["checksums"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{card_path} is damaged ({err}): export the dataset again") from err
    for name, digest in checksums.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"{path} is missing from the exported dataset: export it again")
        if sha256_file(path) != digest:
            raise ValueError(
                f"{path} does not match its checksum in {CARD_FILE}: it is damaged; export it again"
            )
    return card


def load_dataset(folder: str | os.PathLike, device: str | torch.device = "auto") -> ReleasedDataset:
    """Read an exported dataset (``export_dataset``) after checking its checksums; nothing is refitted."""
    folder = Path(folder)
    card = verify_checksums(folder)
    models = load_task_models(folder / "models", device)
    with np.load(folder / "data.npz", allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    variant = str(arrays["variant"])
    data = TaskData(
        dataset=str(arrays["dataset"]),
        attribute=str(arrays["attribute"]),
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        image_shape=tuple(int(v) for v in arrays["image_shape"]),
        class_names=tuple(str(v) for v in arrays["class_names"]),
        source=str(arrays["source"]),
        variant=variant,
        pair=models.pair(variant),
    )
    classifier = BayesClassifier(*models.pair(variant)).to(resolve_device(device))
    return ReleasedDataset(data, models, classifier, card)
