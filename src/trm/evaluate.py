"""Evaluation: run every example for a budget of supervision steps and measure how the answer
improves step by step.

Policies:
- `fixed`: every example runs `steps` supervision steps (the reference's behaviour, with
  steps = N_sup); the answer is the last one.
- `early`: an example stops at the first step where the halting head says halt; its answer is the
  one of that step. Examples that never halt run the whole budget.
The budget may exceed training's N_sup: the recursion simply continues from the carried state.

Metrics per set: token accuracy, exact accuracy (the recorded answer), valid accuracy (any answer the
task's rules accept: `trm.tasks`), both after every step, the steps used and the halting head's
accuracy. Test-time scaling (`Scaling`) merges several answers per example; its cost is reported as
supervision steps per example and wall time.

    result = evaluate(model, data.test_batches(256), EvalOptions(scaling=Scaling(augment=8)), task=task_for(11, 81))
    result.sets["all"].summary()["valid_accuracy"]

Test-time scaling is made of sibling pieces, so that a new strategy is one more function beside the
others: the *views* of a batch (`original_view`, `augmented_views`), the *runs* of one view
(`noise_seeds`: the plain run and noise-perturbed ones), and the *selection rules* that merge the runs'
answers (`select_by_vote`, `select_by_halt`, registered in `SELECTIONS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from trm.data.sampler import IGNORE_LABEL_ID, TestBatch
from trm.models import ACTModel
from trm.tasks import IDENTITY, Augmentation, PuzzleTask

POLICIES = ("fixed", "early")
Collect = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], None]
"""Called per batch with (the batch as given, real rows only; final answers; their q_halt logits)."""


def check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(f"unknown halting policy {policy!r}: choose one of {', '.join(POLICIES)}")


def _add_lists(a: list[int], b: list[int]) -> list[int]:
    return [x + y for x, y in zip(a or [0] * len(b), b, strict=True)]


@dataclass
class SetResult:
    count: int = 0
    token_correct: float = 0.0
    exact_correct: int = 0
    valid_correct: int | None = None
    """Answers the task's rules accept (None: the task has no rule to check)."""
    steps_used: int = 0
    """Supervision steps run, all test-time-scaling runs together."""
    per_step_exact: list[int] = field(default_factory=list)
    per_step_valid: list[int] = field(default_factory=list)
    q_halt_correct: int = 0

    def add(self, other: SetResult) -> None:
        self.count += other.count
        self.token_correct += other.token_correct
        self.exact_correct += other.exact_correct
        if other.valid_correct is not None:
            self.valid_correct = (self.valid_correct or 0) + other.valid_correct
            self.per_step_valid = _add_lists(self.per_step_valid, other.per_step_valid)
        self.steps_used += other.steps_used
        self.q_halt_correct += other.q_halt_correct
        self.per_step_exact = _add_lists(self.per_step_exact, other.per_step_exact)

    def summary(self) -> dict[str, Any]:
        n = max(self.count, 1)
        out: dict[str, Any] = {"count": self.count, "accuracy": self.token_correct / n,
                               "exact_accuracy": self.exact_correct / n}
        if self.valid_correct is not None:
            out["valid_accuracy"] = self.valid_correct / n
        out.update({"mean_steps": self.steps_used / n, "q_halt_accuracy": self.q_halt_correct / n,
                    "exact_accuracy_per_step": [c / n for c in self.per_step_exact]})
        if self.valid_correct is not None:
            out["valid_accuracy_per_step"] = [c / n for c in self.per_step_valid]
        return out


