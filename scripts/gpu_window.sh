#!/usr/bin/env bash
# One GPU window on a bare server: install the wheels brought along, unpack the faces, run the next chunk of
# the paper grid under a time budget, and leave the results, their stamps and the manifest in one output
# folder, to be copied back whole (results/paper/README.md, "A GPU window").
#
#   bash scripts/gpu_window.sh OUT DATA WHEELS BUDGET [SWEEP OPTIONS...]
#
#   OUT     the output folder: results in OUT/PROFILE/ with their stamps, executed notebooks and logs in
#           OUT/sweeps/PROFILE/, the manifest OUT/manifest.json. Without a manifest yet it starts as a copy of
#           the committed results (GPU_WINDOW_FROM): the sweep skips what they hold, and copying OUT back
#           extends them. Best a folder inside the checkout (e.g. window): the manifest records the command
#           with OUT's path from the checkout, so no machine's path lands in it.
#   DATA    a data folder (mnist.npz, celeba64.npz), or the JPEG copy of the faces that
#           `python scripts/celeba_jpeg.py pack` makes: the file itself, or a data folder holding it as
#           celeba64_jpeg.npz instead of celeba64.npz. It is unpacked (`celeba_jpeg.py unpack`) into
#           WORK/celeba_jpegQ (Q: its JPEG quality) beside links to the folder's other files (for a file: its
#           neighbour mnist.npz). "-": the sample bundled with the package.
#   WHEELS  a folder of wheels (scripts/offline_wheels.sh), installed with pip --no-index --no-deps --target
#           WORK/site, which goes on PYTHONPATH; "-": none
#   BUDGET  whole seconds this script may take from its start (start-up of the machine not included); the
#           sweep gets what is left after the installing and unpacking, less GPU_WINDOW_MARGIN, and starts
#           only the runs expected to end in it (`nbhelpers sweep --time-budget`)
#   SWEEP OPTIONS  go to `nbhelpers sweep`: --chapters 04 05, --tasks celeba:Smiling, -p figure8=False,
#           --keep-finished, --runs-per-gpu 2, ...
#
# Environment: GPU_WINDOW_PROFILE (default paper), GPU_WINDOW_DEVICE (cuda), GPU_WINDOW_MARGIN (45: seconds
# kept for writing the manifest and ending), GPU_WINDOW_BENCHES (default none; "all", or options of
# bench/gpu_benches.py such as "--only cnn-precision figure8": the benchmarks still wanted on a GPU, run in the
# time the sweep leaves, their report in OUT/gpu_benches.md; they do not change the exit status), GPU_WINDOW_WORK (${TMPDIR:-/tmp}/gpu_window: the installed
# wheels and unpacked faces), GPU_WINDOW_FROM (the results OUT starts from: results/paper of this checkout for
# the paper profile, else none; "-": none), PYTHON (python3).
#
# It prints the plan first (`sweep --plan`), then runs the sweep under `nbhelpers record`. Run it again in the
# next window (with OUT copied back into results/paper, or the same OUT) and it goes on with the runs left.
# Exit status: the sweep's (0: every started run finished, some perhaps left for the next window; 1: a run
# failed), 2: bad input (nothing ran).
set -euo pipefail

fail() {
    echo "gpu_window.sh: error: $*" >&2
    exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-python3}
profile=${GPU_WINDOW_PROFILE:-paper}
device=${GPU_WINDOW_DEVICE:-cuda}
margin=${GPU_WINDOW_MARGIN:-45}
work=${GPU_WINDOW_WORK:-${TMPDIR:-/tmp}/gpu_window}
if [ "$profile" = paper ]; then
    from=${GPU_WINDOW_FROM:-$root/results/paper}
else
    from=${GPU_WINDOW_FROM:--}
fi

if [ $# -lt 4 ]; then
    fail "usage: bash scripts/gpu_window.sh OUT DATA WHEELS BUDGET [SWEEP OPTIONS...] (see the script's head)"
fi
out=$1 data=$2 wheels=$3 budget=$4
shift 4
[[ $budget =~ ^[0-9]+$ ]] && [ "$budget" -gt 0 ] ||
    fail "BUDGET '$budget' is not a positive whole number of seconds: give e.g. 540 for a 10-minute window"
[[ $margin =~ ^[0-9]+$ ]] || fail "GPU_WINDOW_MARGIN '$margin' is not a whole number of seconds, e.g. 45"
for option in "$@"; do
    case $option in
    --profile | --profile=* | --device | --device=* | --results-dir | --results-dir=* | --time-budget | \
        --time-budget=* | --engine | --engine=*)
        fail "$option is set by this script: use GPU_WINDOW_PROFILE, GPU_WINDOW_DEVICE, OUT or BUDGET" ;;
    esac
done
if [ "$data" != - ] && [ ! -e "$data" ]; then
    fail "DATA $data does not exist: give a data folder, the JPEG copy of the faces, or - for the bundled sample"
fi
if [ "$wheels" != - ] && [ ! -d "$wheels" ]; then
    fail "WHEELS $wheels is not a folder: give the folder that scripts/offline_wheels.sh filled, or - for none"
fi
if [ "$from" != - ] && [ ! -d "$from" ]; then
    fail "GPU_WINDOW_FROM $from is not a folder: give a results folder to start OUT from, or - for none"
