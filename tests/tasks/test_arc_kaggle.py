"""The Kaggle flow end to end: a challenges file without solutions is built, trained on (its
demonstrations), evaluated and answered with two attempts for every test input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tasks.arc_helpers import TINY_MODEL, tiny_tasks, write_kaggle
from trm.cli import main
from trm.tasks.arc.build import UNKNOWN_ANSWERS, ArcBuildConfig, build_arc
from trm.tasks.arc.scoring import load_test_tasks
from trm.train import TrainConfig, train


@pytest.fixture(scope="module")
def kaggle_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kaggle")
    source = root / "source"
    write_kaggle(source, "training", tiny_tasks(3, seed=1))
    hidden = tiny_tasks(3, seed=2)
    challenges = write_kaggle(source, "test", hidden, solutions=False)
    data = root / "data"
    build_arc(ArcBuildConfig(source=source, output=data, subsets=("training", "test"), num_variants=3, canvas=6),
              log=False)
    run_dir = root / "run"
    train(TrainConfig(data=str(data), model=TINY_MODEL, run_dir=str(run_dir), global_batch_size=8, steps=3,
                      lr_warmup_steps=1, log_every=1, device="cpu", dtype="float32", compile="off", ema=False),
          progress=False)
    return {"data": data, "run": run_dir, "challenges": challenges, "hidden": root}


def test_unknown_answers_are_built_with_the_reference_placeholder(kaggle_run: dict[str, Path]) -> None:
    data = kaggle_run["data"]
    raw = json.loads((data / "test_puzzles.json").read_text())
    challenges = json.loads(kaggle_run["challenges"].read_text())
    assert set(raw) == set(challenges)
    # the reference's evaluator reads pair["output"] of every test pair: its builder writes [[0]] there
    assert all(p["output"] == [[0]] for t in raw.values() for p in t["test"])
    unknown = json.loads((data / UNKNOWN_ANSWERS).read_text())
    assert unknown == {k: list(range(len(t["test"]))) for k, t in challenges.items()}
    assert all(not t.has_solutions for t in load_test_tasks(data).values())


def test_kaggle_flow_writes_two_attempts_for_every_test_input(kaggle_run: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "submission.json"
    code = main(["eval", str(kaggle_run["run"]), "--challenges", str(kaggle_run["challenges"]),
                 "--submission", str(out), "--device", "cpu", "--no-report", "--dtype", "float32"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "3/3 tasks answered" in printed and "pass@k not computed" in printed
    sub = json.loads(out.read_text())
    challenges = json.loads(kaggle_run["challenges"].read_text())
    assert set(sub) == set(challenges)
    for task_id, task in challenges.items():
        assert len(sub[task_id]) == len(task["test"])
        for entry in sub[task_id]:
            assert set(entry) == {"attempt_1", "attempt_2"}
            for grid in entry.values():  # real predictions (grids of colours), not the no-prediction fallback
                assert isinstance(grid, list) and all(isinstance(r, list) for r in grid)
                assert all(0 <= v <= 9 for r in grid for v in r)
    report = json.loads(next(kaggle_run["run"].glob("**/eval-*.json")).read_text())
    # without --challenges: the dataset's own test tasks, whose answers it knows to be unknown
    assert main(["eval", str(kaggle_run["run"]), "--submission", str(tmp_path / "own.json"), "--device", "cpu",
                 "--no-report", "--dtype", "float32"]) == 0
    assert json.loads((tmp_path / "own.json").read_text()).keys() == sub.keys()
    assert "pass@k not computed" in capsys.readouterr().out
    arc = report["arc"]
    assert arc["tasks_with_predictions"] == 3
    # every test input got votes from its variants (no attempt is the no-prediction fallback)
    assert arc["test_inputs_with_predictions"] == arc["test_inputs"] == sum(len(t["test"]) for t in challenges.values())
