"""``python -m nbhelpers``: the command line (``nbhelpers.runs.cli``)."""

from nbhelpers.runs.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
