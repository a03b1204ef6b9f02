"""Per-stage profile of a paper-profile run of chapters 3, 4 and 5, at reduced sizes, extrapolated.

Calls the nbhelpers functions the chapters call (not the notebooks), stage by stage, for CelebA tasks
(chapters 3, 4 and 5; chapter 5 for its five attributes only) and MNIST tasks (chapters 3 and 4). Every
setting is the ``paper`` profile's (MFA components, latent dimensions and variance floor, CNN width and
depth, the gammas searched, attack steps: CW-L2 500 x 3, FMN and DDN 1000, the gradient attack's step and
FMN's step in chapter 3) except the counts given on the command line: EM iterations, attacked samples,
sampled training and test images, CNN epochs and training images, SVM training images. Each stage is timed
at that size and extrapolated to the paper's with the scaling printed beside it:

- linear in EM iterations (the initialisation and the final log-likelihood pass once);
- affine in samples, timed at two sizes: CNN training (samples x epochs: a + c n, a building the model
  and the loader); every attack, timed on n / 2 and on n samples, per batch of B samples (a + c B, B the
  device's batch: an attack's steps cost the same for few samples as for a batch), the per-sample part
  of an RBF SVM's attacks also grown with its support vectors (like its training set); the bounds
  likewise, all samples one batch; the step-halving check as the gradient attack it repeats;
- linear in samples: drawing chapter 4's symmetric sets (at the paper's size a CelebA set takes a GB), and
  the test accuracy and reports of the models (linear in test samples);
- at the paper's size: drawing chapter 3's 1000 attacked samples;
- the SVM fits (a Gram matrix, then libsvm) are timed at two sizes, n / 2 and n, and extrapolated with
  the measured exponent t ~ n^p (p kept in [1, 3]);
- once per run: data loading (and the JPEG packing and unpacking with --jpeg), the outlier direction and
  derived pairs, the model cache and result writing, the Bayes classifiers' real-test accuracy (Table 3).

Each attack runs through the chapter's checkpoints, so the chapter's own evaluation that follows
(``evaluate_bayes``, ``evaluate_models``) reuses it and its stage times only the rest. The RBF SVM's gamma
search also runs with the squared distances shared by the search and the final fit (one n x n matrix instead
of the search's two and the fit's kernel), side by side, to measure that lever: same gamma and classifier.
Stages "not in total" (that lever, other MFA starts) are left out of the chapter totals. Data: --data-dir,
else $NBHELPERS_DATA_DIR, else the package's sample; checkpoints, results and models go to a temporary folder.
Not timed: figures and tables, chapter 4's Figure 8 sweeps (its figure8=False) and its "score your own
classifier" demo (the CNN attacked again on 100 samples), chapter 5's class balance table.

    OMP_NUM_THREADS=2 python bench/bench_stages.py --data-dir DATA --tasks celeba:Male mnist:0_vs_6 \\
        --em-iters 2 --n-attack 4 --train-per-class 500 --test-per-class 100 --epochs 1 --svm-n 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import runpy
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from sklearn.svm import SVC
from torch import nn

from nbhelpers.chapters import ch3_bayes as ch3
from nbhelpers.chapters import ch4_learned as ch4
from nbhelpers.chapters import ch5_real as ch5
from nbhelpers.chapters import evaluation as ev
from nbhelpers.chapters import learned
from nbhelpers.chapters.profiles import get_profile
from nbhelpers.core.device import resolve_device
from nbhelpers.runs.checkpoints import Checkpoints, run_checkpoints
from nbhelpers.runs.results import save_result
from nbhelpers.science.attacks.foolbox_attacks import default_batch_size
from nbhelpers.science.attacks.gradient import L2ComponentGradientAttack
from nbhelpers.science.classifier import BayesClassifier
from nbhelpers.science.data import TaskData, canonical_task, load_task
from nbhelpers.science.data.files import resolve_folder
from nbhelpers.science.datasets import TaskModels, derive_task_models, sample_dataset, save_task_models
from nbhelpers.science.mfa import MFA
from nbhelpers.science.models import RBFSVMModule, squared_distances
from nbhelpers.science.models.svm import GAMMA_TOLERANCE, gamma_split, gamma_workers

ROOT = Path(__file__).resolve().parents[1]
PAPER = get_profile("paper")
FOLDER_ENV = ("NBHELPERS_CHECKPOINTS_DIR", "NBHELPERS_RESULTS_DIR", "NBHELPERS_CACHE_DIR")
GRADIENT_BATCH = L2ComponentGradientAttack().batch_size
T = TypeVar("T")


def clock() -> float:
    """``time.perf_counter`` once the GPU (if in use) has finished its queued work."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = clock()
    out = fn()
    return out, clock() - start


