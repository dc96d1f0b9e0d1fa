"""ARC scoring as the reference evaluator does it: undo each variant, vote across variants, pass@k and a
Kaggle submission.

    voter = ArcVoter.from_dataset("data/arc-agi-1")            # reads identifiers.json
    voter.add(puzzle_identifiers, inputs, predictions, q_halt_logits)   # per test batch
    tasks = load_test_tasks("data/arc-agi-1")                   # or trm.tasks.arc.puzzles.load_kaggle_file(...)
    scores = pass_at_k(voter, tasks)                            # {"pass@1": ..., "pass@2": ..., ...}
    write_submission("submission.json", make_submission(voter, tasks))

Each prediction is a 30x30 token grid made for one puzzle variant. Its grid is cropped at the end
markers, shifted back to colours, and un-augmented (inverse dihedral transform, inverse colour map);
the example's input goes through the same steps and keys the vote, so all variants of a test input
vote together. Candidates rank by vote count, then by the mean sigmoid(q_halt) of their votes, then
by the grid itself, so the ranking does not depend on the order predictions arrive in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm.tasks.arc.augment import COLOUR_OFFSET, Variant, crop_sizes, parse_variant_name
from trm.tasks.arc.puzzles import ArcTask, parse_task

PASS_KS: tuple[int, ...] = (1, 2, 5, 10, 100, 1000)
FALLBACK_GRID: list[list[int]] = [[0]]
"""Both attempts of a test input that received no prediction."""


def grid_key(grid: np.ndarray) -> bytes:
    """A hashable key of a grid's shape and colours."""
    grid = np.ascontiguousarray(grid, dtype=np.uint8)
    h, w = grid.shape
    return h.to_bytes(2, "big") + w.to_bytes(2, "big") + grid.tobytes()


def key_grid(key: bytes) -> np.ndarray:
    """The grid of a `grid_key`."""
    h, w = int.from_bytes(key[:2], "big"), int.from_bytes(key[2:4], "big")
    return np.frombuffer(key[4:], dtype=np.uint8).reshape(h, w).copy()


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@dataclass(frozen=True)
class Candidate:
    """One distinct answer to a test input: its grid, vote count and mean sigmoid(q_halt)."""

    grid: np.ndarray
    votes: int
    confidence: float


class ArcVoter:
    """Collects un-augmented predictions per task and test input, and ranks them by vote."""

    def __init__(self, identifiers: Sequence[str], blank_identifier_id: int = 0) -> None:
        self.identifiers = list(identifiers)
        self.blank_identifier_id = blank_identifier_id
        # task -> input key -> prediction key -> sigmoid(q_halt) of each vote
        self.votes: dict[str, dict[bytes, dict[bytes, list[float]]]] = {}
        self.skipped = 0
        """Predictions (or inputs) with no grid at the top-left of the canvas; they vote for nothing."""
        self._variants: dict[int, tuple[str, Variant]] = {}

    @classmethod
    def from_dataset(cls, folder: str | Path) -> ArcVoter:
        """A voter for a dataset folder (its identifiers.json names the variant of every puzzle id)."""
        names = json.loads((Path(folder) / "identifiers.json").read_text())
        return cls(names)

    def _variant(self, identifier: int) -> tuple[str, Variant]:
        if identifier not in self._variants:
            if not 0 <= identifier < len(self.identifiers):
                raise ValueError(f"puzzle identifier {identifier} is not in identifiers.json "
                                 f"({len(self.identifiers)} names): is this the dataset the predictions came from?")
            self._variants[identifier] = parse_variant_name(self.identifiers[identifier])
        return self._variants[identifier]

    def add(self, puzzle_identifiers: np.ndarray, inputs: np.ndarray, predictions: np.ndarray,
            q_halt_logits: np.ndarray) -> None:
        """Add a batch: ids [B], input and predicted tokens [B, 900], q_halt logits [B]; blank-id rows are padding."""
        ids = np.asarray(puzzle_identifiers).reshape(-1)
        inputs = np.asarray(inputs).reshape(len(ids), -1)
        predictions = np.asarray(predictions).reshape(len(ids), -1)
        q = np.asarray(q_halt_logits, dtype=np.float64).reshape(-1)
        keep = ids != self.blank_identifier_id
        ids, inputs, predictions, q = ids[keep], inputs[keep], predictions[keep], q[keep]
        in_h, in_w = crop_sizes(inputs)
        out_h, out_w = crop_sizes(predictions)
        for i in range(len(ids)):
            if in_h[i] == 0 or out_h[i] == 0:
                self.skipped += 1
                continue
            task_id, variant = self._variant(int(ids[i]))
            inp = _crop(inputs[i], int(in_h[i]), int(in_w[i]))
            out = _crop(predictions[i], int(out_h[i]), int(out_w[i]))
            self._vote(task_id, variant.invert(inp), variant.invert(out), float(q[i]))

    def add_grid(self, task_id: str, test_input: np.ndarray, prediction: np.ndarray, q_halt_logit: float) -> None:
        """Add one prediction already in the original task's frame (colours 0-9, no augmentation)."""
        self._vote(task_id, np.asarray(test_input), np.asarray(prediction), q_halt_logit)

    def _vote(self, task_id: str, test_input: np.ndarray, prediction: np.ndarray, q_halt_logit: float) -> None:
        by_input = self.votes.setdefault(task_id, {}).setdefault(grid_key(test_input), {})
        by_input.setdefault(grid_key(prediction), []).append(_sigmoid(q_halt_logit))

    def merge(self, other: ArcVoter) -> None:
        """Add the votes of another voter (e.g. gathered from another process)."""
        for task_id, inputs in other.votes.items():
            for ikey, preds in inputs.items():
                mine = self.votes.setdefault(task_id, {}).setdefault(ikey, {})
                for pkey, qs in preds.items():
                    mine.setdefault(pkey, []).extend(qs)
        self.skipped += other.skipped

    def ranked(self, task_id: str, test_input: np.ndarray) -> list[Candidate]:
        """Candidates for one test input, best first: most votes, then highest mean sigmoid(q_halt),
        then the grid (smaller shape, then smaller bytes) so that ties are deterministic."""
        preds = self.votes.get(task_id, {}).get(grid_key(np.asarray(test_input)), {})
        # fsum is exactly rounded, hence independent of the order votes arrived in
        scored = [(len(qs), math.fsum(qs) / len(qs), key) for key, qs in preds.items()]
        scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
        return [Candidate(key_grid(key), count, conf) for count, conf, key in scored]


