"""What early exit buys at evaluation: puzzles/s of the published 5M TRM-MLP Sudoku shape under the full
budget (every row runs N_sup supervision steps) and under halting, where each row stops at its own step
and leaves the batch (`trm.evaluate.run_steps`, policy "early").

When rows halt depends on a trained halting head, which an untrained model does not have; so the real
model runs on the real shrinking batch while a schedule says at which step each row's q_halt turns
positive (`ScheduledHalting`). The figure to compare is the speed-up against the ideal one, N_sup over
the mean number of steps: the closer, the less a halted row still costs.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from trm.bench import Row, make_batch, rate_row, step_flops
from trm.evaluate import run_steps
from trm.models import ACTModel, TRMConfig, build_model

# The 5M TRM-MLP of the Sudoku-Extreme checkpoints: hidden 512, token-MLP mixing, T=3, n=6, 2 layers.
SUDOKU_MLP = dict(vocab_size=11, seq_len=81, puzzle_emb_ndim=512, puzzle_emb_len=16, hidden_size=512, num_heads=8,
                  expansion=4, pos_encodings="none", mlp_t=True, T=3, n=6, layers=2, halt_max_steps=16)


class ScheduledHalting:
    """`model` whose halting logit is +1 from step `halt_at[row]` on (row = the puzzle identifier the batch
    carries) and -1 before: the model's full computation, with a known halting pattern."""

    def __init__(self, model: ACTModel, halt_at: np.ndarray) -> None:
        self.model, self.halt_at = model, torch.as_tensor(halt_at)
        self.halt_on_continue = False
        self.step_count = 0

    def initial_state(self, *args: Any) -> Any:
        self.step_count = 0
        return self.model.initial_state(*args)

    def reset_state(self, *args: Any) -> Any:
        return self.model.reset_state(*args)

    def step(self, state: Any, batch: dict[str, Tensor]) -> tuple[Any, Tensor, Tensor, Tensor]:
        self.step_count += 1
        new_state, logits, _, q_continue = self.model.step(state, batch)
        rows = batch["puzzle_identifiers"].long().cpu()
        q_halt = torch.where(self.halt_at[rows] <= self.step_count, 1.0, -1.0).to(logits.device)
        return new_state, logits, q_halt, q_continue


def schedules(batch: int, n_sup: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Halting steps per row: none (the full budget), uniform over 1..N_sup, and early-heavy (geometric,
    mean ~4, capped at N_sup), as a head trained on easy and hard puzzles halts."""
    rng = np.random.default_rng(seed)
    return {"full": np.full(batch, n_sup + 1), "uniform": rng.integers(1, n_sup + 1, batch),
            "early-heavy": np.minimum(rng.geometric(0.25, batch), n_sup)}


def bench_halting(device: torch.device, runs: int = 1, batch: int = 8,
                  config: dict[str, Any] | None = None) -> list[Row]:
    """Rows: puzzles/s under each schedule, with the mean steps, the speed-up over the full budget and the
    ideal speed-up (N_sup / mean steps)."""
    cfg = TRMConfig(**{**SUDOKU_MLP, **(config or {}), "num_puzzle_identifiers": batch})
    torch.manual_seed(0)
    model = build_model(cfg, device=device).eval()
    data = make_batch(cfg, batch, device)
    data["puzzle_identifiers"] = torch.arange(batch, dtype=torch.int32, device=device)
    n_sup = cfg.halt_max_steps
    flops = step_flops(cfg, 1, training=False)
    with torch.no_grad():  # warm-up: one step, so that no row pays for first-call set-up
        model.step(model.reset_state(model.initial_state(batch, device), torch.ones(batch, dtype=torch.bool,
                                                                              device=device)), data)
    rows, full_rate = [], None
    for name, halt_at in schedules(batch, n_sup).items():
        proxy = ScheduledHalting(model, halt_at)
        policy = "fixed" if name == "full" else "early"
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run = run_steps(proxy, data, n_sup, policy)  # type: ignore[arg-type]
            times.append(time.perf_counter() - start)
        mean_steps = float(run.stopped.float().mean())
        row = rate_row(f"halting.trm_mlp_5m.{name}", f"eval, {policy} policy, mean {mean_steps:.2f} of {n_sup} steps",
                       "puzzles/s", batch, times, batch=batch, mean_steps=mean_steps,
                       gflop_per_puzzle_step=round(flops / 1e9, 2))
        if full_rate is None:
            full_rate = row.median
        else:
            row.extra["note"] = (f"{row.median / full_rate:.2f}x the full budget (ideal {n_sup / mean_steps:.2f}x: "
                                 "halted rows leave the batch)")
        rows.append(row)
    return rows
