"""What a task is: one class per task (in `trm.tasks.<name>`), subclassing `PuzzleTask`.

A task knows
- how to recognise its models and datasets (`recognises`, `for_model`),
- how to build a dataset from the command line (`add_build_arguments`, `build`: `trm build <name>`),
- what its tokens mean: reading a puzzle from text, showing an answer, checking that an answer is
  valid, and test-time augmentations with their inverses,
- how its tokens are drawn (`drawing`, a `trm.viz.Drawing`),
- optionally, how evaluation scores it beyond accuracy (`add_eval_arguments`, `scorer`; ARC votes over
  variants and writes a Kaggle submission) and how `trm solve` answers a puzzle file (`solve_command`).

Validity is what a solver of the puzzle would accept, not agreement with the recorded answer: a Sudoku
completion that obeys the rules and keeps the givens, a maze path that is some shortest path. ARC has
no rule to check (`checks_validity` is False): only exact matches count.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from trm.data.format import Dataset
    from trm.viz import Drawing


@dataclass(frozen=True)
class Augmentation:
    """A transform of token sequences (B, seq_len) and its inverse."""

    apply: Callable[[np.ndarray], np.ndarray]
    invert: Callable[[np.ndarray], np.ndarray]
    name: str = ""


IDENTITY = Augmentation(apply=lambda t: np.asarray(t), invert=lambda t: np.asarray(t), name="identity")


class Scorer(Protocol):
    """A task's own scoring during `trm eval`: it sees every batch's answers, then writes and reports."""

    def collect(self, batch: dict[str, np.ndarray], final: np.ndarray, q_halt: np.ndarray) -> None:
        """One batch: its arrays (real rows only), the final answers and their q_halt logits."""

    def report(self, folder: Path, tag: str) -> dict[str, Any]:
        """Scores (and files written into `folder`, named with `tag`) for the eval report."""

    def lines(self, report: dict[str, Any]) -> list[str]:
        """Lines for the printed table, from what `report` returned."""

    def summary(self, report: dict[str, Any]) -> dict[str, str]:
        """Rows for the HTML report's summary table."""


class BuildProgress:
    """`update(n)` of a build's progress bar; a build that learns its total late calls `set_total`."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def __call__(self, n: int) -> None:
        self.bar.update(n)

    def set_total(self, total: int) -> None:
        self.bar.total = total
        self.bar.refresh()


def set_progress_total(progress: Callable[[int], object] | None, total: int) -> None:
    """Tell a build's progress callback how many updates to expect (when it can be told)."""
    setter = getattr(progress, "set_total", None)
    if setter is not None and total > 0:
        setter(total)


@contextmanager
def progress_bar(total: int | None, desc: str) -> Iterator[Callable[[int], object]]:
    """A console progress bar for a dataset build: yields `update(n)` (a `BuildProgress`), closed on the way out."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="puzzle")
    try:
        yield BuildProgress(bar)
    finally:
        bar.close()


def square_side(seq_len: int) -> int | None:
    """The side of a square grid of `seq_len` cells (None when `seq_len` is not a square)."""
    side = math.isqrt(seq_len)
    return side if side * side == seq_len else None


def require_square(task: str, seq_len: int) -> int:
    """The side of a square grid of `seq_len` cells; ValueError naming the task when it is not a square."""
    side = square_side(seq_len)
    if side is None:
        raise ValueError(f"a {task} needs a square grid, but seq_len {seq_len} is not a square")
    return side


class PuzzleTask:
    """Base: a task knows its sequence length and how to build, read, show, check and draw its puzzles."""

    name: ClassVar[str] = ""
    about: ClassVar[str] = ""
    """One line for `trm build --help`."""
    drawing: ClassVar[Drawing]
    seq_len = 0
    checks_validity: ClassVar[bool] = False
    """Whether `valid` is defined (a rule decides whether an answer is right, not only the recorded one)."""
    no_augmentation: ClassVar[str] = ""
    """Why test-time augmentation does not apply to this task (when `augmentation` returns None)."""

    # --- recognising the task of a model or dataset

    @classmethod
    def recognises(cls, vocab_size: int, seq_len: int) -> bool:
        """Whether a model of this vocabulary and sequence length is (by its shapes) one of this task's."""
        return False

    @classmethod
    def for_model(cls, vocab_size: int, seq_len: int) -> PuzzleTask:
        """The task for a model of these sizes; ValueError when it cannot be one."""
        raise NotImplementedError

    # --- `trm build <name>`

    @staticmethod
    def add_build_arguments(parser: argparse.ArgumentParser) -> None:
        """Add the build options (OUTPUT, --seed and --overwrite are added for every task)."""

    @staticmethod
    def build(args: argparse.Namespace) -> dict[str, int]:
        """Write the dataset folder `args.output`; returns counts of what went where."""
        raise NotImplementedError

    # --- puzzles as text and tokens

    def parse(self, text: str, where: str = "puzzle") -> np.ndarray:
        """A puzzle written as text -> input tokens (seq_len,) int32; DataError names what is wrong."""
        raise NotImplementedError

    def parse_many(self, text: str, where: str = "puzzle") -> list[np.ndarray]:
        """The puzzles of a text or file (one by default)."""
        return [self.parse(text, where)]

    def format(self, tokens: np.ndarray, inputs: np.ndarray | None = None) -> str:
        """An answer (tokens) as text."""
        raise NotImplementedError

    def no_solution(self, tokens: np.ndarray) -> str:
        """Why this puzzle (input tokens) has no answer, decided exactly before any model runs; '' when it has
        one, or when the task has no exact solver."""
        return ""

    def valid(self, predictions: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """(B,) bool: whether each predicted answer is a valid answer to its input."""
        raise NotImplementedError(f"{self.name}: no rule decides validity; compare with the recorded answer")

    def augmentation(self, rng: np.random.Generator) -> Augmentation | None:
        """A random validity-preserving transform, or None when the task has none that fits the model."""
        return None

    # --- `trm solve` and `trm eval`

    def solve_command(self, solver: Any, text: str, where: str, args: argparse.Namespace) -> list[Any] | None:
        """`trm solve` for a task whose puzzles are not one text each (ARC task files): prints the answers and
        returns the solutions to draw; None (the default) means the command parses and solves the text."""
        return None

    @staticmethod
    def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
        """Add this task's own evaluation options (none by default)."""

    def scorer(self, dataset: Dataset, args: argparse.Namespace) -> Scorer | None:
        """This task's own scoring for `trm eval` (None: accuracy only)."""
        return None
