"""Real data for the paper's 15 binary tasks: 12 CelebA attributes and 3 MNIST digit pairs.

``tasks`` names the tasks and loads one (``load_task``); ``files`` reads the images from disk; ``sample``
draws the small real sample shipped with the package.
"""

from nbhelpers.science.data.files import prepare_celeba
from nbhelpers.science.data.tasks import (
    BUNDLED_SAMPLE,
    CELEBA_ATTRIBUTES,
    DATASETS,
    MNIST_PAIRS,
    REAL_DATA_ATTRIBUTES,
    TASKS,
    TaskData,
    canonical_task,
    load_task,
    source_label,
    to_hwc,
)

__all__ = [
    "BUNDLED_SAMPLE",
    "CELEBA_ATTRIBUTES",
    "DATASETS",
    "MNIST_PAIRS",
    "REAL_DATA_ATTRIBUTES",
    "TASKS",
    "TaskData",
    "canonical_task",
    "load_task",
    "prepare_celeba",
    "source_label",
    "to_hwc",
]
