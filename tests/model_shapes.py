"""Small model shapes and random batches shared by the model tests."""

from __future__ import annotations

import torch

SMALL = dict(vocab_size=7, seq_len=9, hidden_size=32, num_heads=4, num_puzzle_identifiers=5, puzzle_emb_ndim=32,
             puzzle_emb_len=2, halt_max_steps=3, halt_exploration_prob=0.0)


def random_batch(cfg, size: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs, labels and puzzle identifiers of a config's shapes."""
    g = torch.Generator().manual_seed(seed)
    return {
        "inputs": torch.randint(1, cfg.vocab_size, (size, cfg.seq_len), generator=g, dtype=torch.int32),
        "labels": torch.randint(1, cfg.vocab_size, (size, cfg.seq_len), generator=g, dtype=torch.int32),
        "puzzle_identifiers": torch.randint(0, cfg.num_puzzle_identifiers, (size,), generator=g, dtype=torch.int32),
    }