@dataclass
class EvalResult:
    sets: dict[str, SetResult]
    policy: str
    budget: int
    scaling: Scaling | None = None
    seconds: float = 0.0
    examples: list[dict[str, Any]] = field(default_factory=list)
    """A few examples with their answer after each step (for reports), when asked for."""

    def flat(self) -> dict[str, Any]:
        """`<set>/<metric>` -> value, scalars only (for logs)."""
        out: dict[str, Any] = {}
        for name, result in self.sets.items():
            for k, v in result.summary().items():
                if not isinstance(v, list):
                    out[f"{name}/{k}"] = v
        return out

    def to_dict(self) -> dict[str, Any]:
        count = sum(r.count for r in self.sets.values())
        steps = sum(r.steps_used for r in self.sets.values())
        cost = {"supervision_steps_per_example": steps / max(count, 1),
                "relative_to_one_answer": (self.scaling.runs if self.scaling else 1),
                "seconds": self.seconds, "examples_per_second": count / self.seconds if self.seconds else None}
        return {"policy": self.policy, "budget": self.budget,
                "scaling": self.scaling.to_dict() if self.scaling else None, "cost": cost,
                "sets": {name: r.summary() for name, r in self.sets.items()}}


class Trajectory(NamedTuple):
    """The answers of one run of supervision steps over a batch."""

    final: Tensor
    """The answer under the policy, tokens [B, seq]."""
    stopped: Tensor
    """The step (1-based) each example's answer comes from, [B] (with test-time scaling: the last step,
    whose choice the answer is)."""
    cost: Tensor
    """Supervision steps run for each example, all test-time-scaling runs together, [B]."""
    q_halt: Tensor
    """The halting logit at that step, [B]."""
    trace: list[Tensor]
    """The answer after each of the `steps` steps, each [B, seq]: a row that stopped early keeps its
    answer, so the last entry is `final`."""
    q_trace: list[Tensor]
    """The halting logit after each step, each [B] (kept likewise)."""


@torch.no_grad()
def run_steps(model: ACTModel, batch: dict[str, Tensor], steps: int, policy: str = "fixed", *,
              noise_scale: float = 0.0, step_noise: float = 0.0,
              generator: torch.Generator | None = None) -> Trajectory:
    """Run `steps` supervision steps from a fresh state (perturbed by Gaussian noise of standard deviation
    `noise_scale` when it is positive, and by noise of `step_noise` before every later step, as PTRM does,
    arXiv 2605.19943). The early policy stops where the model would halt in training (q_halt > 0, or
    q_halt > q_continue for models that halt on the continue head); rows that stopped leave the batch, so
    early exit saves compute."""
    check_policy(policy)
    size = batch["inputs"].shape[0]
    device = batch["inputs"].device
    state = model.reset_state(model.initial_state(size, device), torch.ones(size, dtype=torch.bool, device=device))
    if noise_scale > 0:
        state = _add_noise(state, noise_scale, generator)
    stopped = torch.full((size,), steps, dtype=torch.long, device=device)
    rows = torch.arange(size, device=device)  # rows still running; `state` and `data` hold only these
    data = batch
    answer = torch.zeros_like(batch["inputs"], dtype=torch.long)
    q_last = torch.zeros(size, device=device)
    trace: list[Tensor] = []
    q_trace: list[Tensor] = []
    for k in range(steps):
        if k and step_noise > 0:
            state = _add_noise(state, step_noise, generator)
        state, logits, q_halt, q_continue = model.step(state, data)
        answer, q_last = answer.clone(), q_last.clone()  # rows that stopped keep their answer
        answer[rows], q_last[rows] = logits.argmax(-1), q_halt.float()
        trace.append(answer)
        q_trace.append(q_last)
        if policy == "early" and k < steps - 1:
            halt = (q_halt > q_continue) if model.halt_on_continue else (q_halt > 0)
            if bool(halt.any()):  # drop the rows that halted: the rest run on a smaller batch
                stopped[rows[halt]] = k + 1
                keep = ~halt
                rows = rows[keep]
                state = {name: v[keep] for name, v in state.items()}
                data = {name: v[keep] for name, v in data.items()}
                if rows.numel() == 0:
                    break
    trace += [answer] * (steps - len(trace))  # every row stopped: the answers stay
    q_trace += [q_last] * (steps - len(q_trace))
    return Trajectory(answer, stopped, stopped, q_last, trace, q_trace)


