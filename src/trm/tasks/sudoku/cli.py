"""`trm build sudoku OUTPUT ...`: the options and the build.

    trm build sudoku data/sudoku-extreme-1k-aug-1000 --csv sudoku-extreme/ --subsample 1000 --num-aug 1000
    trm build sudoku data/sudoku-hard --text puzzles3_magictour_top1465.txt --num-aug 10
    trm build sudoku data/sudoku-6x6 --generate 2000 --size 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trm.tasks.base import progress_bar


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="Sudoku-Extreme CSV file, or a folder with train.csv and test.csv")
    src.add_argument("--text", type=Path, help="one-line puzzle file ('#' comments, '.' blank); answers are solved")
    src.add_argument("--generate", type=int, metavar="COUNT", help="generate COUNT puzzles with a unique solution")
    src.add_argument("--hub", action="store_true", help="download sapientinc/sudoku-extreme (needs trm[hub])")
    parser.add_argument("--size", type=int, default=9, choices=[4, 6, 9], help="grid size (default 9)")
    parser.add_argument("--subsample", type=int, help="training puzzles kept at random (paper: 1000)")
    parser.add_argument("--num-aug", type=int, default=0, help="augmented variants per training puzzle (paper: 1000)")
    parser.add_argument("--test-fraction", type=float, default=0.1,
                        help="held out for test when the source has no split")
    parser.add_argument("--test-size", type=int, help="test puzzles kept at random (default all)")
    parser.add_argument("--limit", type=int, help="read at most this many puzzles per file")
    parser.add_argument("--givens", type=int, help="generate: stop at this many givens (default: minimal puzzles)")
    parser.add_argument("--min-rating", type=int, default=0, help="generate: at least this many solver backtracks")
    parser.add_argument("--max-rating", type=int, help="generate: at most this many solver backtracks")
    parser.add_argument("--cache-dir", type=Path, help="hub: download cache folder")


def build(args: argparse.Namespace) -> dict[str, int]:
    from trm.tasks.sudoku import puzzles

    if args.generate is not None:
        source, path, count = "generate", None, args.generate
    elif args.hub:
        source, path, count = "hub", args.cache_dir, 0
    else:
        source, path, count = ("csv", args.csv, 0) if args.csv else ("text", args.text, 0)
    config = puzzles.SudokuBuildConfig(
        source=source, path=path, n=args.size, subsample=args.subsample, num_aug=args.num_aug,
        test_fraction=args.test_fraction, test_size=args.test_size, count=count, limit=args.limit, seed=args.seed,
        generator=puzzles.GeneratorConfig(n=args.size, target_givens=args.givens, min_rating=args.min_rating,
                                          max_rating=args.max_rating))
    with progress_bar(None, "sudoku") as update:
        return puzzles.build_dataset(args.output, config, overwrite=args.overwrite, progress=update)
