"""Tasks (`trm.tasks`): valid accuracy on constructed Sudoku and Maze answers, test-time augmentations and
their inverses, parsing and its error messages, recognising the task of a model, and the evaluator's
answer selection and test-time scaling (`trm.evaluate.select`, `Scaling`, `evaluate`) with stub models."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from trm.data import maze, sudoku
from trm.data.format import DataError
from trm.evaluate import Scaling, evaluate, select
from trm.models.act import ACTModel, Batch, State
from trm.tasks import ArcGridTask, MazeTask, SudokuTask, task_for

SUDOKU_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sudoku"
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


def unique_sudoku_pairs(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` (puzzle, solution) token rows of puzzles with a unique solution."""
    rng = np.random.default_rng(seed)
    made = [sudoku.generate(sudoku.GeneratorConfig(n=n), rng)[:2] for _ in range(count)]
    return sudoku.encode(np.stack([m[0] for m in made])), sudoku.encode(np.stack([m[1] for m in made]))


def real_sudoku_lines(count: int) -> list[str]:
    """The first `count` puzzle lines of the shared Sudoku text files (skip when they are absent)."""
    files = sorted(SUDOKU_DATA.glob("*.txt")) if SUDOKU_DATA.is_dir() else []
    if not files:
        pytest.skip(f"shared Sudoku data not found at {SUDOKU_DATA}")
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


