"""Sampler: reference order, seeding, ranks, exact resume, and test batches that visit every example once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trm.data.format import SplitBuilder, make_split, write_dataset
from trm.data.sampler import IGNORE_LABEL_ID, TrainSampler, iter_test_batches, open_dataset


def _write(root: Path, groups: int = 40, multi: bool = False, seed: int = 0) -> Path:
    """Example e carries token e + 1 at position 0 (so rows identify examples); label 0 at position 1."""
    rng = np.random.default_rng(seed)
    splits = {}
    for name, n in (("train", groups), ("test", 7)):
        b = SplitBuilder(seq_len=3)
        e = 0
        for g in range(n):
            puzzles = []
            for _ in range(int(rng.integers(1, 4)) if multi else 1):
                k = int(rng.integers(1, 5)) if multi else 1
                rows = np.array([[e + i + 1, 5, 6] for i in range(k)])
                labels = rows.copy()
                labels[:, 1] = 0
                puzzles.append((g + 1, rows, labels))
                e += k
            b.add_group(puzzles)
        splits[name] = make_split({"all": b.arrays()}, vocab_size=1000, num_puzzle_identifiers=n + 1)
    return write_dataset(root, splits, ["<blank>", *[f"g{i}" for i in range(max(groups, 7))]])


def _examples(batch: dict[str, np.ndarray]) -> list[int]:
    return (batch["inputs"][:, 0] - 1).tolist()


def _take(sampler: TrainSampler, k: int) -> list[dict[str, np.ndarray]]:
    it = iter(sampler)
    return [next(it) for _ in range(k)]


def test_epoch_visits_each_group_once_and_drops_last(tmp_path: Path) -> None:
    data = open_dataset(_write(tmp_path / "d", groups=40))
    sampler = data.train_sampler(16, seed=1)
    assert data.steps_per_epoch(16) == 2 and sampler.steps_per_epoch() == 2
    first_epoch = _take(sampler, 2)
    seen = sum((_examples(b) for b in first_epoch), [])
    assert len(set(seen)) == 32  # 2 full batches of distinct groups; the last 8 groups dropped
    batch = first_epoch[0]
    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        "inputs": (np.int32, (16, 3)), "labels": (np.int32, (16, 3)), "puzzle_identifiers": (np.int32, (16,))}
    assert (batch["labels"][:, 1] == IGNORE_LABEL_ID).all() and (batch["labels"][:, 0] == batch["inputs"][:, 0]).all()
    assert (batch["puzzle_identifiers"] == batch["inputs"][:, 0]).all()  # one puzzle per group, id g + 1
    assert sampler.state_dict()["epoch"] == 0
    _take(sampler, 1)
    assert sampler.epoch == 1 and sampler.batch_in_epoch == 1


def test_multi_example_puzzles_follow_reference_packing(tmp_path: Path) -> None:
    data = open_dataset(_write(tmp_path / "d", groups=30, multi=True))
    a = data.dataset.train.sets["all"]
    sampler = data.train_sampler(8, seed=3)
    plan = sampler.epoch_plan(0)
    assert plan and all(len(ex) == 8 for _, ex, _ in plan)
    for _, examples, puzzles in plan:
        # Every example belongs to the puzzle recorded for it, and one puzzle per group.
        starts, stops = a.puzzle_indices[puzzles], a.puzzle_indices[puzzles + 1]
        assert ((examples >= starts) & (examples < stops)).all()
        groups = np.searchsorted(a.group_indices, puzzles, side="right") - 1
        for g in np.unique(groups):
            assert len(np.unique(puzzles[groups == g])) == 1
    used = np.concatenate([ex for _, ex, _ in plan])
    assert len(np.unique(used)) == len(used)  # no example twice within an epoch


def test_seeded_and_rank_shares(tmp_path: Path) -> None:
    data = open_dataset(_write(tmp_path / "d", groups=64))
    one = _take(data.train_sampler(16, seed=4), 6)
    again = _take(data.train_sampler(16, seed=4), 6)
    other = _take(data.train_sampler(16, seed=5), 6)
    assert all((x["inputs"] == y["inputs"]).all() for x, y in zip(one, again, strict=True))
    assert any((x["inputs"] != y["inputs"]).any() for x, y in zip(one, other, strict=True))
    shares = [_take(data.train_sampler(16, rank=r, world_size=4, seed=4), 6) for r in range(4)]
    for step in range(6):
        assert all(shares[r][step]["inputs"].shape == (4, 3) for r in range(4))
        joined = np.concatenate([shares[r][step]["inputs"] for r in range(4)])
        assert (joined == one[step]["inputs"]).all()
    with pytest.raises(ValueError, match="divisible"):
        data.train_sampler(10, world_size=4)


def test_resume_sees_the_same_batches(tmp_path: Path) -> None:
    data = open_dataset(_write(tmp_path / "d", groups=50, multi=True))
    straight = _take(data.train_sampler(8, seed=2), 25)
    first = data.train_sampler(8, seed=2)
    _take(first, 11)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = data.train_sampler(8, seed=0)
    resumed.load_state_dict(state)
    rest = _take(resumed, 14)
    for x, y in zip(straight[11:], rest, strict=True):
        for k in x:
            assert (x[k] == y[k]).all()
    with pytest.raises(ValueError, match="global batch"):
        data.train_sampler(16).load_state_dict(state)


@pytest.mark.parametrize("world_size, local", [(1, 3), (2, 2), (3, 1), (1, 7), (2, 5)])
def test_test_batches_visit_every_example_once(tmp_path: Path, world_size: int, local: int) -> None:
    data = open_dataset(_write(tmp_path / "d", groups=5, multi=True))
    split = data.dataset.test
    assert split is not None
    a = split.sets["all"]
    per_rank = [list(iter_test_batches(split, local, rank=r, world_size=world_size)) for r in range(world_size)]
    assert len({len(b) for b in per_rank}) == 1  # every process runs the same number of steps
    seen = []
    for step in range(len(per_rank[0])):
        for r in range(world_size):
            name, batch, real = per_rank[r][step]
            assert name == "all" and batch["inputs"].shape == (local, 3)
            seen += _examples({"inputs": batch["inputs"][:real]})
            assert (batch["inputs"][real:] == 0).all() and (batch["labels"][real:] == IGNORE_LABEL_ID).all()
            assert (batch["puzzle_identifiers"][real:] == 0).all()
            puzzles = np.searchsorted(a.puzzle_indices, np.arange(a.num_examples), side="right") - 1
            ids = a.puzzle_identifiers[puzzles]
            assert (batch["puzzle_identifiers"][:real] == ids[np.array(_examples(batch)[:real], int)]).all()
    assert seen == list(range(a.num_examples))


def test_reads_reference_uint8_dataset(tmp_path: Path) -> None:
    root = tmp_path / "ref"
    (root / "train").mkdir(parents=True)
    tokens = np.arange(1, 9, dtype=np.uint8).reshape(4, 2)
    for name, arr in {"inputs": tokens, "labels": tokens * 0, "puzzle_identifiers": np.zeros(4, np.int32),
                      "puzzle_indices": np.arange(5, dtype=np.int32),
                      "group_indices": np.arange(5, dtype=np.int32)}.items():
        np.save(root / "train" / f"all__{name}.npy", arr)
    (root / "train" / "dataset.json").write_text(json.dumps({
        "seq_len": 2, "vocab_size": 11, "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0,
        "num_puzzle_identifiers": 1, "total_groups": 4, "mean_puzzle_examples": 1, "total_puzzles": 4,
        "sets": ["all"]}))
    batch = _take(open_dataset(root).train_sampler(4), 1)[0]
    assert batch["inputs"].dtype == np.int32 and (batch["labels"] == IGNORE_LABEL_ID).all()
    assert sorted(batch["inputs"][:, 0].tolist()) == [1, 3, 5, 7]


def test_ignore_index_matches_the_loss() -> None:
    loss = pytest.importorskip("trm.loss")
    assert loss.IGNORE_LABEL_ID == IGNORE_LABEL_ID
