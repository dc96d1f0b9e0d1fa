"""Small model shapes and random batches shared by the model tests."""

from __future__ import annotations

from typing import Any

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


def reference_state(model: Any) -> dict[str, torch.Tensor]:
    """Our weights under the reference's names (as a compiled reference run would save them)."""
    from trm.convert import _INIT, _LEVEL, _PROJ, _SUB, _TOP

    out = {}
    inv_top = {v: k for k, v in _TOP.items()}
    inv_init = {v: k for k, v in _INIT["trm"].items()}
    inv_level = {v: k for k, v in _LEVEL["trm"].items()}
    inv_sub, inv_proj = {v: k for k, v in _SUB.items()}, {v: k for k, v in _PROJ.items()}
    for name, value in model.state_dict().items():
        if name in inv_top:
            ref = inv_top[name]
        elif name in inv_init:
            ref = inv_init[name]
        else:
            level, _, idx, sub, proj, _ = name.split(".")
            ref = f"{inv_level[level]}.layers.{idx}.{inv_sub[sub]}.{inv_proj[proj]}.weight"
        out[f"_orig_mod.model.inner.{ref}"] = value.clone()
    return out
