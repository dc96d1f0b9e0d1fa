"""The on-disk format: round trip, atomic writes, reference-style files, and the validator's messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trm.data.format import (
    DataError,
    SplitBuilder,
    find_problems,
    load_dataset,
    make_split,
    validate_dataset,
    write_dataset,
)


def _dataset(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    splits = {}
    for name, groups in (("train", 5), ("test", 3)):
        b = SplitBuilder(seq_len=4)
        for g in range(groups):
            puzzles = []
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.integers(1, 3))
                puzzles.append((g + 1, rng.integers(1, 7, (k, 4)), rng.integers(0, 7, (k, 4))))
            b.add_group(puzzles)
        splits[name] = make_split({"all": b.arrays()}, vocab_size=7, num_puzzle_identifiers=6)
    return write_dataset(root, splits, ["<blank>", "a", "b", "c", "d", "e"])


def test_round_trip(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    assert find_problems(root) == []
    data = load_dataset(root)
    a = data.train.sets["all"]
    assert isinstance(a.inputs, np.memmap) and a.inputs.dtype == np.int32
    assert data.train.meta.total_groups == a.num_groups == 5
    assert data.train.meta.total_puzzles == a.num_puzzles
    assert data.train.meta.mean_puzzle_examples == pytest.approx(a.num_examples / a.num_puzzles)
    assert data.identifiers[0] == "<blank>"
    assert data.model_fields() == {"vocab_size": 7, "seq_len": 4, "num_puzzle_identifiers": 6}
    meta = json.loads((root / "train" / "dataset.json").read_text())
    assert set(meta) == {"pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                         "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "total_puzzles", "sets"}


def test_same_arrays_same_bytes(tmp_path: Path) -> None:
    a, b = _dataset(tmp_path / "a"), _dataset(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes()


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    b = SplitBuilder(seq_len=2)
    b.add_group([(0, [[1, 2]], [[1, 9]])])  # label 9 outside vocab 3
    split = make_split({"all": b.arrays()}, vocab_size=3, num_puzzle_identifiers=1)
    with pytest.raises(DataError, match="outside the vocabulary"):
        write_dataset(tmp_path / "bad", {"train": split})
    assert list(tmp_path.iterdir()) == []
    _dataset(tmp_path / "d")
    with pytest.raises(FileExistsError):
        _dataset(tmp_path / "d")
    write_dataset(tmp_path / "d", {"train": split}, overwrite=True, validate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_reads_reference_style_uint8_and_extra_files(tmp_path: Path) -> None:
    """The reference's Sudoku builder writes uint8 tokens, extra aug arrays and total_puzzles = groups."""
    root = tmp_path / "ref"
    (root / "train").mkdir(parents=True)
    inputs = np.ones((3, 81), np.uint8)
    for name, arr in {"inputs": inputs, "labels": inputs + 1, "puzzle_identifiers": np.zeros(3, np.int32),
                      "puzzle_indices": np.arange(4, dtype=np.int32), "group_indices": np.array([0, 3], np.int32),
                      "aug_dihedral": np.zeros(3, np.int32)}.items():
        np.save(root / "train" / f"all__{name}.npy", arr)
    (root / "train" / "dataset.json").write_text(json.dumps({
        "seq_len": 81, "vocab_size": 11, "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0,
        "num_puzzle_identifiers": 1, "num_aug_identifiers": 1, "total_groups": 1, "mean_puzzle_examples": 1,
        "total_puzzles": 1, "sets": ["all"]}))
    (root / "identifiers.json").write_text('["<blank>"]')
    assert find_problems(root) == []
    assert load_dataset(root).train.sets["all"].inputs.dtype == np.uint8


CORRUPTIONS = {
    "labels shape": ("train/all__labels.npy", lambda a: a[:, :3], "shape"),
    "labels rows": ("train/all__labels.npy", lambda a: a[:-1], "examples but inputs have"),
    "token too big": ("train/all__inputs.npy", lambda a: np.where(np.arange(a.size).reshape(a.shape) == 5, 7, a),
                      "token 7 at example 1, position 1 is outside the vocabulary"),
    "negative token": ("train/all__labels.npy", lambda a: a - 1, "outside the vocabulary"),
    "puzzle offsets not monotone": ("train/all__puzzle_indices.npy", lambda a: a[[0, 2, 1, *range(3, len(a))]],
                                    "increase strictly"),
    "puzzle offsets short": ("train/all__puzzle_indices.npy", lambda a: np.append(a[:-1], a[-1] - 1),
                             "must equal the number of examples"),
    "puzzle offsets start": ("train/all__puzzle_indices.npy", lambda a: a + 1, "must start at 0"),
    "group offsets end": ("train/all__group_indices.npy", lambda a: np.append(a[:-1], a[-1] + 1),
                          "must equal the number of puzzles"),
    "identifier out of range": ("train/all__puzzle_identifiers.npy", lambda a: a + 10, "outside [0, num_puzzle"),
    "identifiers count": ("train/all__puzzle_identifiers.npy", lambda a: a[:-1], "puzzles + 1"),
    "float dtype": ("test/all__inputs.npy", lambda a: a.astype(np.float32), "not an integer type"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_validator_names_file_and_problem(tmp_path: Path, name: str) -> None:
    root = _dataset(tmp_path / "d")
    rel, corrupt, message = CORRUPTIONS[name]
    path = root / rel
    np.save(path, corrupt(np.load(path)))
    problems = find_problems(root)
    assert problems, name
    assert any(str(path) in p and message in p for p in problems), problems
    with pytest.raises(DataError, match="problem"):
        validate_dataset(root)


@pytest.mark.parametrize("edit, message", [
    (lambda m: {**m, "total_groups": 99}, "total_groups is 99"),
    (lambda m: {**m, "mean_puzzle_examples": 7.0}, "mean_puzzle_examples"),
    (lambda m: {**m, "seq_len": 5}, "seq_len=5"),
    (lambda m: {k: v for k, v in m.items() if k != "vocab_size"}, "missing fields ['vocab_size']"),
    (lambda m: {**m, "sets": ["all", "other"]}, "other__inputs.npy: missing"),
    (lambda m: {**m, "blank_identifier_id": 6}, "blank_identifier_id"),
])
def test_validator_catches_bad_metadata(tmp_path: Path, edit, message: str) -> None:
    root = _dataset(tmp_path / "d")
    path = root / "train" / "dataset.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    problems = find_problems(root)
    assert any(message in p and "train" in p for p in problems), problems


def test_missing_and_broken_files(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d")
    (root / "test" / "all__group_indices.npy").unlink()
    (root / "train" / "all__inputs.npy").write_bytes(b"not numpy")
    (root / "identifiers.json").write_text("[")
    text = "\n".join(find_problems(root))
    assert "all__group_indices.npy: missing" in text
    assert "all__inputs.npy: not a readable .npy array" in text
    assert "identifiers.json: not valid JSON" in text
    with pytest.raises(DataError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
