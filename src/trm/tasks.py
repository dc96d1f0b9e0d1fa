"""What the tokens of each task mean: reading a puzzle from text, showing an answer, checking that
an answer is valid, and test-time augmentations with their inverses.

    task = task_for(vocab_size=11, seq_len=81)             # or task_for(..., declared="sudoku")
    tokens = task.parse("4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......")
    task.valid(predictions, inputs)                        # (B,) bool: any completion obeying the rules
    aug = task.augmentation(np.random.default_rng(0))      # one validity-preserving transform
    aug.invert(predict(aug.apply(inputs)))                 # answers back in the original frame

Validity is what a solver of the puzzle would accept, not agreement with the recorded answer: a Sudoku
completion that obeys the rules and keeps the givens, a maze path that is some shortest path. ARC has
no rule to check (`checks_validity` is False): only exact matches count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trm.data import maze, sudoku
from trm.data.arc import ArcTask, parse_task
from trm.data.format import DataError, Dataset

TASKS = ("sudoku", "maze", "arc")


@dataclass(frozen=True)
class Augmentation:
    """A transform of token sequences (B, seq_len) and its inverse."""

    apply: Callable[[np.ndarray], np.ndarray]
    invert: Callable[[np.ndarray], np.ndarray]
    name: str = ""


IDENTITY = Augmentation(apply=lambda t: np.asarray(t), invert=lambda t: np.asarray(t), name="identity")


class PuzzleTask:
    """Base: a task knows its sequence length and how to read, show and check its puzzles."""

    name = ""
    seq_len = 0
    checks_validity = False
    """Whether `valid` is defined (a rule decides whether an answer is right, not only the recorded one)."""

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        """A puzzle written as text -> input tokens (seq_len,) int32; DataError names what is wrong."""
        raise NotImplementedError

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        """An answer (tokens) as text."""
        raise NotImplementedError

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """(B,) bool: whether each predicted answer is a valid answer to its input."""
        raise NotImplementedError(f"{self.name}: no rule decides validity; compare with the recorded answer")

    def augmentation(self, rng: np.random.Generator) -> Augmentation | None:
        """A random validity-preserving transform, or None when the task has none that fits the model."""
        return None


class SudokuTask(PuzzleTask):
    name = "sudoku"
    checks_validity = True

    def __init__(self, n: int) -> None:
        sudoku.box_shape(n)
        self.n, self.seq_len = n, n * n

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        # one line of N*N characters; a grid written over several lines with box rules is accepted too
        flat = "".join(ch for ch in text if not ch.isspace() and ch not in "|+-")
        grid = sudoku.parse_line(flat, self.n, where=where)
        problem = rule_violation(grid)
        if problem:
            raise DataError(f"{where}: the givens break the rules: {problem}")
        return sudoku.encode(grid).reshape(-1)

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        """Rows of digits ('.' blank) with box rules."""
        grid = sudoku.decode(np.asarray(tokens).reshape(-1), self.n)
        br, bc = sudoku.box_shape(self.n)
        rows = []
        for r, row in enumerate(grid.tolist()):
            if r and r % br == 0:
                rows.append("-+-".join(["-" * (2 * bc - 1)] * (self.n // bc)))
            cells = [str(v) if v else "." for v in row]
            rows.append(" | ".join(" ".join(cells[i:i + bc]) for i in range(0, self.n, bc)))
        return "\n".join(rows)

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return sudoku.valid_token_solutions(predictions, inputs)

    def augmentation(self, rng: np.random.Generator) -> Augmentation:
        aug = sudoku.random_augmentation(self.n, rng)
        n = self.n

        def apply(tokens: np.ndarray) -> np.ndarray:
            return _keep_pad(tokens, sudoku.encode(sudoku.augment(sudoku.decode(tokens, n), aug)))

        def invert(tokens: np.ndarray) -> np.ndarray:
            return _keep_pad(tokens, sudoku.encode(sudoku.unaugment(sudoku.decode(tokens, n), aug)))

        return Augmentation(apply, invert, f"digits {aug.digit_map[1:]}, transpose {aug.transpose}")


def _keep_pad(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    # Sudoku rows are all cells, so a padding row (all pad) stays a padding row.
    before = np.asarray(before)
    pad = (before == sudoku.PAD_TOKEN).all(-1, keepdims=True)
    return np.where(pad, before, after).astype(np.int32)


def rule_violation(grid: np.ndarray) -> str:
    """The first rule the non-blank cells of a Sudoku grid break ('' when none)."""
    grid = np.asarray(grid)
    n = grid.shape[0]
    br, bc = sudoku.box_shape(n)
    units = [("row", i + 1, grid[i]) for i in range(n)] + [("column", i + 1, grid[:, i]) for i in range(n)]
    units += [("box", i + 1, grid[(i // (n // bc)) * br:(i // (n // bc) + 1) * br,
                                   (i % (n // bc)) * bc:(i % (n // bc) + 1) * bc].reshape(-1)) for i in range(n)]
    for kind, index, cells in units:
        digits = cells[cells > 0]
        values, counts = np.unique(digits, return_counts=True)
        if (counts > 1).any():
            return f"digit {int(values[counts > 1][0])} appears twice in {kind} {index}"
    return ""


class MazeTask(PuzzleTask):
    name = "maze"
    checks_validity = True

    def __init__(self, side: int) -> None:
        self.side, self.seq_len = side, side * side

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
        grid = maze.encode_text(flat, side, where=where)
        for token, what in ((maze.START, "start 'S'"), (maze.GOAL, "goal 'G'")):
            count = int((grid == token).sum())
            if count != 1:
                raise DataError(f"{where}: needs exactly one {what}, found {count}")
        if (grid == maze.PATH).any():
            raise DataError(f"{where}: a question has no path cells 'o' (that is the answer)")
        if maze.shortest_path_length(grid) == maze.UNREACHED:
            raise DataError(f"{where}: the goal 'G' cannot be reached from the start 'S'")
        return grid.reshape(-1).astype(np.int32)

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        text = maze.decode_text(np.asarray(tokens).reshape(-1))
        return "\n".join(text[i:i + self.side] for i in range(0, len(text), self.side))

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        return maze.valid_token_paths(predictions, inputs)

    def augmentation(self, rng: np.random.Generator) -> Augmentation:
        t = int(rng.integers(1, 8))
        s = self.side

        def apply(tokens: np.ndarray) -> np.ndarray:
            tokens = np.asarray(tokens)
            return maze.dihedral(tokens.reshape(-1, s, s), t).reshape(tokens.shape)

        def invert(tokens: np.ndarray) -> np.ndarray:
            tokens = np.asarray(tokens)
            return maze.inverse_dihedral(tokens.reshape(-1, s, s), t).reshape(tokens.shape)

        return Augmentation(apply, invert, f"dihedral {t}")


class ArcGridTask(PuzzleTask):
    """ARC: 30x30 canvases. A puzzle is a task file (JSON with train and test pairs); the model knows a
    task only through the puzzle identifiers of its variants, so test-time augmentation is the vote
    over the dataset's variants (`trm.scoring.arc`), not a transform made here."""

    name = "arc"
    seq_len = 900

    def parse_task(self, text: str, where: str = "task", task_id: str | None = None) -> ArcTask:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e})") from None
        return parse_task(task_id or Path(where).stem, raw, where)

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        raise DataError(f"{where}: an ARC puzzle is a task file (JSON with 'train' and 'test' pairs)")

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        from trm.data.arc_augment import decode_grid

        grid = decode_grid(np.asarray(tokens).reshape(-1))
        return "\n".join("".join(str(int(v)) for v in row) for row in grid) if grid.size else "(empty grid)"


