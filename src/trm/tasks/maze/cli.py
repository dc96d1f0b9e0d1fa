"""`trm build maze OUTPUT ...`: the options and the build.

    trm build maze data/maze-hard --csv maze-30x30-hard-1k/ --augment
    trm build maze data/maze-gen --generate 1000 --test-count 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path

from trm.tasks.base import progress_bar


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--csv", type=Path, help="Maze-Hard CSV file, or a folder with train.csv and test.csv")
    src.add_argument("--generate", type=int, metavar="COUNT", help="generate COUNT training mazes")
    parser.add_argument("--test-count", type=int, default=1000, help="generate: test mazes (default 1000)")
    parser.add_argument("--size", type=int, default=30, help="generate: grid side (default 30)")
    parser.add_argument("--min-path", type=int, default=110, help="generate: keep paths longer than this (default 110)")
    parser.add_argument("--wall-density", type=float, nargs=2, default=(0.3, 0.5), metavar=("MIN", "MAX"),
                   help="generate: wall share range (default 0.3 0.5)")
    parser.add_argument("--unique-path", action="store_true",
                        help="generate: keep only mazes with exactly one shortest path (the answer is then "
                             "determined by the question)")
    parser.add_argument("--subsample", type=int, help="training mazes kept at random")
    parser.add_argument("--augment", action="store_true", help="add the 8 dihedral transforms of each training maze")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="held out for test from a single CSV file")
    parser.add_argument("--limit", type=int, help="read at most this many mazes per file")


def build(args: argparse.Namespace) -> dict[str, int]:
    from trm.tasks.maze import puzzles

    generating = args.generate is not None
    config = puzzles.MazeBuildConfig(
        source="generate" if generating else "csv", path=args.csv, train_count=args.generate or 0,
        test_count=args.test_count, test_fraction=args.test_fraction, subsample=args.subsample, augment=args.augment,
        limit=args.limit, seed=args.seed,
        generator=puzzles.MazeGeneratorConfig(size=args.size, min_path_length=args.min_path,
                                              min_wall_density=args.wall_density[0],
                                              max_wall_density=args.wall_density[1],
                                              unique_path=args.unique_path))
    with progress_bar(args.generate + args.test_count if generating else None, "maze") as update:
        return puzzles.build_dataset(args.output, config, overwrite=args.overwrite, progress=update)
