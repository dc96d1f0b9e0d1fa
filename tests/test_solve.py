"""`trm solve`, `trm.Solver` and ARC scoring through `trm eval`: a stub model whose answer after each step
is set (to check the trace, validity and the step the answer settles), and small random-weight
checkpoints (to check the commands end to end and their errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from stubs import stepwise

from trm.checkpoint import save_checkpoint
from trm.cli import main
from trm.models import build_model, config_from_dict
from trm.solve import Solver
from trm.tasks.arc.build import ArcBuildConfig, build_arc
from trm.tasks.maze import MazeTask
from trm.tasks.sudoku import SudokuTask
from trm.tasks.sudoku import puzzles as sudoku

GRID4 = np.array([[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]])


def _puzzle4() -> np.ndarray:
    puzzle = GRID4.copy()
    puzzle[0, :2] = 0
    puzzle[3, 3] = 0
    return puzzle


def test_solver_trace_validity_and_settling_step() -> None:
    puzzle = _puzzle4()
    wrong = GRID4.copy()
    wrong[0, :2] = [2, 1]  # breaks the columns
    answers = [sudoku.encode(g).reshape(-1) for g in (puzzle, wrong, GRID4, GRID4)]
    solver = Solver(stepwise(answers, [-2.0, -1.0, 3.0, 4.0], vocab=6), SudokuTask(4))
    text = "".join(str(v) if v else "." for v in puzzle.reshape(-1))
    s = solver.solve_one(text)
    assert s.valid is True and s.settled == 3 and s.halted_at == 3 and s.stopped == 4
    assert [s.changed(k) for k in (1, 2, 3, 4)] == [0, 3, 2, 0]  # step 2 fills the 3 blanks
    np.testing.assert_array_equal(sudoku.decode(s.answer, 4), GRID4)
    assert s.text.splitlines()[:3] == ["1 2 | 3 4", "3 4 | 1 2", "----+----"]
    # early exit: the answer comes from the step where the head first fires
    early = Solver(stepwise(answers, [-2.0, 1.0, 3.0, 4.0], vocab=6), SudokuTask(4), policy="early").solve_one(text)
    assert early.stopped == 2 and early.valid is False


def test_solver_batches_like_single_solves() -> None:
    answers = [sudoku.encode(GRID4).reshape(-1)] * 2
    solver = Solver(stepwise(answers, [0.5, 0.5], vocab=6), SudokuTask(4), batch_size=2)
    puzzles = [sudoku.encode(_puzzle4()).reshape(-1)] * 5
    many = solver.solve(puzzles)
    assert len(many) == 5 and all(s.valid for s in many)
    assert all(np.array_equal(s.answer, solver.solve_one(puzzles[0]).answer) for s in many)


def test_solver_rejects_a_task_of_another_size() -> None:
    with pytest.raises(ValueError, match="reads 16 tokens"):
        Solver(stepwise([np.ones(16, np.int64)], [0.0], vocab=6), MazeTask(5))


# ---------------------------------------------------------------------------------------------
# Commands on random-weight checkpoints


def _checkpoint(folder: Path, vocab: int, seq_len: int, ids: int = 1, data: Path | None = None,
                **model: object) -> Path:
    config = config_from_dict(dict(arch="trm", vocab_size=vocab, seq_len=seq_len, num_puzzle_identifiers=ids,
                                   hidden_size=16, num_heads=2, expansion=2, T=1, n=1, layers=1, halt_max_steps=2,
                                   puzzle_emb_ndim=16 if ids > 1 else 0, **model))
    torch.manual_seed(0)
    extra = {"train": {"data": str(data)}} if data else None
    return save_checkpoint(folder, model=build_model(config), step=1, extra=extra)


@pytest.fixture(scope="module")
def sudoku_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("sudoku") / "ckpt", vocab=11, seq_len=81)


HARD = "4.....8.5.3..........7......2.....6.....8.4......1.......6.3.7.5..2.....1.4......"


def test_solve_command_prints_answer_validity_and_trace(sudoku_ckpt: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(sudoku_ckpt), HARD, "--trace", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "after step 1" in out and "after step 2" in out and "answer:" in out
    assert "valid: no" in out  # random weights do not solve Sudoku
    assert "stopped changing after step" in out


def test_solve_command_reads_a_file_of_puzzles(sudoku_ckpt: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "puzzles.txt"
    path.write_text(f"# two puzzles\n{HARD}\n{HARD.replace('4', '.', 1)}\n")
    gif = tmp_path / "solve.gif"
    assert main(["solve", str(sudoku_ckpt), str(path), "--device", "cpu", "--gif", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "== puzzle 1" in out and "== puzzle 2" in out and gif.stat().st_size > 0


@pytest.mark.parametrize("puzzle, message", [
    (HARD[:-1], "expected 81 characters"),
    (HARD[:-1] + "x", "character 'x' at position 80"),
    ("44" + HARD[2:], "digit 4 appears twice in row 1"),
    ("4" + "." * 8 + "4" + "." * 71, "digit 4 appears twice in column 1"),
])
def test_solve_command_names_what_is_wrong_with_a_sudoku(sudoku_ckpt: Path, puzzle: str, message: str,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(sudoku_ckpt), puzzle, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "malformed puzzle" in err and message in err


@pytest.mark.parametrize("rows, message", [
    (["S    ", "     ", "     ", "     ", "    "], "row 5 has 4 characters"),
    (["S    ", "     ", "  x  ", "     ", "    G"], "character 'x'"),
    (["S    ", "     ", "     ", "     ", "     "], "exactly one goal 'G', found 0"),
    (["S   #", "   #G", "  #  ", " #   ", "#    "], "cannot be reached"),
    (["S    ", "     ", "     ", "     "], "expected 5 rows"),
])
def test_solve_command_names_what_is_wrong_with_a_maze(tmp_path: Path, rows: list[str], message: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    ckpt = _checkpoint(tmp_path / "maze", vocab=6, seq_len=25)
    path = tmp_path / "maze.txt"
    path.write_text("\n".join(rows) + "\n")
    assert main(["solve", str(ckpt), str(path), "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err


def test_solve_command_on_a_maze(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = _checkpoint(tmp_path / "maze", vocab=6, seq_len=25)
    path = tmp_path / "maze.txt"
    path.write_text("S    \n ### \n     \n ### \n    G\n")
    assert main(["solve", str(ckpt), str(path), "--device", "cpu", "--augment", "3"]) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "valid: " in out


def test_solve_command_on_a_corrupt_checkpoint(sudoku_ckpt: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    assert main(["solve", str(bad), HARD]) == 2
    assert "corrupt JSON" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# ARC through `trm eval` and `trm solve`


def _arc_task(seed: int, n_test: int = 1) -> dict:
    rng = np.random.default_rng(seed)

    def pair() -> dict:
        g = rng.integers(0, 10, size=tuple(rng.integers(2, 5, size=2)))
        return {"input": g.tolist(), "output": np.fliplr(g).tolist()}

    return {"train": [pair(), pair()], "test": [pair() for _ in range(n_test)]}


@pytest.fixture(scope="module")
def arc_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict]:
    root = tmp_path_factory.mktemp("arc")
    source = root / "kaggle"
    source.mkdir()
    tasks = {"t1": _arc_task(1), "t2": _arc_task(2, n_test=2)}
    for subset, chosen in (("training", {"t0": _arc_task(0)}), ("evaluation", tasks)):
        (source / f"arc-agi_{subset}_challenges.json").write_text(json.dumps(
            {k: {"train": t["train"], "test": [{"input": p["input"]} for p in t["test"]]} for k, t in chosen.items()}))
        (source / f"arc-agi_{subset}_solutions.json").write_text(json.dumps(
            {k: [p["output"] for p in t["test"]] for k, t in chosen.items()}))
    data = root / "data"
    build_arc(ArcBuildConfig(source=source, output=data, subsets=("training", "evaluation"), num_variants=3, seed=0),
              log=False)
    ids = len(json.loads((data / "identifiers.json").read_text()))
    ckpt = _checkpoint(root / "ckpt", vocab=12, seq_len=900, ids=ids, data=data, mlp_t=False, pos_encodings="rope")
    return ckpt, data, source, tasks


def test_eval_on_arc_scores_pass_at_k_and_writes_a_submission(arc_run: tuple, capsys: pytest.CaptureFixture) -> None:
    ckpt, data, _, tasks = arc_run
    assert main(["eval", str(ckpt), "--device", "cpu", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "pass@1=" in out and "2/2 tasks answered" in out
    report = json.loads((ckpt / "eval-fixed-2.json").read_text())
    assert report["task"] == "arc" and set(report["arc"]) >= {"pass@1", "pass@2", "pass@1000", "submission"}
    submission = json.loads(Path(report["arc"]["submission"]).read_text())
    assert sorted(submission) == ["t1", "t2"] and len(submission["t2"]) == 2
    assert all(set(entry) == {"attempt_1", "attempt_2"} for entry in submission["t2"])
    assert (ckpt / "eval-fixed-2.html").read_text().startswith("<!DOCTYPE html>")


def test_eval_on_arc_answers_a_challenges_file_without_solutions(arc_run: tuple, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    ckpt, _, source, _ = arc_run
    out_path = tmp_path / "submission.json"
    assert main(["eval", str(ckpt), "--device", "cpu", "--no-report", "--challenges",
                 str(source / "arc-agi_evaluation_challenges.json"), "--submission", str(out_path)]) == 0
    assert "pass@k not computed" in capsys.readouterr().out
    assert sorted(json.loads(out_path.read_text())) == ["t1", "t2"]


def test_solve_command_on_an_arc_task_file(arc_run: tuple, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt, _, _, tasks = arc_run
    path = tmp_path / "t2.json"
    path.write_text(json.dumps(tasks["t2"]))
    assert main(["solve", str(ckpt), str(path), "--device", "cpu", "--variants", "3"]) == 0
    out = capsys.readouterr().out
    assert "test input 1" in out and "test input 2" in out and "correct: " in out
    unknown = tmp_path / "zz.json"
    unknown.write_text(json.dumps(tasks["t2"]))
    assert main(["solve", str(ckpt), str(unknown), "--device", "cpu"]) == 2
    assert "'zz' is not among" in capsys.readouterr().err


def test_eval_command_reports_valid_accuracy_and_the_cost_of_test_time_scaling(tmp_path: Path) -> None:
    data = tmp_path / "sudoku4"
    sudoku.build_dataset(data, sudoku.SudokuBuildConfig(source="generate", n=4, count=60, test_fraction=0.5,
                                                        generator=sudoku.GeneratorConfig(n=4)))
    ckpt = _checkpoint(tmp_path / "ckpt", vocab=6, seq_len=16, data=data)
    assert main(["eval", str(ckpt), "--device", "cpu", "--augment", "2", "--noise", "2", "--steps", "3"]) == 0
    report = json.loads((ckpt / "eval-fixed-3-aug2-noise2.json").read_text())
    summary = report["sets"]["all"]
    assert report["task"] == "sudoku" and report["scaling"]["runs"] == 4 and report["scaling"]["select"] == "vote"
    assert report["cost"]["supervision_steps_per_example"] == 4 * 3 and summary["mean_steps"] == 12
    assert len(summary["valid_accuracy_per_step"]) == 3 and summary["valid_accuracy"] >= summary["exact_accuracy"]
    assert "valid" in (ckpt / "eval-fixed-3-aug2-noise2.html").read_text()


def test_checkpoints_load_in_the_dtype_they_trained_with(tmp_path: Path, monkeypatch) -> None:
    from trm import runtime
    from trm.checkpoint import load_checkpoint

    # a CPU where bf16 is measured faster (with bf16 matrix units); without them see the end of the test
    monkeypatch.setattr(runtime, "cpu_dtype", lambda probe, key: ("bfloat16", "bf16 faster (test)", 1.0))
    config = config_from_dict(dict(arch="trm", vocab_size=6, seq_len=16, hidden_size=16, num_heads=2, T=1, n=1,
                                   layers=1, halt_max_steps=2))
    ckpt = save_checkpoint(tmp_path / "c", model=build_model(config), step=1, extra={"train": {"dtype": "bfloat16"}})
    assert load_checkpoint(ckpt, dtype="train").model.dtype == torch.bfloat16
    assert load_checkpoint(ckpt).model.dtype == torch.float32
    assert Solver.from_checkpoint(ckpt, device="cpu").model.dtype == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_dtype", lambda probe, key: ("float32", "bf16 slower (test)", 1.0))
    slower = load_checkpoint(ckpt, dtype="train")
    assert slower.model.dtype == torch.float32 and "not the training dtype" in slower.numeric
    assert load_checkpoint(ckpt, dtype="bfloat16").model.dtype == torch.bfloat16  # asked for by name


def test_eval_and_solve_take_the_halt_first_ensemble_and_step_noise(tmp_path: Path, sudoku_ckpt: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    data = tmp_path / "sudoku4"
    sudoku.build_dataset(data, sudoku.SudokuBuildConfig(source="generate", n=4, count=40, test_fraction=0.5,
                                                        generator=sudoku.GeneratorConfig(n=4)))
    ckpt = _checkpoint(tmp_path / "ckpt", vocab=6, seq_len=16, data=data)
    assert main(["eval", str(ckpt), "--device", "cpu", "--noise", "3", "--step-noise", "0.2", "--select", "first",
                 "--steps", "3", "--no-report"]) == 0
    report = json.loads((ckpt / "eval-fixed-3-noise3-stepnoise0.2-selectfirst.json").read_text())
    assert report["scaling"]["select"] == "first" and report["scaling"]["step_noise"] == 0.2
    assert report["cost"]["supervision_steps_per_example"] <= 3 * 3
    assert main(["eval", str(ckpt), "--device", "cpu", "--step-noise", "0.2", "--no-report"]) == 2
    assert "noise >= 2" in capsys.readouterr().err
    assert main(["solve", str(sudoku_ckpt), HARD, "--device", "cpu", "--noise", "2", "--select", "first"]) == 0
    assert "answer:" in capsys.readouterr().out
