#!/usr/bin/env bash
# Download the wheels that a machine without internet needs to run the sweep's chapters with
# `--engine python`, when it already has Python >= 3.11 with torch, numpy, scipy, scikit-learn,
# pandas, matplotlib, tqdm, safetensors, requests and typing-extensions (a typical GPU image).
# All of them are pure Python, so one download serves any platform and Python version.
#
#   bash scripts/offline_wheels.sh [DIR]        # default DIR: wheels/
#
# Then, on the offline machine, from the repository root:
#   python3 -m pip install --no-index --no-deps --target /tmp/site DIR/*.whl
#   export PYTHONPATH=/tmp/site:$PWD
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-wheels}"
# foolbox as requirements.txt pins it, and the packages it needs beyond the scientific stack.
python3 -m pip download --no-deps --only-binary=:all: --dest "$dest" \
    foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3
echo "wheels in $dest/:"
ls -1 "$dest"
