"""Task adapters (`trm.tasks`): valid accuracy on constructed Sudoku and Maze answers, test-time augmentations
and their inverses, parsing and its error messages, and recognising the task of a model."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import SHARED, require_shared
from puzzle_helpers import batches, maze_pairs
from stubs import responder

from trm.data.format import DataError
from trm.evaluate import evaluate
from trm.tasks import task_for
from trm.tasks.arc import ArcGridTask
from trm.tasks.maze import MazeTask
from trm.tasks.maze import puzzles as maze
from trm.tasks.sudoku import SudokuTask
from trm.tasks.sudoku import puzzles as sudoku

SUDOKU_DATA = SHARED / "data" / "sudoku"
SEEDS = range(6)

# A 4x4 solution with a deadly rectangle: rows 1-2 (one band), columns 1 and 3 (two stacks) hold 1 3 / 3 1.
SOLVED_4X4 = np.array([[1, 2, 3, 4],
                       [3, 4, 1, 2],
                       [2, 1, 4, 3],
                       [4, 3, 2, 1]], np.int8)

# 5x5 maze: S and G at opposite corners, one wall in the centre; many shortest paths of 8 moves.
MAZE_5X5 = ["S    ",
            "     ",
            "  #  ",
            "     ",
            "    G"]


# ---------------------------------------------------------------------------------------------
# Helpers


def deadly_rectangle(grid: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows r1, r2 of one band and columns c1, c2 of two stacks whose corners hold a, b / b, a."""
    n = grid.shape[0]
    br, bc = sudoku.box_shape(n)
    for r1, r2 in itertools.combinations(range(n), 2):
        if r1 // br != r2 // br:
            continue
        for c1, c2 in itertools.combinations(range(n), 2):
            if c1 // bc != c2 // bc and grid[r1, c1] == grid[r2, c2] and grid[r1, c2] == grid[r2, c1]:
                return r1, r2, c1, c2
    return None


