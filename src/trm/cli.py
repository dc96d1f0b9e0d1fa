"""The `trm` command line: `trm <command> ...`.

Each command lives in its own module under `trm.commands` and exposes
`register(subparsers)` (adds its parser, setting `func`) so that adding a command touches
one file and the list below.

Errors: a command raises one of the project's input errors (`ERRORS`: bad data, a bad checkpoint, a bad
configuration, or `UsageError` for options that cannot work together) with a message that says what is
wrong; `main` prints it as one line `trm <command>: <message>` and exits with status 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order `trm --help` lists them.
COMMANDS: list[str] = ["demo", "build", "train", "eval", "solve", "arc", "export", "bench"]


class UsageError(ValueError):
    """Command-line input that cannot work (options, puzzle text); the message says what to change."""


def input_errors() -> tuple[type[Exception], ...]:
    """The error classes that mean bad input (exit 2 with the message), not a bug."""
    from trm.checkpoint import CheckpointError
    from trm.data.format import DataError
    from trm.models.config import ConfigError

    return DataError, CheckpointError, ConfigError, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm", description="Tiny recursive reasoning models.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"trm.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except input_errors() as e:  # bad input: say what is wrong, no traceback
        print(f"trm {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