def maze_pairs(side: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` generated (question, answer) token rows."""
    config = maze.MazeGeneratorConfig(size=side, min_path_length=side)
    made = maze.generate_many(config, count, np.random.default_rng(seed), batch=64)
    return (np.stack([q.reshape(-1) for q, _, _ in made]).astype(np.int32),
            np.stack([a.reshape(-1) for _, a, _ in made]).astype(np.int32))


def batches(inputs: np.ndarray, labels: np.ndarray) -> list[tuple[str, dict[str, np.ndarray]]]:
    """One evaluation batch of set "all"."""
    return [("all", {"inputs": np.asarray(inputs, np.int32), "labels": np.asarray(labels, np.int32),
                     "puzzle_identifiers": np.zeros(len(inputs), np.int32)})]


class Stub(ACTModel):
    """Every step answers `answer(inputs)` (tokens [B, L]) with q_halt `confidence(inputs)` ([B], default 0);
    records the inputs it saw."""

    def __init__(self, answer, vocab: int, steps: int = 2, confidence=None) -> None:
        super().__init__()
        self.answer, self.vocab, self.halt_max_steps, self.confidence = answer, vocab, steps, confidence
        self.halt_on_continue = False
        self.seen: list[np.ndarray] = []

    def initial_state(self, batch_size: int, device: torch.device) -> State:
        return {"z": torch.zeros(batch_size, 1, device=device)}

    def reset_state(self, state: State, reset: Tensor) -> State:
        return {"z": torch.where(reset.view(-1, 1), 0.0, state["z"])}

    def step(self, state: State, batch: Batch) -> tuple[State, Tensor, Tensor, Tensor]:
        inputs = batch["inputs"].cpu().numpy()
        self.seen.append(inputs)
        tokens = torch.as_tensor(np.asarray(self.answer(inputs)), dtype=torch.long)
        logits = torch.nn.functional.one_hot(tokens, self.vocab).float()
        q = torch.zeros(tokens.shape[0]) if self.confidence is None else torch.as_tensor(
            np.asarray(self.confidence(inputs), np.float32))
        return state, logits, q, q - 1


def echo(inputs: np.ndarray) -> np.ndarray:
    return inputs


def fixed(answer: np.ndarray):
    return lambda inputs: answer


def sudoku_solver(inputs: np.ndarray) -> np.ndarray:
    n = int(round(inputs.shape[-1] ** 0.5))
    solved = [sudoku.solve_one(grid) for grid in sudoku.decode(inputs, n)]
    return sudoku.encode(np.stack([s for s in solved if s is not None]))


def maze_solver(inputs: np.ndarray) -> np.ndarray:
    side = int(round(inputs.shape[-1] ** 0.5))
    solved = [maze.solve(q.reshape(side, side)) for q in inputs]
    return np.stack([s.reshape(-1) for s in solved if s is not None])


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
    model = Stub(fixed(sudoku.encode(other)[None]), vocab=sudoku.vocab_size(4))
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
    model = Stub(fixed(sudoku.encode(broken)[None]), vocab=sudoku.vocab_size(4))
    summary = evaluate(model, batches(inputs, labels), task=SudokuTask(4)).sets["all"].summary()
    assert summary["exact_accuracy"] == 0.0 and summary["valid_accuracy"] == 0.0


def test_evaluate_without_a_task_reports_no_valid_accuracy() -> None:
    puzzle, solution, _ = two_solution_puzzle(4)
    model = Stub(fixed(sudoku.encode(solution)[None]), vocab=sudoku.vocab_size(4))
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
    (11, 81, "arc", "900"),
    (6, 10, "maze", "square"),
])
def test_task_for_rejects_impossible_declarations(vocab: int, seq_len: int, declared: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        task_for(vocab, seq_len, declared)


# ---------------------------------------------------------------------------------------------
# Selecting one answer among candidates


def candidates(*rows: list[int]) -> Tensor:
    """Answers [R, B=1, L] from R token rows."""
    return torch.tensor(rows, dtype=torch.long)[:, None, :]


def test_vote_picks_the_most_frequent_answer_over_a_confident_one() -> None:
    answers = candidates([1, 2], [3, 4], [1, 2])
    chosen, index = select(answers, torch.tensor([[0.0], [9.0], [0.0]]), "vote")
    assert chosen.tolist() == [[1, 2]] and index.tolist()[0] in (0, 2)


def test_vote_breaks_a_tie_by_the_higher_mean_halting_confidence() -> None:
    # [1, 1] has the single most confident run (2.0) but mean sigmoid 0.5; [2, 2] has mean sigmoid(0.5) > 0.5.
    answers = candidates([1, 1], [1, 1], [2, 2], [2, 2])
    chosen, index = select(answers, torch.tensor([[2.0], [-2.0], [0.5], [0.5]]), "vote")
    assert chosen.tolist() == [[2, 2]] and index.tolist()[0] in (2, 3)


def test_vote_is_invariant_to_the_order_of_candidates() -> None:
    gen = torch.Generator().manual_seed(0)
    r, b, length = 6, 16, 5
    options = torch.randint(0, 4, (3, b, length), generator=gen)
    pick = torch.randint(0, 3, (r, b), generator=gen)
    answers = options.gather(0, pick[..., None].expand(r, b, length))
    q_halt = torch.randn(r, b, generator=gen)
    reference, _ = select(answers, q_halt, "vote")
    for _ in range(10):
        order = torch.randperm(r, generator=gen)
        chosen, index = select(answers[order], q_halt[order], "vote")
        assert torch.equal(chosen, reference)
        assert torch.equal(chosen, answers[order].gather(0, index.view(1, -1, 1).expand(1, b, length))[0])


def test_halt_picks_the_most_confident_answer_against_a_majority() -> None:
    answers = candidates([1, 2], [1, 2], [3, 4])
    chosen, index = select(answers, torch.tensor([[0.0], [1.0], [3.0]]), "halt")
    assert chosen.tolist() == [[3, 4]] and index.tolist() == [2]


def test_select_works_per_example() -> None:
    answers = torch.tensor([[[1], [5]], [[2], [5]], [[2], [6]]])  # [R=3, B=2, L=1]
    q_halt = torch.tensor([[5.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert select(answers, q_halt, "vote")[0].tolist() == [[2], [5]]
    assert select(answers, q_halt, "halt")[0].tolist() == [[1], [6]]


def test_select_rejects_an_unknown_rule() -> None:
    with pytest.raises(ValueError, match="median"):
        select(candidates([1], [2]), torch.zeros(2, 1), "median")


# ---------------------------------------------------------------------------------------------
# Test-time scaling


def test_scaling_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        Scaling(augment=0)
    with pytest.raises(ValueError):
        Scaling(noise=0)
    with pytest.raises(ValueError, match="noise_scale"):
        Scaling(noise=2, noise_scale=0)
    with pytest.raises(ValueError):
        Scaling(select="best")


def test_scaling_rule_and_runs() -> None:
    assert Scaling(augment=4).rule == "vote" and Scaling(noise=3).rule == "halt"
    assert Scaling(augment=4, noise=3).runs == 12
    assert Scaling(augment=4, select="halt").to_dict()["select"] == "halt"


@pytest.mark.parametrize("augment", [2, 4, 8])
@pytest.mark.parametrize("rule", ["vote", "halt"])
def test_augmented_views_are_inverted_back_before_the_choice(augment: int, rule: str) -> None:
    questions, _ = maze_pairs(6, 4)

    def transformed_views_are_surer(inputs: np.ndarray) -> np.ndarray:
        # were a view's answer not mapped back, it would win the choice and be wrong
        return (inputs != questions).any(-1).astype(np.float32)

    model = Stub(echo, vocab=maze.VOCAB_SIZE, steps=3, confidence=transformed_views_are_surer)
    scaling = Scaling(augment=augment, select=rule)
    result = evaluate(model, batches(questions, questions), task=MazeTask(6), scaling=scaling)
    summary = result.sets["all"].summary()
    assert summary["exact_accuracy"] == 1.0
    assert summary["exact_accuracy_per_step"] == [1.0, 1.0, 1.0]
    assert result.to_dict()["cost"]["supervision_steps_per_example"] == augment * 3
    assert result.to_dict()["cost"]["relative_to_one_answer"] == augment
    # the model saw the original and augment - 1 transformed views, each for 3 steps
    assert len(model.seen) == augment * 3
    np.testing.assert_array_equal(model.seen[0], questions)
    assert any(not np.array_equal(seen, questions) for seen in model.seen)


def test_noise_trajectories_keep_the_answer_and_multiply_the_cost() -> None:
    questions, _ = maze_pairs(6, 4)
    model = Stub(echo, vocab=maze.VOCAB_SIZE, steps=3)
    scaling = Scaling(noise=3, noise_scale=0.5)
    result = evaluate(model, batches(questions, questions), task=MazeTask(6), scaling=scaling)
    assert result.sets["all"].summary()["exact_accuracy"] == 1.0
    assert result.to_dict()["cost"]["supervision_steps_per_example"] == 3 * 3
    assert result.to_dict()["scaling"]["runs"] == 3
    assert all(np.array_equal(seen, questions) for seen in model.seen)  # noise perturbs the state, not the inputs


def test_without_scaling_the_cost_is_the_step_budget() -> None:
    questions, _ = maze_pairs(6, 2)
    result = evaluate(Stub(echo, vocab=maze.VOCAB_SIZE, steps=3), batches(questions, questions), task=MazeTask(6))
    assert result.to_dict()["cost"]["supervision_steps_per_example"] == 3


def test_augmented_sudoku_solver_stays_exact() -> None:
    # a solver sees each relabelled, permuted view; its answers, mapped back, must be the unique solution
    inputs, labels = unique_sudoku_pairs(6, 3)
    model = Stub(sudoku_solver, vocab=sudoku.vocab_size(6), steps=1,
                 confidence=lambda seen: (seen != inputs).any(-1).astype(np.float32))  # views win ties
    result = evaluate(model, batches(inputs, labels), task=SudokuTask(6), scaling=Scaling(augment=4))
    summary = result.sets["all"].summary()
    assert summary["exact_accuracy"] == 1.0 and summary["valid_accuracy"] == 1.0
    assert any(not np.array_equal(seen, inputs) for seen in model.seen)


def test_augmented_maze_solver_gives_valid_paths() -> None:
    questions, answers = maze_pairs(8, 4, seed=3)
    model = Stub(maze_solver, vocab=maze.VOCAB_SIZE, steps=1)
    result = evaluate(model, batches(questions, answers), task=MazeTask(8), scaling=Scaling(augment=5))
    assert result.sets["all"].summary()["valid_accuracy"] == 1.0


def test_augmentation_scaling_needs_a_task_with_transforms() -> None:
    questions, _ = maze_pairs(6, 1)
    model = Stub(echo, vocab=maze.VOCAB_SIZE)
    with pytest.raises(ValueError, match="augmentation"):
        evaluate(model, batches(questions, questions), scaling=Scaling(augment=2))
    with pytest.raises(ValueError, match="augmentation"):
        evaluate(model, batches(questions, questions), task=ArcGridTask(), scaling=Scaling(augment=2))