def two_solution_puzzle(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(puzzle, recorded solution, the other solution): a full grid with a deadly rectangle blanked."""
    if n == 4:
        solution = SOLVED_4X4.copy()
    else:
        solution = next(g for g in (sudoku.random_full_grid(n, np.random.default_rng(s)) for s in range(50))
                        if deadly_rectangle(g) is not None)
    rect = deadly_rectangle(solution)
    assert rect is not None
    r1, r2, c1, c2 = rect
    puzzle, other = solution.copy(), solution.copy()
    for r, c in itertools.product((r1, r2), (c1, c2)):
        puzzle[r, c] = 0
    other[r1, c1], other[r1, c2] = solution[r1, c2], solution[r1, c1]
    other[r2, c1], other[r2, c2] = solution[r2, c2], solution[r2, c1]
    return puzzle, solution, other


def sudoku_pairs(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` (puzzle, solution) token rows: random full grids with about half the cells blanked."""
    rng = np.random.default_rng(seed)
    solutions = np.stack([sudoku.random_full_grid(n, rng) for _ in range(count)])
    puzzles = np.where(rng.random(solutions.shape) < 0.5, 0, solutions)
    return sudoku.encode(puzzles), sudoku.encode(solutions)


def real_sudoku_lines(count: int) -> list[str]:
    """The first `count` puzzle lines of the shared Sudoku text files (see `require_shared` when they are absent)."""
    files = sorted(require_shared(SUDOKU_DATA).glob("*.txt"))
    lines = []
    for line in files[0].read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
        if len(lines) == count:
            break
    return lines


def maze_grid(rows: list[str]) -> np.ndarray:
    return maze.encode_text("".join(rows), len(rows))


def with_path(question: np.ndarray, cells: list[tuple[int, int]]) -> np.ndarray:
    answer = question.copy()
    for cell in cells:
        answer[cell] = maze.PATH
    return answer


def fixed(answer: np.ndarray):
    return lambda inputs: answer


# ---------------------------------------------------------------------------------------------
# Valid accuracy on constructed answers


@pytest.mark.parametrize("n", [4, 9])
def test_sudoku_valid_accepts_every_completion_and_rejects_broken_ones(n: int) -> None:
    puzzle, solution, other = two_solution_puzzle(n)
    assert sudoku.count_solutions(puzzle, limit=2) == 2
    assert not np.array_equal(solution, other)
    broken = solution.copy()
    r, c = np.argwhere(puzzle == 0)[0]
    broken[r, c] = solution[r, c] % n + 1  # a blank cell filled with another digit: a row now repeats it
    relabelled = np.where(solution == 1, 2, np.where(solution == 2, 1, solution))  # valid, but not the givens
    assert sudoku.is_valid_solution(relabelled)
    predictions = sudoku.encode(np.stack([solution, other, broken, relabelled]))
    inputs = np.repeat(sudoku.encode(puzzle)[None], 4, axis=0)
    assert SudokuTask(n).valid(predictions, inputs).tolist() == [True, True, False, False]


def test_sudoku_valid_rejects_blanks_and_padding_in_the_answer() -> None:
    puzzle, solution, _ = two_solution_puzzle(4)
    with_blank = sudoku.encode(solution)
    with_blank[np.flatnonzero(puzzle.reshape(-1) == 0)[0]] = sudoku.BLANK_TOKEN
    padded = sudoku.encode(solution)
    padded[-1] = sudoku.PAD_TOKEN
    inputs = np.repeat(sudoku.encode(puzzle)[None], 2, axis=0)
    assert SudokuTask(4).valid(np.stack([with_blank, padded]), inputs).tolist() == [False, False]


def test_sudoku_valid_accepts_the_solver_answer_of_real_puzzles() -> None:
    task = SudokuTask(9)
    inputs = np.stack([task.parse(line, where="real") for line in real_sudoku_lines(3)])
    solutions = [sudoku.solve_one(sudoku.decode(row, 9)) for row in inputs]
    assert all(s is not None for s in solutions)
    predictions = sudoku.encode(np.stack(solutions))
    assert task.valid(predictions, inputs).all()
    assert not task.valid(predictions[[1, 2, 0]], inputs).any()  # another puzzle's solution breaks the givens


def test_maze_valid_accepts_any_shortest_path_only() -> None:
    question = maze_grid(MAZE_5X5)
    assert maze.shortest_path_length(question) == 8
    along_top = with_path(question, [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4), (3, 4)])
    along_left = with_path(question, [(1, 0), (2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3)])
    zigzag = with_path(question, [(0, 1), (1, 1), (1, 2), (1, 3), (2, 3), (3, 3), (4, 3)])
    longer = with_path(question, [(0, 1), (0, 2), (1, 2), (1, 1), (2, 1), (3, 1), (4, 1), (4, 2), (4, 3)])
    gap = with_path(question, [(0, 1), (0, 2), (3, 0), (0, 4), (1, 4), (2, 4), (3, 4)])  # (0, 3) moved away
    through_wall = with_path(question, [(1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (3, 4)])
    wall_opened = along_top.copy()
    wall_opened[2, 2] = maze.OPEN
    no_path = question.copy()
    predictions = np.stack([along_top, along_left, zigzag, longer, gap, through_wall, wall_opened, no_path])
    inputs = np.repeat(question.reshape(1, -1), len(predictions), axis=0)
    valid = MazeTask(5).valid(predictions.reshape(len(predictions), -1), inputs)
    assert valid.tolist() == [True, True, True, False, False, False, False, False]


def test_maze_valid_rejects_a_moved_start_or_goal() -> None:
    question = maze_grid(MAZE_5X5)
    answer = with_path(question, [(0, 1), (0, 2), (0, 3), (0, 4), (1, 4), (2, 4), (3, 4)])
    moved_start = answer.copy()
    moved_start[0, 0], moved_start[0, 1] = maze.OPEN, maze.START
    dropped_goal = answer.copy()
    dropped_goal[4, 4] = maze.PATH
    predictions = np.stack([moved_start, dropped_goal]).reshape(2, -1)
    assert not MazeTask(5).valid(predictions, np.repeat(question.reshape(1, -1), 2, axis=0)).any()


def test_evaluate_counts_another_valid_sudoku_completion_as_valid_but_not_exact() -> None:
    puzzle, solution, other = two_solution_puzzle(4)
    inputs, labels = sudoku.encode(puzzle)[None], sudoku.encode(solution)[None]
    model = responder(fixed(sudoku.encode(other)[None]), vocab=sudoku.vocab_size(4))
    summary = evaluate(model, batches(inputs, labels), task=SudokuTask(4)).sets["all"].summary()
    assert summary["exact_accuracy"] == 0.0
    assert summary["valid_accuracy"] == 1.0
    assert summary["valid_accuracy_per_step"] == [1.0, 1.0]


def test_evaluate_counts_a_broken_sudoku_as_neither_exact_nor_valid() -> None:
    puzzle, solution, _ = two_solution_puzzle(4)
    broken = solution.copy()
    r, c = np.argwhere(puzzle == 0)[0]
    broken[r, c] = solution[r, c] % 4 + 1
    inputs, labels = sudoku.encode(puzzle)[None], sudoku.encode(solution)[None]
    model = responder(fixed(sudoku.encode(broken)[None]), vocab=sudoku.vocab_size(4))
    summary = evaluate(model, batches(inputs, labels), task=SudokuTask(4)).sets["all"].summary()
    assert summary["exact_accuracy"] == 0.0 and summary["valid_accuracy"] == 0.0


def test_evaluate_without_a_task_reports_no_valid_accuracy() -> None:
    puzzle, solution, _ = two_solution_puzzle(4)
    model = responder(fixed(sudoku.encode(solution)[None]), vocab=sudoku.vocab_size(4))
    result = evaluate(model, batches(sudoku.encode(puzzle)[None], sudoku.encode(solution)[None]))
    summary = result.sets["all"].summary()
    assert summary["exact_accuracy"] == 1.0 and "valid_accuracy" not in summary


# ---------------------------------------------------------------------------------------------
# Augmentations


@pytest.mark.parametrize("n", [4, 6, 9])
def test_sudoku_augmentation_inverts_and_keeps_solutions_valid(n: int) -> None:
    task = SudokuTask(n)
    puzzles, solutions = sudoku_pairs(n, 4, seed=n)
    changed = False
    for seed in SEEDS:
        aug = task.augmentation(np.random.default_rng(seed))
        moved_puzzles, moved_solutions = aug.apply(puzzles), aug.apply(solutions)
        assert moved_puzzles.shape == puzzles.shape and moved_puzzles.dtype == np.int32
        np.testing.assert_array_equal(aug.invert(moved_puzzles), puzzles)
        np.testing.assert_array_equal(aug.invert(moved_solutions), solutions)
        assert task.valid(moved_solutions, moved_puzzles).all()
        assert ((moved_puzzles == sudoku.BLANK_TOKEN).sum(-1) == (puzzles == sudoku.BLANK_TOKEN).sum(-1)).all()
        changed |= not np.array_equal(moved_solutions, solutions)
    assert changed, "no seed changed the grids: the augmentation is the identity"


@pytest.mark.parametrize("n", [4, 6, 9])
def test_sudoku_augmentation_keeps_padding_rows(n: int) -> None:
    task = SudokuTask(n)
    puzzles, _ = sudoku_pairs(n, 2)
    batch = np.concatenate([puzzles, np.zeros((1, n * n), np.int32)])
    for seed in SEEDS:
        aug = task.augmentation(np.random.default_rng(seed))
        moved = aug.apply(batch)
        assert (moved[-1] == sudoku.PAD_TOKEN).all()
        assert (aug.invert(moved)[-1] == sudoku.PAD_TOKEN).all()
        np.testing.assert_array_equal(aug.invert(moved), batch)


def test_sudoku_augmentation_of_real_puzzles_keeps_the_solver_answer_valid() -> None:
    task = SudokuTask(9)
    inputs = np.stack([task.parse(line) for line in real_sudoku_lines(2)])
    solutions = sudoku.encode(np.stack([sudoku.solve_one(sudoku.decode(row, 9)) for row in inputs]))
    for seed in SEEDS:
        aug = task.augmentation(np.random.default_rng(seed))
        assert task.valid(aug.apply(solutions), aug.apply(inputs)).all()
        np.testing.assert_array_equal(aug.invert(aug.apply(inputs)), inputs)


@pytest.mark.parametrize("side", [6, 9])
def test_maze_augmentation_inverts_and_keeps_paths_valid(side: int) -> None:
    task = MazeTask(side)
    questions, answers = maze_pairs(side, 3, seed=side)
    assert task.valid(answers, questions).all()
    changed = False
    for seed in range(24):  # seeds 0-5 draw only self-inverse symmetries
        aug = task.augmentation(np.random.default_rng(seed))
        moved_questions, moved_answers = aug.apply(questions), aug.apply(answers)
        assert moved_questions.shape == questions.shape
        np.testing.assert_array_equal(aug.invert(moved_questions), questions)
        np.testing.assert_array_equal(aug.invert(moved_answers), answers)
        assert task.valid(moved_answers, moved_questions).all()
        changed |= not np.array_equal(moved_questions, questions)
    assert changed, "no seed changed the mazes: the augmentation is the identity"


def test_maze_augmentation_draws_every_non_identity_symmetry() -> None:
    task = MazeTask(5)
    question = maze_grid(MAZE_5X5).reshape(1, -1)
    question[0, 1] = maze.WALL  # break the diagonal symmetry so that all 8 transforms differ
    images = set()
    for seed in range(64):
        aug = task.augmentation(np.random.default_rng(seed))
        moved = aug.apply(question)
        np.testing.assert_array_equal(aug.invert(moved), question)  # rotations by 90 degrees are not self-inverse
        images.add(moved.tobytes())
    assert question.tobytes() not in images
    assert len(images) == 7


# ---------------------------------------------------------------------------------------------
# Parsing


def test_sudoku_parse_reads_the_one_line_form() -> None:
    line = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"
    tokens = SudokuTask(9).parse(line)
    assert tokens.shape == (81,) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens, sudoku.encode(sudoku.parse_line(line, 9)))
    assert tokens[0] == 4 + sudoku.DIGIT_OFFSET and tokens[1] == sudoku.BLANK_TOKEN


