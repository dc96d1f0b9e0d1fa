"""Batches for training and evaluation over a dataset in the on-disk format (`trm.data.format`).

Training follows the reference sampler: every epoch, per set, a random permutation of the puzzle
groups; each group contributes one random puzzle of the group, whose examples (in random order) fill
the global batch; a puzzle that does not fit is cut at the batch boundary; the incomplete last batch
of an epoch is dropped. Every process draws the same global batch and process r keeps rows
[r * local, (r + 1) * local), so any number of processes sees the batches of one process. Unlike the
reference (which draws examples with numpy's global generator), everything is drawn from generators
seeded by (seed, epoch, set), so a run is reproducible and `state_dict()` / `load_state_dict()`
resume at the exact batch.

Evaluation visits every example once, in order; the last batch is padded (inputs pad_id, labels
IGNORE_LABEL_ID, identifiers blank) and reports how many rows are real.

    data = open_dataset("data/sudoku-extreme-1k-aug-1000")
    sampler = data.train_sampler(768, rank=0, world_size=1, seed=0)
    for batch in sampler: ...                    # dicts of int32 arrays: inputs, labels, puzzle_identifiers
    for set_name, batch, real_rows in data.test_batches(384): ...
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from trm.data.format import DataError, Dataset, SetArrays, Split, load_dataset

IGNORE_LABEL_ID = -100
"""The loss's ignore index: labels equal to the dataset's ignore_label_id become this."""

Batch = dict[str, np.ndarray]


def labels_for_loss(labels: np.ndarray, ignore_label_id: int | None) -> np.ndarray:
    """int32 labels with the dataset's ignore label (0 = pad) mapped to IGNORE_LABEL_ID."""
    out = np.array(labels, dtype=np.int32)
    if ignore_label_id is not None:
        out[out == ignore_label_id] = IGNORE_LABEL_ID
    return out


def _gather(split: Split, arrays: SetArrays, examples: np.ndarray, puzzles: np.ndarray) -> Batch:
    return {"inputs": np.asarray(arrays.inputs[examples], dtype=np.int32),
            "labels": labels_for_loss(arrays.labels[examples], split.meta.ignore_label_id),
            "puzzle_identifiers": np.asarray(arrays.puzzle_identifiers[puzzles], dtype=np.int32)}


class TrainSampler:
    """Seeded, rank-aware, resumable full batches over the training split (endless: epoch after epoch)."""

    def __init__(self, split: Split, global_batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0) -> None:
        if global_batch_size <= 0 or global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} must be positive and divisible by "
                             f"world_size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside [0, world_size={world_size})")
        self.split = split
        self.global_batch_size = global_batch_size
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = global_batch_size // world_size
        self.seed = seed
        self.epoch = 0
        self.batch_in_epoch = 0
        """Global batches of the current epoch already yielded."""
        self._plan_cache: tuple[int, list[tuple[str, np.ndarray, np.ndarray]]] | None = None

    # The plan of an epoch: per global batch, its set and the (example, puzzle) index of every row.
    def epoch_plan(self, epoch: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
        if self._plan_cache is not None and self._plan_cache[0] == epoch:
            return self._plan_cache[1]
        plan = []
        for set_index, (name, a) in enumerate(self.split.sets.items()):
            rng = np.random.default_rng([self.seed, epoch, set_index])
            plan += [(name, ex, pz) for ex, pz in self._set_plan(a, rng)]
        self._plan_cache = (epoch, plan)
        return plan

    def _set_plan(self, a: SetArrays, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        b = self.global_batch_size
        group_indices = np.asarray(a.group_indices, np.int64)
        puzzle_indices = np.asarray(a.puzzle_indices, np.int64)
        order = rng.permutation(a.num_groups)
        puzzles = rng.integers(group_indices[order], group_indices[order + 1])
        starts = puzzle_indices[puzzles]
        sizes = puzzle_indices[puzzles + 1] - starts
        if (sizes == 1).all():  # one example per puzzle (Sudoku, Maze): no packing needed
            full = len(puzzles) // b
            return [(starts[i * b:(i + 1) * b], puzzles[i * b:(i + 1) * b]) for i in range(full)]
        batches = []
        examples: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        filled = 0
        for puzzle, start, size in zip(puzzles.tolist(), starts.tolist(), sizes.tolist(), strict=True):
            take = min(size, b - filled)
            examples.append(start + rng.permutation(size)[:take])
            owners.append(np.full(take, puzzle, np.int64))
            filled += take
            if filled == b:
                batches.append((np.concatenate(examples), np.concatenate(owners)))
                examples, owners, filled = [], [], 0
        return batches  # the incomplete last batch is dropped

    def __iter__(self) -> Iterator[Batch]:
        while True:
            plan = self.epoch_plan(self.epoch)
            if not plan:
                folder = self.split.folder or "the training split"
                raise DataError(f"{folder}: fewer examples than one global batch of {self.global_batch_size}")
            while self.batch_in_epoch < len(plan):
                name, examples, puzzles = plan[self.batch_in_epoch]
                self.batch_in_epoch += 1
                rows = slice(self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size)
                yield _gather(self.split, self.split.sets[name], examples[rows], puzzles[rows])
            self.epoch += 1
            self.batch_in_epoch = 0

    def steps_per_epoch(self) -> int:
        """Global batches per epoch: groups x mean examples per puzzle / batch, as the reference counts."""
        m = self.split.meta
        return max(1, math.floor(m.total_groups * m.mean_puzzle_examples / self.global_batch_size))

    def state_dict(self) -> dict[str, Any]:
        """The position (JSON-serialisable): the next batch is batch `batch_in_epoch` of epoch `epoch`."""
        return {"seed": self.seed, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "global_batch_size": self.global_batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["global_batch_size"]) != self.global_batch_size:
            raise ValueError(f"saved sampler used global batch {state['global_batch_size']}, this one "
                             f"{self.global_batch_size}: the position would mean other batches")
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])