def _add_noise(state: dict[str, Tensor], scale: float | Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
    """The state plus Gaussian noise of standard deviation `scale` (a number, or one per row [B])."""
    if isinstance(scale, Tensor):
        scale = scale.view(-1, *([1] * (next(iter(state.values())).ndim - 1)))
    return {k: v + (scale * torch.randn(v.shape, generator=generator, device=v.device)).to(v.dtype)
            for k, v in state.items()}


@dataclass(frozen=True)
class Scaling:
    """Test-time scaling: more than one answer per example, and a rule to pick one.

    - `augment` views per example: the original and augment - 1 validity-preserving transforms (Sudoku:
      digits relabelled, bands/rows and stacks/columns permuted; Maze: the 8 symmetries); each answer is
      transformed back before the choice.
    - `noise` trajectories per view: the first from the usual initial state, the others from the initial
      state plus Gaussian noise of standard deviation `noise_scale`.
      With `step_noise` > 0 those trajectories also get noise of that deviation before every later step
      (PTRM, arXiv 2605.19943).
    - `select`: "vote" takes the answer given most often (ties: the highest mean sigmoid(q_halt));
      "halt" takes the answer whose halting head is most confident. "auto": vote when augmenting, else halt.
      "first" is the halt-first ensemble ("Speed is Confidence", arXiv 2601.19085): all runs go step by
      step together and an example stops at the first step where any of its runs halts, with that run's
      answer (several: the most confident); runs that never halt end at the budget like "halt".
    Cost: augment x noise times the supervision steps of one answer ("first": up to the first halt).
    """

    augment: int = 1
    noise: int = 1
    noise_scale: float = 0.1
    step_noise: float = 0.0
    select: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.augment < 1 or self.noise < 1:
            raise ValueError(f"augment and noise count answers per example and must be >= 1, got "
                             f"{self.augment} and {self.noise}")
        if self.noise > 1 and not self.noise_scale > 0:
            raise ValueError(f"noise trajectories need noise_scale > 0, got {self.noise_scale}")
        if self.select not in ("auto", "vote", "halt", "first"):
            raise ValueError(f"unknown selection {self.select!r}: choose auto, vote, halt or first")
        if self.step_noise < 0:
            raise ValueError(f"step_noise is a standard deviation and must be >= 0, got {self.step_noise}")
        if self.step_noise > 0 and self.noise == 1:
            raise ValueError("step_noise perturbs the noise trajectories: it needs noise >= 2")

    @property
    def runs(self) -> int:
        return self.augment * self.noise

    @property
    def rule(self) -> str:
        return self.select if self.select != "auto" else ("vote" if self.augment > 1 else "halt")

    def to_dict(self) -> dict[str, Any]:
        return {"augment": self.augment, "noise": self.noise, "noise_scale": self.noise_scale,
                "step_noise": self.step_noise, "select": self.rule, "seed": self.seed, "runs": self.runs}


def select_by_halt(answers: Tensor, confidence: Tensor) -> Tensor:
    """The candidate whose halting head is most confident: answers [R, B, seq], sigmoid(q_halt) [R, B] -> [B]."""
    return confidence.argmax(0)


def select_by_vote(answers: Tensor, confidence: Tensor) -> Tensor:
    """The most frequent candidate; ties by the highest mean confidence of its votes, then the first."""
    same = (answers[:, None] == answers[None]).all(-1).float()  # [R, R, B]
    votes = same.sum(1)
    mean_conf = (same * confidence[None]).sum(1) / votes
    # votes are integers and mean_conf lies in [0, 1]: the sum orders by votes, then confidence
    return (votes + 0.5 * mean_conf).argmax(0)


SELECTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"vote": select_by_vote, "halt": select_by_halt}
"""Selection rule name -> the function choosing one of R candidates per example."""


def select(answers: Tensor, q_halt: Tensor, rule: str) -> tuple[Tensor, Tensor]:
    """Pick one answer per example among R candidates (answers [R, B, seq], q_halt logits [R, B]) by a rule
    of `SELECTIONS`. Returns (answers [B, seq], index of the chosen candidate [B])."""
    if rule not in SELECTIONS:
        raise ValueError(f"unknown selection {rule!r}: choose {' or '.join(SELECTIONS)}")
    index = SELECTIONS[rule](answers, torch.sigmoid(q_halt.float()))
    chosen = answers.gather(0, index.view(1, -1, 1).expand(1, *answers.shape[1:]))[0]
    return chosen, index


