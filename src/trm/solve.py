"""Solving puzzles with a trained model and watching the answer change step by step.

    from trm import Solver
    solver = Solver.from_checkpoint("runs/demo/train")               # task from the run's dataset
    for s in solver.solve(["1.3...", "..2..."]):                     # text, or token / grid arrays; batched
        print(s.text, s.valid, s.settled)                             # answer, rule check, step it stopped changing
    answers = solver.solve_arc("task.json", variants=8)             # ARC: vote over the task's variants

A solution keeps the answer after every supervision step (`steps`), the halting head's logit after
every step, the step after which the answer stopped changing, and, where the task has rules, whether
the answer obeys them (any valid answer counts, not only the recorded one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trm.data.format import DataError
from trm.evaluate import Scaling, check_policy, predict
from trm.models import ACTModel
from trm.tasks import TASKS, PuzzleTask, task_for


@dataclass
class Solution:
    """The model's answer to one puzzle."""

    task: PuzzleTask
    puzzle: np.ndarray
    """Input tokens (seq_len,)."""
    steps: list[np.ndarray]
    """The answer (tokens) after each supervision step."""
    q_halt: list[float]
    """The halting head's logit after each step (> 0: the model would stop)."""
    stopped: int
    """The step the answer comes from (the budget under the fixed policy; the halting step under early)."""
    valid: bool | None
    """Whether the answer obeys the task's rules and the puzzle's givens (None: no rule to check)."""
    correct: bool | None = None
    """Whether it equals a known answer (None: none known)."""

    @property
    def answer(self) -> np.ndarray:
        return self.steps[self.stopped - 1]

    @property
    def settled(self) -> int:
        """The step after which the answer no longer changed (1: it never changed)."""
        k = self.stopped
        while k > 1 and np.array_equal(self.steps[k - 1], self.steps[k - 2]):
            k -= 1
        return k

    @property
    def halted_at(self) -> int | None:
        """The first step at which the halting head said halt (None: it never did)."""
        return next((i + 1 for i, q in enumerate(self.q_halt) if q > 0), None)

    @property
    def text(self) -> str:
        return self.task.format(self.answer, self.puzzle)

    def changed(self, step: int) -> int:
        """Cells that differ between the answers after `step - 1` and `step` (1-based; step 1 counts
        the cells the model filled in or changed relative to the puzzle)."""
        before = self.puzzle if step == 1 else self.steps[step - 2]
        return int((self.steps[step - 1] != before).sum())


@dataclass
class ArcAnswer:
    """The ranked candidates for one test input of an ARC task (un-augmented, voted)."""

    task_id: str
    test_index: int
    candidates: list[Any]
    """`trm.tasks.arc.scoring.Candidate`s, best first."""
    trace: Solution
    """The original (identity-variant) input's solve, with its per-step answers."""
    correct: bool | None
    """Whether the top candidate equals the known answer (None: unknown)."""
    pass_at_2: bool | None

    @property
    def grid(self) -> np.ndarray | None:
        return self.candidates[0].grid if self.candidates else None