class TestBatch(NamedTuple):
    set_name: str
    batch: Batch
    real_rows: int
    """Real (unpadded) rows of this process's batch; rows from `real_rows` on are padding."""


def iter_test_batches(split: Split, local_batch_size: int, *, rank: int = 0, world_size: int = 1,
                      subset: dict[str, np.ndarray] | None = None) -> Iterator[TestBatch]:
    """Every example of every set once, in order: global batches of local_batch_size * world_size rows,
    process r taking rows [r * local, (r + 1) * local); short batches padded to local_batch_size.
    `subset`: only these example indices of each set (`test_subset`)."""
    if local_batch_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"need local_batch_size > 0 and 0 <= rank < world_size, got {local_batch_size}, {rank}, "
                         f"{world_size}")
    meta = split.meta
    global_batch = local_batch_size * world_size
    for name, a in split.sets.items():
        order = np.arange(a.num_examples) if subset is None else np.asarray(subset.get(name, []), np.int64)
        n = len(order)
        example_puzzles = a.example_puzzles()
        for start in range(0, n, global_batch):
            lo = min(start + rank * local_batch_size, n)
            hi = min(lo + local_batch_size, start + global_batch, n)
            count = hi - lo
            rows = order[lo:hi]
            real = _gather(split, a, rows, example_puzzles[rows])
            batch = {"inputs": np.full((local_batch_size, meta.seq_len), meta.pad_id, np.int32),
                     "labels": np.full((local_batch_size, meta.seq_len), IGNORE_LABEL_ID, np.int32),
                     "puzzle_identifiers": np.full(local_batch_size, meta.blank_identifier_id, np.int32)}
            for key, value in real.items():
                batch[key][:count] = value
            yield TestBatch(name, batch, count)


def test_subset(split: Split, limit: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded random `limit` examples of each set (all of a smaller set), in dataset order."""
    out = {}
    for i, (name, a) in enumerate(split.sets.items()):
        n = a.num_examples
        rng = np.random.default_rng([seed, i])
        out[name] = np.sort(rng.choice(n, size=min(limit, n), replace=False)) if limit < n else np.arange(n)
    return out


class PuzzleData:
    """A dataset folder with what training and evaluation ask of it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def model_fields(self) -> dict[str, int]:
        return self.dataset.model_fields()

    def train_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1,
                      seed: int = 0) -> TrainSampler:
        return TrainSampler(self.dataset.train, global_batch_size, rank=rank, world_size=world_size, seed=seed)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return TrainSampler(self.dataset.train, global_batch_size).steps_per_epoch()

    def test_batches(self, local_batch_size: int, *, rank: int = 0, world_size: int = 1,
                     subset: dict[str, np.ndarray] | None = None) -> Iterator[TestBatch]:
        if self.dataset.test is None:
            raise DataError(f"{self.dataset.root}: no test/ split to evaluate on")
        return iter_test_batches(self.dataset.test, local_batch_size, rank=rank, world_size=world_size,
                                 subset=subset)


def open_dataset(root: str | Path) -> PuzzleData:
    """Open a dataset folder (memory-mapped)."""
    return PuzzleData(load_dataset(root))
