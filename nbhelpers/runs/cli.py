"""The ``nbhelpers`` command line (also ``python -m nbhelpers``).

Each subcommand is a module with ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
add one by registering its module in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

SUBCOMMANDS: dict[str, str] = {
    "sweep": "nbhelpers.runs.sweep.cli",
    "export-dataset": "nbhelpers.runs.export_cli",
    "checkpoints": "nbhelpers.runs.checkpoints_cli",
    "record": "nbhelpers.runs.manifest",
    "score": "nbhelpers.runs.benchmark",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="nbhelpers", description="Command line of the Bayes-optimal adversarial examples book."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process arguments) and run the chosen subcommand; its exit status."""
    args = build_parser().parse_args(argv)
    return args.handler(args)