class Solver:
    """A model with its task: solves batches of puzzles and keeps the per-step trace."""

    def __init__(self, model: ACTModel, task: PuzzleTask, *, steps: int | None = None, policy: str = "fixed",
                 scaling: Scaling | None = None, device: torch.device | str = "cpu", batch_size: int = 256,
                 identifiers: Sequence[str] | None = None) -> None:
        check_policy(policy)
        if task.seq_len != model.config.seq_len:
            raise ValueError(f"the model reads {model.config.seq_len} tokens, a {task.name} of this size "
                             f"{task.seq_len}")
        self.model, self.task = model.eval().to(device), task
        self.steps = steps or model.halt_max_steps
        self.policy, self.scaling, self.device, self.batch_size = policy, scaling, torch.device(device), batch_size
        self.identifiers = list(identifiers) if identifiers is not None else None

    @classmethod
    def from_checkpoint(cls, path: str | Path, *, data: str | Path | None = None, task: str | None = None,
                        use_ema: bool = True, device: str = "auto", dtype: str = "train", **kwargs: Any) -> Solver:
        """Load a model from any source `trm.load` reads (a checkpoint or run folder, a reference or HRM
        run, hf://owner/name); the task comes from `task`, else from the dataset the run trained on (or
        `data`), else from the model's vocabulary and sequence length. `dtype`: activations in the run's
        training dtype ("train"), "float32" or "bfloat16". A dataset the model does not fit is an error
        (`trm.loader.check_fits`)."""
        from trm.data.format import load_dataset
        from trm.loader import check_fits, load
        from trm.runtime import pick_device

        dev = pick_device(device)
        loaded = load(path, data=data, use_ema=use_ema, device=dev, dtype=dtype)
        data_dir = data or loaded.meta.get("train", {}).get("data")
        dataset = load_dataset(data_dir) if data_dir and Path(data_dir, "train").is_dir() else None
        if dataset is not None:
            check_fits(loaded.config, dataset.train.meta, where=str(path), data=str(data_dir))
        declared = task or (dataset.train.meta.task if dataset is not None else None)
        c = loaded.config
        found = task_for(c.vocab_size, c.seq_len, declared)
        if found is None:
            raise ValueError(f"{path}: cannot tell what task a model with vocab {c.vocab_size} and "
                             f"seq_len {c.seq_len} solves; pass task= ({', '.join(TASKS)})")
        identifiers = dataset.identifiers if dataset is not None else None
        return cls(loaded.model, found, device=dev, identifiers=identifiers, **kwargs)

    def tokens(self, puzzle: str | np.ndarray, where: str = "puzzle") -> np.ndarray:
        """A puzzle as input tokens: text is parsed by the task; an array of seq_len tokens is taken as is."""
        if isinstance(puzzle, str):
            return self.task.parse(puzzle, where)
        tokens = np.asarray(puzzle).reshape(-1)
        if tokens.shape[0] != self.task.seq_len:
            raise DataError(f"{where}: {tokens.shape[0]} tokens, the model reads {self.task.seq_len}")
        return tokens.astype(np.int32)

    def solve(self, puzzles: Sequence[str | np.ndarray], identifiers: Sequence[int] | None = None,
              answers: Sequence[np.ndarray | None] | None = None) -> list[Solution]:
        """Solve puzzles in batches of `batch_size`; `answers` (tokens), where known, set `correct`."""
        tokens = np.stack([self.tokens(p, f"puzzle {i + 1}") for i, p in enumerate(puzzles)]) if puzzles else None
        if tokens is None:
            return []
        ids = np.zeros(len(tokens), np.int32) if identifiers is None else np.asarray(identifiers, np.int32)
        out: list[Solution] = []
        for lo in range(0, len(tokens), self.batch_size):
            chunk = tokens[lo:lo + self.batch_size]
            batch = {"inputs": torch.as_tensor(chunk, device=self.device),
                     "labels": torch.zeros(chunk.shape, dtype=torch.int32, device=self.device),
                     "puzzle_identifiers": torch.as_tensor(ids[lo:lo + self.batch_size], device=self.device)}
            run = predict(self.model, batch, self.steps, self.policy, scaling=self.scaling, task=self.task,
                          batch_index=lo // self.batch_size)
            trace = [t.cpu().numpy() for t in run.trace]
            q = [t.float().cpu().numpy() for t in run.q_trace]
            finals = run.final.cpu().numpy()
            valid = self.task.valid(finals, chunk) if self.task.checks_validity else None
            stopped = run.stopped.cpu().numpy()
            for j in range(len(chunk)):
                known = None if answers is None or answers[lo + j] is None else answers[lo + j]
                out.append(Solution(
                    task=self.task, puzzle=chunk[j], steps=[t[j] for t in trace], q_halt=[float(x[j]) for x in q],
                    stopped=int(stopped[j]),
                    valid=None if valid is None else bool(valid[j]),
                    correct=None if known is None else bool(np.array_equal(finals[j], np.asarray(known).reshape(-1)))))
        return out

    def solve_one(self, puzzle: str | np.ndarray) -> Solution:
        return self.solve([puzzle])[0]

    def solve_arc(self, task: Any, variants: int = 1) -> list[ArcAnswer]:
        """Answer every test input of an ARC task (an `ArcTask`, or a task file path) by voting over the
        original and up to `variants - 1` of the augmented variants the model was trained on."""
        from trm.tasks.arc import ArcGridTask
        from trm.tasks.arc.augment import encode_grid, parse_variant_name
        from trm.tasks.arc.scoring import ArcVoter, grid_key

        if not isinstance(self.task, ArcGridTask):
            raise ValueError(f"solve_arc needs an ARC model, this one solves {self.task.name}")
        if self.identifiers is None:
            raise ValueError("an ARC model knows tasks by puzzle identifier: give the dataset it trained on "
                             "(from_checkpoint(data=...)) so that its identifiers.json names them")
        if isinstance(task, (str, Path)):
            task = self.task.parse_task(Path(task).read_text(), str(task))
        prefix = f"{task.id}|||"
        ids = [i for i, name in enumerate(self.identifiers) if name == task.id or name.startswith(prefix)]
        if not ids:
            raise DataError(f"task {task.id!r} is not among the {len(self.identifiers) - 1} puzzles the model was "
                            "trained with; its demonstrations reach the model only through training (build a "
                            "dataset that includes the task and train on it)")
        ids.sort(key=lambda i: not parse_variant_name(self.identifiers[i])[1].is_identity)  # type: ignore[index]
        ids = ids[:max(1, variants)]
        voter = ArcVoter(self.identifiers, canvas=self.task.canvas)
        rows, row_ids, owners = [], [], []
        for t, pair in enumerate(task.test):
            for i in ids:
                _, variant = parse_variant_name(self.identifiers[i])  # type: ignore[index]
                try:
                    grid_tokens = encode_grid(variant.apply(pair.input), canvas=self.task.canvas)
                except ValueError as e:
                    raise DataError(f"task {task.id}: test input {t + 1}: {e}") from None
                rows.append(grid_tokens.astype(np.int32))
                row_ids.append(i)
                owners.append(t)
        solutions = self.solve(rows, identifiers=row_ids)
        voter.add(np.array(row_ids), np.stack(rows), np.stack([s.answer for s in solutions]),
                  np.array([s.q_halt[s.stopped - 1] for s in solutions]))
        out = []
        for t, pair in enumerate(task.test):
            ranked = voter.ranked(task.id, pair.input)
            first = next(s for s, o in zip(solutions, owners, strict=True) if o == t)
            correct = pass2 = None
            if pair.output is not None:
                keys = [grid_key(c.grid) for c in ranked]
                correct = bool(keys[:1] == [grid_key(pair.output)])
                pass2 = grid_key(pair.output) in keys[:2]
            out.append(ArcAnswer(task.id, t, ranked, first, correct, pass2))
        return out