def original_view(task: PuzzleTask | None, scaling: Scaling, batch_index: int) -> list[Augmentation]:
    """The batch as it is."""
    return [IDENTITY]


def augmented_views(task: PuzzleTask | None, scaling: Scaling, batch_index: int) -> list[Augmentation]:
    """`scaling.augment - 1` validity-preserving transforms of the task, seeded by (seed, batch)."""
    if scaling.augment == 1:
        return []
    if task is None or task.augmentation(np.random.default_rng(0)) is None:
        raise ValueError(f"augmentation voting needs a task with test-time transforms (Sudoku or Maze), got "
                         f"{task.name if task else 'an unknown task'}")
    rng = np.random.default_rng([scaling.seed, batch_index])
    return [task.augmentation(rng) for _ in range(scaling.augment - 1)]  # type: ignore[misc]


def noise_seeds(scaling: Scaling, batch_index: int, view: int) -> list[tuple[float, int]]:
    """(noise scale, seed) of each run of a view: the first from the usual initial state, then `noise - 1`
    from the initial state plus Gaussian noise."""
    return [(scaling.noise_scale if r else 0.0,
             int(np.random.SeedSequence([scaling.seed, batch_index, view, r]).generate_state(1)[0]))
            for r in range(scaling.noise)]


def predict(model: ACTModel, batch: dict[str, Tensor], steps: int, policy: str = "fixed", *,
            scaling: Scaling | None = None, task: PuzzleTask | None = None, batch_index: int = 0) -> Trajectory:
    """`run_steps`, or with `scaling` several runs per example merged into one answer per step (the
    answer after step k is chosen among the runs' answers after step k; the final answer is the last
    step's choice); `cost` then counts the supervision steps of all runs together."""
    if scaling is None or scaling.runs == 1:
        return run_steps(model, batch, steps, policy)
    views = original_view(task, scaling, batch_index) + augmented_views(task, scaling, batch_index)
    if scaling.rule == "first":
        return halt_first(model, batch, steps, scaling, views, batch_index)
    device = batch["inputs"].device
    inputs = batch["inputs"].cpu().numpy()
    traces, q_traces, cost = [], [], torch.zeros_like(batch["labels"][:, 0], dtype=torch.long)
    generator = torch.Generator(device=device)
    for v, view in enumerate(views):
        seen = {**batch, "inputs": torch.as_tensor(view.apply(inputs), device=device)}
        for noise_scale, seed in noise_seeds(scaling, batch_index, v):
            generator.manual_seed(seed)
            run = run_steps(model, seen, steps, policy, noise_scale=noise_scale,
                            step_noise=scaling.step_noise if noise_scale else 0.0, generator=generator)
            traces.append([torch.as_tensor(view.invert(t.cpu().numpy()), device=device).long() for t in run.trace])
            q_traces.append(run.q_trace)
            cost = cost + run.cost
    per_step, q_per_step = [], []
    for k in range(steps):  # the answer after step k is chosen among the runs' answers after step k
        q_k = torch.stack([q[k] for q in q_traces])
        answer, chosen = select(torch.stack([t[k] for t in traces]), q_k, scaling.rule)
        per_step.append(answer)
        q_per_step.append(q_k.gather(0, chosen[None])[0])
    final, q_final = per_step[-1], q_per_step[-1]
    return Trajectory(final, torch.full_like(cost, steps), cost, q_final, per_step, q_per_step)


