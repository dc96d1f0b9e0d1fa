"""Fine-tuning on a dataset with other puzzle identifiers: rows are matched by puzzle name (kept), the rest start
as a fresh table does; without names a table of another size is an error naming both sizes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.tasks.arc_helpers import TINY_MODEL, tiny_tasks, write_kaggle
from trm.checkpoint import load_checkpoint
from trm.loader import MismatchError
from trm.puzzle_rows import PUZZLE_TABLE, match_puzzle_rows
from trm.tasks.arc.build import ArcBuildConfig, build_arc
from trm.train import TrainConfig, setup, train


def test_rows_by_hand() -> None:
    table = torch.arange(4 * 3, dtype=torch.float32).reshape(4, 3) + 1
    state = {PUZZLE_TABLE: table, "other": torch.ones(2)}
    out, summary = match_puzzle_rows(state, ["<blank>", "A", "B", "C"], ["<blank>", "C", "D", "A", "E"])
    assert torch.equal(out[PUZZLE_TABLE], torch.stack([table[0], table[3], torch.zeros(3), table[1], torch.zeros(3)]))
    assert out["other"] is state["other"]
    assert (summary.kept, summary.new, summary.unused) == (3, 2, 1)
    assert summary.line() == "puzzle rows: 3 kept (matched by name), 2 new (zeros); 1 of the checkpoint's 4 unused"
    mean, _ = match_puzzle_rows(state, ["<blank>", "A", "B", "C"], ["<blank>", "D"], new_rows="mean")
    assert torch.allclose(mean[PUZZLE_TABLE][1], table[1:].mean(0))
    with pytest.raises(ValueError, match="4 rows but its dataset names 3"):
        match_puzzle_rows(state, ["<blank>", "A", "B"], ["<blank>"])


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rows")
    tasks = tiny_tasks(4, seed=1)
    ids = list(tasks)
    write_kaggle(root / "a", "training", {k: tasks[k] for k in ids[:3]})
    write_kaggle(root / "a", "evaluation", tiny_tasks(2, seed=3))
    write_kaggle(root / "b", "training", {k: tasks[k] for k in ids[1:]})  # two tasks in common, one new
    write_kaggle(root / "b", "evaluation", tiny_tasks(2, seed=3))
    for name, aug in (("a", 3), ("b", 2)):
        build_arc(ArcBuildConfig(source=root / name, output=root / f"data-{name}", subsets=("training", "evaluation"),
                                 num_variants=aug, canvas=6), log=False)
    train(TrainConfig(data=str(root / "data-a"), model=TINY_MODEL, run_dir=str(root / "run-a"), global_batch_size=4,
                      steps=2, lr_warmup_steps=1, device="cpu", dtype="float32", compile="off", ema=False),
          progress=False)
    return {"root": root, "run": root / "run-a", "a": root / "data-a", "b": root / "data-b"}


def test_init_from_keeps_the_rows_of_puzzles_in_both(two_datasets: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    old = load_checkpoint(two_datasets["run"]).model.state_dict()[PUZZLE_TABLE]
    names_a = json.loads((two_datasets["a"] / "identifiers.json").read_text())
    names_b = json.loads((two_datasets["b"] / "identifiers.json").read_text())
    assert len(names_a) != len(names_b)
    run = setup(TrainConfig(data=str(two_datasets["b"]), model=TINY_MODEL, run_dir=str(two_datasets["root"] / "b"),
                            init_from=str(two_datasets["run"]), device="cpu", dtype="float32", compile="off"))
    new = run.parts.model.state_dict()[PUZZLE_TABLE]
    common = [n for n in names_b if n in names_a]
    assert len(common) > 3  # the blank row, the originals of the shared tasks and their shared variants
    for i, name in enumerate(names_b):
        if name in names_a:
            assert torch.equal(new[i], old[names_a.index(name)]), name
        else:
            assert not new[i].any(), name
    assert old[1:].abs().sum() > 0  # the kept rows were trained: the check above is not zeros against zeros
    err = capsys.readouterr().err
    assert f"{len(common)} kept (matched by name), {len(names_b) - len(common)} new (zeros)" in err


def test_init_from_without_names_is_an_error_naming_both_sizes(two_datasets: dict[str, Path], tmp_path: Path) -> None:
    run_copy = tmp_path / "run"
    shutil.copytree(two_datasets["run"], run_copy)
    moved = tmp_path / "data-a-moved"
    shutil.copytree(two_datasets["a"], moved)
    cfg = dict(data=str(two_datasets["b"]), model=TINY_MODEL, run_dir=str(tmp_path / "b"), init_from=str(run_copy),
               device="cpu", dtype="float32", compile="off")
    # the recorded dataset is gone: the names of the checkpoint's rows are unknown
    meta_path = next(run_copy.glob("step_*")) / "config.json"
    meta = json.loads(meta_path.read_text())
    meta["train"]["data"] = str(tmp_path / "gone")
    meta_path.write_text(json.dumps(meta))
    rows = len(json.loads((two_datasets["a"] / "identifiers.json").read_text()))
    wanted = len(json.loads((two_datasets["b"] / "identifiers.json").read_text()))
    with pytest.raises(MismatchError, match=f"has {rows} puzzle identifiers, the dataset .* {wanted}: .*"
                                            "init_from_identifiers=<its dataset's identifiers.json>"):
        setup(TrainConfig(**cfg))
    # named by hand, or declared of no use: both work
    setup(TrainConfig(**cfg, init_from_identifiers=str(moved)))
    fresh = setup(TrainConfig(**cfg, init_from_identifiers="none"))
    assert not fresh.parts.model.state_dict()[PUZZLE_TABLE].any()
