"""Every mistake answered with a message: the command line run in-process on bad input exits with status 2
and one line `trm <command>: ...` naming the field or file, the value and what is allowed, no traceback;
and nothing a user made is changed by it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny_data import write_copy_task

from trm.cli import main

MODEL = dict(arch="trm", hidden_size=32, num_heads=2, T=1, n=1, layers=1, puzzle_emb_ndim=0, halt_max_steps=2,
             halt_exploration_prob=0.0)
SUDOKU_MODEL = dict(arch="trm", mlp_t=True, pos_encodings="none", hidden_size=16, num_heads=2, T=1, n=1, layers=1,
                    puzzle_emb_ndim=16, puzzle_emb_len=1, halt_max_steps=2, halt_exploration_prob=0.0)
UNSOLVABLE_4X4 = "12........3...4."
"""Consistent givens (no digit twice in a unit), but row 1 column 3 can hold neither 3 nor 4: no solution."""


def recipe(folder: Path, data: Path, model: dict, **changes) -> Path:
    values = dict(data=str(data), run_dir=str(folder / "run"), model=model, global_batch_size=8, steps=2, lr=1e-3,
                  lr_warmup_steps=1, log_every=1, eval_max_batches=1, device="cpu", dtype="float32", compile="off")
    values.update(changes)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny run (2 steps) on the copy task: its recipe, data and run folder."""
    root = tmp_path_factory.mktemp("copy")
    data = write_copy_task(root / "data")
    path = recipe(root, data, MODEL)
    assert main(["train", str(path)]) == 0
    return {"root": root, "recipe": path, "data": data, "run": root / "run"}