@torch.no_grad()
def halt_first(model: ACTModel, batch: dict[str, Tensor], steps: int, scaling: Scaling, views: list[Augmentation],
               batch_index: int = 0) -> Trajectory:
    """The halt-first ensemble (`Scaling.select == "first"`): every view x noise run of each example steps in
    one batch; an example ends at the first step where one of its runs halts and takes that run's answer
    (the most confident of those halting); until then, and at the budget, the most confident run's answer."""
    device = batch["inputs"].device
    size = batch["inputs"].shape[0]
    inputs = batch["inputs"].cpu().numpy()
    runs = [(view, scale) for v, view in enumerate(views) for scale, _ in noise_seeds(scaling, batch_index, v)]
    R = len(runs)
    seen = [torch.as_tensor(view.apply(inputs), device=device) for view in views]
    view_of_run = [v for v, view in enumerate(views) for _ in noise_seeds(scaling, batch_index, v)]
    data = {k: torch.cat([seen[view_of_run[r]] if k == "inputs" else t for r in range(R)]) for k, t in batch.items()}
    generator = torch.Generator(device=device)
    generator.manual_seed(int(np.random.SeedSequence([scaling.seed, batch_index, 1]).generate_state(1)[0]))
    scales = torch.tensor([scale for _, scale in runs], device=device).repeat_interleave(size)
    state = model.reset_state(model.initial_state(R * size, device), torch.ones(R * size, dtype=torch.bool,
                                                                                device=device))
    if bool((scales > 0).any()):
        state = _add_noise(state, scales, generator)
    alive = torch.arange(size, device=device)  # examples still running: rows r * len(alive) + e
    answer = torch.zeros_like(batch["inputs"], dtype=torch.long)
    q_last = torch.zeros(size, device=device)
    stopped = torch.full((size,), steps, dtype=torch.long, device=device)
    cost = torch.zeros(size, dtype=torch.long, device=device)
    trace: list[Tensor] = []
    q_trace: list[Tensor] = []
    for k in range(steps):
        if k and scaling.step_noise > 0:
            state = _add_noise(state, (scales > 0) * scaling.step_noise, generator)
        state, logits, q_halt, q_continue = model.step(state, data)
        n = alive.numel()
        cost[alive] += R
        preds = logits.argmax(-1).view(R, n, -1).cpu().numpy()
        answers = torch.stack([torch.as_tensor(runs[r][0].invert(preds[r]), device=device).long() for r in range(R)])
        q = q_halt.float().view(R, n)
        halts = ((q_halt > q_continue) if model.halt_on_continue else (q_halt > 0)).view(R, n)
        fired = halts.any(0)
        pick = torch.where(fired, torch.where(halts, q, -torch.inf).argmax(0), q.argmax(0))
        answer, q_last = answer.clone(), q_last.clone()
        answer[alive] = answers.gather(0, pick.view(1, -1, 1).expand(1, *answers.shape[1:]))[0]
        q_last[alive] = q.gather(0, pick[None])[0]
        trace.append(answer)
        q_trace.append(q_last)
        if k < steps - 1 and bool(fired.any()):
            stopped[alive[fired]] = k + 1
            keep = ~fired
            alive = alive[keep]
            rows = keep.repeat(R)
            state = {name: v[rows] for name, v in state.items()}
            data = {name: v[rows] for name, v in data.items()}
            scales = scales[rows]
            if alive.numel() == 0:
                break
    trace += [answer] * (steps - len(trace))
    q_trace += [q_last] * (steps - len(q_trace))
    return Trajectory(answer, stopped, cost, q_last, trace, q_trace)


@dataclass(frozen=True, kw_only=True)
class EvalOptions:
    """How `evaluate` runs: the budget and halting policy, test-time scaling, and what it keeps."""

    steps: int | None = None
    """Supervision-step budget (None: the model's N_sup)."""
    policy: str = "fixed"
    """fixed: run every step; early: stop where the halting head fires."""
    scaling: Scaling | None = None
    """Test-time scaling (None: one answer per example)."""
    blank_ids: bool = False
    """Ablation: zero the puzzle identifiers the model sees."""
    keep_examples: int = 0
    """Keep up to this many right and this many wrong examples with their per-step answers."""
    max_batches: int | None = None
    """Stop after this many batches (None: all)."""
    reduce: bool = False
    """Sum the metrics over the processes of a process group."""

    def __post_init__(self) -> None:
        check_policy(self.policy)


