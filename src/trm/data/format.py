"""The on-disk puzzle dataset format, shared with the reference implementation.

A dataset folder holds `identifiers.json` (a list: index = puzzle identifier, id 0 = "<blank>") and one
folder per split (`train/`, `test/`), each with a `dataset.json` (`DatasetMetadata`) and, per set name,
five arrays:

    <set>__inputs.npy              examples x seq_len   token ids
    <set>__labels.npy              examples x seq_len   token ids, `ignore_label_id` (0 = pad) not scored
    <set>__puzzle_identifiers.npy  puzzles              identifier of each puzzle
    <set>__puzzle_indices.npy      puzzles + 1          example offsets of each puzzle
    <set>__group_indices.npy       groups + 1           puzzle offsets of each group

A group is an original puzzle with its augmented variants, a puzzle is one variant, an example is
one input/output pair. We write int32; the reference's Sudoku and Maze builders write uint8 token
arrays, so the reader and validator accept any integer dtype. Extra files (the reference writes
`all__aug_*.npy` in some versions) are ignored.

    write_dataset(root, {"train": split, "test": split}, identifiers)   # atomic
    data = load_dataset(root)                                           # memory-mapped
    problems = find_problems(root); validate_dataset(root)              # raises DataError
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trm.atomic import atomic_folder

FIELDS: tuple[str, ...] = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
"""The five arrays of a set, in file-name order `<set>__<field>.npy`."""

BLANK_IDENTIFIER = "<blank>"


class DataError(ValueError):
    """Malformed data: the message names the file, the record where known, and the problem."""


@dataclass(kw_only=True)
class DatasetMetadata:
    """`dataset.json` of one split (same fields and meaning as the reference)."""

    vocab_size: int
    """Number of token ids; every input and label token is in [0, vocab_size)."""
    seq_len: int
    """Tokens per example."""
    num_puzzle_identifiers: int
    """Size of the puzzle-embedding table; identifiers are in [0, num_puzzle_identifiers)."""
    total_groups: int
    """Groups over all sets."""
    mean_puzzle_examples: float
    """Mean examples per puzzle over all sets."""
    total_puzzles: int
    """Puzzles over all sets."""
    sets: list[str] = field(default_factory=lambda: ["all"])
    """Set names; each has its five arrays."""
    pad_id: int = 0
    """Input token of padding."""
    ignore_label_id: int | None = 0
    """Label token that the loss ignores (mapped to the loss's ignore index when loading); None: none."""
    blank_identifier_id: int = 0
    """Puzzle identifier meaning "no puzzle" (padding rows)."""
    task: str | None = None
    """What the tokens encode ("sudoku", "maze", "arc"), written by this project's builders so that
    evaluation can check validity and undo augmentations; absent in reference-built datasets."""

    @classmethod
    def from_json(cls, path: Path) -> DatasetMetadata:
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: missing (is this a dataset split folder?)") from None
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: expected a JSON object, got {type(raw).__name__}")
        required = {"vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples"}
        missing = sorted(required - raw.keys())
        if missing:
            raise DataError(f"{path}: missing fields {missing}")
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in raw.items() if k in known}
        # Some reference versions omit total_puzzles; it is only a weight when merging datasets.
        kwargs.setdefault("total_puzzles", int(raw["total_groups"]))
        try:
            meta = cls(**kwargs)
        except TypeError as e:
            raise DataError(f"{path}: {e}") from None
        for name in ("vocab_size", "seq_len", "num_puzzle_identifiers", "total_groups", "total_puzzles",
                     "pad_id", "blank_identifier_id"):
            if not isinstance(getattr(meta, name), int) or getattr(meta, name) < 0:
                raise DataError(f"{path}: {name} must be a non-negative integer, got {getattr(meta, name)!r}")
        if not isinstance(meta.sets, list) or not meta.sets or not all(isinstance(s, str) for s in meta.sets):
            raise DataError(f"{path}: sets must be a non-empty list of names, got {meta.sets!r}")
        if meta.task is not None and not isinstance(meta.task, str):
            raise DataError(f"{path}: task must be a name or null, got {meta.task!r}")
        return meta

    def to_json(self) -> str:
        fields = asdict(self)
        if fields["task"] is None:  # the reference's fields only
            del fields["task"]
        return json.dumps(fields, indent=2, sort_keys=True) + "\n"


