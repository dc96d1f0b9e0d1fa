"""The (n, T) depth curriculum (CGAR): the schedule, and a shallower training step that runs
exactly the recursions it says while evaluation keeps the configured depth."""

from __future__ import annotations

import torch

from trm.models import TRMConfig, build_model
from trm.optim import depth_at

CGAR = [[0.0, 2, 1], [0.3, 4, 2], [0.6, 6, 3]]


def test_schedule_stages():
    assert depth_at(0, 100, []) is None
    assert [depth_at(s, 100, CGAR) for s in (0, 29, 30, 59, 60, 99)] == [(2, 1), (2, 1), (4, 2), (4, 2), (6, 3), (6, 3)]
    assert depth_at(5, 100, [[0.1, 2, 1]]) is None  # before the first stage: the model's own depth


def _calls(model, batch) -> tuple[int, int]:
    """Applications of the network f in one training step: (all, with gradients)."""
    counts = [0, 0]

    def hook(module, args, out):
        counts[0] += 1
        counts[1] += int(torch.is_grad_enabled())

    handle = model.net.register_forward_hook(hook)
    carry = model.initial_carry(batch)
    model(carry, batch)
    handle.remove()
    return counts[0], counts[1]


def test_shallower_training_step_and_full_depth_evaluation():
    config = TRMConfig(vocab_size=5, seq_len=4, hidden_size=16, num_heads=2, puzzle_emb_ndim=0, T=3, n=6, layers=1,
                       num_puzzle_identifiers=1)
    model = build_model(config).train()
    batch = {"inputs": torch.ones(2, 4, dtype=torch.int32), "labels": torch.ones(2, 4, dtype=torch.int32),
             "puzzle_identifiers": torch.zeros(2, dtype=torch.int32)}
    assert _calls(model, batch) == (3 * 7, 7)
    model.set_depth(2, 1)
    assert _calls(model, batch) == (3, 3)
    model.set_depth(4, 2)
    assert _calls(model, batch) == (2 * 5, 5)
    model.eval()  # evaluation runs the configured depth whatever the curriculum says
    with torch.no_grad():
        assert _calls(model, batch) == (3 * 7, 0)
    model.train()
    model.set_depth()
    assert _calls(model, batch) == (3 * 7, 7)


def test_compiled_training_runs_through_the_curriculum(tmp_path):
    """The trainer's compiled step meets a new (n, T) at each stage; torch.compile once turned them into
    symbolic integers there and crashed. The run completes."""
    from tiny_data import write_copy_task

    from trm.train import TrainConfig, train

    data = write_copy_task(tmp_path / "data")
    cfg = TrainConfig(data=str(data), run_dir=str(tmp_path / "run"), steps=6, global_batch_size=8, log_every=1,
                      model=dict(arch="trm", hidden_size=16, num_heads=2, T=2, n=2, layers=1, halt_max_steps=2,
                                 puzzle_emb_ndim=16, puzzle_emb_len=1),  # the embedding lookup breaks the graph
                      device="cpu", dtype="float32", compile="on", eval_every=3, eval_max_batches=1,
                      depth_curriculum=[[0, 1, 1], [0.5, 2, 2]])
    result = train(cfg, progress=False)
    assert result["step"] == 6, result