def evaluate(model: ACTModel, batches: Iterable[TestBatch], options: EvalOptions = EvalOptions(), *,
             device: torch.device | str = "cpu", task: PuzzleTask | None = None,
             collect: Collect | None = None) -> EvalResult:
    """Metrics per set (see the module docstring); `task` adds valid accuracy and test-time augmentation,
    `collect` receives every batch's answers (e.g. ARC voting). Rows without labels are not counted."""
    budget = options.steps or model.halt_max_steps
    model.eval()
    sets: dict[str, SetResult] = {}
    examples: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    start = time.perf_counter()
    for i, (name, np_batch, real_rows) in enumerate(batches):
        if options.max_batches is not None and i >= options.max_batches:
            break
        batch = {k: torch.as_tensor(np.asarray(v)).to(device) for k, v in np_batch.items()}
        if options.blank_ids:
            batch["puzzle_identifiers"] = torch.zeros_like(batch["puzzle_identifiers"])
        run = predict(model, batch, budget, options.policy, scaling=options.scaling, task=task, batch_index=i)
        labels = batch["labels"].long()
        mask = labels != IGNORE_LABEL_ID
        counts = mask.sum(-1)
        scored = counts > 0

        def exact(preds: Tensor, labels: Tensor = labels, mask: Tensor = mask, counts: Tensor = counts,
                  scored: Tensor = scored) -> Tensor:
            return scored & ((mask & (preds == labels)).sum(-1) == counts)

        seq_ok = exact(run.final)
        result = SetResult(
            count=int(scored.sum()),
            token_correct=float(torch.where(scored, (mask & (run.final == labels)).sum(-1) / counts.clamp_min(1),
                                            0).sum()),
            exact_correct=int(seq_ok.sum()),
            steps_used=int(torch.where(scored, run.cost, 0).sum()),
            per_step_exact=[int(exact(p).sum()) for p in run.trace],
            q_halt_correct=int((scored & ((run.q_halt >= 0) == seq_ok)).sum()),
        )
        rows = scored.cpu().numpy()
        inputs = np.asarray(np_batch["inputs"])[rows]
        final = run.final.cpu().numpy()
        valid = None
        if task is not None and task.checks_validity:
            valid = task.valid(final[rows], inputs)
            per_step = [task.valid(p.cpu().numpy()[rows], inputs) for p in run.trace]
            result.valid_correct = int(np.sum(valid))
            result.per_step_valid = [int(np.sum(v)) for v in per_step]
        sets.setdefault(name, SetResult()).add(result)
        if collect is not None:  # every real row, answer known or not (e.g. an ARC test input to submit)
            collect({k: np.asarray(v)[:real_rows] for k, v in np_batch.items()}, final[:real_rows],
                    run.q_halt.float().cpu().numpy()[:real_rows])
        if options.keep_examples:
            _keep(examples, options.keep_examples, name, np_batch, rows, run.trace, seq_ok, valid, task)
    if options.reduce and dist.is_initialized():
        sets = _reduce_sets(sets, budget)
    return EvalResult(sets=sets, policy=options.policy, budget=budget, scaling=options.scaling,
                      seconds=time.perf_counter() - start, examples=examples[True] + examples[False])


def _keep(examples: dict[bool, list[dict[str, Any]]], limit: int, set_name: str, np_batch: dict[str, np.ndarray],
          rows: np.ndarray, trace: list[Tensor], seq_ok: Tensor, valid: np.ndarray | None,
          task: PuzzleTask | None) -> None:
    """Keep up to `limit` right and `limit` wrong examples (right: the recorded or a valid answer)."""
    ok = seq_ok.cpu().numpy()[rows]
    for j, row in enumerate(np.flatnonzero(rows).tolist()):
        correct = bool(ok[j] or (valid is not None and valid[j]))
        if len(examples[correct]) >= limit:
            continue
        inputs, labels = np.asarray(np_batch["inputs"][row]), np.asarray(np_batch["labels"][row])
        examples[correct].append({
            "set": set_name, "inputs": inputs, "label": np.where(labels == IGNORE_LABEL_ID, 0, labels),  # 0: pad
            "steps": [t[row].cpu().numpy() for t in trace], "correct": correct, "task": task.name if task else None})


def _reduce_sets(sets: dict[str, SetResult], budget: int) -> dict[str, SetResult]:
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sets)
    merged: dict[str, SetResult] = {}
    for part in gathered:
        for name, r in part.items():
            merged.setdefault(name, SetResult()).add(r)
    return merged
