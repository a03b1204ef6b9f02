"""Score your model against the Bayes-optimal classifier: ``nbhelpers.benchmark`` and ``python -m nbhelpers
score``.

Each task's score (``nbhelpers.chapters.benchmark.score_against_bayes``) is written as a score file
(``score_file``: JSON with a top-level ``ratio_to_bayes``) and a figure of the two distributions of
perturbation sizes (PNG beside it). Score files placed in ``results/<profile>/leaderboard/`` join the
leaderboard chapter.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HELP = "score your model's robustness against the Bayes-optimal classifier on the book's datasets"
VARIANT_CHOICES = ("symmetric", "asymmetric", "fitted")  # datasets.VARIANTS, without importing torch
DEFAULT_TASK = "mnist:0_vs_6"


class ScoreError(ValueError):
    """Bad input to ``score``; the message names the problem and the fix."""


def safe_name(name: str) -> str:
    """``name`` as a file-name part: letters, digits, '-', '_' and '.' (others become '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def benchmark(
    model: Any,
    tasks: str | Sequence[str] = (DEFAULT_TASK,),
    variant: str = "symmetric",
    profile: str = "quick",
    train: bool = False,
    *,
    n_attack: int | None = None,
    attacks: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "auto",
    data_dir: str | None = None,
    name: str | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Any:
    """Score ``model`` on each of ``tasks`` against the Bayes-optimal classifier; the table of the scores.

    ``model``: a trained torch module (x [n, d] or [n, C, H, W] in [0, 1] -> logits [n, 2]), or with
    ``train=True`` a factory returning an untrained one, trained on each task's training samples by the book's
    training loop. ``tasks``: "mnist:0_vs_6", "celeba:Male", ... (one or several). With ``out_dir``, each
    task's score file ``<out_dir>/<name>__<dataset>__<attribute>.json`` and its figure (``.png``) are
    written. Returns ``chapters.benchmark.benchmark_table`` of the scores (the ratio's column is "ratio to
    Bayes"; see ``chapters.benchmark.RATIO_HELP``).
    """
    from nbhelpers.chapters.benchmark import benchmark_table

    scores = score_tasks(
        model,
        [tasks] if isinstance(tasks, str) else list(tasks),
        variant=variant,
        profile=profile,
        train=train,
        n_attack=n_attack,
        attacks=attacks,
        seed=seed,
        device=device,
        data_dir=data_dir,
        name=name,
        progress=progress,
    )
    if out_dir is not None:
        for score in scores:
            stem = f"{safe_name(score.name)}__{score.task[0]}__{score.task[1]}"
            write_scores([score], Path(out_dir) / f"{stem}.json")
    return benchmark_table(scores)


def score_tasks(model: Any, tasks: Sequence[str], **options: Any) -> list[Any]:
    """``score_against_bayes`` on each task (validated first, before any fit), the same options each."""
    from nbhelpers.chapters.benchmark import parse_task, score_against_bayes
    from nbhelpers.chapters.profiles import get_profile
    from nbhelpers.core.progress import tqdm

    if not tasks:
        raise ScoreError(f"no task given: name one or more, e.g. {DEFAULT_TASK}")
    parsed = [parse_task(task) for task in tasks]
    get_profile(options["profile"])
    if options["variant"] not in VARIANT_CHOICES:
        raise ScoreError(
            f"unknown variant {options['variant']!r}: valid variants are {', '.join(VARIANT_CHOICES)}"
        )
    attacks = options.pop("attacks", None)
    if attacks is not None:
        options["attacks"] = attacks
    progress = options.pop("progress", True)
    out = []
    for task in tqdm(parsed, desc="tasks", unit="task", disable=not progress or len(parsed) == 1):
        out.append(score_against_bayes(model, task, progress=progress, **options))
    return out


def write_scores(scores: Sequence[Any], path: str | os.PathLike) -> Path:
    """Write the score file ``path`` (JSON) and the figure beside it (same name, ``.png``): one panel per
    task with the two distributions of perturbation sizes."""
    import matplotlib.pyplot as plt

    from nbhelpers.chapters.benchmark import plot_l2_distributions, score_file
    from nbhelpers.core.io import atomic_path, write_json_atomic

    path = Path(path)
    write_json_atomic(path, score_file(scores))
    fig, axes = plt.subplots(1, len(scores), figsize=(5.2 * len(scores), 3.8), squeeze=False)
    for ax, score in zip(axes[0], scores, strict=True):
        plot_l2_distributions(score, ax=ax)
    fig.tight_layout()
    with atomic_path(path.with_suffix(".png")) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def load_scores(folder: str | os.PathLike) -> list[Any]:
    """Every score of the score files (``*.json``) in ``folder`` (none when it does not exist); a file that is
    not a score file raises with its path."""
    from nbhelpers.chapters.benchmark import scores_from_file

    folder = Path(folder)
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}): fix or remove it") from err
        out += scores_from_file(payload, str(path))
    return out


