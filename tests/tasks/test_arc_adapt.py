"""`trm arc adapt` end to end on CPU: a tiny pretrained model, three new tasks without solutions, a budget of
seconds; an interrupted adapt continues from its checkpoint; the budget holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tasks.arc_helpers import TINY_MODEL, tiny_tasks, write_kaggle
from trm.checkpoint import load_checkpoint
from trm.cli import main
from trm.tasks.arc.adapt import AdaptConfig, AdaptError, adapt, parse_budget
from trm.tasks.arc.build import ArcBuildConfig, build_arc
from trm.train import TrainConfig, train


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapt")
    write_kaggle(root / "source", "training", tiny_tasks(3, seed=1))
    write_kaggle(root / "source", "evaluation", tiny_tasks(3, seed=3))
    build_arc(ArcBuildConfig(source=root / "source", output=root / "pre-data", subsets=("training", "evaluation"),
                             num_variants=3, canvas=6), log=False)
    train(TrainConfig(data=str(root / "pre-data"), model=TINY_MODEL, run_dir=str(root / "pre"), global_batch_size=8,
                      steps=4, lr_warmup_steps=1, log_every=2, device="cpu", dtype="float32", compile="off"),
          progress=False)
    challenges = write_kaggle(root / "kaggle", "test", tiny_tasks(3, seed=5), solutions=False)
    return {"run": root / "pre", "challenges": challenges}


def _config(pretrained: dict[str, Path], work: Path, budget: float = 60.0) -> AdaptConfig:
    return AdaptConfig(checkpoint=str(pretrained["run"]), challenges=str(pretrained["challenges"]), work=str(work),
                       submission=str(work / "submission.json"), budget=budget, num_aug=2, max_steps=6,
                       batch_size=4, warmup=1, checkpoint_every=2, eval_batch_size=16, device="cpu",
                       dtype="float32", compile="off")


def _check_submission(path: Path, challenges: Path) -> None:
    sub, asked = json.loads(path.read_text()), json.loads(challenges.read_text())
    assert set(sub) == set(asked)
    for task_id, task in asked.items():
        assert len(sub[task_id]) == len(task["test"])
        assert all(set(e) == {"attempt_1", "attempt_2"} for e in sub[task_id])


def test_adapt_end_to_end_and_resume(pretrained: dict[str, Path], tmp_path: Path) -> None:
    cfg = _config(pretrained, tmp_path / "work")
    first = adapt(cfg, progress_bars=False, stop_after=3)  # interrupted after 3 fine-tuning steps
    assert first["interrupted"] and not (tmp_path / "work" / "submission.json").exists()
    state = json.loads((tmp_path / "work" / "adapt.json").read_text())
    assert state["done"] == ["build"] and state["spent_seconds"] > 0
    assert load_checkpoint(tmp_path / "work" / "run").meta["step"] == 3
    report = adapt(cfg, progress_bars=False)  # the same command again: continues from step 3 to the cap
    assert report["step"] == 6
    asked = json.loads(pretrained["challenges"].read_text())
    inputs = sum(len(t["test"]) for t in asked.values())
    assert report["test_inputs_with_predictions"] == report["test_inputs"] == inputs
    _check_submission(tmp_path / "work" / "submission.json", pretrained["challenges"])
    log = [json.loads(ln) for ln in (tmp_path / "work" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert min(r["step"] for r in log if r.get("kind") == "train") > 0
    state = json.loads((tmp_path / "work" / "adapt.json").read_text())
    assert state["done"] == ["build", "train", "predict"]
    assert state["spent_seconds"] > first["seconds"] > 0


def test_adapt_respects_its_budget(pretrained: dict[str, Path], tmp_path: Path) -> None:
    cfg = _config(pretrained, tmp_path / "work", budget=12.0)
    cfg = AdaptConfig(**{**cfg.__dict__, "max_steps": 1_000_000})
    report = adapt(cfg, progress_bars=False)
    assert report["seconds"] <= 12.0
    assert report["step"] > 0  # it trained, then stopped in time to predict
    _check_submission(tmp_path / "work" / "submission.json", pretrained["challenges"])


def test_adapt_command_and_bad_input(pretrained: dict[str, Path], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_budget("1h30m") == 5400 and parse_budget("45s") == 45 and parse_budget("90") == 90
    with pytest.raises(AdaptError):
        parse_budget("two hours")
    assert main(["arc", "adapt", str(pretrained["run"]), str(tmp_path / "nothing.json")]) == 2
    assert "no such challenges file" in capsys.readouterr().err
    work = tmp_path / "w"
    args = ["arc", "adapt", str(pretrained["run"]), str(pretrained["challenges"]), "--work", str(work),
            "--submission", str(tmp_path / "s.json"), "--budget", "40s", "--num-aug", "1", "--max-steps", "2",
            "--batch-size", "4", "--device", "cpu", "--compile", "off"]
    assert main(args) == 0
    _check_submission(tmp_path / "s.json", pretrained["challenges"])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"x": json.loads(pretrained["challenges"].read_text())["05000000"]}))
    assert main([*args[:3], str(other), *args[4:]]) == 2  # the work folder belongs to another challenges file
    assert "another checkpoint, challenges file" in capsys.readouterr().err