@pytest.fixture(scope="module")
def sudoku_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 4x4 Sudoku model (2 steps: its answers are poor, which is all these cases need)."""
    root = tmp_path_factory.mktemp("sudoku")
    assert main(["build", "sudoku", str(root / "data"), "--generate", "40", "--size", "4",
                 "--test-fraction", "0.25"]) == 0
    assert main(["train", str(recipe(root, root / "data", SUDOKU_MODEL))]) == 0
    return root / "run"


def one_line(capsys: pytest.CaptureFixture, command: str, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message"
    last = err[-1]
    assert "Traceback" not in "\n".join(err)
    assert last.startswith(f"trm {command}: "), last
    for w in words:
        assert w in last, (w, last)
    return last


# --- training: recipes and overrides ---------------------------------------------------------

TRAIN_OVERRIDES = [
    ("steps=abc", ("steps='abc'", "integer")),
    ("lr=abc", ("lr='abc'", "number")),
    ("model.hidden_size=big", ("hidden_size='big'", "integer")),
    ("model=5", ("model=5", "mapping")),
    ("lr=-1e-3", ("lr=-0.001", "0 or more")),
    ("ema_rate=2", ("ema_rate=2", "[0, 1)")),
    ("log_every=0", ("log_every=0", "positive")),
    ("steps=2.5", ("steps=2.5", "whole number")),
    ("steps=-3", ("steps=-3", "positive")),
    ("lr_warmup_steps=-10", ("lr_warmup_steps=-10", "0 or more")),
    ("checkpoint_every=-1", ("checkpoint_every=-1", "0 (only at the end)")),
    ("epochs=-1", ("epochs=-1", "positive")),
    ("keep_last=-1", ("keep_last=-1", "0 (keep every checkpoint)")),
    ("global_batch_size=0", ("global_batch_size=0", "positive")),
    ("beta2=1", ("beta2=1", "[0, 1)")),
    ("stop_at_accuracy=2", ("stop_at_accuracy=2", "(0, 1]")),
    ("loggers=[mlflow]", ("loggers=['mlflow']", "tensorboard, wandb")),
    ("compile=maybe", ("compile='maybe'", "'auto', 'on', 'off'")),
    ("dtype=float16", ("dtype='float16'", "float32")),
    ("ema=sometimes", ("ema='sometimes'", "true or false")),
    ("model.halt_max_steps=0", ("halt_max_steps=0", "at least 1")),
    ("lr.peak=1", ("lr is", "not a group")),
    ("nonsense", ("expected key=value",)),
    ("colour=blue", ("unknown setting", "colour")),
]


@pytest.mark.parametrize("override,words", TRAIN_OVERRIDES, ids=[o for o, _ in TRAIN_OVERRIDES])
def test_a_bad_override_is_one_line_naming_field_value_and_range(override: str, words: tuple[str, ...],
                                                                  copy_run: dict[str, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "fresh"
    assert main(["train", str(copy_run["recipe"]), f"run_dir={run_dir}", override]) == 2
    one_line(capsys, "train", *words)
    assert not run_dir.exists()  # nothing half-made left behind


def test_compile_off_on_the_command_line_is_the_setting_not_a_boolean(copy_run: dict[str, Path]) -> None:
    from trm.train import load_recipe

    assert load_recipe(str(copy_run["recipe"]), ["compile=off"]).compile == "off"
    assert load_recipe(str(copy_run["recipe"]), ["compile=on"]).compile == "on"
    assert load_recipe(str(copy_run["recipe"]), ["steps=1e3"]).steps == 1000


def test_a_broken_recipe_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    assert main(["train", str(bad)]) == 2
    one_line(capsys, "train", "not valid YAML")
    bad.write_text("- 1\n- 2\n")
    assert main(["train", str(bad)]) == 2
    one_line(capsys, "train", "mapping of settings")
    bad.write_text("steps: 3\n")
    assert main(["train", str(bad)]) == 2
    one_line(capsys, "train", "missing setting", "data", "model")


def test_a_run_folder_that_cannot_be_created(copy_run: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["train", str(copy_run["recipe"]), f"run_dir={blocker / 'run'}"]) == 2
    one_line(capsys, "train", "run_dir=", "cannot create it")
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(copy_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(copy_run["recipe"]), f"run_dir={tmp_path / 'r'}", "device=cuda"]) == 2
    one_line(capsys, "train", "device='cuda'", "no CUDA")
    assert main(["eval", str(copy_run["run"]), "--device", "cuda"]) == 2
    one_line(capsys, "eval", "no CUDA")


@pytest.mark.parametrize("change,words", [
    ("model.hidden_size=64", ("configuration differs", "model.hidden_size: 32 -> 64")),
    ("global_batch_size=16", ("configuration differs", "global_batch_size: 8 -> 16")),
])
def test_resuming_with_a_changed_configuration(change: str, words: tuple[str, ...], copy_run: dict[str, Path],
                                               tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(copy_run["run"], run)
    before = sorted(p.name for p in run.iterdir())
    assert main(["train", str(copy_run["recipe"]), f"run_dir={run}", "steps=4", change, "--resume"]) == 2
    one_line(capsys, "train", *words)
    assert sorted(p.name for p in run.iterdir()) == before


def test_resume_and_restart_together(copy_run: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:  # argparse: the two options exclude each other
        main(["train", str(copy_run["recipe"]), "--resume", "--restart"])
    assert e.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# --- eval ------------------------------------------------------------------------------------

EVAL_CASES = [
    (["--steps", "-3"], ("--steps -3", "positive")),
    (["--steps", "0"], ("--steps 0", "positive")),
    (["--batch-size", "0"], ("--batch-size 0", "positive")),
    (["--max-batches", "0"], ("--max-batches 0", "positive")),
    (["--augment", "0"], ("must be >= 1",)),
]


@pytest.mark.parametrize("options,words", EVAL_CASES, ids=[" ".join(o) for o, _ in EVAL_CASES])
def test_eval_options_that_cannot_work(options: list[str], words: tuple[str, ...], copy_run: dict[str, Path],
                                       capsys: pytest.CaptureFixture) -> None:
    before = sorted(p.name for p in copy_run["run"].rglob("*"))
    assert main(["eval", str(copy_run["run"]), "--device", "cpu", *options]) == 2
    one_line(capsys, "eval", *words)
    assert sorted(p.name for p in copy_run["run"].rglob("*")) == before  # no result file written


def test_eval_of_a_model_as_another_task(sudoku_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(sudoku_run), "--task", "maze", "--device", "cpu"]) == 2
    one_line(capsys, "eval", "--task maze", "holds sudoku puzzles")
    assert main(["eval", str(sudoku_run), "--task", "arc", "--device", "cpu"]) == 2
    one_line(capsys, "eval", "--task arc")


def test_eval_on_a_dataset_the_model_cannot_read(sudoku_run: Path, copy_run: dict[str, Path],
                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(sudoku_run), "--data", str(copy_run["data"]), "--device", "cpu"]) == 2
    one_line(capsys, "eval", "the checkpoint reads 16 tokens", "has 6")


def test_eval_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    one_line(capsys, "eval", "not a checkpoint folder")


# --- solve -----------------------------------------------------------------------------------

def test_solve_a_path_that_does_not_exist(sudoku_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for arg in (str(tmp_path / "puzzles.txt"), "missing/puzzle.txt", "puzzle.txt"):
        assert main(["solve", str(sudoku_run), arg, "--device", "cpu"]) == 2
        one_line(capsys, "solve", arg, "no such file")
    assert main(["solve", str(sudoku_run), str(tmp_path), "--device", "cpu"]) == 2
    one_line(capsys, "solve", "a folder, not a puzzle file")


@pytest.mark.parametrize("options,words", [(["--steps", "-3"], ("--steps -3", "positive")),
                                           (["--variants", "0"], ("--variants 0", "positive"))])
def test_solve_options_that_cannot_work(options: list[str], words: tuple[str, ...], sudoku_run: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(sudoku_run), "1...............", "--device", "cpu", *options]) == 2
    one_line(capsys, "solve", *words)


def test_solve_says_when_a_sudoku_has_no_solution(sudoku_run: Path, capsys: pytest.CaptureFixture) -> None:
    from trm.tasks.sudoku import puzzles

    assert not puzzles.solve(puzzles.parse_line(UNSOLVABLE_4X4, 4), limit=1).solutions
    assert main(["solve", str(sudoku_run), UNSOLVABLE_4X4, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "this puzzle has no solution" in out and "NOT a solution" in out and "valid: no" in out
    assert main(["solve", str(sudoku_run), "1...............", "--device", "cpu"]) == 0
    assert "no solution" not in capsys.readouterr().out


def test_solve_a_malformed_puzzle(sudoku_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["solve", str(sudoku_run), "11..............", "--device", "cpu"]) == 2
    one_line(capsys, "solve", "givens break the rules")
    assert main(["solve", str(sudoku_run), "1....", "--device", "cpu"]) == 2
    one_line(capsys, "solve", "malformed puzzle")


# --- build -----------------------------------------------------------------------------------

def test_build_overwrite_replaces_only_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    precious = tmp_path / "runs"
    (precious / "train" / "step_0000100").mkdir(parents=True)
    (precious / "notes.txt").write_text("mine")
    assert main(["build", "sudoku", str(precious), "--generate", "8", "--size", "4", "--overwrite"]) == 2
    one_line(capsys, "build", str(precious), "not a dataset folder")
    assert (precious / "notes.txt").read_text() == "mine" and (precious / "train" / "step_0000100").is_dir()
    data = tmp_path / "data"
    assert main(["build", "sudoku", str(data), "--generate", "8", "--size", "4"]) == 0
    assert main(["build", "sudoku", str(data), "--generate", "12", "--size", "4", "--overwrite"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("options,words", [
    (["--test-fraction", "2"], ("test_fraction",)),
    (["--generate", "-5"], ("count",)),
])
def test_build_options_that_cannot_work(options: list[str], words: tuple[str, ...], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    args = ["build", "sudoku", str(tmp_path / "s"), "--size", "4"]
    args += options if "--generate" in options else ["--generate", "4", *options]
    assert main(args) == 2
    one_line(capsys, "build", *words)
    assert not (tmp_path / "s").exists()


def test_build_into_a_folder_that_cannot_be_made(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["build", "sudoku", str(blocker / "data"), "--generate", "4", "--size", "4"]) == 2
    one_line(capsys, "build", "file")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    from trm.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        main(["--debug", "eval", str(tmp_path / "nothing"), "--device", "cpu"])
    assert os.environ.get("TRM_DEBUG") is None


def test_solve_says_truly_when_the_answer_last_changed() -> None:
    import numpy as np

    from trm.commands.solve import settled_line
    from trm.solve import Solution
    from trm.tasks.sudoku import SudokuTask

    a, b = np.full(16, 2), np.full(16, 3)

    def solution(steps: list) -> Solution:
        return Solution(task=SudokuTask(4), puzzle=a, steps=steps, q_halt=[0.0] * len(steps), stopped=len(steps),
                        valid=None)

    assert settled_line(solution([a, a, a, b])) == ("still changing at the last step (4 of 4): more steps may "
                                                    "change it further")
    assert settled_line(solution([a, b, b, b])) == "stopped changing after step 2 of 4"
    assert settled_line(solution([b, b, b, b])) == "stopped changing after step 1 of 4"
    assert settled_line(solution([b])) == "answered after 1 step of 1"


def test_eval_file_names_name_every_option() -> None:
    from argparse import Namespace

    from trm.commands.eval import result_options, tag_parts
    from trm.results import result_tag

    args = Namespace(policy="fixed", blank_ids=True, augment=8, noise=4, noise_scale=0.5, select="vote", seed=3,
                     raw=True, max_batches=10, task="sudoku")
    options = result_options(args, 16, "bfloat16", "data/other", "data/sudoku", "sudoku")
    tag = result_tag(tag_parts(options, "data/sudoku"))
    assert tag == "fixed-16-blank-aug8-noise4-scale0.5-selectvote-seed3-raw-bfloat16-first10-data-other-task-sudoku"
    plain = Namespace(policy="fixed", blank_ids=False, augment=1, noise=1, noise_scale=0.1, select="auto", seed=0,
                      raw=False, max_batches=None, task=None)
    assert result_tag(tag_parts(result_options(plain, 16, "float32", "d", "d", "sudoku"), "d")) == "fixed-16"


def test_build_maze_with_a_negative_count(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["build", "maze", str(tmp_path / "m"), "--generate", "-4"]) == 2
    one_line(capsys, "build", "--generate -4", "at least one")
    assert not (tmp_path / "m").exists()
