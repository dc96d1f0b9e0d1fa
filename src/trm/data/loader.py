"""What training and evaluation read: a dataset folder in the on-disk puzzle format, a seeded
rank-aware training sampler whose position can be saved, and test batches that visit every
example once.

Sampling follows the reference: each epoch draws a permutation of the puzzle groups; each group
contributes one random puzzle of the group, whose examples fill the batch (in random order); the
incomplete last batch of an epoch is dropped. The global batch is drawn identically on every
process and process r takes rows [r*B/W, (r+1)*B/W), so any number of processes sees the same
global batches as one process.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm.loss import IGNORE_LABEL_ID


class DatasetError(ValueError):
    """A dataset folder that cannot be read; the message names the file."""


@dataclass
class SplitArrays:
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray


class Split:
    """One split (train or test) of a dataset folder, memory-mapped."""

    def __init__(self, folder: Path) -> None:
        meta_path = folder / "dataset.json"
        if not meta_path.is_file():
            raise DatasetError(f"{folder}: no dataset.json (is this a dataset split folder?)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as e:
            raise DatasetError(f"{meta_path}: corrupt JSON ({e})") from None
        self.folder = folder
        self.sets: dict[str, SplitArrays] = {}
        for name in self.meta.get("sets", ["all"]):
            arrays = {}
            for field in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
                path = folder / f"{name}__{field}.npy"
                if not path.is_file():
                    raise DatasetError(f"{path}: missing")
                arrays[field] = np.load(path, mmap_mode="r")
            self.sets[name] = SplitArrays(**arrays)

    @property
    def pad_id(self) -> int:
        return int(self.meta.get("pad_id", 0))

    @property
    def ignore_label_id(self) -> int | None:
        v = self.meta.get("ignore_label_id", 0)
        return None if v is None else int(v)

    def labels_for_loss(self, labels: np.ndarray) -> np.ndarray:
        """Labels with the dataset's ignore label mapped to the loss's ignore index."""
        labels = np.array(labels, dtype=np.int32)
        if self.ignore_label_id is not None:
            labels[labels == self.ignore_label_id] = IGNORE_LABEL_ID
        return labels


class TrainSampler:
    """Seeded global batches over the puzzle groups of all sets; each process takes its rows."""

    def __init__(self, split: Split, global_batch_size: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} does not split over {world_size} processes")
        self.split, self.global_batch_size, self.rank, self.world_size = split, global_batch_size, rank, world_size
        self.local_batch = global_batch_size // world_size
        self.seed = seed
        self.epoch = 0
        self.batch_in_epoch = 0
        # Groups of all sets in one index space: (set name, group index).
        self._groups = [(name, g) for name, a in split.sets.items() for g in range(len(a.group_indices) - 1)]
        if not self._groups:
            raise DatasetError(f"{split.folder}: no puzzle groups to train on")

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.batch_in_epoch = int(state["epoch"]), int(state["batch_in_epoch"])
        self.seed = int(state["seed"])

    def _epoch_batches(self, epoch: int) -> Iterator[np.ndarray]:
        """Global batches of one epoch as arrays of (set index, example index) pairs."""
        rng = np.random.Generator(np.random.Philox(key=[self.seed, epoch]))
        order = rng.permutation(len(self._groups))
        set_ids = {name: i for i, name in enumerate(self.split.sets)}
        pending: list[np.ndarray] = []
        size = 0
        for gi in order:
            name, g = self._groups[gi]
            a = self.split.sets[name]
            puzzle = rng.integers(a.group_indices[g], a.group_indices[g + 1])
            start, stop = int(a.puzzle_indices[puzzle]), int(a.puzzle_indices[puzzle + 1])
            take = min(stop - start, self.global_batch_size - size)
            examples = start + rng.choice(stop - start, take, replace=False)
            pending.append(np.stack([np.full(take, set_ids[name]), examples], axis=1))
            size += take
            if size == self.global_batch_size:
                yield np.concatenate(pending)
                pending, size = [], 0
        # The incomplete last batch is dropped, as the reference does.

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        names = list(self.split.sets)
        while True:
            for i, rows in enumerate(self._epoch_batches(self.epoch)):
                if i < self.batch_in_epoch:
                    continue
                self.batch_in_epoch = i + 1
                mine = rows[self.rank * self.local_batch:(self.rank + 1) * self.local_batch]
                yield self._gather(names, mine)
            self.epoch += 1
            self.batch_in_epoch = 0

    def _gather(self, names: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
        inputs, labels, ids = [], [], []
        for set_idx, example in rows:
            a = self.split.sets[names[set_idx]]
            inputs.append(a.inputs[example])
            labels.append(a.labels[example])
            puzzle = int(np.searchsorted(a.puzzle_indices, example, side="right") - 1)
            ids.append(a.puzzle_identifiers[puzzle])
        return {"inputs": np.asarray(inputs, dtype=np.int32),
                "labels": self.split.labels_for_loss(np.asarray(labels)),
                "puzzle_identifiers": np.asarray(ids, dtype=np.int32)}

    def steps_per_epoch(self) -> int:
        mean_examples = float(self.split.meta.get("mean_puzzle_examples", 1.0))
        return max(1, math.floor(len(self._groups) * mean_examples / self.global_batch_size))


def iter_test_batches(split: Split, local_batch: int, *, rank: int = 0, world_size: int = 1,
                 ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Every example of every set once, in order, in batches of `local_batch` per process.

    Each process takes a contiguous share of each global batch; the last batch is padded with rows
    that have no labels (so they count nowhere) and the blank puzzle id.
    """
    global_batch = local_batch * world_size
    for name, a in split.sets.items():
        n = len(a.inputs)
        example_puzzle = np.repeat(np.arange(len(a.puzzle_indices) - 1), np.diff(a.puzzle_indices))
        for start in range(0, n, global_batch):
            lo = min(start + rank * local_batch, n)
            hi = min(lo + local_batch, n)
            count = hi - lo
            inputs = np.full((local_batch, a.inputs.shape[1]), split.pad_id, dtype=np.int32)
            labels = np.full((local_batch, a.labels.shape[1]), IGNORE_LABEL_ID, dtype=np.int32)
            ids = np.zeros(local_batch, dtype=np.int32)
            inputs[:count] = a.inputs[lo:hi]
            labels[:count] = split.labels_for_loss(a.labels[lo:hi])
            ids[:count] = a.puzzle_identifiers[example_puzzle[lo:hi]]
            yield name, {"inputs": inputs, "labels": labels, "puzzle_identifiers": ids}


class PuzzleData:
    """A dataset folder with `train/` and `test/` splits."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: no such dataset folder (build one with `trm build ...`)")
        self.train = Split(self.root / "train")
        self.test = Split(self.root / "test") if (self.root / "test").is_dir() else None

    def model_fields(self) -> dict[str, Any]:
        """The model-config fields the data decides."""
        m = self.train.meta
        return {"vocab_size": int(m["vocab_size"]), "seq_len": int(m["seq_len"]),
                "num_puzzle_identifiers": int(m["num_puzzle_identifiers"])}

    def train_sampler(self, global_batch_size: int, *, rank: int = 0, world_size: int = 1,
                      seed: int = 0) -> TrainSampler:
        return TrainSampler(self.train, global_batch_size, rank=rank, world_size=world_size, seed=seed)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        return TrainSampler(self.train, global_batch_size).steps_per_epoch()

    def test_batches(self, local_batch: int, *, rank: int = 0, world_size: int = 1,
                     ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        if self.test is None:
            raise DatasetError(f"{self.root}: no test/ split to evaluate on")
        return iter_test_batches(self.test, local_batch, rank=rank, world_size=world_size)


def open_dataset(root: str | Path) -> PuzzleData:
    return PuzzleData(root)
