"""Evaluation (`trm.evaluate`) with the stub model: halting policies, the answer selection rules and
test-time scaling (`select`, `Scaling`), and the `trm eval` command on a trained checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from puzzle_helpers import batches, maze_pairs, one_batch
from stubs import responder, scripted
from tiny_data import write_copy_task
from torch import Tensor

from trm.cli import main
from trm.evaluate import EvalOptions, Scaling, evaluate, run_steps, select
from trm.tasks.arc import ArcGridTask
from trm.tasks.maze import MazeTask
from trm.tasks.maze import puzzles as maze
from trm.tasks.sudoku import SudokuTask
from trm.tasks.sudoku import puzzles as sudoku


def _batch(labels: list[int], seq_len: int = 4) -> dict[str, np.ndarray]:
    n = len(labels)
    return {"inputs": np.ones((n, seq_len), dtype=np.int32),
            "labels": np.repeat(np.array(labels, dtype=np.int32)[:, None], seq_len, axis=1),
            "puzzle_identifiers": np.zeros(n, dtype=np.int32)}


def test_early_exit_equals_fixed_when_the_head_fires_at_the_last_step() -> None:
    answers = [[1, 1], [2, 1], [2, 3]]
    halts = [[-1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]]
    model = scripted(answers, halts)
    batch = {k: torch.as_tensor(v) for k, v in _batch([2, 3]).items()}
    fixed, fixed_steps = run_steps(model, batch, 3, "fixed")[:2]
    early, early_steps = run_steps(model, batch, 3, "early")[:2]
    assert torch.equal(fixed, early)
    assert fixed_steps.tolist() == early_steps.tolist() == [3, 3]


def test_early_exit_stops_each_example_when_its_head_fires() -> None:
    answers = [[2, 1, 1], [5, 3, 1], [5, 5, 4]]
    halts = [[1.0, -1.0, -1.0], [1.0, 1.0, -1.0], [1.0, 1.0, -1.0]]
    model = scripted(answers, halts)
    batches = one_batch(_batch([2, 3, 4]))
    fixed = evaluate(model, batches, EvalOptions(policy="fixed")).sets["all"].summary()
    model.sizes.clear()
    early = evaluate(model, batches, EvalOptions(policy="early")).sets["all"].summary()
    assert model.sizes == [3, 2, 1]  # rows that halted leave the batch: early exit saves compute
    assert early["mean_steps"] == (1 + 2 + 3) / 3 < fixed["mean_steps"] == 3
    # early keeps example 0's step-1 answer (right) and example 1's step-2 answer (right);
    # fixed takes the last answers: 5 (wrong), 5 (wrong), 4 (right).
    assert early["exact_accuracy"] == 1.0 and fixed["exact_accuracy"] == 1 / 3
    assert fixed["exact_accuracy_per_step"] == [1 / 3, 1 / 3, 1 / 3]


def test_budget_beyond_training_continues_the_recursion() -> None:
    model = scripted([[1], [1], [2]], [[-1.0]] * 3)
    model.halt_max_steps = 2  # training's N_sup
    result = evaluate(model, one_batch(_batch([2])), EvalOptions(steps=3)).sets["all"].summary()
    assert result["exact_accuracy"] == 1.0 and len(result["exact_accuracy_per_step"]) == 3


def test_padding_rows_are_not_counted() -> None:
    model = scripted([[2, 2]], [[1.0, 1.0]])
    batch = _batch([2, 2])
    batch["labels"][1] = -100
    result = evaluate(model, one_batch(batch)).sets["all"].summary()
    assert result["count"] == 1 and result["exact_accuracy"] == 1.0


def test_eval_command_writes_json_next_to_the_checkpoint(tmp_path: Path, capsys) -> None:
    from trm.train import TrainConfig, train

    data = write_copy_task(tmp_path / "data")
    cfg = TrainConfig(data=str(data), run_dir=str(tmp_path / "run"), steps=3, global_batch_size=8, log_every=100,
                      model=dict(arch="trm", hidden_size=16, num_heads=2, T=1, n=1, layers=1, halt_max_steps=2),
                      device="cpu", dtype="float32", compile="off", eval_max_batches=1)
    train(cfg, progress=False)
    assert main(["eval", str(tmp_path / "run"), "--policy", "early", "--steps", "4", "--blank-ids"]) == 0
    out = capsys.readouterr().out
    assert "exact accuracy after each step" in out
    written = json.loads(next((tmp_path / "run").glob("step_*/eval-early-4-blank.json")).read_text())
    assert written["budget"] == 4 and written["blank_ids"] and written["sets"]["all"]["count"] == 16


def unique_sudoku_pairs(n: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`count` (puzzle, solution) token rows of puzzles with a unique solution."""
    rng = np.random.default_rng(seed)
    made = [sudoku.generate(sudoku.GeneratorConfig(n=n), rng)[:2] for _ in range(count)]
    return sudoku.encode(np.stack([m[0] for m in made])), sudoku.encode(np.stack([m[1] for m in made]))


