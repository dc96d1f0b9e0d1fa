"""Data-layer benchmarks: Sudoku solver and generator throughput, and small dataset builds.

    python -m trm.tasks.bench [--quick]

`data_benchmarks()` returns one dict per figure: name, value (the median), unit, median, spread
(max - min over repeats), repeats. Puzzle files are read from the shared data folder when present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from trm.tasks.maze import puzzles as maze
from trm.tasks.sudoku import puzzles as sudoku

SHARED_SUDOKU = Path(os.environ.get("TRM_SHARED_DIR", Path(__file__).resolve().parents[3].parent / "shared")) / \
    "data" / "sudoku"


def _figure(name: str, unit: str, values: list[float], **extra: Any) -> dict[str, Any]:
    median = statistics.median(values)
    return {"name": name, "value": median, "unit": unit, "median": median,
            "spread": max(values) - min(values), "repeats": len(values), **extra}


def _solver_rate(questions: np.ndarray) -> float:
    t = time.perf_counter()
    for q in questions:
        if sudoku.solve_one(q) is None:
            raise RuntimeError("benchmark puzzle without a solution")
    return len(questions) / (time.perf_counter() - t)


def _generator_rate(n: int, count: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    cfg = sudoku.GeneratorConfig(n=n)
    t = time.perf_counter()
    for _ in range(count):
        sudoku.generate(cfg, rng)
    return count / (time.perf_counter() - t)


def _build_seconds(fn: Callable[[Path], object]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        fn(Path(tmp) / "data")
        return time.perf_counter() - t


def _build_peak_mib(fn: Callable[[Path], object]) -> float:
    """Peak Python-allocated MiB of one build (tracing slows the build, so it is timed separately)."""
    with tempfile.TemporaryDirectory() as tmp:
        tracemalloc.start()
        try:
            fn(Path(tmp) / "data")
            return tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()


def data_benchmarks(quick: bool = False, shared: Path = SHARED_SUDOKU) -> list[dict[str, Any]]:
    """Solver puzzles/s on two hard lists, generator unique puzzles/s per size, small build time and memory."""
    repeats = 1 if quick else 3
    out = []
    files = {"magictour_top1465": ("puzzles3_magictour_top1465.txt", 200 if quick else None),
             "forum_hardest_11+": ("puzzles5_forum_hardest_1905_11+.txt", 200 if quick else 2000)}
    for label, (name, limit) in files.items():
        path = shared / name
        if not path.is_file():
            continue
        questions = sudoku.parse_text(path, limit=limit).questions
        out.append(_figure(f"sudoku_solver_{label}", "puzzles/s", [_solver_rate(questions) for _ in range(repeats)],
                           puzzles=len(questions)))
    for n, count in ((4, 200), (6, 100), (9, 10 if quick else 40)):
        out.append(_figure(f"sudoku_generator_{n}x{n}", "puzzles/s",
                           [_generator_rate(n, count, seed) for seed in range(repeats)], puzzles=count))
    text = shared / files["magictour_top1465"][0]
    sudoku_cfg = (sudoku.SudokuBuildConfig(source="text", path=text, limit=100, num_aug=10, seed=0) if text.is_file()
                  else sudoku.SudokuBuildConfig(source="generate", count=50, num_aug=10, seed=0))
    maze_cfg = maze.MazeBuildConfig(source="generate", train_count=20, test_count=5, augment=True, seed=0,
                                    generator=maze.MazeGeneratorConfig(size=30, min_path_length=60))
    for label, fn in (("sudoku_build_small", lambda p: sudoku.build_dataset(p, sudoku_cfg)),
                      ("maze_build_small", lambda p: maze.build_dataset(p, maze_cfg))):
        out.append(_figure(f"{label}_time", "s", [_build_seconds(fn) for _ in range(repeats)]))
        out.append(_figure(f"{label}_peak_memory", "MiB", [_build_peak_mib(fn)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    for f in data_benchmarks(parser.parse_args().quick):
        print(f"{f['name']:<40} {f['median']:>10.3f} {f['unit']:<10} spread {f['spread']:.3f} over {f['repeats']}")


if __name__ == "__main__":
    main()
