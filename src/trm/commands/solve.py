"""`trm solve SOURCE PUZZLE [--trace]`: solve one puzzle (or a file of them) and show the reasoning.

SOURCE is anything `trm.load` reads: our run or checkpoint folder, a reference TRM or HRM run folder,
or hf://owner/name[/subfolder][@revision].

PUZZLE is the puzzle itself or a file holding it: a Sudoku line (81 characters, '.' or '0' for blanks;
a file may hold one puzzle per line), a maze as text (rows of '#', ' ', 'S', 'G'), or an ARC task file
(JSON with 'train' and 'test' pairs). '-' reads standard input. A malformed puzzle exits with status 2
and a message naming what is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trm.cli import UsageError, input_errors
from trm.commands.eval import add_dtype_argument, add_scaling_arguments, scaling_from_args
from trm.tasks import TASKS

if TYPE_CHECKING:
    from trm.solve import Solution


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("solve", help="solve a puzzle with a checkpoint and show the answer after each step")
    p.add_argument("checkpoint", metavar="SOURCE",
                   help="a checkpoint or run folder, a reference TRM / HRM run folder or weights file, or "
                        "hf://owner/name[/subfolder][@revision]")
    p.add_argument("puzzle", help="the puzzle as text, a file holding it, or '-' for standard input")
    p.add_argument("--trace", action="store_true", help="show the answer after every supervision step")
    p.add_argument("--data", help="dataset the model trained on (default: the run's; ARC needs its identifiers)")
    p.add_argument("--task", choices=list(TASKS), help="what the puzzle is (default: from the model's dataset)")
    p.add_argument("--steps", type=int, help="supervision-step budget (default: N_sup of training)")
    p.add_argument("--policy", choices=["fixed", "early"], default="fixed",
                   help="fixed: all steps; early: stop when the halting head fires")
    p.add_argument("--variants", type=int, default=1, help="ARC: vote over this many of the task's variants")
    p.add_argument("--gif", help="write the answer after each step as an animated GIF")
    p.add_argument("--png", help="write the answer after each step as a strip (PNG)")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    add_dtype_argument(p)
    p.add_argument("--device", default="auto")
    add_scaling_arguments(p)
    p.set_defaults(func=run)


PUZZLE_FILE_SUFFIXES = (".txt", ".json", ".csv", ".sdk", ".sdm", ".maze")


def looks_like_path(arg: str) -> bool:
    """Whether an argument that names no file was meant as one (a folder part, or a file suffix), not a puzzle."""
    if "\n" in arg or arg.lstrip().startswith(("{", "[")):
        return False
    return "/" in arg or os.sep in arg or arg.lower().endswith(PUZZLE_FILE_SUFFIXES)


def read_puzzle(arg: str) -> tuple[str, str]:
    """(text, where): the argument itself, the file it names, or standard input for '-'."""
    if arg == "-":
        return sys.stdin.read(), "<stdin>"
    path = Path(arg)
    try:
        if path.is_file():
            return path.read_text(), str(path)
        if path.is_dir():
            raise UsageError(f"{arg}: a folder, not a puzzle file")
    except OSError as e:
        if len(arg) < 256 and not isinstance(e, FileNotFoundError):  # a long puzzle line is no usable file name
            raise UsageError(f"{arg}: cannot read it ({e.strerror or e})") from None
    if looks_like_path(arg):
        raise UsageError(f"{arg}: no such file (PUZZLE is the puzzle itself, a file holding it, or '-')")
    return arg, "puzzle"


def run(args: argparse.Namespace) -> int:
    from trm.data.format import DataError
    from trm.solve import Solver

    for name, value in (("--steps", args.steps), ("--variants", args.variants)):
        if value is not None and value < 1:
            raise UsageError(f"{name} {value}: must be a positive integer")
    scaling = scaling_from_args(args)
    try:
        solver = Solver.from_checkpoint(args.checkpoint, data=args.data, task=args.task, use_ema=not args.raw,
                                        device=args.device, dtype=args.dtype, steps=args.steps, policy=args.policy,
                                        scaling=scaling)
    except ValueError as e:
        if isinstance(e, input_errors()):
            raise
        raise UsageError(str(e)) from None  # the model and the task do not fit together
    text, where = read_puzzle(args.puzzle)
    task = solver.task
    drawn = task.solve_command(solver, text, where, args)  # a task whose puzzles are files of their own (ARC)
    if drawn is not None:
        _pictures(args, task.name, drawn)
        return 0
    try:
        puzzles = task.parse_many(text, where)
    except DataError as e:
        raise DataError(f"malformed puzzle: {e}") from None
    impossible = [task.no_solution(p) for p in puzzles]  # decided exactly, before the model runs
    solutions = solver.solve(puzzles)
    for i, s in enumerate(solutions):
        if len(solutions) > 1:
            print(f"== puzzle {i + 1}")
        if impossible[i]:
            print(f"this puzzle has no solution: {impossible[i]}; the model's answer follows, and cannot be valid")
        if args.trace:
            for k in range(1, s.stopped + 1):
                print(f"after step {k} ({s.changed(k)} cells changed, q_halt {s.q_halt[k - 1]:+.2f}):")
                print(s.task.format(s.steps[k - 1], s.puzzle))
        print("answer (NOT a solution: the puzzle has none):" if impossible[i] else "answer:")
        print(s.text)
        verdict = "undefined" if s.valid is None else ("yes" if s.valid else "no")
        print(f"valid: {verdict}")
        halted = f"halting head fired at step {s.halted_at}" if s.halted_at else "halting head never fired"
        print(f"{settled_line(s)}; {halted}")
    _pictures(args, task.name, solutions[:1])
    return 0


def settled_line(s: Solution) -> str:
    """When the answer last changed, in words that are true at the last step too."""
    if s.stopped == 1:
        return "answered after 1 step of 1"
    if s.settled == s.stopped:
        return f"still changing at the last step ({s.stopped} of {s.stopped}): more steps may change it further"
    return f"stopped changing after step {s.settled} of {s.stopped}"


def _pictures(args: argparse.Namespace, task: str, solutions: list[Solution]) -> None:
    """The first solution's steps as a GIF and / or a PNG strip, where asked for."""
    if not (args.gif or args.png) or not solutions:
        return
    from trm import viz

    s = solutions[0]
    steps = s.steps[:s.stopped]
    if args.gif:
        print(f"wrote {viz.save_gif(steps, task, args.gif, givens=s.puzzle)}")
    if args.png:
        img = viz.render_trace(steps, task, givens=s.puzzle, inputs=s.puzzle)
        img.save(args.png)
        print(f"wrote {args.png}")
