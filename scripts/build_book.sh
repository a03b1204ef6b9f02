#!/usr/bin/env bash
# Build the book: execute every chapter (quick profile) and write HTML to _build/html.
source "$(dirname "$0")/bootstrap.sh"
cd "$ROOT"
jupyter-book build . --all "$@"
echo "HTML written to $ROOT/_build/html/index.html"
