"""Logged losses are per example of the global batch, as the reference reports them: independent of the
batch size, and at initialisation the halting loss is log(1 + e^-5) (q_halt starts at -5, nothing is right)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from tiny_data import write_copy_task

from trm.train import TrainConfig, train

MODEL = dict(arch="trm", hidden_size=32, num_heads=2, T=2, n=2, layers=1, puzzle_emb_ndim=32, puzzle_emb_len=1,
             halt_max_steps=3, halt_exploration_prob=0.0)


def _first_train_record(tmp_path: Path, batch: int) -> dict:
    data = tmp_path / "data"
    if not data.exists():
        write_copy_task(data)
    run = tmp_path / f"b{batch}"
    train(TrainConfig(data=str(data), run_dir=str(run), model=MODEL, global_batch_size=batch, steps=1, log_every=1,
                      eval_max_batches=1, device="cpu", dtype="float32", compile="off"), progress=False)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in lines if r["kind"] == "train")


def test_logged_losses_are_per_example_of_the_global_batch(tmp_path: Path) -> None:
    small, large = _first_train_record(tmp_path, 4), _first_train_record(tmp_path, 16)
    expected_halt = math.log1p(math.exp(-5.0))  # 0.00672 per example; a batch sum would be 4x / 16x that
    for record in (small, large):
        assert abs(record["q_halt_loss"] - expected_halt) < 1e-6, record
        # the token loss of an untrained model is about log(vocab) per example, whatever the batch
        assert 0.3 * math.log(6) < record["lm_loss"] < 3 * math.log(6), record
    assert abs(small["lm_loss"] - large["lm_loss"]) < 0.25 * large["lm_loss"]
