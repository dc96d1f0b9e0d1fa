"""Sudoku: N x N grids with boxes (4x4, 6x6, 9x9); the puzzle logic is in `puzzles`, the dataset options
of `trm build sudoku` in `cli`, the picture in `draw`.

Tokens: pad 0, blank 1, digit d -> d + 1 (vocab N + 2), row-major.
"""

from __future__ import annotations

import numpy as np

from trm.data.format import DataError
from trm.tasks.base import Augmentation, PuzzleTask, require_square, square_side
from trm.tasks.sudoku import cli, puzzles
from trm.tasks.sudoku.draw import SudokuDrawing


class SudokuTask(PuzzleTask):
    name = "sudoku"
    about = "Sudoku (Sudoku-Extreme CSV, one-line text, generator, or the Hub)"
    drawing = SudokuDrawing()
    checks_validity = True

    def __init__(self, n: int) -> None:
        puzzles.box_shape(n)
        self.n, self.seq_len = n, n * n

    @classmethod
    def recognises(cls, vocab_size: int, seq_len: int) -> bool:
        side = square_side(seq_len)
        return side is not None and vocab_size == side + 2 and side in puzzles.BOX_SHAPES

    @classmethod
    def for_model(cls, vocab_size: int, seq_len: int) -> SudokuTask:
        return cls(require_square(cls.name, seq_len))

    add_build_arguments = staticmethod(cli.add_build_arguments)
    build = staticmethod(cli.build)

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        # one line of N*N characters; a grid written over several lines with box rules is accepted too
        flat = "".join(ch for ch in text if not ch.isspace() and ch not in "|+-")
        grid = puzzles.parse_line(flat, self.n, where=where)
        problem = rule_violation(grid)
        if problem:
            raise DataError(f"{where}: the givens break the rules: {problem}")
        return puzzles.encode(grid).reshape(-1)

    def parse_many(self, text: str, where: str = "puzzle") -> list[np.ndarray]:
        """One puzzle, or a file of one-line puzzles ('#' comment lines skipped)."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if len(lines) > 1 and all(len(ln) == self.seq_len for ln in lines):
            return [self.parse(ln, f"{where}: line {i + 1}") for i, ln in enumerate(lines)]
        return [self.parse(text, where)]

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        """Rows of digits ('.' blank) with box rules."""
        grid = puzzles.decode(np.asarray(tokens).reshape(-1), self.n)
        br, bc = puzzles.box_shape(self.n)
        rows = []
        for r, row in enumerate(grid.tolist()):
            if r and r % br == 0:
                rows.append("-+-".join(["-" * (2 * bc - 1)] * (self.n // bc)))
            cells = [str(v) if v else "." for v in row]
            rows.append(" | ".join(" ".join(cells[i:i + bc]) for i in range(0, self.n, bc)))
        return "\n".join(rows)

    def no_solution(self, tokens: np.ndarray) -> str:
        grid = puzzles.decode(np.asarray(tokens).reshape(-1), self.n)
        if puzzles.solve(grid, limit=1).solutions:
            return ""
        return "no grid completes these givens (the exact solver searched them all)"

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return puzzles.valid_token_solutions(predictions, inputs)

    def augmentation(self, rng: np.random.Generator) -> Augmentation:
        aug = puzzles.random_augmentation(self.n, rng)
        n = self.n

        def apply(tokens: np.ndarray) -> np.ndarray:
            return _keep_pad(tokens, puzzles.encode(puzzles.augment(puzzles.decode(tokens, n), aug)))

        def invert(tokens: np.ndarray) -> np.ndarray:
            return _keep_pad(tokens, puzzles.encode(puzzles.unaugment(puzzles.decode(tokens, n), aug)))

        return Augmentation(apply, invert, f"digits {aug.digit_map[1:]}, transpose {aug.transpose}")


def _keep_pad(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    # Sudoku rows are all cells, so a padding row (all pad) stays a padding row.
    before = np.asarray(before)
    pad = (before == puzzles.PAD_TOKEN).all(-1, keepdims=True)
    return np.where(pad, before, after).astype(np.int32)


def rule_violation(grid: np.ndarray) -> str:
    """The first rule the non-blank cells of a Sudoku grid break ('' when none)."""
    grid = np.asarray(grid)
    n = grid.shape[0]
    br, bc = puzzles.box_shape(n)
    units = [("row", i + 1, grid[i]) for i in range(n)] + [("column", i + 1, grid[:, i]) for i in range(n)]
    units += [("box", i + 1, grid[(i // (n // bc)) * br:(i // (n // bc) + 1) * br,
                                   (i % (n // bc)) * bc:(i % (n // bc) + 1) * bc].reshape(-1)) for i in range(n)]
    for kind, index, cells in units:
        digits = cells[cells > 0]
        values, counts = np.unique(digits, return_counts=True)
        if (counts > 1).any():
            return f"digit {int(values[counts > 1][0])} appears twice in {kind} {index}"
    return ""


TASK = SudokuTask