def task_for(vocab_size: int, seq_len: int, declared: str | None = None) -> PuzzleTask | None:
    """The task of a model or dataset: the declared one (dataset.json `task`), else recognised from the
    vocabulary and sequence length (Sudoku N*N cells with N+2 tokens, Maze 6 tokens, ARC 12 x 900);
    None when neither says."""
    side = math.isqrt(seq_len)
    square = side * side == seq_len
    name = declared
    if name is None:
        if square and vocab_size == side + 2 and side in sudoku.BOX_SHAPES:
            name = "sudoku"
        elif square and vocab_size == maze.VOCAB_SIZE:
            name = "maze"
        elif seq_len == 900 and vocab_size == 12:
            name = "arc"
        else:
            return None
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    if name == "arc":
        if seq_len != 900:
            raise ValueError(f"ARC models see 30x30 canvases (seq_len 900), this one seq_len {seq_len}")
        return ArcGridTask()
    if not square:
        raise ValueError(f"a {name} needs a square grid, but seq_len {seq_len} is not a square")
    return SudokuTask(side) if name == "sudoku" else MazeTask(side)


def dataset_task(dataset: Dataset) -> PuzzleTask | None:
    """The task of a dataset folder (declared in its dataset.json, else recognised from its shapes)."""
    meta = dataset.train.meta
    return task_for(meta.vocab_size, meta.seq_len, meta.task)
