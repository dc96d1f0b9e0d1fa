"""Tasks: one package per task (`trm/tasks/<name>/`), all behind `PuzzleTask` and one registry.

    task = task_for(vocab_size=11, seq_len=81)             # or task_for(..., declared="sudoku")
    tokens = task.parse("4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......")
    task.valid(predictions, inputs)                        # (B,) bool: any completion obeying the rules
    aug = task.augmentation(np.random.default_rng(0))      # one validity-preserving transform
    aug.invert(predict(aug.apply(inputs)))                 # answers back in the original frame

`trm build`, `trm eval`, `trm solve` and `trm.viz` all find a task here. Adding a task is a package
whose `TASK` is its `PuzzleTask` subclass, and one line in `TASKS`.
"""

from __future__ import annotations

import importlib

from trm.data.format import Dataset
from trm.tasks.base import IDENTITY, Augmentation, PuzzleTask

__all__ = ["IDENTITY", "TASKS", "Augmentation", "PuzzleTask", "dataset_task", "task_class", "task_for"]

TASKS: dict[str, str] = {
    "sudoku": "trm.tasks.sudoku",
    "maze": "trm.tasks.maze",
    "arc": "trm.tasks.arc",
}
"""Task name -> the module whose `TASK` is its class, in the order tasks are recognised and listed."""


def task_class(name: str) -> type[PuzzleTask]:
    """The class of a registered task; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    task: type[PuzzleTask] = importlib.import_module(TASKS[name]).TASK
    return task


def task_for(vocab_size: int, seq_len: int, declared: str | None = None) -> PuzzleTask | None:
    """The task of a model or dataset: the declared one (dataset.json `task`), else the first registered
    task that recognises the vocabulary and sequence length; None when neither says."""
    name = declared
    if name is None:
        name = next((n for n in TASKS if task_class(n).recognises(vocab_size, seq_len)), None)
        if name is None:
            return None
    return task_class(name).for_model(vocab_size, seq_len)


def dataset_task(dataset: Dataset) -> PuzzleTask | None:
    """The task of a dataset folder (declared in its dataset.json, else recognised from its shapes)."""
    meta = dataset.train.meta
    return task_for(meta.vocab_size, meta.seq_len, meta.task)