@dataclass
class Stage:
    """One timed stage: ``seconds`` at ``size`` (``unit``), extrapolated by ``factor`` to ``paper_size``."""

    chapter: str
    name: str
    seconds: float
    size: float | None = None
    paper_size: float | None = None
    unit: str = ""
    scaling: str = "once"
    exponent: float = 1.0
    projected: float | None = None  # set where the extrapolation is not a power of the size
    in_total: bool = True  # False: an alternative or a lever, beside the chapter's own stage

    @property
    def factor(self) -> float:
        if self.size is None or self.paper_size is None:
            return 1.0
        return (self.paper_size / self.size) ** self.exponent

    @property
    def extrapolated(self) -> float:
        return self.seconds * self.factor if self.projected is None else self.projected


@dataclass
class Profiler:
    """Collects the stages of one task and prints each as it ends."""

    task: str
    stages: list[Stage] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def time(self, chapter: str, name: str, fn: Callable[[], T], **scaling: Any) -> T:
        out, seconds = timed(fn)
        self.add(Stage(chapter, name, seconds, **scaling))
        return out

    def add(self, stage: Stage) -> Stage:
        self.stages.append(stage)
        size = "" if stage.size is None else f" at {stage.size:g} {stage.unit}"
        print(
            f"  [{self.task}] ch {stage.chapter} {stage.name}: {stage.seconds:.2f} s{size} -> "
            f"{stage.extrapolated:.1f} s ({stage.scaling})",
            flush=True,
        )
        return stage

    def find(self, chapter: str, name: str) -> Stage | None:
        return next((s for s in self.stages if s.chapter == chapter and s.name == name), None)

    def totals(self) -> dict[str, dict[str, float]]:
        """Per chapter (in order of appearance): measured and extrapolated seconds of its counted stages."""
        out: dict[str, dict[str, float]] = {}
        for s in self.stages:
            if s.in_total:
                total = out.setdefault(s.chapter, {"measured": 0.0, "extrapolated": 0.0})
                total["measured"] += s.seconds
                total["extrapolated"] += s.extrapolated
        return out


def linear(size: float, paper: float, unit: str) -> dict[str, Any]:
    return {"size": size, "paper_size": paper, "unit": unit, "scaling": f"linear in {unit}"}


