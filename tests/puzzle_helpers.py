"""Small builders shared by the task and evaluation tests: generated mazes and one-batch test sets."""

from __future__ import annotations

import numpy as np

from trm.data.sampler import TestBatch
from trm.tasks.maze import puzzles as maze


def maze_pairs(side: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated (question, answer) token rows."""
    config = maze.MazeGeneratorConfig(size=side, min_path_length=side)
    made = maze.generate_many(config, count, np.random.default_rng(seed), batch=64)
    return (np.stack([q.reshape(-1) for q, _, _ in made]).astype(np.int32),
            np.stack([a.reshape(-1) for _, a, _ in made]).astype(np.int32))


def one_batch(batch: dict[str, np.ndarray]) -> list[TestBatch]:
    """A test set of one batch (set "all"), every row real."""
    return [TestBatch("all", batch, len(batch["inputs"]))]


def batches(inputs: np.ndarray, labels: np.ndarray) -> list[TestBatch]:
    """One evaluation batch of set "all"."""
    return one_batch({"inputs": np.asarray(inputs, np.int32), "labels": np.asarray(labels, np.int32),
                      "puzzle_identifiers": np.zeros(len(inputs), np.int32)})
