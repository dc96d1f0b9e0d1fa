"""Tiny datasets in the on-disk puzzle format, written directly, for trainer and evaluator tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_copy_task(root: Path, *, examples: int = 64, seq_len: int = 6, vocab: int = 6, test_examples: int = 16,
                    seed: int = 0) -> Path:
    """A task a model learns in a few hundred steps: the label is the input shifted by one token id
    (labels use 0 as the ignore label, as datasets do; tokens are 1..vocab-1)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", examples), ("test", test_examples)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        inputs = rng.integers(1, vocab - 1, size=(n, seq_len), dtype=np.int32)
        labels = inputs + 1
        np.save(folder / "all__inputs.npy", inputs)
        np.save(folder / "all__labels.npy", labels.astype(np.int32))
        np.save(folder / "all__puzzle_identifiers.npy", np.ones(n, dtype=np.int32))
        np.save(folder / "all__puzzle_indices.npy", np.arange(n + 1, dtype=np.int32))
        np.save(folder / "all__group_indices.npy", np.arange(n + 1, dtype=np.int32))
        meta = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": vocab, "seq_len": seq_len,
                "num_puzzle_identifiers": 2, "total_groups": n, "mean_puzzle_examples": 1.0, "total_puzzles": n,
                "sets": ["all"]}
        (folder / "dataset.json").write_text(json.dumps(meta))
    (root / "identifiers.json").write_text(json.dumps(["<blank>", "copy"]))
    return root
