"""ARC scoring by the reference evaluator's rules: undo each variant, vote across variants, pass@k and a
Kaggle submission.

    voter = ArcVoter.from_dataset("data/arc-agi-1")            # reads identifiers.json
    voter.add(puzzle_identifiers, inputs, predictions, q_halt_logits)   # per test batch
    tasks = load_test_tasks("data/arc-agi-1")                   # or trm.tasks.arc.puzzles.load_kaggle_file(...)
    scores = pass_at_k(voter, tasks)                            # {"pass@1": ..., "pass@2": ..., ...}
    write_submission("submission.json", make_submission(voter, tasks))

Each prediction is a canvas of tokens made for one puzzle variant. Its grid is cropped at the end
markers, shifted back to colours, and un-augmented (inverse dihedral transform, inverse colour map);
the example's input goes through the same steps and keys the vote, so all variants of a test input
vote together. As in the reference evaluator, candidates rank by vote count, then by the mean of
sigmoid(q_halt) over their votes (float64, summed in the dataset's order), and a full tie goes to the
candidate that came first in the dataset's variant order (the lowest puzzle identifier among its
votes), so the ranking is the reference's and does not depend on the order batches arrive in. A
prediction that crops to an empty grid (no colour at the top-left) is a candidate like any other, as
in the reference; `skip_empty=True` (ranking, pass@k, submission) leaves such candidates out, which
can only help a submission, since an empty grid is never an ARC answer.

Where the reference evaluator leaves a test input with no prediction out of the submission, we write
both attempts as [[0]], since Kaggle wants an entry for every test input; pass@k is the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm.tasks.arc.augment import CANVAS, COLOUR_OFFSET, Variant, canvas_side, crop_sizes, parse_variant_name
from trm.tasks.arc.puzzles import ArcPair, ArcTask, parse_task

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


def is_empty(key: bytes) -> bool:
    """Whether a `grid_key` is the empty (0 x 0) grid of a prediction with no colour at the top-left."""
    return key[:2] == b"\0\0" or key[2:4] == b"\0\0"


def sigmoid64(logits: np.ndarray) -> np.ndarray:
    """sigmoid in float64, computed as the reference evaluator computes it (torch, float64)."""
    import torch

    return torch.as_tensor(np.asarray(logits, dtype=np.float64)).sigmoid().numpy()


@dataclass(frozen=True)
class Candidate:
    """One distinct answer to a test input: its grid, vote count, mean sigmoid(q_halt) and the dataset
    position (puzzle identifier) of its first vote."""

    grid: np.ndarray
    votes: int
    confidence: float
    first: int = 0


Vote = tuple[int, float]
"""(order in the dataset: the variant's puzzle identifier, sigmoid(q_halt))."""


class ArcVoter:
    """Collects un-augmented predictions per task and test input, and ranks them by vote."""

    def __init__(self, identifiers: Sequence[str], blank_identifier_id: int = 0, canvas: int = CANVAS) -> None:
        self.identifiers = list(identifiers)
        self.blank_identifier_id = blank_identifier_id
        self.canvas = canvas
        # task -> input key -> prediction key -> votes
        self.votes: dict[str, dict[bytes, dict[bytes, list[Vote]]]] = {}
        self.empty = 0
        """Predictions with no grid at the top-left of the canvas (candidates all the same, see skip_empty)."""
        self._variants: dict[int, tuple[str, Variant]] = {}
        self._added = 0

    @classmethod
    def from_dataset(cls, folder: str | Path) -> ArcVoter:
        """A voter for a dataset folder (its identifiers.json names the variant of every puzzle id; its
        dataset.json gives the canvas)."""
        names = json.loads((Path(folder) / "identifiers.json").read_text())
        meta = json.loads((Path(folder) / "test" / "dataset.json").read_text())
        return cls(names, int(meta.get("blank_identifier_id", 0)), canvas_side(int(meta["seq_len"])))

    @property
    def skipped(self) -> int:
        """Former name of `empty`."""
        return self.empty

    def _variant(self, identifier: int) -> tuple[str, Variant]:
        if identifier not in self._variants:
            if not 0 <= identifier < len(self.identifiers):
                raise ValueError(f"puzzle identifier {identifier} is not in identifiers.json "
                                 f"({len(self.identifiers)} names): is this the dataset the predictions came from?")
            self._variants[identifier] = parse_variant_name(self.identifiers[identifier])
        return self._variants[identifier]

    def add(self, puzzle_identifiers: np.ndarray, inputs: np.ndarray, predictions: np.ndarray,
            q_halt_logits: np.ndarray) -> None:
        """Add a batch: ids [B], input and predicted tokens [B, canvas * canvas], q_halt logits [B];
        blank-id rows are padding."""
        ids = np.asarray(puzzle_identifiers).reshape(-1)
        inputs = np.asarray(inputs).reshape(len(ids), -1)
        predictions = np.asarray(predictions).reshape(len(ids), -1)
        q = sigmoid64(np.asarray(q_halt_logits).reshape(-1))
        keep = ids != self.blank_identifier_id
        ids, inputs, predictions, q = ids[keep], inputs[keep], predictions[keep], q[keep]
        if not len(ids):
            return
        shape = (self.canvas, self.canvas)
        in_h, in_w = crop_sizes(inputs, shape)
        out_h, out_w = crop_sizes(predictions, shape)
        for i in range(len(ids)):
            identifier = int(ids[i])
            task_id, variant = self._variant(identifier)
            inp = self._crop(inputs[i], int(in_h[i]), int(in_w[i]))
            out = self._crop(predictions[i], int(out_h[i]), int(out_w[i]))
            self.empty += out.size == 0
            self._vote(task_id, variant.invert(inp), variant.invert(out), (identifier, float(q[i])))

    def add_grid(self, task_id: str, test_input: np.ndarray, prediction: np.ndarray, q_halt_logit: float,
                 order: int | None = None) -> None:
        """Add one prediction already in the original task's frame (colours 0-9, no augmentation); `order`
        places it among the others for ties (default: after every vote added so far)."""
        self._added += 1
        place = len(self.identifiers) + self._added if order is None else order
        self._vote(task_id, np.asarray(test_input), np.asarray(prediction),
                   (place, float(sigmoid64(np.array([q_halt_logit]))[0])))

    def _crop(self, tokens: np.ndarray, h: int, w: int) -> np.ndarray:
        grid = np.asarray(tokens).reshape(self.canvas, self.canvas)[:h, :w].astype(np.int64) - COLOUR_OFFSET
        return grid.astype(np.uint8)

    def _vote(self, task_id: str, test_input: np.ndarray, prediction: np.ndarray, vote: Vote) -> None:
        by_input = self.votes.setdefault(task_id, {}).setdefault(grid_key(test_input), {})
        by_input.setdefault(grid_key(prediction), []).append(vote)

    def merge(self, other: ArcVoter) -> None:
        """Add the votes of another voter (e.g. gathered from another process)."""
        for task_id, inputs in other.votes.items():
            for ikey, preds in inputs.items():
                mine = self.votes.setdefault(task_id, {}).setdefault(ikey, {})
                for pkey, votes in preds.items():
                    mine.setdefault(pkey, []).extend(votes)
        self.empty += other.empty

    def ranked(self, task_id: str, test_input: np.ndarray, skip_empty: bool = False) -> list[Candidate]:
        """Candidates for one test input, best first, by the reference evaluator's rule: most votes, then
        the highest mean sigmoid(q_halt), then the first in the dataset's variant order. `skip_empty`
        leaves out the empty grid."""
        preds = self.votes.get(task_id, {}).get(grid_key(np.asarray(test_input)), {})
        scored = []
        for key, votes in preds.items():
            if skip_empty and is_empty(key):
                continue
            votes = sorted(votes)  # the dataset's order, whatever order the batches came in
            total = 0.0
            for _, q in votes:  # summed one by one in that order, as the reference does
                total += q
            scored.append((len(votes), total / len(votes), votes[0][0], key))
        scored.sort(key=lambda s: (-s[0], -s[1], s[2], s[3]))
        return [Candidate(key_grid(key), count, conf, first) for count, conf, first, key in scored]


def task_pass_at_k(voter: ArcVoter, task: ArcTask, ks: Iterable[int] = PASS_KS,
                   skip_empty: bool = False) -> dict[int, float]:
    """Fraction of the task's test inputs whose answer is among the top k candidates, per k."""
    ks = tuple(ks)
    if not task.has_solutions:
        raise ValueError(f"task {task.id}: test outputs unknown, cannot score (load the solutions file)")
    hits = dict.fromkeys(ks, 0)
    for pair in task.test:
        assert pair.output is not None
        answer = grid_key(pair.output)
        keys = [grid_key(c.grid) for c in voter.ranked(task.id, pair.input, skip_empty)]
        for k in ks:
            hits[k] += answer in keys[:k]
    return {k: hits[k] / len(task.test) for k in ks}


def pass_at_k(voter: ArcVoter, tasks: Mapping[str, ArcTask], ks: Iterable[int] = PASS_KS,
              skip_empty: bool = False) -> dict[str, float]:
    """pass@k per k as the reference evaluator computes it: per test input, averaged per task, then summed
    in task order and divided by the number of tasks (tasks with no prediction count 0)."""
    ks = tuple(ks)
    if not tasks:
        raise ValueError("no tasks to score")
    per_task = [task_pass_at_k(voter, t, ks, skip_empty) for t in tasks.values()]
    out = {}
    for k in ks:
        total = 0.0
        for scores in per_task:
            total += scores[k]
        out[f"pass@{k}"] = total / len(per_task)
    return out


def make_submission(voter: ArcVoter, tasks: Mapping[str, ArcTask], attempts: int = 2,
                    fallback: list[list[int]] | None = None,
                    skip_empty: bool = False) -> dict[str, list[dict[str, list[list[int]]]]]:
    """Kaggle submission: per task, one entry per test input in order, `attempt_1`..`attempt_<attempts>`
    holding the top candidates; fewer candidates repeat the best, none gives `fallback` ([[0]])."""
    fallback = FALLBACK_GRID if fallback is None else fallback
    out: dict[str, list[dict[str, list[list[int]]]]] = {}
    for task_id, task in tasks.items():
        entries = []
        for pair in task.test:
            grids = [c.grid.tolist() for c in voter.ranked(task_id, pair.input, skip_empty)[:attempts]]
            if not grids:
                grids = [fallback]
            grids += [grids[0]] * (attempts - len(grids))
            entries.append({f"attempt_{i + 1}": g for i, g in enumerate(grids)})
        out[task_id] = entries
    return out


def write_submission(path: str | Path, submission: Mapping[str, Any]) -> None:
    """Write a submission as JSON (compact, as Kaggle reads it), atomically."""
    from trm.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(submission, separators=(",", ":")))


