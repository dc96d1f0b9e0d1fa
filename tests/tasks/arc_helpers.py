"""Small ARC task files for end-to-end tests: a few tasks with tiny grids, in the Kaggle layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def tiny_tasks(count: int, seed: int, size: int = 4, tests: int = 1) -> dict[str, dict[str, Any]]:
    """`count` tasks (id -> {"train", "test"} with outputs): the answer is the input flipped upside down."""
    rng = np.random.default_rng(seed)

    def pair() -> dict[str, Any]:
        inp = rng.integers(0, 10, size=rng.integers(1, size + 1, size=2))
        return {"input": inp.tolist(), "output": np.flipud(inp).tolist()}

    return {f"{seed:02d}{i:06x}": {"train": [pair(), pair()], "test": [pair() for _ in range(tests + i % 2)]}
            for i in range(count)}


def write_kaggle(root: Path, subset: str, tasks: dict[str, dict[str, Any]], solutions: bool = True) -> Path:
    """arc-agi_<subset>_challenges.json (test outputs removed) and, when asked, _solutions.json; returns the
    challenges file."""
    root.mkdir(parents=True, exist_ok=True)
    challenges = root / f"arc-agi_{subset}_challenges.json"
    challenges.write_text(json.dumps({k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]}
                                      for k, t in tasks.items()}))
    if solutions:
        (root / f"arc-agi_{subset}_solutions.json").write_text(
            json.dumps({k: [p["output"] for p in t["test"]] for k, t in tasks.items()}))
    return challenges


TINY_MODEL = {"arch": "trm", "hidden_size": 32, "num_heads": 2, "expansion": 2, "T": 1, "n": 1, "layers": 1,
              "puzzle_emb_ndim": 32, "puzzle_emb_len": 1, "halt_max_steps": 2, "pos_encodings": "rope"}
"""A model small enough to train for a few steps in a test."""