def _crop(tokens: np.ndarray, h: int, w: int) -> np.ndarray:
    grid = np.asarray(tokens).reshape(30, 30)[:h, :w].astype(np.int64) - COLOUR_OFFSET
    return grid.astype(np.uint8)


def task_pass_at_k(voter: ArcVoter, task: ArcTask, ks: Iterable[int] = PASS_KS) -> dict[int, float]:
    """Fraction of the task's test inputs whose answer is among the top k candidates, per k."""
    ks = tuple(ks)
    if not task.has_solutions:
        raise ValueError(f"task {task.id}: test outputs unknown, cannot score (load the solutions file)")
    hits = dict.fromkeys(ks, 0)
    for pair in task.test:
        assert pair.output is not None
        answer = grid_key(pair.output)
        keys = [grid_key(c.grid) for c in voter.ranked(task.id, pair.input)]
        for k in ks:
            hits[k] += answer in keys[:k]
    return {k: hits[k] / len(task.test) for k in ks}


def pass_at_k(voter: ArcVoter, tasks: Mapping[str, ArcTask], ks: Iterable[int] = PASS_KS) -> dict[str, float]:
    """pass@k per k: per test input, averaged per task, then over `tasks` (tasks with no prediction count 0)."""
    ks = tuple(ks)
    if not tasks:
        raise ValueError("no tasks to score")
    per_task = [task_pass_at_k(voter, t, ks) for t in tasks.values()]
    return {f"pass@{k}": math.fsum(s[k] for s in per_task) / len(per_task) for k in ks}


def make_submission(voter: ArcVoter, tasks: Mapping[str, ArcTask], attempts: int = 2,
                    fallback: list[list[int]] | None = None) -> dict[str, list[dict[str, list[list[int]]]]]:
    """Kaggle submission: per task, one entry per test input in order, `attempt_1`..`attempt_<attempts>`
    holding the top candidates; fewer candidates repeat the best, none gives `fallback` ([[0]])."""
    fallback = FALLBACK_GRID if fallback is None else fallback
    out: dict[str, list[dict[str, list[list[int]]]]] = {}
    for task_id, task in tasks.items():
        entries = []
        for pair in task.test:
            grids = [c.grid.tolist() for c in voter.ranked(task_id, pair.input)[:attempts]]
            if not grids:
                grids = [fallback]
            grids += [grids[0]] * (attempts - len(grids))
            entries.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
        out[task_id] = entries
    return out


def write_submission(path: str | Path, submission: Mapping[str, Any]) -> None:
    """Write a submission as JSON (compact, as Kaggle reads it)."""
    Path(path).write_text(json.dumps(submission, separators=(",", ":")))


def load_test_tasks(folder: str | Path) -> dict[str, ArcTask]:
    """The original test tasks a built dataset was scored against (its test_puzzles.json)."""
    path = Path(folder) / "test_puzzles.json"
    data = json.loads(path.read_text())
    return {tid: parse_task(tid, raw, str(path)) for tid, raw in data.items()}