def test_sudoku_parse_accepts_a_grid_over_several_lines_with_box_rules() -> None:
    line = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"
    rows = [line[i:i + 9] for i in range(0, 81, 9)]
    text_rows = [" | ".join(" ".join(row[j:j + 3]) for j in range(0, 9, 3)) for row in rows]
    rule = "------+-------+------"
    text = "\n".join(text_rows[0:3] + [rule] + text_rows[3:6] + [rule] + text_rows[6:9]) + "\n"
    assert "|" in text and "+---" in text
    np.testing.assert_array_equal(SudokuTask(9).parse(text), SudokuTask(9).parse(line))


def test_sudoku_parse_of_real_puzzles_matches_the_text_parser() -> None:
    for line in real_sudoku_lines(3):
        np.testing.assert_array_equal(SudokuTask(9).parse(line), sudoku.encode(sudoku.parse_line(line, 9)))


@pytest.mark.parametrize(("text", "words"), [
    ("." * 80, ["x:", "81"]),
    ("." * 82, ["x:", "81"]),
    ("." * 40 + "x" + "." * 40, ["x:", "'x'"]),
    ("." * 40 + "0" + "." * 39 + "a", ["'a'"]),
    ("11" + "." * 79, ["x:", "twice", "row 1"]),
    ("1" + "." * 8 + "1" + "." * 71, ["twice", "column 1"]),
    ("1" + "." * 9 + "1" + "." * 70, ["twice", "box 1"]),
])
def test_sudoku_parse_errors_name_the_problem(text: str, words: list[str]) -> None:
    with pytest.raises(DataError) as error:
        SudokuTask(9).parse(text, where="x")
    for word in words:
        assert word in str(error.value)


