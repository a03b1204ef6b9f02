"""The models of one task at a profile's sizes, fitted once and cached for the chapters that follow.

``build_task_models`` loads the task's real images (``nbhelpers.science.data``), fits the class MFAs with the
profile's sizes and derives the symmetric and asymmetric pairs (``nbhelpers.science.datasets``). The result
is cached under ``<cache>/models/`` (``$NBHELPERS_CACHE_DIR``), so chapters 3-5 reuse chapter 2's fits.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import check_writable_folder
from nbhelpers.core.paths import CACHE_DIR_ENV, cache_dir
from nbhelpers.core.versions import source_version
from nbhelpers.science.data import TaskData, canonical_task, load_task
from nbhelpers.science.datasets import (
    ASYMMETRIC_BASE,
    MIN_VARIANCE,
    OUTLIER_STEP,
    OUTLIER_WEIGHT,
    TaskModels,
    check_asymmetric_base,
    check_min_variance,
    derive_task_models,
    fit_class_models,
    load_task_models,
    save_task_models,
)


def build_task_models(
    dataset: str,
    attribute: str,
    profile: str = "quick",
    seed: int = 0,
    device: str = "auto",
    *,
    data_dir: str | os.PathLike | None = None,
    outlier_step: float = OUTLIER_STEP,
    outlier_weight: float = OUTLIER_WEIGHT,
    asymmetric_base: str = ASYMMETRIC_BASE,
    min_variance: float | None = None,
    cache: bool = True,
    progress: bool = True,
) -> TaskModels:
    """Fit (or load from the cache) the class MFAs of a task and derive both dataset variants.

    ``asymmetric_base``: the pair the asymmetric outliers are added to, "fitted" or "symmetric" (the two
    readings of appendix B.2, ``science.datasets.make_asymmetric``); ``min_variance``: the EM's noise
    variance floor (None: the profile's). The cache key holds the task, profile, seed, data source,
    outlier settings, both of these and the version of the sources the fit runs (``source_version`` of
    this module: it and what it imports), so a change to any of them refits. Models are stored as
    safetensors. Arguments and the cache folder are checked before the (possibly hours long) fit.
    """
    dataset, attribute = canonical_task(dataset, attribute)
    _check_arguments(seed, outlier_step, outlier_weight)
    asymmetric_base = check_asymmetric_base(asymmetric_base)
    sizes = get_profile(profile).mfa
    min_variance = check_min_variance(sizes.min_variance if min_variance is None else min_variance)
    torch_device = resolve_device(device)
    task = load_task(
        dataset, attribute, data_dir=data_dir, max_per_class=sizes.max_images_per_class, seed=seed
    )
    key = _cache_key(task, profile, seed, outlier_step, outlier_weight, asymmetric_base, min_variance)
    folder = cache_dir() / "models" / f"{dataset}__{attribute}__{profile}__seed{seed}__{key}"
    if cache and (folder / "meta.json").exists():
        return load_task_models(folder, torch_device)
    if cache:  # before the fit, which an unwritable cache would otherwise lose
        try:
            check_writable_folder(folder.parent)
        except OSError as err:
            raise type(err)(
                f"the model cache cannot take the fit of {dataset}/{attribute}: {err}; point "
                f"${CACHE_DIR_ENV} at a writable folder (now {cache_dir()}), or pass cache=False"
            ) from None

    components, latent_dim = zip(
        *(sizes.components(dataset, int((task.y_train == label).sum())) for label in (0, 1)), strict=True
    )
    start = time.perf_counter()
    fitted = fit_class_models(
        task,
        components,
        latent_dim[0],
        sizes.em_iterations,
        batch_size=sizes.batch_size,
        min_variance=min_variance,
        seed=seed,
        device=torch_device,
        progress=progress,
    )
    models = derive_task_models(
        task,
        fitted,
        profile=profile,
        seed=seed,
        outlier_step=outlier_step,
        outlier_weight=outlier_weight,
        asymmetric_base=asymmetric_base,
        min_variance=min_variance,
        fit_seconds=time.perf_counter() - start,
    )
    models.to(torch_device)
    if cache:
        _publish(models, folder)
    return models


def _check_arguments(seed: object, step: object, weight: object) -> None:
    """An integer seed >= 0 and the asymmetric outliers' settings: a finite step > 0, a weight in (0, 1).

    (Not ``chapters.params.check_seed``: what this module imports is part of the fits' cache key.)
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 (a random seed), got {seed!r}")
    number = (int, float, np.integer, np.floating)
    if isinstance(step, bool) or not isinstance(step, number) or not (math.isfinite(step) and step > 0):
        raise ValueError(
            f"outlier_step must be a finite number > 0 (the distance of each outlier mean from the data "
            f"mean, default {OUTLIER_STEP}), got {step!r}"
        )
    if isinstance(weight, bool) or not isinstance(weight, number) or not 0 < weight < 1:
        raise ValueError(
            f"outlier_weight must be a number strictly between 0 and 1 (the mixing weight of each outlier, "
            f"default {OUTLIER_WEIGHT}), got {weight!r}"
        )


def _publish(models: TaskModels, folder: Path) -> None:
    """Save ``models`` to the cache ``folder`` as a whole: written beside it, then renamed into place.

    Runs of the same task in parallel (a sweep's chapters 3-5) may fit the same models at once; a run
    that reads the folder must never see another rewriting it. The first complete folder stays.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.", suffix=".tmp"))
    try:
        save_task_models(models, staging)
        if folder.exists() and not (folder / "meta.json").exists():
            shutil.rmtree(folder, ignore_errors=True)  # left half-written by a crash of an older version
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / "meta.json").exists():  # not a finished folder of another run: a real error
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cache_key(
    task: TaskData,
    profile: str,
    seed: int,
    step: float,
    weight: float,
    asymmetric_base: str = ASYMMETRIC_BASE,
    min_variance: float = MIN_VARIANCE,
) -> str:
    digest = hashlib.sha256()
    # The sources this module runs (not the whole package): editing a chapter's other helpers keeps the fits.
    code = source_version(__name__)
    # The folder's real path: "../data" and "/home/me/data" are the same data and the same fits.
    source = task.source if task.source == "sample" else os.path.realpath(task.source)
    parts = (source, profile, seed, step, weight, task.x_train.shape, code, asymmetric_base, min_variance)
    for part in parts:
        digest.update(str(part).encode())
    # Every image and every label (under a second at the paper's sizes): relabelled or edited data refits.
    digest.update(np.ascontiguousarray(task.x_train).view(np.uint8))
    digest.update(np.ascontiguousarray(task.y_train, dtype=np.int64).view(np.uint8))
    return digest.hexdigest()[:12]
