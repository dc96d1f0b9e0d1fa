"""The `trm` command line: `trm <command> ...`.

Each command lives in its own module under `trm.commands` and exposes
`register(subparsers)` (adds its parser, setting `func`) so that adding a command touches
one file and the list below.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Command modules, in the order `trm --help` lists them.
COMMANDS: list[str] = ["demo", "build", "train", "eval", "solve", "bench"]


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
    from trm.checkpoint import CheckpointError
    from trm.data.format import DataError
    from trm.models.config import ConfigError

    try:
        return int(args.func(args) or 0)
    except (DataError, CheckpointError, ConfigError) as e:  # bad input: say what is wrong, no traceback
        print(f"trm {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
