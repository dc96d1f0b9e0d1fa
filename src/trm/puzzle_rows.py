"""Carry a puzzle-embedding table over to a dataset whose puzzle identifiers differ (fine-tuning on new tasks).

A table row belongs to one puzzle name of the dataset it was trained on (its identifiers.json: for ARC
`<task>` or `<task>|||t<k>|||<colours>`). `match_puzzle_rows` lays the rows out for another dataset's
names: a row whose name is in both is kept (moved to its new position), every other row is new,
initialised as the model initialises its table (zeros, as the reference does) or, on request, with the
mean of the source rows (what the reference's checkpoint loader puts in a table of another size).

    state, summary = match_puzzle_rows(state, old_names, new_names)
    print(summary.line())   # "puzzle rows: 812 kept (matched by name), 4 new (zeros); 2 of the checkpoint's unused"
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

PUZZLE_TABLE = "embed.puzzle.weight"
"""Key of the puzzle-embedding table in our models' state dicts."""
NEW_ROWS = ("zeros", "mean")


@dataclass(frozen=True)
class RowsSummary:
    """What `match_puzzle_rows` did."""

    kept: int
    """Rows whose puzzle name is in both datasets (the blank row 0 included)."""
    new: int
    """Rows of names the checkpoint did not know."""
    unused: int
    """Rows of the checkpoint whose names the new dataset does not have."""
    init: str

    def line(self) -> str:
        return (f"puzzle rows: {self.kept} kept (matched by name), {self.new} new ({self.init}); "
                f"{self.unused} of the checkpoint's {self.kept + self.unused} unused")


def read_identifiers(path: str | Path) -> list[str]:
    """The puzzle names of a dataset: its identifiers.json (a dataset folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "identifiers.json"
    names = json.loads(path.read_text())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of puzzle names")
    return names


def match_puzzle_rows(state: dict[str, Tensor], old_names: list[str], new_names: list[str], *,
                      key: str = PUZZLE_TABLE, new_rows: str = "zeros") -> tuple[dict[str, Tensor], RowsSummary]:
    """`state` with its puzzle table `key` laid out for `new_names` (row i is puzzle `new_names[i]`):
    rows of names in both are kept, the others initialised by `new_rows` ("zeros" or "mean"). Row 0, the
    blank identifier, is kept. ValueError when the table does not have one row per old name."""
    if new_rows not in NEW_ROWS:
        raise ValueError(f"new_rows={new_rows!r}: choose {' or '.join(NEW_ROWS)}")
    if key not in state:
        raise ValueError(f"the checkpoint has no puzzle-embedding table ({key})")
    table = state[key]
    if table.shape[0] != len(old_names):
        raise ValueError(f"the checkpoint's puzzle table has {table.shape[0]} rows but its dataset names "
                         f"{len(old_names)} puzzles: these identifiers are not the ones it was trained with")
    position = {name: i for i, name in enumerate(old_names)}
    if new_rows == "mean" and table.shape[0] > 1:
        fill = table[1:].mean(0, keepdim=True)
    else:
        fill = torch.zeros(1, table.shape[1], dtype=table.dtype, device=table.device)
    out = fill.expand(len(new_names), -1).clone()
    source = [position.get(name, -1) if i else 0 for i, name in enumerate(new_names)]
    if not new_names:
        raise ValueError("the new dataset names no puzzles")
    rows = torch.tensor([i for i, s in enumerate(source) if s >= 0], dtype=torch.long)
    picks = torch.tensor([s for s in source if s >= 0], dtype=torch.long)
    out[rows] = table[picks]
    kept = len(rows)
    summary = RowsSummary(kept=kept, new=len(new_names) - kept, unused=len(old_names) - len(set(picks.tolist())),
                          init=new_rows)
    return {**state, key: out}, summary
