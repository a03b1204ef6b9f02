"""The learned classifiers of the paper (section 3, appendices B.3-B.5) as torch modules.

Every model maps x [n, d] (images flattened in (C, H, W) order, floats in [0, 1]) or
[n, C, H, W] to 2 logits [n, 2], so the same attacks run on all of them.
"""

from nbhelpers.science.models.cnn import CNN
from nbhelpers.science.models.svm import (
    RBFSVM,
    LinearSVM,
    LinearSVMModule,
    RBFSVMModule,
    kernel_matrix,
    search_gamma,
    select_gamma,
    squared_distances,
)
from nbhelpers.science.models.trades import fit_trades, pgd_kl_l2
from nbhelpers.science.models.training import accuracy, fit_classifier, predict_logits

__all__ = [
    "CNN",
    "LinearSVM",
    "LinearSVMModule",
    "RBFSVM",
    "RBFSVMModule",
    "accuracy",
    "fit_classifier",
    "fit_trades",
    "kernel_matrix",
    "pgd_kl_l2",
    "predict_logits",
    "search_gamma",
    "select_gamma",
    "squared_distances",
]
