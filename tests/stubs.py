"""The stub model the tests share: an `ACTModel` whose answer after each supervision step is scripted.

    StubModel(lambda k, inputs, rows: answers, vocab=6, steps=3)       # any rule
    scripted([[1, 2], [2, 2]], [[-1.0, 1.0], [1.0, 1.0]])              # per step and example
    stepwise([tokens_step1, tokens_step2], [-1.0, 2.0], vocab=6)       # per step, every example alike
    responder(echo, vocab=6, confidence=lambda inputs: ...)            # from the inputs alone
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trm.models.act import ACTModel, Batch, State

Rule = Callable[[int, np.ndarray, np.ndarray], Any]
"""(step k from 0, the inputs the model sees [B, L], the original row of each) -> per-row values."""


class StubModel(ACTModel):
    """After step k the answer is `answer(k, inputs, rows)` (tokens [B, L]) and q_halt `halt(k, inputs, rows)`
    ([B], default 0; q_continue is -q_halt). Records the inputs of every step (`seen`) and the batch sizes
    (`sizes`: rows that halted early leave the batch)."""

    def __init__(self, answer: Rule, vocab: int, steps: int = 2, halt: Rule | None = None,
                 seq_len: int | None = None) -> None:
        super().__init__()
        self.answer, self.halt, self.vocab = answer, halt, vocab
        self.halt_max_steps, self.halt_on_continue = steps, False
        if seq_len is not None:  # what Solver checks
            self.config = SimpleNamespace(seq_len=seq_len, vocab_size=vocab)  # type: ignore[assignment]
        self.k = 0
        self.seen: list[np.ndarray] = []
        self.sizes: list[int] = []

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        # "row" follows each example when rows that halted leave the batch
        return {"row": torch.arange(batch_size, device=device, dtype=torch.float32)[:, None]}

    def reset_state(self, state: State, reset: Tensor) -> State:
        if bool(reset.all()):
            self.k = 0
        return state

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        inputs = batch["inputs"].cpu().numpy()
        rows = state["row"][:, 0].round().long().cpu().numpy()
        self.seen.append(inputs)
        self.sizes.append(len(rows))
        tokens = torch.as_tensor(np.array(self.answer(self.k, inputs, rows)), dtype=torch.long)
        logits = torch.nn.functional.one_hot(tokens, self.vocab).float()
        q = (torch.zeros(tokens.shape[0]) if self.halt is None
             else torch.as_tensor(np.asarray(self.halt(self.k, inputs, rows), np.float32)))
        self.k += 1
        return state, logits, q, -q


def scripted(answers: list[list[int]], halts: list[list[float]], seq_len: int = 4, vocab: int = 6) -> StubModel:
    """Step k answers token `answers[k][row]` on every position, with q_halt `halts[k][row]`."""
    def answer(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.repeat(np.asarray(answers[min(k, len(answers) - 1)])[rows][:, None], seq_len, axis=1)

    def halt(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(halts[min(k, len(halts) - 1)], np.float32)[rows]

    return StubModel(answer, vocab, steps=len(answers), halt=halt)


def stepwise(answers: list[np.ndarray], halts: list[float], vocab: int) -> StubModel:
    """Step k answers the token row `answers[k]` for every example, with q_halt `halts[k]`."""
    def answer(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.broadcast_to(answers[min(k, len(answers) - 1)].reshape(1, -1), (len(rows), answers[0].size))

    def halt(k: int, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), halts[min(k, len(halts) - 1)], np.float32)

    return StubModel(answer, vocab, steps=len(answers), halt=halt, seq_len=answers[0].size)


def responder(answer: Callable[[np.ndarray], Any], vocab: int, steps: int = 2,
              confidence: Callable[[np.ndarray], Any] | None = None) -> StubModel:
    """Every step answers `answer(inputs)` with q_halt `confidence(inputs)` (default 0)."""
    return StubModel(lambda k, inputs, rows: answer(inputs), vocab, steps=steps,
                     halt=None if confidence is None else (lambda k, inputs, rows: confidence(inputs)))