def test_sudoku_parse_rejects_a_digit_beyond_the_grid_size() -> None:
    with pytest.raises(DataError, match="'5'"):
        SudokuTask(4).parse("5" + "." * 15, where="x")


def test_maze_parse_reads_lines_and_the_one_line_form_alike() -> None:
    task = MazeTask(5)
    tokens = task.parse("\n".join(MAZE_5X5) + "\n", where="x")
    assert tokens.shape == (25,) and tokens.dtype == np.int32
    np.testing.assert_array_equal(tokens, maze_grid(MAZE_5X5).reshape(-1))
    np.testing.assert_array_equal(task.parse("".join(MAZE_5X5)), tokens)


def _maze_text(rows: list[str]) -> str:
    return "\n".join(rows)


@pytest.mark.parametrize(("rows", "words"), [
    (["     ", "     ", "  #  ", "     ", "    G"], ["x:", "'S'", "found 0"]),
    (["S    ", "     ", "  #  ", "G    ", "    G"], ["x:", "'G'", "found 2"]),
    (["S    ", "     ", "#####", "     ", "    G"], ["x:", "cannot be reached"]),
    (["S    ", "    ", "  #  ", "     ", "    G"], ["x:", "row 2", "4 characters", "expected 5"]),
    (["S    ", "     ", "  #  ", "     "], ["x:", "expected 5 rows", "got 4"]),
    (["So   ", "     ", "  #  ", "     ", "    G"], ["x:", "'o'"]),
    (["S    ", "     ", "  x  ", "     ", "    G"], ["x:", "'x'"]),
])
def test_maze_parse_errors_name_the_problem(rows: list[str], words: list[str]) -> None:
    with pytest.raises(DataError) as error:
        MazeTask(5).parse(_maze_text(rows), where="x")
    for word in words:
        assert word in str(error.value)


