"""Evaluation policies with a stub model whose answers and halting logits are set per step, and
the `trm eval` command on a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tiny_data import write_copy_task
from torch import Tensor

from trm.cli import main
from trm.evaluate import evaluate, run_steps
from trm.models.act import ACTModel, Batch, State


class Scripted(ACTModel):
    """Step k predicts `answers[k]` (a token per example, on every position) and q_halt `halts[k]`."""

    def __init__(self, answers: list[list[int]], halts: list[list[float]], seq_len: int = 4, vocab: int = 6) -> None:
        super().__init__()
        self.answers, self.halts, self.seq_len, self.vocab = answers, halts, seq_len, vocab
        self.halt_max_steps, self.halt_on_continue = len(answers), False
        self.sizes: list[int] = []

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        # "row" follows each example when rows that halted leave the batch
        return {"k": torch.zeros(batch_size, 1, 1), "row": torch.arange(batch_size)}

    def reset_state(self, state: State, reset: Tensor) -> State:
        return {"k": torch.where(reset.view(-1, 1, 1), 0.0, state["k"]), "row": state["row"]}

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        k, rows = int(state["k"][0, 0, 0]), state["row"]
        self.sizes.append(len(rows))
        tokens = torch.tensor(self.answers[min(k, len(self.answers) - 1)])[rows]
        logits = torch.nn.functional.one_hot(tokens, self.vocab).float()[:, None, :].expand(-1, self.seq_len, -1)
        q = torch.tensor(self.halts[min(k, len(self.halts) - 1)])[rows]
        return {"k": state["k"] + 1, "row": rows}, logits, q, -q


def _batch(labels: list[int], seq_len: int = 4) -> dict[str, np.ndarray]:
    n = len(labels)
    return {"inputs": np.ones((n, seq_len), dtype=np.int32),
            "labels": np.repeat(np.array(labels, dtype=np.int32)[:, None], seq_len, axis=1),
            "puzzle_identifiers": np.zeros(n, dtype=np.int32)}


def test_early_exit_equals_fixed_when_the_head_fires_at_the_last_step() -> None:
    answers = [[1, 1], [2, 1], [2, 3]]
    halts = [[-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]]
    model = Scripted(answers, halts)
    batch = {k: torch.as_tensor(v) for k, v in _batch([2, 3]).items()}
    fixed, fixed_steps = run_steps(model, batch, 3, "fixed")[:2]
    early, early_steps = run_steps(model, batch, 3, "early")[:2]
    assert torch.equal(fixed, early)
    assert fixed_steps.tolist() == early_steps.tolist() == [3, 3]


def test_early_exit_stops_each_example_when_its_head_fires() -> None:
    answers = [[2, 1, 1], [5, 3, 1], [5, 5, 4]]
    halts = [[1.0, -1.0, -1.0], [1.0, 1.0, -1.0], [1.0, 1.0, -1.0]]
    model = Scripted(answers, halts)
    batches = [("all", _batch([2, 3, 4]))]
    fixed = evaluate(model, batches, policy="fixed").sets["all"].summary()
    model.sizes.clear()
    early = evaluate(model, batches, policy="early").sets["all"].summary()
    assert model.sizes == [3, 2, 1]  # rows that halted leave the batch: early exit saves compute
    assert early["mean_steps"] == (1 + 2 + 3) / 3 < fixed["mean_steps"] == 3
    # early keeps example 0's step-1 answer (right) and example 1's step-2 answer (right);
    # fixed takes the last answers: 5 (wrong), 5 (wrong), 4 (right).
    assert early["exact_accuracy"] == 1.0 and fixed["exact_accuracy"] == 1 / 3
    assert fixed["exact_accuracy_per_step"] == [1 / 3, 1 / 3, 1 / 3]


def test_budget_beyond_training_continues_the_recursion() -> None:
    model = Scripted([[1], [1], [2]], [[-1.0]] * 3)
    model.halt_max_steps = 2  # training's N_sup
    result = evaluate(model, [("all", _batch([2]))], steps=3).sets["all"].summary()
    assert result["exact_accuracy"] == 1.0 and len(result["exact_accuracy_per_step"]) == 3


def test_padding_rows_are_not_counted() -> None:
    model = Scripted([[2, 2]], [[1.0, 1.0]])
    batch = _batch([2, 2])
    batch["labels"][1] = -100
    result = evaluate(model, [("all", batch)]).sets["all"].summary()
    assert result["count"] == 1 and result["exact_accuracy"] == 1.0


def test_eval_command_writes_json_next_to_the_checkpoint(tmp_path: Path, capsys) -> None:
    from trm.train import TrainConfig, train

    data = write_copy_task(tmp_path / "data")
    cfg = TrainConfig(data=str(data), run_dir=str(tmp_path / "run"), steps=3, global_batch_size=8, log_every=100,
                      model=dict(arch="trm", hidden_size=16, num_heads=2, T=1, n=1, layers=1, halt_max_steps=2),
                      device="cpu", dtype="float32", compile="off", eval_max_batches=1)
    train(cfg, progress=False)
    assert main(["eval", str(tmp_path / "run"), "--policy", "early", "--steps", "4", "--blank-ids"]) == 0
    out = capsys.readouterr().out
    assert "exact accuracy after each step" in out
    written = json.loads(next((tmp_path / "run").glob("step_*/eval-early-4-blank.json")).read_text())
    assert written["budget"] == 4 and written["blank_ids"] and written["sets"]["all"]["count"] == 16
