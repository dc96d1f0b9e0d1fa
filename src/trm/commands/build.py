"""`trm build TASK OUTPUT [options]`: write a dataset folder in the on-disk puzzle format.

    trm build sudoku data/sudoku-extreme-1k-aug-1000 --csv sudoku-extreme/ --subsample 1000 --num-aug 1000
    trm build sudoku data/sudoku-6x6 --generate 2000 --size 6
    trm build maze data/maze-hard --csv maze-30x30-hard-1k/ --augment
    trm build arc data/arc-agi-1 --source kaggle-arc/ --subsets training,evaluation,concept --num-aug 1000

Each registered task (`trm.tasks.TASKS`) is a sub-command; its options and its build are the task's
`add_build_arguments` and `build`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from trm.cli import UsageError, input_errors
from trm.data.format import DataError
from trm.tasks import TASKS, PuzzleTask, task_class


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a dataset folder (train/ and test/ in the puzzle format)")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name in TASKS:
        task = task_class(name)
        t = tasks.add_parser(name, help=task.about, description=task.about)
        t.add_argument("output", type=Path, help="dataset folder to write")
        task.add_build_arguments(t)
        t.add_argument("--seed", type=int, default=0, help="seed: the same seed gives byte-identical files")
        t.add_argument("--overwrite", action="store_true",
                       help="replace OUTPUT if it is a dataset folder (anything else is refused)")
        t.set_defaults(func=_runner(task))


def _runner(task: type[PuzzleTask]) -> Callable[[argparse.Namespace], int]:
    def build(args: argparse.Namespace) -> int:
        from trm.data.format import check_replaceable, load_dataset

        if args.output.exists() and not args.overwrite:
            raise DataError(f"{args.output}: already exists (pass --overwrite to replace it)")
        check_replaceable(args.output)
        t0 = time.perf_counter()
        try:
            task.build(args)
        except ValueError as e:
            if isinstance(e, input_errors()):
                raise
            raise UsageError(str(e)) from None  # options a build config rejects
        data = load_dataset(args.output)
        m = data.train.meta
        print(f"wrote {task.name} dataset to {args.output} in {time.perf_counter() - t0:.1f}s: "
              f"vocab_size {m.vocab_size}, seq_len {m.seq_len}, num_puzzle_identifiers {m.num_puzzle_identifiers}")
        for split in ("train", "test"):
            s = getattr(data, split)
            if s is not None:
                sizes = ", ".join(f"{k} {a.num_groups} groups / {a.num_puzzles} puzzles / {a.num_examples} examples"
                                  for k, a in s.sets.items())
                print(f"  {args.output / split}: {sizes}")
        return 0

    return build