def test_maze_parse_rejects_a_one_line_maze_of_the_wrong_length() -> None:
    with pytest.raises(DataError, match="25"):
        MazeTask(5).parse("S" + " " * 22 + "G", where="x")


# ---------------------------------------------------------------------------------------------
# Recognising the task


@pytest.mark.parametrize(("vocab", "seq_len", "declared", "kind", "size"), [
    (11, 81, None, SudokuTask, 9),
    (8, 36, None, SudokuTask, 6),
    (6, 16, None, SudokuTask, 4),
    (6, 900, None, MazeTask, 30),
    (6, 16, "maze", MazeTask, 4),
    (11, 81, "sudoku", SudokuTask, 9),
    (12, 900, None, ArcGridTask, None),
])
def test_task_for_recognises_the_task(vocab: int, seq_len: int, declared: str | None, kind: type,
                                      size: int | None) -> None:
    task = task_for(vocab, seq_len, declared)
    assert type(task) is kind
    assert task is not None and task.seq_len == seq_len
    if kind is SudokuTask:
        assert task.n == size  # type: ignore[attr-defined]
    elif kind is MazeTask:
        assert task.side == size  # type: ignore[attr-defined]


@pytest.mark.parametrize(("vocab", "seq_len"), [(5, 10), (13, 81), (7, 900), (11, 900)])
def test_task_for_unknown_shapes_gives_none(vocab: int, seq_len: int) -> None:
    assert task_for(vocab, seq_len) is None


@pytest.mark.parametrize(("vocab", "seq_len", "declared", "words"), [
    (11, 81, "chess", "chess"),
    (11, 81, "arc", "vocabulary of 12"),
    (12, 1000, "arc", "seq_len 900 or N"),
    (6, 10, "maze", "square"),
])
def test_task_for_rejects_impossible_declarations(vocab: int, seq_len: int, declared: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        task_for(vocab, seq_len, declared)