def load_object(spec: str) -> Any:
    """The object ``MODULE:NAME`` names: MODULE an importable module (``mypkg.models``) or a Python file
    (``path/to/models.py``), NAME an attribute of it (a factory or a module)."""
    module_name, sep, attribute = spec.rpartition(":")
    if not sep or not module_name or not attribute:
        raise ScoreError(f"name your model as MODULE:FACTORY (e.g. mymodels.py:make_cnn), got {spec!r}")
    try:
        if module_name.endswith(".py") or os.sep in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise ScoreError(
                    f"no Python file {path} (from {spec!r}): give the path of the file with your model"
                )
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules.setdefault(path.stem, module)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ScoreError:
        raise
    except Exception as err:  # the user's module failed to import: say which and why
        raise ScoreError(
            f"could not import {module_name!r} (from {spec!r}): {type(err).__name__}: {err}"
        ) from err
    if not hasattr(module, attribute):
        public = sorted(name for name in vars(module) if not name.startswith("_"))
        raise ScoreError(
            f"{module_name!r} has no {attribute!r}; it defines {', '.join(public) or 'nothing public'}"
        )
    return getattr(module, attribute)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``score`` subcommand's arguments."""
    from nbhelpers.chapters.benchmark import RATIO_HELP

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "How to read the score:\n  "
        + RATIO_HELP
        + "\n\nExample:\n  python -m nbhelpers score mymodels.py:make_cnn "
        "--task mnist:0_vs_6 --train --out scores/mine.json\nExit status: 0 scored, 2 bad input."
    )
    parser.add_argument(
        "model",
        metavar="MODULE:FACTORY",
        help="your model: a factory (or a trained module) in a module or .py file, e.g. mymodels.py:make_cnn",
    )
    parser.add_argument("--task", action="append", default=None, metavar="DATASET:ATTRIBUTE",
                        help=f"a task to score on (repeat for several; default {DEFAULT_TASK})")  # fmt: skip
    parser.add_argument("--variant", default="symmetric", help="symmetric (default), asymmetric or fitted")
    parser.add_argument(
        "--profile", default="quick", help="quick (CPU, default) or paper (the paper's sizes)"
    )
    parser.add_argument("--train", action="store_true", help="call the factory and train its module first")
    parser.add_argument(
        "--n-attack", type=int, default=None, help="test samples attacked (default: the profile's)"
    )
    parser.add_argument("--attacks", nargs="+", default=None, help="attacks (default: cw fmn ddn)")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the samples and the training (default 0)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--data-dir", default=None, help="folder with the full data (default: $NBHELPERS_DATA_DIR)"
    )
    parser.add_argument("--name", default=None, help="your model's name in the score and the leaderboard")
    parser.add_argument(
        "--out", default="score.json", help="the score file (JSON; the figure goes beside it)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.is_dir():
        raise ScoreError(f"--out {out} is a folder: give a file name, e.g. {path / 'score.json'}")
    if path.suffix != ".json":
        raise ScoreError(f"--out {out} must end in .json (the figure is written beside it as .png)")
    if path.parent.exists() and not path.parent.is_dir():
        raise ScoreError(f"--out {out}: {path.parent} is a file, not a folder")
    return path


def run(args: argparse.Namespace) -> int:
    """Carry out ``score``: 0 when the score file is written, 2 on bad input (the message names it)."""
    try:
        out = _check_out(args.out)
        if args.n_attack is not None and args.n_attack < 1:
            raise ScoreError(f"--n-attack must be at least 1, got {args.n_attack}")
        if args.seed < 0:
            raise ScoreError(f"--seed must be a non-negative integer, got {args.seed}")
        model = load_object(args.model)
        import torch

        if args.train and isinstance(model, torch.nn.Module):
            raise ScoreError(
                f"--train needs a factory, but {args.model} is a torch module: name a function that returns "
                "a new module, or drop --train to score this one as it is"
            )
        if not args.train and not isinstance(model, torch.nn.Module):
            model = _call_factory(model, args.model)
        name = args.name or args.model.rpartition(":")[2]
        scores = score_tasks(
            model,
            args.task or [DEFAULT_TASK],
            variant=args.variant,
            profile=args.profile,
            train=args.train,
            n_attack=args.n_attack,
            attacks=args.attacks,
            seed=args.seed,
            device=args.device,
            data_dir=args.data_dir,
            name=name,
            progress=not args.no_progress,
        )
        path = write_scores(scores, out)
    except (ScoreError, ValueError, TypeError, OSError) as err:
        print(f"nbhelpers score: error: {err}", file=sys.stderr)
        return 2
    for score in scores:
        ratio = score.ratio_to_bayes
        print(
            f"{score.task[0]}:{score.task[1]} ({score.variant}): {score.name} mean L2 "
            f"{score.model.mean_l2:.3f}, "
            f"Bayes-optimal {score.bayes.mean_l2:.3f}, ratio_to_bayes {ratio:.3f}; clean accuracy "
            f"{score.model.clean_accuracy:.1%} on {score.model.n} attacked samples"
        )
    print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def _call_factory(factory: Callable[[], Any], spec: str) -> Any:
    """A trained module from ``factory()`` (a function that builds and loads one); errors name ``spec``."""
    import torch

    if not callable(factory):
        raise ScoreError(f"{spec} is a {type(factory).__name__}, neither a torch module nor a factory")
    try:
        module = factory()
    except Exception as err:
        raise ScoreError(f"calling {spec}() failed: {type(err).__name__}: {err}") from err
    if not isinstance(module, torch.nn.Module):
        raise ScoreError(f"{spec}() returned {type(module).__name__}, not a torch nn.Module")
    return module