@dataclass
class SetArrays:
    """The five arrays of one set (numpy arrays or read-only memory maps)."""

    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_puzzles(self) -> int:
        return int(self.puzzle_identifiers.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0]) - 1

    def example_puzzles(self) -> np.ndarray:
        """The puzzle index of every example."""
        return np.repeat(np.arange(self.num_puzzles, dtype=np.int64), np.diff(np.asarray(self.puzzle_indices)))


@dataclass
class Split:
    """One split of a dataset: its metadata and its sets."""

    meta: DatasetMetadata
    sets: dict[str, SetArrays]
    folder: Path | None = None


@dataclass
class Dataset:
    """A dataset folder: `train` and (optionally) `test` splits and the identifier names."""

    root: Path
    train: Split
    test: Split | None
    identifiers: list[str]

    def model_fields(self) -> dict[str, int]:
        """The model-config fields the data decides."""
        m = self.train.meta
        return {"vocab_size": m.vocab_size, "seq_len": m.seq_len, "num_puzzle_identifiers": m.num_puzzle_identifiers}


# ---------------------------------------------------------------------------------------------
# Building a split


class SplitBuilder:
    """Collects groups of puzzles of examples into the arrays of one set.

    `add_group([puzzle, ...])` where a puzzle is `(identifier, inputs, labels)` with inputs and labels of
    shape (examples, seq_len).
    """

    def __init__(self, seq_len: int) -> None:
        self.seq_len = seq_len
        self._inputs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._ids: list[int] = []
        self._puzzle_indices = [0]
        self._group_indices = [0]

    def add_group(self, puzzles: Iterable[tuple[int, np.ndarray, np.ndarray]]) -> None:
        for identifier, inputs, labels in puzzles:
            inputs = np.asarray(inputs).reshape(-1, self.seq_len)
            labels = np.asarray(labels).reshape(-1, self.seq_len)
            if inputs.shape != labels.shape or inputs.shape[0] == 0:
                raise ValueError(f"puzzle inputs {inputs.shape} and labels {labels.shape} must match, non-empty")
            self._inputs.append(inputs)
            self._labels.append(labels)
            self._ids.append(int(identifier))
            self._puzzle_indices.append(self._puzzle_indices[-1] + inputs.shape[0])
        if len(self._ids) == self._group_indices[-1]:
            raise ValueError("a group needs at least one puzzle")
        self._group_indices.append(len(self._ids))

    def arrays(self) -> SetArrays:
        empty = np.zeros((0, self.seq_len), np.int32)
        return SetArrays(
            inputs=np.concatenate(self._inputs).astype(np.int32) if self._inputs else empty,
            labels=np.concatenate(self._labels).astype(np.int32) if self._labels else empty,
            puzzle_identifiers=np.asarray(self._ids, dtype=np.int32),
            puzzle_indices=np.asarray(self._puzzle_indices, dtype=np.int32),
            group_indices=np.asarray(self._group_indices, dtype=np.int32),
        )


def make_split(sets: Mapping[str, SetArrays], *, vocab_size: int, num_puzzle_identifiers: int, pad_id: int = 0,
               ignore_label_id: int | None = 0, blank_identifier_id: int = 0, task: str | None = None) -> Split:
    """A split whose metadata counts are computed from its sets."""
    if not sets:
        raise ValueError("a split needs at least one set")
    seq_lens = {a.inputs.shape[1] for a in sets.values()}
    if len(seq_lens) != 1:
        raise ValueError(f"sets disagree on seq_len: {sorted(seq_lens)}")
    puzzles = sum(a.num_puzzles for a in sets.values())
    examples = sum(a.num_examples for a in sets.values())
    meta = DatasetMetadata(
        vocab_size=vocab_size, seq_len=int(seq_lens.pop()), num_puzzle_identifiers=num_puzzle_identifiers,
        total_groups=sum(a.num_groups for a in sets.values()), total_puzzles=puzzles,
        mean_puzzle_examples=examples / puzzles if puzzles else 0.0, sets=list(sets), pad_id=pad_id,
        ignore_label_id=ignore_label_id, blank_identifier_id=blank_identifier_id, task=task)
    return Split(meta=meta, sets=dict(sets))


