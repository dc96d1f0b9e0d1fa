"""Maze: shortest paths on square grids (Maze-Hard is 30x30); the puzzle logic is in `puzzles`, the
dataset options of `trm build maze` in `cli`, the picture in `draw`.

Tokens: pad 0, wall '#' 1, open ' ' 2, start 'S' 3, goal 'G' 4, path 'o' 5, row-major.
"""

from __future__ import annotations

import numpy as np

from trm.data.dihedral import dihedral, inverse_dihedral
from trm.data.format import DataError
from trm.tasks.base import Augmentation, PuzzleTask, require_square, square_side
from trm.tasks.maze import cli, puzzles
from trm.tasks.maze.draw import MazeDrawing


class MazeTask(PuzzleTask):
    name = "maze"
    about = "Maze (Maze-Hard CSV or generator)"
    drawing = MazeDrawing()
    checks_validity = True

    def __init__(self, side: int) -> None:
        self.side, self.seq_len = side, side * side

    @classmethod
    def recognises(cls, vocab_size: int, seq_len: int) -> bool:
        return square_side(seq_len) is not None and vocab_size == puzzles.VOCAB_SIZE

    @classmethod
    def for_model(cls, vocab_size: int, seq_len: int) -> MazeTask:
        return cls(require_square(cls.name, seq_len))

    add_build_arguments = staticmethod(cli.add_build_arguments)
    build = staticmethod(cli.build)

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        side = self.side
        lines = [line.rstrip("\n\r") for line in text.strip("\n").splitlines()]
        if len(lines) == 1:
            flat = lines[0]
        else:
            if len(lines) != side:
                raise DataError(f"{where}: expected {side} rows for a {side}x{side} maze, got {len(lines)}")
            for i, line in enumerate(lines):
                if len(line) != side:
                    raise DataError(f"{where}: row {i + 1} has {len(line)} characters, expected {side}")
            flat = "".join(lines)
        grid = puzzles.encode_text(flat, side, where=where)
        for token, what in ((puzzles.START, "start 'S'"), (puzzles.GOAL, "goal 'G'")):
            count = int((grid == token).sum())
            if count != 1:
                raise DataError(f"{where}: needs exactly one {what}, found {count}")
        if (grid == puzzles.PATH).any():
            raise DataError(f"{where}: a question has no path cells 'o' (that is the answer)")
        if puzzles.shortest_path_length(grid) == puzzles.UNREACHED:
            raise DataError(f"{where}: the goal 'G' cannot be reached from the start 'S'")
        return grid.reshape(-1).astype(np.int32)

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        text = puzzles.decode_text(np.asarray(tokens).reshape(-1))
        return "\n".join(text[i:i + self.side] for i in range(0, len(text), self.side))

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return puzzles.valid_token_paths(predictions, inputs)

    def augmentation(self, rng: np.random.Generator) -> Augmentation:
        t = int(rng.integers(1, 8))
        s = self.side

        def apply(tokens: np.ndarray) -> np.ndarray:
            tokens = np.asarray(tokens)
            return dihedral(tokens.reshape(-1, s, s), t).reshape(tokens.shape)

        def invert(tokens: np.ndarray) -> np.ndarray:
            tokens = np.asarray(tokens)
            return inverse_dihedral(tokens.reshape(-1, s, s), t).reshape(tokens.shape)

        return Augmentation(apply, invert, f"dihedral {t}")


TASK = MazeTask