fi

# Paths as given are relative to the caller's folder; the commands run in the checkout.
absolute() { (cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"); }
mkdir -p "$out" "$work"
out=$(cd "$out" && pwd)
work=$(cd "$work" && pwd)
[ "$data" = - ] || data=$(absolute "$data")
[ "$wheels" = - ] || wheels=$(cd "$wheels" && pwd)
cd "$root"
case $out/ in
"$root"/*) out_arg=${out#"$root"/} ;; # what the manifest records
*) out_arg=$out ;;
esac
out_arg=${out_arg:-.}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

if [ "$wheels" != - ]; then
    shopt -s nullglob
    found=("$wheels"/*.whl)
    shopt -u nullglob
    if [ ${#found[@]} -eq 0 ]; then
        echo "== no wheels in $wheels: nothing to install"
    else
        echo "== installing ${#found[@]} wheels into $work/site"
        "$py" -m pip install --quiet --no-index --no-deps --upgrade --target "$work/site" "${found[@]}"
        export PYTHONPATH="$work/site:$PYTHONPATH"
    fi
fi

# unpack PACKED [FOLDER]: decode the JPEG copy into WORK/celeba_jpegQ, link FOLDER's other files (or the
# packed file's neighbour mnist.npz) beside it, and print that folder.
unpack() {
    local packed=$1 folder=${2:-} quality target entry
    quality=$("$py" -c 'import sys, numpy; print(int(numpy.load(sys.argv[1])["jpeg_quality"]))' "$packed") ||
        fail "$packed is not a JPEG copy of the faces (python scripts/celeba_jpeg.py pack makes one)"
    target=$work/celeba_jpeg$quality
    mkdir -p "$target"
    if [ ! -f "$target/celeba64.npz" ] || [ "$packed" -nt "$target/celeba64.npz" ]; then
        "$py" scripts/celeba_jpeg.py unpack "$packed" "$target/celeba64.npz" >&2
    fi
    if [ -n "$folder" ]; then
        for entry in "$folder"/*; do
            [ "$entry" = "$packed" ] || [ "$(basename "$entry")" = celeba64.npz ] ||
                ln -sfn "$entry" "$target/$(basename "$entry")"
        done
    elif [ -f "$(dirname "$packed")/mnist.npz" ]; then
        ln -sfn "$(dirname "$packed")/mnist.npz" "$target/mnist.npz"
    fi
    echo "$target"
}

if [ "$data" = - ]; then
    unset NBHELPERS_DATA_DIR
    echo "== data: the bundled sample"
elif [ -f "$data" ]; then
    echo "== unpacking the faces of $data"
    NBHELPERS_DATA_DIR=$(unpack "$data")
elif [ ! -f "$data/celeba64.npz" ] && [ -f "$data/celeba64_jpeg.npz" ]; then
    echo "== unpacking the faces of $data/celeba64_jpeg.npz"
    NBHELPERS_DATA_DIR=$(unpack "$data/celeba64_jpeg.npz" "$data")
else
    NBHELPERS_DATA_DIR=$data
fi
if [ -n "${NBHELPERS_DATA_DIR:-}" ]; then
    export NBHELPERS_DATA_DIR
    echo "== data: $NBHELPERS_DATA_DIR"
fi

if [ "$from" != - ] && [ ! -e "$out/manifest.json" ]; then
    from=$(cd "$from" && pwd)
    echo "== starting $out from $from"
    [ ! -f "$from/manifest.json" ] || cp "$from/manifest.json" "$out/manifest.json"
    mkdir -p "$out/$profile"
    for entry in "$from/$profile"/*.json "$from/$profile"/*.json.done; do
        [ ! -f "$entry" ] || [ -e "$out/$profile/$(basename "$entry")" ] || cp "$entry" "$out/$profile/"
    done
fi

sweep=(-m nbhelpers sweep --profile "$profile" --results-dir "$out_arg" --device "$device" --engine python)
sweep+=(--no-progress "$@")
left=$((budget - SECONDS - margin))
[ "$left" -gt 0 ] || fail "BUDGET $budget s is spent: setting up took $SECONDS s and $margin s are kept for the end"
echo "== plan: $left s for the sweep"
"$py" "${sweep[@]}" --plan --time-budget "$left"
left=$((budget - SECONDS - margin))
[ "$left" -gt 0 ] || fail "BUDGET $budget s is spent after planning ($SECONDS s); give a larger one"
echo "== sweep: $left s"
status=0
"$py" -m nbhelpers record --results-dir "$out_arg" -- "$py" "${sweep[@]}" --time-budget "$left" || status=$?
benches=${GPU_WINDOW_BENCHES:-}
left=$((budget - SECONDS - margin))
if [ -n "$benches" ] && [ "$left" -gt 0 ]; then
    echo "== benchmarks: $left s"
    options=()
    [ "$benches" = all ] || read -ra options <<<"$benches"
    "$py" bench/gpu_benches.py --budget "$left" --device "$device" --report "$out/gpu_benches.md" "${options[@]}" ||
        echo "== a benchmark failed or was stopped: see $out/gpu_benches.md"
fi
echo "== done in $SECONDS s (exit status $status): copy $out back whole"
[ "$from" = - ] || echo "   e.g. cp -r $out/. $from/"
exit "$status"
