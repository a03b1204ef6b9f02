#!/usr/bin/env bash
# Run the test suite: unit tests of nbhelpers, ruff, and a full execution and build of the book.
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
# Two pytest-xdist workers: the book's build, the longest test, runs beside all the others (tests/conftest.py
# starts it first and splits the cores between the workers). Pass -n 0 to run in one process.
python -m pytest -n 2 --dist worksteal "$@"