def echo(inputs: np.ndarray) -> np.ndarray:
    return inputs


def sudoku_solver(inputs: np.ndarray) -> np.ndarray:
    n = int(round(inputs.shape[-1] ** 0.5))
    solved = [sudoku.solve_one(grid) for grid in sudoku.decode(inputs, n)]
    return sudoku.encode(np.stack([s for s in solved if s is not None]))


def maze_solver(inputs: np.ndarray) -> np.ndarray:
    side = int(round(inputs.shape[-1] ** 0.5))
    solved = [maze.solve(q.reshape(side, side)) for q in inputs]
    return np.stack([s.reshape(-1) for s in solved if s is not None])


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

    model = responder(echo, vocab=maze.VOCAB_SIZE, steps=3, confidence=transformed_views_are_surer)
    scaling = Scaling(augment=augment, select=rule)
    result = evaluate(model, batches(questions, questions), EvalOptions(scaling=scaling), task=MazeTask(6))
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
    model = responder(echo, vocab=maze.VOCAB_SIZE, steps=3)
    scaling = Scaling(noise=3, noise_scale=0.5)
    result = evaluate(model, batches(questions, questions), EvalOptions(scaling=scaling), task=MazeTask(6))
    assert result.sets["all"].summary()["exact_accuracy"] == 1.0
    assert result.to_dict()["cost"]["supervision_steps_per_example"] == 3 * 3
    assert result.to_dict()["scaling"]["runs"] == 3
    assert all(np.array_equal(seen, questions) for seen in model.seen)  # noise perturbs the state, not the inputs


def test_without_scaling_the_cost_is_the_step_budget() -> None:
    questions, _ = maze_pairs(6, 2)
    result = evaluate(responder(echo, vocab=maze.VOCAB_SIZE, steps=3), batches(questions, questions), task=MazeTask(6))
    assert result.to_dict()["cost"]["supervision_steps_per_example"] == 3


def test_augmented_sudoku_solver_stays_exact() -> None:
    # a solver sees each relabelled, permuted view; its answers, mapped back, must be the unique solution
    inputs, labels = unique_sudoku_pairs(6, 3)
    model = responder(sudoku_solver, vocab=sudoku.vocab_size(6), steps=1,
                 confidence=lambda seen: (seen != inputs).any(-1).astype(np.float32))  # views win ties
    result = evaluate(model, batches(inputs, labels), EvalOptions(scaling=Scaling(augment=4)), task=SudokuTask(6))
    summary = result.sets["all"].summary()
    assert summary["exact_accuracy"] == 1.0 and summary["valid_accuracy"] == 1.0
    assert any(not np.array_equal(seen, inputs) for seen in model.seen)


def test_augmented_maze_solver_gives_valid_paths() -> None:
    questions, answers = maze_pairs(8, 4, seed=3)
    model = responder(maze_solver, vocab=maze.VOCAB_SIZE, steps=1)
    result = evaluate(model, batches(questions, answers), EvalOptions(scaling=Scaling(augment=5)), task=MazeTask(8))
    assert result.sets["all"].summary()["valid_accuracy"] == 1.0


def test_augmentation_scaling_needs_a_task_with_transforms() -> None:
    questions, _ = maze_pairs(6, 1)
    model = responder(echo, vocab=maze.VOCAB_SIZE)
    with pytest.raises(ValueError, match="augmentation"):
        evaluate(model, batches(questions, questions), EvalOptions(scaling=Scaling(augment=2)))
    with pytest.raises(ValueError, match="augmentation"):
        evaluate(model, batches(questions, questions), EvalOptions(scaling=Scaling(augment=2)), task=ArcGridTask())
