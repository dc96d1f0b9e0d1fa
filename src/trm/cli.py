"""The `trm` command line: `trm <command> ...`.

Each command lives in its own module under `trm.commands` and exposes
`register(subparsers)` (adds its parser, setting `func`) so that adding a command touches
one file and the list below.

Errors: a command raises one of the project's input errors (`input_errors()`: bad data, a bad checkpoint, a
bad configuration or device, or `UsageError` for options that cannot work together) with a message that says
what is wrong; `main` prints it as one line `trm <command>: <message>` and exits with status 2, no traceback.
What the system refuses (a file that cannot be read or written, no permission, a full disk: `OSError`) and
an optional extra that is not installed are answered the same way. `trm --debug <command>` (or TRM_DEBUG=1)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
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
    from trm.runtime import RuntimeConfigError

    return DataError, CheckpointError, ConfigError, RuntimeConfigError, UsageError


def describe_os_error(e: OSError) -> str:
    """An `OSError` as one line: the file, what went wrong, and what to do when that is clear."""
    import errno

    where = f"{e.filename}: " if e.filename else ""
    why = e.strerror or str(e)
    hint = {errno.ENOSPC: " (free some space, or write somewhere else)",
            errno.EDQUOT: " (free some space, or write somewhere else)",
            errno.EACCES: " (no permission: choose a folder you can write to)",
            errno.EROFS: " (a read-only file system: choose another folder)"}.get(e.errno or 0, "")
    return f"{where}{why}{hint}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trm", description="Tiny recursive reasoning models.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error instead of one line")
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
    if args.debug or os.environ.get("TRM_DEBUG"):
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except input_errors() as e:  # bad input: say what is wrong, no traceback
        print(f"trm {args.command}: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:  # the system refused: a missing or unwritable file, a full disk
        print(f"trm {args.command}: {_one_line(describe_os_error(e))}", file=sys.stderr)
        return 2
    except ImportError as e:
        if "pip install" not in str(e):  # a broken installation, not a missing optional extra
            raise
        print(f"trm {args.command}: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(text: str) -> str:
    return " ".join(text.split())
