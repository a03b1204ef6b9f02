"""The benchmarks still to be measured on a GPU, run in order of need inside a time budget, into one report.

GPU time comes in short windows, so this runs the benchmark commands of ``bench/README.md`` that have no GPU
row yet one after another, most wanted first, each only if its expected seconds fit in what is left of
``--budget``, each in its own process stopped when the budget is spent. Every command's output (stdout and
stderr) goes into one Markdown report under a heading with the command, its exit status and its wall seconds;
the report is rewritten after each command, so a run killed half-way keeps what finished.

The expected seconds are for one H100 at the ``full`` sizes, from the GPU rows of ``bench/README.md`` where
they exist and stated guesses where not (``BENCHES``); ``--sizes smoke`` runs every command at tiny sizes on
any machine (about 8 min on a 2-core CPU, the per-stage profiles most of it) to check the commands and this
runner, not to measure.

    python bench/gpu_benches.py --budget 240 --data-dir DATA --report window/gpu_benches.md
    python bench/gpu_benches.py --sizes smoke --device cpu --budget 300 --report smoke.md

Exit status: 0 when every command that started ended well (some may have been left for lack of time), 1 when
one failed or was stopped at the budget, 2 for bad input.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from nbhelpers.core.device import resolve_device
from nbhelpers.core.io import write_text_atomic
from nbhelpers.science.data.files import resolve_folder

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    """One benchmark command: ``full`` and ``smoke`` are its arguments after the script, split at spaces,
    ``{device}`` and ``{data}`` then filled in; ``h100_seconds`` its expected wall time at the full sizes
    on one H100."""

    name: str
    script: str
    what: str
    h100_seconds: float
    full: str
    smoke: str


_MFA = "--data-dir {data} --attribute Male --classes 0 --device {device} --inits kmeans sklearn-kmeans"
_STAGES = "--data-dir {data} --tasks celeba:Male --device {device}"
_LEARNED = "--train-per-class 10000 --test-per-class 1000 --epochs 20 --svm-n 20000"
_LEARNED_SMOKE = "--train-per-class 40 --test-per-class 10 --epochs 1 --svm-n 80"

#: Most wanted first. Expected seconds: the CNN rows of bench/README.md took 5 s per measurement (3 here);
#: the training-loop and sampling rows take 3 s each (6 and 4 rows, warm-ups besides);
#: the MFA start on the host took 20.7 s (scikit-learn) before 10 EM iterations of 0.02 s; the gamma search
#: is five libsvm fits at once, the slowest about 12 s on this data; chapter 4 and 5 on Male took 6.0 and
#: 6.1 min as chapter runs (results/paper/README.md), and the profiles attack 1.5 times as many samples (at
#: n / 2 and at n) but skip the figures; chapter 3 is a guess from the attack benchmarks; the overlap bench
#: trains chapter 5's three models twice (about 20 s of CNN and 60 s of SVMs, then the longer of the two).
BENCHES: tuple[Bench, ...] = (
    Bench(
        "cnn-precision",
        "bench_cnn.py",
        "CNN training in float32 and bfloat16, attack steps (the mixed-precision lever)",
        45,
        "--device {device} --precision float32 bfloat16 --seconds 3",
        "--device {device} --precision float32 bfloat16 --seconds 0.05 --profile quick --datasets mnist",
    ),
    Bench(
        "training-loop",
        "bench_training_loop.py",
        "the chapters' training loop against its bare Adam step and the loop before (per-step reads)",
        40,
        "--device {device} --seconds 3",
        "--device {device} --seconds 0.05 --n 64 --profile quick --datasets mnist",
    ),
    Bench(
        "sampling",
        "bench_sampling.py",
        "Figure 8's fresh training samples drawn with the host's generator against the device's",
        30,
        "--device {device} --seconds 3",
        "--device {device} --seconds 0.05 --datasets mnist",
    ),
    Bench(
        "mfa-init",
        "bench_mfa.py",
        "the torch k-means start against scikit-learn's on 4,000 real faces, 10 EM iterations from each",
        60,
        f"{_MFA} --fit-seeds 1 --n 4000 --K 10 --l 10 --iters 10",
        f"{_MFA} --fit-seeds 1 --n 200 --K 2 --l 2 --iters 1",
    ),
    Bench(
        "figure8",
        "bench_cnn.py",
        "each CNN of chapter 4's Figure 8 sweeps: its real GPU cost per task",
        120,
        "--device {device} --figure8 --seconds 1",
        "--device {device} --figure8 --seconds 0.02 --profile quick --datasets mnist",
    ),
    Bench(
        "gamma",
        "bench_gamma.py",
        "the RBF SVM's gamma search on the 15,063 Male faces, gammas one at a time and all at once",
        90,
        "--n 15063 --data-dir {data} --attribute Male --device {device}",
        "--n 300 --data-dir {data} --attribute Male --device {device}",
    ),
    Bench(
        "overlap",
        "bench_overlap.py",
        "chapter 5's CNN and SVMs one after another and overlapped (the SVMs in a thread): the host's lever",
        180,
        "--data-dir {data} --attribute Male --device {device}",
        "--data-dir {data} --attribute Male --device {device} --profile quick --train-n 80 --svm-n 60 "
        "--epochs 1",
    ),
    Bench(
        "stages-ch3",
        "bench_stages.py",
        "chapter 3's per-stage profile on Male at the paper's size (target: 45 s)",
        300,
        f"{_STAGES} --chapters 3 --em-iters 40 --n-attack 1000",
        f"{_STAGES} --chapters 3 --em-iters 1 --n-attack 2",
    ),
    Bench(
        "stages-ch4",
        "bench_stages.py",
        "chapter 4's per-stage profile on Male at the paper's size (target: 60 s)",
        540,
        f"{_STAGES} --chapters 4 --em-iters 40 --n-attack 1000 {_LEARNED}",
        f"{_STAGES} --chapters 4 --em-iters 1 --n-attack 2 {_LEARNED_SMOKE}",
    ),
    Bench(
        "stages-ch5",
        "bench_stages.py",
        "chapter 5's per-stage profile on Male at the paper's size (target: 45 s)",
        540,
        f"{_STAGES} --chapters 5 --em-iters 40 --n-attack 1000 {_LEARNED}",
        f"{_STAGES} --chapters 5 --em-iters 1 --n-attack 2 {_LEARNED_SMOKE}",
    ),
)


def command(bench: Bench, sizes: str, device: str, data: Path) -> list[str]:
    """The command line of ``bench`` at ``sizes`` ("full" or "smoke") on ``device``, data from ``data``."""
    args = (bench.full if sizes == "full" else bench.smoke).split()
    return [sys.executable, str(BENCH / bench.script), *(a.format(device=device, data=data) for a in args)]


def _shown(path: Path) -> str:
    """``path`` as the report shows it: from the working folder when inside it, else by its name alone (no
    machine's folders in a report meant to be committed)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return path.name


def _section(
    bench: Bench, argv: list[str], outcome: str, seconds: float | None, output: str, data: Path
) -> str:
    shown = " ".join(["python", f"bench/{bench.script}", *argv[2:]]).replace(str(data), "DATA")
    lines = [f"## {bench.name}: {bench.what}", "", f"`{shown}`", "", f"**{outcome}**"]
    if seconds is not None:
        lines[-1] += f" in {seconds:.1f} s (expected on one H100, full sizes: {bench.h100_seconds:.0f} s)"
    if output:
        lines += ["", "```text", output.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def run(names: tuple[str, ...], budget: float, sizes: str, device: str, data: Path, report: Path) -> int:
    """Run the benches ``names`` in ``BENCHES``' order inside ``budget`` seconds, writing ``report``; the
    exit status (0: all that started ended well, 1: one failed or was stopped)."""
    start = time.perf_counter()
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu"
    head = [
        "# GPU benchmarks of one window",
        "",
        f"Device {device} ({name}), torch {torch.__version__}, {sizes} sizes, budget {budget:.0f} s, "
        f"DATA: {_shown(data)}.",
        "",
    ]
    sections: list[str] = []
    status = 0
    for bench in (b for b in BENCHES if b.name in names):
        left = budget - (time.perf_counter() - start)
        argv = command(bench, sizes, device, data)
        if sizes == "full" and bench.h100_seconds > left:
            expects = f"expects {bench.h100_seconds:.0f} s, {max(left, 0):.0f} s left"
            outcome = f"left for the next window: {expects}"
            sections.append(_section(bench, argv, outcome, None, "", data))
            print(f"== {bench.name}: {outcome}", flush=True)
            continue
        print(f"== {bench.name} ({left:.0f} s left)", flush=True)
        began = time.perf_counter()
        try:
            done = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=max(left, 1)
            )
            output, code = done.stdout, done.returncode
            outcome = "ended well" if code == 0 else f"failed (exit status {code})"
        except subprocess.TimeoutExpired as stopped:
            output = stopped.stdout if isinstance(stopped.stdout, str) else (stopped.stdout or b"").decode()
            code, outcome = 1, "stopped: the budget was spent"
        status = status or int(code != 0)
        sections.append(_section(bench, argv, outcome, time.perf_counter() - began, output, data))
        write_text_atomic(report, "\n".join(head + sections))
        print(f"   {outcome}", flush=True)
    write_text_atomic(report, "\n".join(head + sections))
    print(f"== report: {report} ({time.perf_counter() - start:.0f} s)")
    return status


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--budget", type=float, required=True, help="seconds for all the benchmarks together")
    parser.add_argument("--report", type=Path, required=True, help="the Markdown report to write")
    names = [bench.name for bench in BENCHES]
    parser.add_argument("--only", nargs="+", choices=names, default=names, help="benchmarks to run")
    parser.add_argument("--sizes", choices=("full", "smoke"), default="full")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto")
    parser.add_argument("--data-dir", default=None, help="$NBHELPERS_DATA_DIR, else the bundled sample")
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be a positive number of seconds, got {args.budget:g}: give e.g. 240")
    data, _ = resolve_folder(args.data_dir)
    device = str(resolve_device(args.device))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    return run(tuple(args.only), args.budget, args.sizes, device, data, args.report)


if __name__ == "__main__":
    sys.exit(main())