def two_sizes(
    profiler: Profiler, chapter: str, name: str, fit: Callable[[int], T], n: int, paper_n: int, **extra: Any
) -> T:
    """Time fit(n // 2) and fit(n); extrapolate the second with the measured exponent."""
    _, t_half = timed(lambda: fit(n // 2))
    out, t_full = timed(lambda: fit(n))
    exponent = min(3.0, max(1.0, math.log(max(t_full, 1e-9) / max(t_half, 1e-9)) / math.log(2)))
    scaling = f"n^{exponent:.2f} (measured: {t_half:.1f} s at n = {n // 2})"
    profiler.add(Stage(chapter, name, t_full, n, paper_n, "images", scaling, exponent, **extra))
    return out


def affine_stage(
    profiler: Profiler, chapter: str, name: str, fn: Callable[[int], T], n: int, paper_n: float, unit: str
) -> T:
    """Time fn(n // 2) and fn(n) after an untimed fn(n // 20) (imports, first kernels): t = a + c n (a: what
    does not grow with n, such as building the model), extrapolated to a + c ``paper_n`` (where noise
    makes c <= 0: c = t(n) / n, a = 0). Returns fn(n)."""
    fn(max(2, n // 20))
    _, t_half = timed(lambda: fn(n // 2))
    out, t_full = timed(lambda: fn(n))
    c = (t_full - t_half) / (n - n // 2)
    c = c if c > 0 else t_full / n
    a = max(t_full - c * n, 0.0)
    per = unit.split(" x ")[0].rstrip("s")
    scaling = f"{a:.1f} s + {1e3 * c:.1f} ms per {per} ({t_half:.1f} s at {n // 2})"
    profiler.add(Stage(chapter, name, t_full, n, paper_n, unit, scaling, projected=a + c * paper_n))
    return out


def attack_stage(
    profiler: Profiler,
    chapter: str,
    name: str,
    attack: Callable[[int], Any],
    n: int,
    paper_n: float,
    batch: int,
    work: float = 1.0,
) -> Stage:
    """Time attack(n // 2) and attack(n): one batch of b samples costs a + c b (a: the per-step work that
    does not grow with the batch), so the paper's N samples in batches of ``batch`` cost
    ceil(N / batch) a + c N ``work`` (``work``: the per-sample cost relative to the measured model's).
    At a few samples c drowns in the noise: on a shared CPU CW-L2 on Male's Bayes-optimal classifier took
    20 s for one face and 211 s for four (c = 64 s, 17.7 h projected), on a quiet one 8.3 s for two and
    7.6 s for four (c = 0, 64 s projected), while chapter 3's 1000 faces take 13-17 min there. So on a CPU,
    where a full batch costs far more than a few samples, take --n-attack near the batch (e.g. 64); on a
    GPU a batch costs about what a few samples do. Where the two times differ by less than the noise
    (c < 0), c = 0 and a is their mean."""
    half = max(1, n // 2)
    _, t_half = timed(lambda: attack(half))
    _, t_full = timed(lambda: attack(n))
    c = max((t_full - t_half) / (n - half), 0.0) if n > half else 0.0
    a = max(t_full - c * n, 0.0) if c > 0 or n == half else (t_half + t_full) / 2
    projected = math.ceil(paper_n / batch) * a + c * paper_n * work
    extra = f", per-sample work x {work:.1f}" if work != 1 else ""
    scaling = f"{a:.2f} s per batch of {batch} + {c:.3f} s per sample ({t_half:.1f} s at {half}){extra}"
    return profiler.add(Stage(chapter, name, t_full, n, paper_n, "samples", scaling, projected=projected))


# ------------------------------------------------------------------------------------------------ stages
def fit_mfa(mfa: MFA, x: torch.Tensor, n_iter: int, init: str, seed: int) -> float:
    """Seconds of ``mfa.fit`` with the paper's batch and variance floor (``fit_class_models``' call)."""
    sizes = PAPER.mfa
    common = {"batch_size": sizes.batch_size, "min_variance": sizes.min_variance, "progress": False}
    return timed(lambda: mfa.fit(x, n_iter=n_iter, init=init, seed=seed, **common))[1]


def fit_models(
    profiler: Profiler, task: TaskData, args: argparse.Namespace, device: torch.device
) -> TaskModels:
    """Chapter 2's models as ``build_task_models`` makes them (``fit_class_models``, then
    ``derive_task_models``), each part timed. An init is timed as fit(0 iterations) less a log-likelihood
    pass, EM as fit(--em-iters iterations) less that pass (every fit ends with one)."""
    sizes = PAPER.mfa
    fitted = []
    for label in (0, 1):
        x = torch.from_numpy(task.x_train[task.y_train == label])
        K, l = sizes.components(task.dataset, len(x))  # noqa: E741
        tag = f"class {label}: N = {len(x)}, K = {K}, l = {l}"
        for init in [*(i for i in args.inits if i != "kmeans"), "kmeans"]:  # the chapters' start last
            mfa = MFA(K, x.shape[1], l, device=device)
            t_init_pass = fit_mfa(mfa, x, 0, init, label)
            t_pass = fit_mfa(mfa, x, 0, "current", label)
            name = f"MFA init {init} ({tag})" + ("" if init == "kmeans" else " (alternative, not in total)")
            profiler.add(Stage("2", name, max(t_init_pass - t_pass, 0.0), in_total=init == "kmeans"))
        profiler.add(Stage("2", f"MFA log-likelihood pass ({tag})", t_pass))
        t_em = fit_mfa(mfa, x, args.em_iters, "current", label) - t_pass
        profiler.add(
            Stage("2", f"MFA EM ({tag})", t_em, **linear(args.em_iters, sizes.em_iterations, "iterations"))
        )
        fitted.append(mfa)
    models = profiler.time(
        "2",
        "outlier direction (PCA of all images) and the derived pairs",
        lambda: derive_task_models(
            task, (fitted[0], fitted[1]), profile="paper", seed=0, min_variance=sizes.min_variance
        ),
    ).to(device)
    folder = Path(tempfile.mkdtemp(prefix="models-", dir=args.scratch))
    profiler.time("2", "model cache write", lambda: save_task_models(models, folder))
    return models


def bayes_variant(
    profiler: Profiler,
    models: TaskModels,
    variant: str,
    n: int,
    checkpoints: Checkpoints,
    device: torch.device,
) -> ch3.BayesEvaluation:
    """``evaluate_bayes`` on one variant, each attack (and the bounds) first timed alone through the
    checkpoints it then reuses: its own stage is the rest."""
    paper_n, pair, seed = PAPER.attacks.n_attack, models.pair(variant), ch3.ATTACK_SEED_OFFSET
    name = f"sampling {paper_n} attacked samples ({variant})"  # at the paper's size: cheap
    profiler.time("3", name, lambda: sample_dataset(pair, math.ceil(paper_n / 2), seed=seed, components=True))
    x_np, y_np = sample_dataset(pair, math.ceil(n / 2), seed=seed)  # evaluate_bayes' samples
    x, y = torch.from_numpy(x_np[:n]), torch.from_numpy(y_np[:n])
    classifier = BayesClassifier(*pair).to(device)
    foolbox = {"fmn": {"max_stepsize": ch3.fmn_max_stepsize("paper")}}
    settings: dict[str, Any] = dict(budget=PAPER.attacks.budget, foolbox_kwargs=foolbox, tag=variant)
    settings |= dict(gradient_kwargs=ch3._gradient_kwargs(ch3.DEFAULT_GRADIENT_STEP), device=device)
    settings |= dict(progress=False, checkpoints=checkpoints)

    def run(m: int, attack: str) -> Any:
        return ev.attack_model(classifier, x[:m], y[:m], [attack], **settings)

    attacks = ("gradient", "cw", "fmn")
    for attack in attacks:
        batch = GRADIENT_BATCH if attack == "gradient" else default_batch_size(device)
        name = f"attack {attack} (Bayes, {variant})"
        attack_stage(profiler, "3", name, partial(run, attack=attack), n, paper_n, batch)
    if variant == "symmetric":  # all samples one "batch"
        bounds = partial(checkpoints.run, "bounds_symmetric", ch3.symmetric_bounds, classifier=classifier)
        name = "certified radius and subspace distances (symmetric)"
        attack_stage(profiler, "3", name, lambda m: bounds(x=x[:m], y=y[:m]), n, paper_n, paper_n)
    name = f"evaluate_bayes bookkeeping, attacks reused ({variant})"
    chapter_run = {"seed": 0, "device": device.type, "progress": False, "checkpoints": checkpoints}
    return profiler.time("3", name, lambda: ch3.evaluate_bayes(models, variant, n, attacks, **chapter_run))


def chapter3(profiler: Profiler, models: TaskModels, args: argparse.Namespace, device: torch.device) -> None:
    """Both variants (``bayes_variant``), the step-halving check, the result."""
    n, paper_n = args.n_attack, PAPER.attacks.n_attack
    checkpoints = run_checkpoints(ch3.CHAPTER, models.dataset, models.attribute, "paper", 0)
    variants = ("symmetric", "asymmetric")
    evaluations = [bayes_variant(profiler, models, v, n, checkpoints, device) for v in variants]
    checks = []
    for e in evaluations:
        check, seconds = timed(lambda e=e: ch3.step_halving_check(e, device.type, False, checkpoints))
        checks.append(check)
        # the gradient attack again at half the step (twice the steps), same samples, same batches
        gradient = profiler.find("3", f"attack gradient (Bayes, {e.variant})")
        assert gradient is not None
        ratio = gradient.extrapolated / gradient.seconds
        scaling = f"as the gradient attack on the same samples (x {ratio:.0f})"
        name = f"step-halving check ({e.variant})"
        profiler.add(Stage("3", name, seconds, n, paper_n, "samples", scaling, projected=seconds * ratio))
    result = ch3.chapter3_result(evaluations[0], evaluations[1], checks)
    profiler.time("3", "result writing", lambda: save_result(result, args.results_dir))


def attack_models(
    profiler: Profiler,
    chapter: str,
    modules: dict[str, nn.Module],
    data: TaskData,
    n_attack: int,
    paper_test: int,
    sv_ratio: float,
    checkpoints: Checkpoints,
    device: torch.device,
) -> ev.Evaluation:
    """``evaluate_models`` with every model x attack first timed alone, on the rows it attacks, in the layout
    it feeds, through the checkpoints that ``evaluate_models`` then reuses: its own time is the test
    accuracy and the reports."""
    x_all = torch.as_tensor(np.asarray(data.x_test, dtype=np.float32)).reshape(len(data.y_test), -1)
    y_all = torch.as_tensor(np.asarray(data.y_test)).long()
    settings: dict[str, Any] = {"device": device, "progress": False, "checkpoints": checkpoints}

    def run(m: int, model: nn.Module, attack: str, view: str, name: str) -> Any:
        rows = ev.attacked_indices(len(y_all), m, 0)  # evaluate_models' rows: its checkpoints match
        x = ev.as_view(x_all[rows], view, data.image_shape)
        return ev.attack_model(
            model, x, y_all[rows], [attack], budget=PAPER.attacks.budget, tag=name, **settings
        )

    paper_n = min(PAPER.attacks.n_attack, paper_test)
    for name, model in modules.items():
        model = model.to(device).eval()
        view = ev.input_view(model, x_all[:2], data.image_shape, device)
        work = sv_ratio if name == "rbf_svm" else 1.0  # a kernel row per support vector
        attacks = ["cw", "fmn", "ddn"]
        for attack in ["gradient", *attacks] if isinstance(model, BayesClassifier) else attacks:
            batch = GRADIENT_BATCH if attack == "gradient" else default_batch_size(device)
            fn = partial(run, model=model, attack=attack, view=view, name=name)
            attack_stage(profiler, chapter, f"attack {attack} ({name})", fn, n_attack, paper_n, batch, work)
    chapter_run = {**settings, "attacks": ["cw", "fmn", "ddn"], "n_attack": n_attack, "profile": "paper"}
    return profiler.time(
        chapter,
        "evaluate_models: test accuracy and reports, attacks reused",
        lambda: ev.evaluate_models(
            modules, data.x_test, data.y_test, data.image_shape, seed=0, **chapter_run
        ),
        **linear(len(data.y_test), paper_test, "test samples"),
    )


def train_cnn_stage(
    profiler: Profiler,
    chapter: str,
    name: str,
    data: TaskData,
    paper_samples: float,
    args: argparse.Namespace,
    device: torch.device,
) -> nn.Module:
    """``train_cnn`` with the paper's CNN on random training images, --epochs epochs, timed at two sizes."""
    order = np.random.default_rng(0).permutation(len(data.y_train))

    def train(m: int) -> nn.Module:  # m samples x epochs
        rows = np.sort(order[: max(2, m // args.epochs)])
        return learned.train_cnn(
            data.x_train[rows], data.y_train[rows], data.image_shape, profile="paper", epochs=args.epochs,
            device=device,
        )  # fmt: skip

    samples = min(2 * args.train_per_class, len(data.y_train)) * args.epochs
    return affine_stage(profiler, chapter, name, train, samples, paper_samples, "samples x epochs")


def train_svms(
    profiler: Profiler,
    chapter: str,
    data: TaskData,
    paper_n: int,
    args: argparse.Namespace,
    device: torch.device,
) -> learned.TrainedClassifiers:
    """The linear SVM and the RBF SVM with its gamma search, as ``train_classifiers`` fits them
    (``fit_linear_svm``, ``fit_rbf_svm``), at two sizes; then the same search with the distances shared,
    side by side. The CNN is left out of the returned classifiers."""
    gammas = PAPER.models.svm_gammas
    n = min(args.svm_n, len(data.y_train))
    rows = learned.svm_training_rows(len(data.y_train), n, 0)
    x, y = data.x_train[rows], data.y_train[rows]
    linear_svm = two_sizes(
        profiler,
        chapter,
        "linear SVM fit",
        lambda m: learned.fit_linear_svm(x[:m], y[:m], device=device),
        n,
        paper_n,
    )
    rbf = two_sizes(
        profiler,
        chapter,
        "RBF SVM: gamma search and fit",
        lambda m: learned.fit_rbf_svm(x[:m], y[:m], gammas=gammas, seed=0, device=device),
        n,
        paper_n,
    )
    gamma, table, shared = two_sizes(
        profiler,
        chapter,
        "RBF SVM: gamma search and fit, distances shared (lever, not in total)",
        lambda m: shared_gamma_search(x[:m], y[:m], gammas, device),
        n,
        paper_n,
        in_total=False,
    )
    probe = torch.as_tensor(x[:200], device=device)
    with torch.no_grad():
        f_chapter = rbf.module.to(device).decision_function(probe)
        f_shared = shared.to(device).decision_function(probe)
    lever = {
        "same_gamma": gamma == rbf.gamma,
        "same_gamma_table": table == rbf.gamma_search,
        "max_abs_f_difference": float((f_chapter - f_shared).abs().max()),
        "n_images": len(probe),
    }
    profiler.notes[f"lever, chapter {chapter}"] = lever
    print(f"  [{profiler.task}] shared distances, chapter {chapter}: {lever}", flush=True)
    return learned.TrainedClassifiers(
        modules={"linear_svm": linear_svm.module, "rbf_svm": rbf.module},
        gamma=rbf.gamma,
        gamma_search=rbf.gamma_search,
        n_train={"linear_svm": n, "rbf_svm": n},
        seconds={"linear_svm": linear_svm.seconds, "rbf_svm": rbf.seconds},
    )


def shared_gamma_search(
    x: np.ndarray, y: np.ndarray, gammas: tuple[float, ...], device: torch.device
) -> tuple[float, list[dict], RBFSVMModule]:
    """``select_gamma`` + ``RBFSVM(gamma).fit`` with one matrix of squared distances of all n images: the
    search's fit and validation blocks are slices of it, the final kernel its exponential."""
    xt = torch.as_tensor(x)
    d2 = squared_distances(xt, xt, device=device)  # [n, n], its upper half computed
    val, fit = gamma_split(len(y), seed=0)
    d2_fit, d2_val = d2[np.ix_(fit, fit)], d2[np.ix_(val, fit)]

    def one(gamma: float) -> dict:  # as search_gamma fits each gamma
        gram = np.exp(-gamma * d2_fit)
        svc = SVC(kernel="precomputed", C=1.0).fit(gram, y[fit])
        return {
            "gamma": gamma,
            "train_accuracy": float(svc.score(gram, y[fit])),
            "val_accuracy": float((svc.predict(np.exp(-gamma * d2_val)) == y[val]).mean()),
            "n_support": int(svc.support_.shape[0]),
            "selected": False,
        }

    with ThreadPoolExecutor(gamma_workers(len(fit), len(val), len(gammas))) as pool:
        table = list(pool.map(one, sorted(gammas)))
    best = max(row["val_accuracy"] for row in table)
    gamma = max(row["gamma"] for row in table if row["val_accuracy"] >= best - GAMMA_TOLERANCE - 1e-12)
    for row in table:
        row["selected"] = row["gamma"] == gamma
    svc = SVC(kernel="precomputed", C=1.0, cache_size=500.0).fit(np.exp(-gamma * d2), y)
    # the module RBFSVM(gamma).fit(x, y).to_torch() builds from its SVC
    return gamma, table, RBFSVMModule(x[svc.support_], svc.dual_coef_[0], float(svc.intercept_[0]), gamma)


def symmetric_cnn(
    profiler: Profiler,
    chapter: str,
    models: TaskModels,
    args: argparse.Namespace,
    device: torch.device,
    prefix: str = "",
) -> tuple[TaskData, nn.Module]:
    """Chapter 4's symmetric sets (``symmetric_data``) and its CNN trained on them, both timed."""
    sizes, n_train, n_test = PAPER.datasets, args.train_per_class, args.test_per_class
    paper = 2 * (sizes.n_train_per_class + sizes.n_test_per_class)
    data = profiler.time(
        chapter,
        f"{prefix}sampling the symmetric sets",
        lambda: learned.symmetric_data(
            models, "symmetric", n_train_per_class=n_train, n_test_per_class=n_test
        ),
        **linear(2 * (n_train + n_test), paper, "samples"),
    )
    samples = 2 * sizes.n_train_per_class * PAPER.models.cnn_epochs
    return data, train_cnn_stage(profiler, chapter, f"{prefix}CNN training", data, samples, args, device)


def chapter4(profiler: Profiler, models: TaskModels, args: argparse.Namespace, device: torch.device) -> None:
    sizes = PAPER.datasets
    data, cnn = symmetric_cnn(profiler, "4", models, args, device)
    paper_train = 2 * sizes.n_train_per_class
    trained = train_svms(profiler, "4", data, min(paper_train, PAPER.models.svm_max_train), args, device)
    trained.modules = {"cnn": cnn, **trained.modules}
    modules = {"bayes": BayesClassifier(*models.pair("symmetric")), **trained.modules}
    checkpoints = run_checkpoints(ch4.CHAPTER, models.dataset, models.attribute, "paper", 0)
    sv_ratio = min(paper_train, PAPER.models.svm_max_train) / trained.n_train["rbf_svm"]
    evaluation = attack_models(
        profiler, "4", modules, data, args.n_attack, 2 * sizes.n_test_per_class, sv_ratio, checkpoints, device
    )
    result = ch4.chapter4_result(
        models.dataset, models.attribute, "paper", 0, evaluation, None, trained, figure8=False
    )
    profiler.time("4", "result writing", lambda: save_result(result, args.results_dir))


def chapter5(profiler: Profiler, models: TaskModels, args: argparse.Namespace, device: torch.device) -> None:
    name = "data loading (real faces, 10,000 per class at most)"
    task = profiler.time("5", name, lambda: ch5.real_task(models.attribute, "paper", 0, args.data))
    n_real = len(task.y_train)
    epochs = ch5.matched_epochs(n_real, "paper")
    name = f"CNN training (paper: {epochs} epochs over {n_real} faces)"
    cnn = train_cnn_stage(profiler, "5", name, task, n_real * epochs, args, device)
    paper_svm = min(n_real, PAPER.models.svm_max_train)
    trained = train_svms(profiler, "5", task, paper_svm, args, device)
    trained.modules = {"cnn": cnn, **trained.modules}
    checkpoints = run_checkpoints(ch5.CHAPTER, "celeba", models.attribute, "paper", 0)
    sv_ratio = paper_svm / trained.n_train["rbf_svm"]
    evaluation = attack_models(
        profiler, "5", trained.modules, task, args.n_attack, len(task.y_test), sv_ratio, checkpoints, device
    )
    # Table 3's CNN on symmetric samples is chapter 4's, trained again (symmetric_vs_real) on sets drawn again
    again = [profiler.find("4", "sampling the symmetric sets"), profiler.find("4", "CNN training")]
    if all(again):
        stages = [s for s in again if s is not None]
        seconds, projected = sum(s.seconds for s in stages), sum(s.extrapolated for s in stages)
        name = "Table 3's symmetric sets and CNN (chapter 4's, again: their time)"
        profiler.add(Stage("5", name, seconds, scaling="as in chapter 4", projected=projected))
    else:  # chapter 4 not profiled: time them here
        symmetric_cnn(profiler, "5", models, args, device, prefix="Table 3's symmetric CNN: ")
    table3 = profiler.time(
        "5",
        "Bayes-optimal classifiers on the real test faces (Table 3)",
        lambda: ch5.bayes_real_accuracy(models, task),
    )
    result = ch5.chapter5_result(models.attribute, "paper", 0, evaluation, table3, trained, task)
    profiler.time("5", "result writing", lambda: save_result(result, args.results_dir))


# ------------------------------------------------------------------------------------------------ main
def summarise(profiler: Profiler) -> str:
    """The task's stages and per-chapter totals as a markdown table."""
    lines = [
        f"#### {profiler.task}",
        "",
        "| chapter | stage | measured (s) | at | scaling | paper size | extrapolated (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in profiler.stages:
        at = "" if s.size is None else f"{s.size:g} {s.unit}"
        paper = "" if s.paper_size is None else f"{s.paper_size:g}"
        row = (s.chapter, s.name, f"{s.seconds:.2f}", at, s.scaling, paper, f"{s.extrapolated:,.1f}")
        lines.append("| " + " | ".join(row) + " |")
    for chapter, total in profiler.totals().items():
        hours = f"**{total['extrapolated']:,.1f}** ({total['extrapolated'] / 3600:.1f} h)"
        lines.append(f"| {chapter} | **total** | {total['measured']:.2f} | | | | {hours} |")
    return "\n".join(lines)


def run_task(spec: str, args: argparse.Namespace, device: torch.device) -> Profiler:
    """Every stage of one task ("dataset:attribute"), printed as it ends, then its table."""
    dataset, attribute = canonical_task(*spec.split(":", 1))
    profiler = Profiler(f"{dataset}:{attribute}")
    args.data = data_dir = args.data_dir  # the task's data folder: a JPEG copy's with --jpeg
    if args.jpeg and dataset == "celeba":
        jpeg = runpy.run_path(str(ROOT / "scripts" / "celeba_jpeg.py"))  # pack, unpack
        source = resolve_folder(args.data_dir)[0] / "celeba64.npz"
        packed, unpacked = Path(args.scratch) / "celeba64_jpeg.npz", Path(args.scratch) / "celeba_jpeg94"
        profiler.time("-", "JPEG pack (once, before a GPU run)", lambda: jpeg["pack"](source, packed))
        target = unpacked / "celeba64.npz"
        profiler.time("-", "JPEG unpack (once per GPU machine)", lambda: jpeg["unpack"](packed, target))
        args.data = data_dir = str(unpacked)
    cap = PAPER.mfa.max_images_per_class  # None: all
    name = "data loading (all training images)"
    task = profiler.time(
        "2", name, lambda: load_task(dataset, attribute, data_dir=data_dir, max_per_class=cap)
    )
    models = fit_models(profiler, task, args, device)
    if "3" in args.chapters:
        chapter3(profiler, models, args, device)
    if "4" in args.chapters:
        chapter4(profiler, models, args, device)
    if "5" in args.chapters and dataset == "celeba" and attribute in ch5.REAL_ATTRIBUTES:
        chapter5(profiler, models, args, device)
    elif "5" in args.chapters:
        print(f"  [{profiler.task}] no chapter 5: it takes {', '.join(ch5.REAL_ATTRIBUTES)} only", flush=True)
    print(summarise(profiler), flush=True)
    return profiler


def machine(device: torch.device) -> str:
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    return (
        f"device {device}{gpu}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    )


def main(argv: list[str] | None = None) -> list[Profiler]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with celeba64.npz / mnist.npz (default: $NBHELPERS_DATA_DIR, else the shipped sample)",
    )
    parser.add_argument(
        "--tasks", nargs="+", default=["celeba:Male", "mnist:0_vs_6"], help="dataset:attribute"
    )
    parser.add_argument("--chapters", nargs="+", default=["3", "4", "5"], choices=["3", "4", "5"])
    parser.add_argument("--em-iters", type=int, default=2, help="EM iterations per class (paper: 40)")
    parser.add_argument(
        "--inits",
        nargs="+",
        default=["kmeans"],
        choices=["kmeans", "sklearn-kmeans", "random"],
        help="MFA starts timed; kmeans (the chapters') is always timed and the EM continues from it",
    )
    parser.add_argument("--n-attack", type=int, default=4, help="attacked samples per model (paper: 1000)")
    parser.add_argument(
        "--train-per-class", type=int, default=500, help="sampled training images (paper: 10,000)"
    )
    parser.add_argument("--test-per-class", type=int, default=100, help="sampled test images (paper: 1000)")
    parser.add_argument("--epochs", type=int, default=1, help="CNN epochs (paper: 20; chapter 5 matched)")
    parser.add_argument("--svm-n", type=int, default=1000, help="SVM training images (paper: 20,000)")
    parser.add_argument("--jpeg", action="store_true", help="also time packing and unpacking the JPEG copy")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--json", default=None, help="also write every stage and total to this JSON file")
    args = parser.parse_args(argv)
    for name in ("em_iters", "train_per_class", "test_per_class", "epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if not 2 <= args.n_attack <= 2 * args.test_per_class or args.svm_n < 8:
        parser.error(
            "--n-attack must be >= 2 (attacks are timed on n / 2 and on n samples) and <= 2 x "
            "--test-per-class (chapter 4 attacks its test samples); --svm-n >= 8 (two sizes, both classes)"
        )
    device = resolve_device(args.device)
    scratch = Path(tempfile.mkdtemp(prefix="bench-stages-"))
    args.scratch, args.results_dir = str(scratch), str(scratch / "results")
    saved = {name: os.environ.get(name) for name in FOLDER_ENV}
    for name, sub in zip(FOLDER_ENV, ("checkpoints", "results", "cache"), strict=True):
        os.environ[name] = str(scratch / sub)
    load_start = os.getloadavg()[0]
    line = machine(device)
    print(f"{line}; load average (1 min) at start: {load_start:.2f}", flush=True)
    try:
        profilers = [run_task(spec, args, device) for spec in args.tasks]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(scratch, ignore_errors=True)
    load_end = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load_end:.2f}", flush=True)
    if args.json:
        tasks = [
            {
                "task": p.task,
                "totals": p.totals(),
                "notes": p.notes,
                "stages": [{**asdict(s), "extrapolated": s.extrapolated} for s in p.stages],
            }
            for p in profilers
        ]
        arguments = {k: v for k, v in vars(args).items() if k not in ("scratch", "results_dir", "data")}
        load = {"start": load_start, "end": load_end}
        report = {"machine": line, "load_average_1min": load, "arguments": arguments, "tasks": tasks}
        Path(args.json).write_text(json.dumps(report, indent=1))
    return profilers


if __name__ == "__main__":
    main()
