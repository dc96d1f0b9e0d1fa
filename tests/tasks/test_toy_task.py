"""A fourth task added as one folder (`toy_sort/`) and one registry line goes through `trm build`,
`trm train`, `trm eval` (with its HTML report and test-time augmentation) and `trm solve` untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trm import tasks
from trm.cli import main


@pytest.fixture
def sort_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tasks.TASKS, "sort", "toy_sort")  # the registry line


def test_a_toy_task_goes_through_build_train_eval_solve_and_the_report(sort_task: None, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    data, run = tmp_path / "sort", tmp_path / "run"
    assert main(["build", "sort", str(data), "--count", "32", "--length", "5"]) == 0
    assert json.loads((data / "train" / "dataset.json").read_text())["task"] == "sort"

    recipe = tmp_path / "sort.yaml"
    recipe.write_text(f"data: {data}\nrun_dir: {run}\nsteps: 3\nglobal_batch_size: 8\nlog_every: 100\n"
                      "device: cpu\ndtype: float32\ncompile: 'off'\n"
                      "model: {arch: trm, hidden_size: 16, num_heads: 2, T: 1, n: 1, layers: 1, halt_max_steps: 2}\n")
    assert main(["train", str(recipe)]) == 0

    assert main(["eval", str(run), "--device", "cpu", "--augment", "2"]) == 0
    report = json.loads(next(run.glob("step_*/eval-fixed-2-aug2.json")).read_text())
    assert report["task"] == "sort" and report["sets"]["all"]["count"] == 8
    assert "valid_accuracy" in report["sets"]["all"] and report["scaling"]["runs"] == 2
    page = next(run.glob("step_*/eval-fixed-2-aug2.html")).read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64" in page

    capsys.readouterr()
    png = tmp_path / "trace.png"
    assert main(["solve", str(run), "31415", "--device", "cpu", "--trace", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "answer:" in out and "valid: " in out and png.stat().st_size > 0
    assert main(["solve", str(run), "3141", "--device", "cpu"]) == 2
    assert "expected 5 digits" in capsys.readouterr().err