# ---------------------------------------------------------------------------------------------
# Writing


def is_dataset_folder(root: str | Path) -> bool:
    """Whether a folder is a dataset (a split with its dataset.json), i.e. one that `--overwrite` may replace."""
    root = Path(root)
    return root.is_dir() and any((root / split / "dataset.json").is_file() for split in ("train", "test"))


def check_replaceable(root: str | Path) -> None:
    """DataError unless `root` is absent or a dataset folder: overwriting never removes anything else."""
    root = Path(root)
    if root.exists() and not is_dataset_folder(root):
        raise DataError(f"{root}: exists and is not a dataset folder (no train/dataset.json or test/dataset.json); "
                        "--overwrite replaces only a dataset: choose a new folder or remove this one yourself")


def write_dataset(root: str | Path, splits: Mapping[str, Split], identifiers: Sequence[str] = (BLANK_IDENTIFIER,),
                  *, overwrite: bool = False, validate: bool = True) -> Path:
    """Write a dataset folder atomically: everything goes to a temporary folder beside `root`, which is
    renamed into place only when complete, so an interrupted write leaves nothing half-written.

    The output is a pure function of the arguments (same arrays give byte-identical files).
    """
    root = Path(root)
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root}: already exists (pass overwrite=True, or --overwrite, to replace it)")
    check_replaceable(root)
    with atomic_folder(root) as tmp:
        for split_name, split in splits.items():
            folder = tmp / split_name
            folder.mkdir()
            (folder / "dataset.json").write_text(split.meta.to_json())
            for set_name, arrays in split.sets.items():
                for name in FIELDS:
                    np.save(folder / f"{set_name}__{name}.npy", np.ascontiguousarray(getattr(arrays, name), np.int32))
        (tmp / "identifiers.json").write_text(json.dumps(list(identifiers)) + "\n")
        if validate:
            problems = find_problems(tmp)
            if problems:
                raise DataError("refusing to write an invalid dataset:\n  " + "\n  ".join(problems))
    return root


# ---------------------------------------------------------------------------------------------
# Reading


def load_split(folder: str | Path, *, mmap: bool = True) -> Split:
    """One split folder; the token arrays are memory-mapped read-only, the index arrays loaded."""
    folder = Path(folder)
    meta = DatasetMetadata.from_json(folder / "dataset.json")
    sets: dict[str, SetArrays] = {}
    for set_name in meta.sets:
        arrays: dict[str, np.ndarray] = {}
        for name in FIELDS:
            path = folder / f"{set_name}__{name}.npy"
            big = name in ("inputs", "labels")
            try:
                arrays[name] = np.load(path, mmap_mode="r" if (mmap and big) else None, allow_pickle=False)
            except FileNotFoundError:
                raise DataError(f"{path}: missing (set {set_name!r} is listed in dataset.json)") from None
            except (ValueError, OSError) as e:
                raise DataError(f"{path}: not a readable .npy array ({e})") from None
        sets[set_name] = SetArrays(**arrays)
    return Split(meta=meta, sets=sets, folder=folder)


def load_identifiers(root: str | Path) -> list[str]:
    path = Path(root) / "identifiers.json"
    if not path.is_file():
        return [BLANK_IDENTIFIER]
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(names, list):
        raise DataError(f"{path}: expected a list of names (index = identifier)")
    return [str(n) for n in names]


