"""Sudoku: parsers, solver on real hard puzzles, generator, augmentations, validity and the builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trm.data.format import DataError, find_problems, load_dataset
from trm.tasks.sudoku import puzzles as S

SIZES = (4, 6, 9)


def _solve_file(shared_dir: Path, name: str, limit: int) -> None:
    records = S.parse_text(shared_dir / "data" / "sudoku" / name, limit=limit)
    assert len(records) == limit
    for i, q in enumerate(records.questions):
        solution = S.solve_one(q)
        assert solution is not None, f"puzzle {i} unsolved"
        assert S.is_valid_solution(solution, q), f"puzzle {i}: invalid solution"


@pytest.mark.parametrize("name", ["puzzles3_magictour_top1465.txt", "puzzles5_forum_hardest_1905_11+.txt"])
def test_solver_on_hard_puzzles_first_200(shared_dir: Path, name: str) -> None:
    _solve_file(shared_dir, name, 200)


@pytest.mark.slow
@pytest.mark.parametrize("name, limit", [("puzzles3_magictour_top1465.txt", 1465),
                                         ("puzzles5_forum_hardest_1905_11+.txt", 2000)])
def test_solver_on_hard_puzzles_all(shared_dir: Path, name: str, limit: int) -> None:
    _solve_file(shared_dir, name, limit)


def test_uniqueness_and_rating(shared_dir: Path) -> None:
    q = S.parse_text(shared_dir / "data" / "sudoku" / "puzzles3_magictour_top1465.txt", limit=3).questions[0]
    assert S.has_unique_solution(q)
    assert S.rating(q) > 0  # the hard list needs guesses
    assert S.count_solutions(np.zeros((9, 9), np.int8), 2) == 2
    bad = q.copy()
    bad[0, :2] = 4  # two 4s in a row
    assert S.count_solutions(bad) == 0 and S.solve_one(bad) is None
    assert S.solve(S.solve_one(q)).backtracks == 0  # a full grid needs no search


@pytest.mark.parametrize("n", SIZES)
def test_generator_unique_minimal_and_seeded(n: int) -> None:
    cfg = S.GeneratorConfig(n=n)
    puzzle, solution, rating = S.generate(cfg, np.random.default_rng(3))
    again = S.generate(cfg, np.random.default_rng(3))
    assert (again[0] == puzzle).all() and (again[1] == solution).all() and again[2] == rating
    assert S.is_valid_solution(solution, puzzle)
    assert S.count_solutions(puzzle) == 1
    for cell in np.flatnonzero(puzzle):  # minimal: every given is needed
        fewer = puzzle.copy().reshape(-1)
        fewer[cell] = 0
        assert S.count_solutions(fewer.reshape(n, n)) == 2


def test_generator_difficulty_controls() -> None:
    rng = np.random.default_rng(0)
    puzzle, _, _ = S.generate(S.GeneratorConfig(n=9, target_givens=40), rng)
    assert (puzzle != 0).sum() == 40 and S.has_unique_solution(puzzle)
    puzzle, _, rating = S.generate(S.GeneratorConfig(n=9, min_rating=1), rng)
    assert rating >= 1 and S.rating(puzzle) == rating
    with pytest.raises(DataError, match="rating"):
        S.generate(S.GeneratorConfig(n=4, min_rating=1000, max_attempts=3), rng)
    with pytest.raises(ValueError):
        S.GeneratorConfig(n=5)


def _full_grid(n: int, seed: int) -> np.ndarray:
    return S.random_full_grid(n, np.random.default_rng(seed))


@settings(max_examples=25, deadline=None)
@given(n=st.sampled_from(SIZES), seed=st.integers(0, 2**32 - 1), holes=st.floats(0, 1))
def test_augmentation_keeps_validity_and_inverts(n: int, seed: int, holes: float) -> None:
    rng = np.random.default_rng(seed)
    solution = _full_grid(n, seed)
    puzzle = np.where(rng.random((n, n)) < holes, 0, solution)
    aug = S.random_augmentation(n, rng)
    a_sol, a_puz = S.augment(solution, aug), S.augment(puzzle, aug)
    assert S.is_valid_solution(a_sol, a_puz)
    assert (a_puz == 0).sum() == (puzzle == 0).sum()
    assert (S.unaugment(a_sol, aug) == solution).all() and (S.unaugment(a_puz, aug) == puzzle).all()
    if n == 6:
        assert not aug.transpose  # 2x3 boxes would become 3x2


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from(SIZES), seed=st.integers(0, 2**32 - 1))
def test_batched_augmentations_equal_one_at_a_time_and_keep_validity(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    solutions = np.stack([_full_grid(n, seed + i) for i in range(6)])
    puzzles = np.where(rng.random(solutions.shape) < 0.5, 0, solutions)
    augs = S.random_augmentations(n, len(solutions), rng)
    a_sol, a_puz = S.augment_many(solutions, augs), S.augment_many(puzzles, augs)
    for i in range(len(solutions)):
        assert (a_sol[i] == S.augment(solutions[i], augs[i])).all()
        assert (a_puz[i] == S.augment(puzzles[i], augs[i])).all()
        assert S.is_valid_solution(a_sol[i], a_puz[i])
        assert (S.unaugment(a_sol[i], augs[i]) == solutions[i]).all()
    if n == 6:
        assert not augs.transpose.any()
    # Draws differ from one another (the transforms are random, not one transform repeated).
    assert len({augs[i] for i in range(len(solutions))}) > 1


@settings(max_examples=20, deadline=None)
@given(n=st.sampled_from(SIZES), seed=st.integers(0, 2**32 - 1))
def test_each_primitive_inverts(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, n + 1, (n, n))
    br, bc = S.box_shape(n)
    digit_map = np.concatenate([[0], rng.permutation(np.arange(1, n + 1))])
    assert (S.relabel_digits(S.relabel_digits(grid, digit_map), S.inverse_digit_map(digit_map)) == grid).all()
    rows, cols = S.random_line_permutation(n, br, rng), S.random_line_permutation(n, bc, rng)
    assert (S.permute_lines(S.permute_lines(grid, rows, cols), np.argsort(rows), np.argsort(cols)) == grid).all()
    # Row permutations keep every row within its band as a set of bands.
    assert sorted({int(r) // br for r in rows[:br]}) == [int(rows[0]) // br]


def test_validity_checker_rejects() -> None:
    grid = _full_grid(9, 1)
    assert S.is_valid_solution(grid) and S.is_valid_solution(grid, np.where(grid > 5, grid, 0))
    swapped = grid.copy()
    swapped[0, [0, 1]] = swapped[0, [1, 0]]  # rows still fine, columns broken
    assert not S.is_valid_solution(swapped)
    assert not S.is_valid_solution(np.where(grid == 1, 0, grid))  # incomplete
    givens = np.zeros_like(grid)
    givens[0, 0] = grid[0, 0] % 9 + 1
    assert not S.is_valid_solution(grid, givens)  # disagrees with a given
    # A completion other than the recorded one still counts.
    other = S.augment(grid, S.SudokuAugmentation(tuple([0, 2, 1, *range(3, 10)]), False, tuple(range(9)),
                                                 tuple(range(9))))
    assert S.is_valid_solution(other, np.where((grid == 1) | (grid == 2), 0, grid))
    # Bands are fine but boxes broken: shift each row's digits (a Latin square that is no Sudoku).
    latin = (np.arange(9)[:, None] + np.arange(9)[None, :]) % 9 + 1
    assert not S.is_valid_solution(latin)
    tokens = S.encode(np.stack([grid, swapped]))
    assert S.valid_token_solutions(tokens, S.encode(np.zeros((2, 9, 9), np.int8))).tolist() == [True, False]


def test_tokens() -> None:
    grid = np.array(S.parse_line("1." + "." * 79))
    tokens = S.encode(grid)
    assert tokens.shape == (81,) and tokens[0] == 2 and tokens[1] == S.BLANK_TOKEN and tokens.max() <= 10
    assert S.vocab_size(9) == 11 and S.vocab_size(4) == 6
    assert (S.decode(tokens) == grid).all()


def test_parse_errors_name_file_line_and_problem(tmp_path: Path) -> None:
    good = "." * 81
    text = tmp_path / "p.txt"
    text.write_text(f"# comment\n{good}\n{'.' * 80}\n")
    with pytest.raises(DataError, match=rf"{text}:3: expected 81 characters .* got 80"):
        S.parse_text(text)
    four = tmp_path / "four.txt"
    four.write_text("1234" * 3 + "...5\n")
    with pytest.raises(DataError, match=rf"{four}:1: character '5' at position 15 is not '.' or a digit 1-4"):
        S.parse_text(four, n=4)
    csv = tmp_path / "s.csv"
    answer = S.format_grid(_full_grid(9, 0))
    csv.write_text(f"source,question,answer,rating\nx,{good},{answer},3\ny,{good},{answer[:-1]}.,2\n")
    with pytest.raises(DataError, match=rf"{csv}:3 \(answer\): blank at position 80"):
        S.parse_csv(csv)
    csv.write_text(f"source,question,answer,rating\nx,{good},{answer}\n")
    with pytest.raises(DataError, match=rf"{csv}:2: expected 4 fields"):
        S.parse_csv(csv)
    csv.write_text(f"source,question,answer,rating\nx,{answer[:1]}{'.' * 80},{S.format_grid(_full_grid(9, 1))},1\n")
    with pytest.raises(DataError, match=rf"{csv}:2: the answer disagrees"):
        S.parse_csv(csv)


def test_parse_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(4):
        q, a, r = S.generate(S.GeneratorConfig(), rng)
        rows.append(f"gen,{S.format_grid(q)},{S.format_grid(a)},{r}")
    path = tmp_path / "s.csv"
    path.write_text("source,question,answer,rating\n" + "\n".join(rows) + "\n")
    records = S.parse_csv(path)
    assert len(records) == 4 and records.answers is not None
    assert all(S.is_valid_solution(a, q) for q, a in zip(records.questions, records.answers, strict=True))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_builder_from_text_is_seeded_and_valid(tmp_path: Path, shared_dir: Path) -> None:
    cfg = S.SudokuBuildConfig(source="text", path=shared_dir / "data" / "sudoku" / "puzzles3_magictour_top1465.txt",
                              limit=30, subsample=10, num_aug=4, test_fraction=0.2, seed=7)
    counts = S.build_dataset(tmp_path / "a", cfg)
    S.build_dataset(tmp_path / "b", cfg)
    assert counts == {"train_groups": 10, "train_examples": 50, "test_examples": 6}
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    S.build_dataset(tmp_path / "c", S.SudokuBuildConfig(**{**cfg.__dict__, "seed": 8}))
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    assert find_problems(tmp_path / "a") == []
    data = load_dataset(tmp_path / "a")
    a = data.train.sets["all"]
    assert data.train.meta.vocab_size == 11 and data.train.meta.seq_len == 81
    assert a.group_indices.tolist() == list(range(0, 51, 5))
    inputs, labels = S.decode(np.asarray(a.inputs)), S.decode(np.asarray(a.labels))
    assert S.valid_solutions(labels, inputs).all()
    assert (np.asarray(a.inputs) >= 1).all() and (np.asarray(a.labels) >= 2).all()


def test_builder_generate_small_grids(tmp_path: Path) -> None:
    cfg = S.SudokuBuildConfig(source="generate", n=4, count=12, num_aug=2, test_fraction=0.25,
                              generator=S.GeneratorConfig(n=4), seed=1)
    S.build_dataset(tmp_path / "g", cfg)
    data = load_dataset(tmp_path / "g")
    assert data.train.meta.vocab_size == 6 and data.train.meta.seq_len == 16
    assert data.test is not None and data.test.sets["all"].num_examples == 3
    a = data.train.sets["all"]
    assert S.valid_solutions(S.decode(np.asarray(a.labels), 4), S.decode(np.asarray(a.inputs), 4)).all()


def test_hub_download_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys
    import types

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(DataError, match=r"trm\[hub\]"):
        S.download_sudoku_extreme()

    def offline(*args: object, **kwargs: object) -> str:
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=offline))
    with pytest.raises(DataError, match="could not download train.csv .*ConnectionError: no network.*--csv"):
        S.build_dataset(tmp_path / "h", S.SudokuBuildConfig(source="hub"))
    assert not (tmp_path / "h").exists()
