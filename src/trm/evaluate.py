"""Evaluation: run every example for a budget of supervision steps and measure how the answer
improves step by step.

Policies:
- `fixed`: every example runs `steps` supervision steps (the reference's behaviour, with
  steps = N_sup); the answer is the last one.
- `early`: an example stops at the first step where the halting head says halt (q_halt > 0);
  its answer is the one of that step. Examples that never halt run the whole budget.
The budget may exceed training's N_sup: the recursion simply continues from the carried state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from trm.loss import IGNORE_LABEL_ID
from trm.models import ACTModel

TestBatch = tuple[Any, ...]
"""(set name, batch, ...); padding rows carry no labels (all IGNORE_LABEL_ID) and are not counted."""


@dataclass
class SetResult:
    count: int = 0
    token_correct: float = 0.0
    exact_correct: int = 0
    steps_used: int = 0
    per_step_exact: list[int] = field(default_factory=list)
    q_halt_correct: int = 0

    def add(self, other: SetResult) -> None:
        self.count += other.count
        self.token_correct += other.token_correct
        self.exact_correct += other.exact_correct
        self.steps_used += other.steps_used
        self.q_halt_correct += other.q_halt_correct
        if not self.per_step_exact:
            self.per_step_exact = [0] * len(other.per_step_exact)
        self.per_step_exact = [a + b for a, b in zip(self.per_step_exact, other.per_step_exact, strict=True)]

    def summary(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {"count": self.count, "accuracy": self.token_correct / n, "exact_accuracy": self.exact_correct / n,
                "mean_steps": self.steps_used / n, "q_halt_accuracy": self.q_halt_correct / n,
                "exact_accuracy_per_step": [c / n for c in self.per_step_exact]}


@dataclass
class EvalResult:
    sets: dict[str, SetResult]
    policy: str
    budget: int

    def flat(self) -> dict[str, Any]:
        """`<set>/<metric>` -> value, scalars only (for logs)."""
        out: dict[str, Any] = {}
        for name, result in self.sets.items():
            for k, v in result.summary().items():
                if not isinstance(v, list):
                    out[f"{name}/{k}"] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "budget": self.budget,
                "sets": {name: r.summary() for name, r in self.sets.items()}}


@torch.no_grad()
def run_steps(model: ACTModel, batch: dict[str, Tensor], steps: int, policy: str = "fixed",
              ) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
    """Run `steps` supervision steps from a fresh state.

    Returns (final predictions [B, seq], step at which each example stopped [B], its q_halt logit
    [B], the predictions after every step).
    """
    if policy not in ("fixed", "early"):
        raise ValueError(f"unknown halting policy {policy!r}: choose 'fixed' or 'early'")
    size = batch["inputs"].shape[0]
    device = batch["inputs"].device
    state = model.reset_state(model.initial_state(size, device), torch.ones(size, dtype=torch.bool, device=device))
    final = torch.zeros_like(batch["inputs"], dtype=torch.long)
    stopped = torch.full((size,), steps, dtype=torch.long, device=device)
    q_final = torch.zeros(size, device=device)
    done = torch.zeros(size, dtype=torch.bool, device=device)
    trace = []
    for k in range(steps):
        state, logits, q_halt, _ = model.step(state, batch)
        preds = logits.argmax(-1)
        trace.append(preds)
        last = k == steps - 1
        if policy == "fixed":
            now = ~done if last else torch.zeros_like(done)
        else:
            now = ~done & ((q_halt > 0) | last)
        final = torch.where(now.unsqueeze(-1), preds, final)
        stopped = torch.where(now, k + 1, stopped)
        q_final = torch.where(now, q_halt.float(), q_final)
        done = done | now
        if policy == "early" and bool(done.all()):
            break
    return final, stopped, q_final, trace


def evaluate(model: ACTModel, batches: Iterable[TestBatch], *, device: torch.device | str = "cpu",
             steps: int | None = None, policy: str = "fixed", loss_type: str = "stablemax",
             max_batches: int | None = None, reduce: bool = False) -> EvalResult:
    """Metrics per set: token and exact accuracy, mean steps used, and exact accuracy after each step."""
    del loss_type  # the accuracy metrics do not depend on the loss; kept for a uniform call
    budget = steps or model.halt_max_steps
    model.eval()
    sets: dict[str, SetResult] = {}
    for i, item in enumerate(batches):
        name, np_batch = item[0], item[1]
        if max_batches is not None and i >= max_batches:
            break
        batch = {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in np_batch.items()}
        final, stopped, q_halt, trace = run_steps(model, batch, budget, policy)
        labels = batch["labels"].long()
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        valid = counts > 0

        def exact(preds: Tensor, labels: Tensor = labels, mask: Tensor = mask, counts: Tensor = counts,
                  valid: Tensor = valid) -> Tensor:
            return valid & ((mask & (preds == labels)).sum(-1) == counts)

        seq_ok = exact(final)
        result = SetResult(
            count=int(valid.sum()),
            token_correct=float(torch.where(valid, (mask & (final == labels)).sum(-1) / counts.clamp_min(1), 0).sum()),
            exact_correct=int(seq_ok.sum()),
            steps_used=int(torch.where(valid, stopped, 0).sum()),
            per_step_exact=[int(exact(p).sum()) for p in trace] + [int(seq_ok.sum())] * (budget - len(trace)),
            q_halt_correct=int((valid & ((q_halt >= 0) == seq_ok)).sum()),
        )
        sets.setdefault(name, SetResult()).add(result)
    if reduce and dist.is_initialized():
        sets = _reduce_sets(sets, budget)
    return EvalResult(sets=sets, policy=policy, budget=budget)


def _reduce_sets(sets: dict[str, SetResult], budget: int) -> dict[str, SetResult]:
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sets)
    merged: dict[str, SetResult] = {}
    for part in gathered:
        for name, r in part.items():
            merged.setdefault(name, SetResult(per_step_exact=[0] * budget)).add(r)
    return merged