def load_test_tasks(folder: str | Path) -> dict[str, ArcTask]:
    """The original test tasks a built dataset was scored against (its test_puzzles.json); answers named
    in unknown_answers.json (whose entries hold the placeholder [[0]]) are unknown (None)."""
    from trm.tasks.arc.build import UNKNOWN_ANSWERS

    path = Path(folder) / "test_puzzles.json"
    data = json.loads(path.read_text())
    unknown_path = Path(folder) / UNKNOWN_ANSWERS
    unknown: dict[str, list[int]] = json.loads(unknown_path.read_text()) if unknown_path.is_file() else {}
    tasks = {tid: parse_task(tid, raw, str(path)) for tid, raw in data.items()}
    for tid, indices in unknown.items():
        if tid in tasks:
            t = tasks[tid]
            test = tuple(ArcPair(p.input, None) if i in indices else p for i, p in enumerate(t.test))
            tasks[tid] = ArcTask(t.id, t.train, test, t.subset)
    return tasks


BASELINES = ("test-input", "frequent-output")


def baseline_voter(tasks: Mapping[str, ArcTask], rule: str) -> ArcVoter:
    """Answers without a model, as a voter: `test-input` answers every test input with itself;
    `frequent-output` with the task's demonstration outputs, most frequent first (ties: the first shown)."""
    if rule not in BASELINES:
        raise ValueError(f"unknown baseline {rule!r}: choose {' or '.join(BASELINES)}")
    voter = ArcVoter([])
    for task in tasks.values():
        for pair in task.test:
            if rule == "test-input":
                voter.add_grid(task.id, pair.input, pair.input, 0.0, order=0)
            else:
                for order, demo in enumerate(task.train):
                    assert demo.output is not None
                    voter.add_grid(task.id, pair.input, demo.output, 0.0, order=order)
    return voter


def baseline_scores(tasks: Mapping[str, ArcTask], ks: Iterable[int] = (1, 2)) -> dict[str, float]:
    """pass@k of both baselines on tasks with known answers: `<baseline> pass@k` -> value."""
    return {f"{rule} {k}": v for rule in BASELINES
            for k, v in pass_at_k(baseline_voter(tasks, rule), tasks, ks).items()}