def load_dataset(root: str | Path, *, mmap: bool = True) -> Dataset:
    """A dataset folder with `train/` and optionally `test/`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder (build one with `trm build ...`)")
    if not (root / "train").is_dir():
        raise DataError(f"{root}: no train/ split folder")
    test = load_split(root / "test", mmap=mmap) if (root / "test").is_dir() else None
    return Dataset(root=root, train=load_split(root / "train", mmap=mmap), test=test,
                   identifiers=load_identifiers(root))


# ---------------------------------------------------------------------------------------------
# Validation


def _check_offsets(path: Path, offsets: np.ndarray, end: int, what: str) -> list[str]:
    if offsets.ndim != 1 or offsets.shape[0] < 1:
        return [f"{path}: expected a 1-d array of {what} offsets, got shape {offsets.shape}"]
    problems = []
    if offsets[0] != 0:
        problems.append(f"{path}: must start at 0, starts at {offsets[0]}")
    steps = np.diff(offsets.astype(np.int64))
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0))
        problems.append(f"{path}: offsets must increase strictly (every {what.split()[-1]} non-empty); "
                        f"entry {i + 1} is {offsets[i + 1]} after {offsets[i]}")
    if offsets[-1] != end:
        problems.append(f"{path}: last offset {offsets[-1]} must equal the number of {what} ({end})")
    return problems


def _check_set(folder: Path, set_name: str, a: SetArrays, meta: DatasetMetadata) -> list[str]:
    p = {name: folder / f"{set_name}__{name}.npy" for name in FIELDS}
    problems = []
    for name in FIELDS:
        arr = getattr(a, name)
        if not np.issubdtype(arr.dtype, np.integer):
            problems.append(f"{p[name]}: dtype {arr.dtype} is not an integer type")
    if problems:
        return problems
    for name in ("inputs", "labels"):
        arr = getattr(a, name)
        if arr.ndim != 2 or arr.shape[1] != meta.seq_len:
            problems.append(f"{p[name]}: shape {arr.shape}, expected (examples, seq_len={meta.seq_len})")
    if a.inputs.shape[0] != a.labels.shape[0]:
        problems.append(f"{p['labels']}: {a.labels.shape[0]} examples but inputs have {a.inputs.shape[0]}")
    if a.puzzle_identifiers.ndim != 1:
        problems.append(f"{p['puzzle_identifiers']}: expected 1-d, got shape {a.puzzle_identifiers.shape}")
    if problems:
        return problems
    problems += _check_offsets(p["puzzle_indices"], a.puzzle_indices, a.num_examples, "examples of each puzzle")
    if a.puzzle_indices.shape[0] != a.num_puzzles + 1:
        problems.append(f"{p['puzzle_indices']}: {a.puzzle_indices.shape[0]} entries, expected puzzles + 1 = "
                        f"{a.num_puzzles + 1} ({p['puzzle_identifiers']} has {a.num_puzzles} puzzles)")
    problems += _check_offsets(p["group_indices"], a.group_indices, a.num_puzzles, "puzzles of each group")
    ids = a.puzzle_identifiers
    if ids.size and (ids.min() < 0 or ids.max() >= meta.num_puzzle_identifiers):
        bad = int(np.argmax((ids < 0) | (ids >= meta.num_puzzle_identifiers)))
        problems.append(f"{p['puzzle_identifiers']}: puzzle {bad} has identifier {ids[bad]}, outside "
                        f"[0, num_puzzle_identifiers={meta.num_puzzle_identifiers})")
    for name in ("inputs", "labels"):
        arr = getattr(a, name)
        if arr.size:
            lo, hi = int(arr.min()), int(arr.max())
            if lo < 0 or hi >= meta.vocab_size:
                flat = int(np.argmax(((arr < 0) | (arr >= meta.vocab_size)).reshape(-1)))
                row, col = divmod(flat, meta.seq_len)
                problems.append(f"{p[name]}: token {arr[row, col]} at example {row}, position {col} is outside "
                                f"the vocabulary [0, vocab_size={meta.vocab_size})")
    return problems


def find_problems(root: str | Path) -> list[str]:
    """Everything wrong with a dataset folder, one message per problem, each naming the file."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such folder"]
    problems: list[str] = []
    splits = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "dataset.json").exists()]
    if not (root / "train").is_dir():
        problems.append(f"{root}: no train/ split folder")
    try:
        identifiers = load_identifiers(root)
        if not (root / "identifiers.json").is_file():
            problems.append(f"{root / 'identifiers.json'}: missing")
    except DataError as e:
        problems.append(str(e))
        identifiers = None
    for folder in splits:
        try:
            split = load_split(folder)
        except DataError as e:
            problems.append(str(e))
            continue
        meta = split.meta
        if meta.pad_id >= meta.vocab_size:
            problems.append(f"{folder / 'dataset.json'}: pad_id {meta.pad_id} outside [0, {meta.vocab_size})")
        if meta.blank_identifier_id >= meta.num_puzzle_identifiers:
            problems.append(f"{folder / 'dataset.json'}: blank_identifier_id {meta.blank_identifier_id} outside "
                            f"[0, num_puzzle_identifiers={meta.num_puzzle_identifiers})")
        if identifiers is not None and len(identifiers) < meta.num_puzzle_identifiers:
            problems.append(f"{root / 'identifiers.json'}: {len(identifiers)} names but {folder.name} uses "
                            f"num_puzzle_identifiers={meta.num_puzzle_identifiers}")
        set_problems = []
        for set_name, arrays in split.sets.items():
            set_problems += _check_set(folder, set_name, arrays, meta)
        problems += set_problems
        if set_problems:
            continue
        groups = sum(a.num_groups for a in split.sets.values())
        puzzles = sum(a.num_puzzles for a in split.sets.values())
        examples = sum(a.num_examples for a in split.sets.values())
        if groups != meta.total_groups:
            problems.append(f"{folder / 'dataset.json'}: total_groups is {meta.total_groups}, the sets hold {groups}")
        if puzzles and abs(examples / puzzles - meta.mean_puzzle_examples) > 1e-6 * max(1.0, examples / puzzles):
            problems.append(f"{folder / 'dataset.json'}: mean_puzzle_examples is {meta.mean_puzzle_examples}, "
                            f"the sets hold {examples / puzzles:.6g}")
    return problems


