"""One error convention for every command: bad input gives one line `trm <command>: <message>` on stderr
and exit status 2, no traceback; and the shared-data guard of the tests fails under CI=true."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_shared
from tiny_data import write_copy_task

from trm.cli import main


def _one_line_error(capsys: pytest.CaptureFixture, command: str, words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"trm {command}: ") and words in err and "Traceback" not in err and "\n" not in err


def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(tmp_path / "nothing"), "--device", "cpu"]) == 2
    _one_line_error(capsys, "eval", "not a checkpoint folder")
    assert main(["solve", str(tmp_path / "nothing"), "1234", "--augment", "0"]) == 2
    _one_line_error(capsys, "solve", "must be >= 1")
    assert main(["train", "not-a-recipe"]) == 2
    _one_line_error(capsys, "train", "no recipe")
    data = write_copy_task(tmp_path / "data")
    assert main(["build", "maze", str(data), "--generate", "1"]) == 2
    _one_line_error(capsys, "build", "already exists")
    assert main(["build", "sudoku", str(tmp_path / "s"), "--generate", "4", "--test-fraction", "2"]) == 2
    _one_line_error(capsys, "build", "test_fraction")


def test_resume_without_a_checkpoint_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_copy_task(tmp_path / "data")
    assert main(["train", "sudoku4-cpu", f"data={data}", f"run_dir={tmp_path / 'run'}", "--resume"]) == 2
    _one_line_error(capsys, "train", "no checkpoint to resume from")


def test_missing_shared_data_skips_locally_and_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_shared(tmp_path / "missing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_shared(tmp_path / "missing")
    assert require_shared(tmp_path) == tmp_path


def test_the_demo_reuses_its_run_and_refuses_another_dtype(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--steps", "2", "--dtype", "float32"]) == 0
    assert (out / "results.json").is_file() and (out / "solve.gif").is_file()
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--steps", "2", "--dtype", "bfloat16"]) == 2
    _one_line_error(capsys, "demo", "trains in float32, not bfloat16")
    assert main(["demo", "--out", str(out), "--steps", "2"]) == 0  # auto: the run as trained
    assert "reusing " + str(out / "train") in capsys.readouterr().out
