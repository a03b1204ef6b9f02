#!/usr/bin/env bash
# Run the test suite: unit tests of nbhelpers, ruff, and a full execution and build of the book.
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
python -m pytest "$@"