def validate_dataset(root: str | Path) -> None:
    """Raise `DataError` listing every problem of a dataset folder (see `find_problems`)."""
    problems = find_problems(root)
    if problems:
        raise DataError(f"{root}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))


def iter_puzzle_csv(path: str | Path) -> Iterator[tuple[str, str, str, str, str]]:
    """Rows of a `source,question,answer,rating` CSV (Sudoku-Extreme, Maze-Hard) as
    (where, source, question, answer, rating); `where` is `file:line` for error messages."""
    import csv

    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:4]] != ["source", "question", "answer", "rating"]:
            raise DataError(f"{path}:1: expected header 'source,question,answer,rating', got {header}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row:
                continue
            if len(row) != 4:
                raise DataError(f"{where}: expected 4 fields (source,question,answer,rating), got {len(row)}")
            source, question, answer, rating = row
            yield where, source, question, answer, rating


ParseRow = Callable[[str, str, str, str], tuple[np.ndarray, np.ndarray, int]]
"""(where, question, answer, rating) -> (question grid, answer grid, rating); raises DataError on a bad row."""


def read_puzzle_csv(path: str | Path, parse_row: ParseRow,
                    limit: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray], list[str], np.ndarray]:
    """(questions, answers, sources, ratings) of the rows of a `source,question,answer,rating` CSV, each row
    read (and checked) by the task's `parse_row`; at most `limit` rows."""
    questions, answers, sources, ratings = [], [], [], []
    for where, source, q, a, rating in iter_puzzle_csv(path):
        question, answer, value = parse_row(where, q, a, rating)
        questions.append(question)
        answers.append(answer)
        sources.append(source)
        ratings.append(value)
        if limit is not None and len(questions) >= limit:
            break
    return questions, answers, sources, np.asarray(ratings, np.int32)


def csv_splits(path: str | Path, read: Callable[[Path], Any],
               split: Callable[[Any], tuple[Any, Any]]) -> tuple[Any, Any]:
    """(train, test) records: `read` of train.csv and test.csv when `path` is a folder, else `split` of the
    one file `read` gives."""
    path = Path(path)
    if path.is_dir():
        train, test = path / "train.csv", path / "test.csv"
        for p in (train, test):
            if not p.is_file():
                raise DataError(f"{p}: missing (a CSV folder holds train.csv and test.csv)")
        return read(train), read(test)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return split(read(path))
