"""`trm export` writes what the ecosystem expects and `trm.load` reads it back bit for bit; the model
card carries the run's measured figures; `trm eval --limit/--seed` evaluates a seeded subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_data import write_copy_task

import trm
from trm.checkpoint import CheckpointError
from trm.cli import main

_RUNS: dict[str, Path] = {}


def trained_run(tmp_path: Path) -> Path:
    """A tiny run (8 steps on the copy task) with one `trm eval --limit` result stored beside its checkpoint;
    made once per session (read only by the tests that share it)."""
    from trm.train import TrainConfig, train

    if "run" in _RUNS:
        return _RUNS["run"]

    data = write_copy_task(tmp_path / "data")
    run = tmp_path / "run"
    model = dict(arch="trm", hidden_size=32, num_heads=2, T=2, n=2, layers=1, puzzle_emb_ndim=32, puzzle_emb_len=1,
                 halt_max_steps=3, halt_exploration_prob=0.0)
    train(TrainConfig(data=str(data), run_dir=str(run), model=model, global_batch_size=8, steps=8, lr=3e-3,
                      lr_warmup_steps=3, log_every=100, eval_max_batches=1, device="cpu", dtype="float32",
                      compile="off"), progress=False)
    assert main(["eval", str(run), "--limit", "10", "--seed", "3", "--dtype", "float32", "--device", "cpu",
                 "--no-report"]) == 0
    _RUNS["run"] = run
    return run


def test_export_round_trips_bit_exactly_with_a_model_card(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = trained_run(tmp_path)
    report = json.loads(next((run / Path((run / "latest").read_text().strip())).glob("eval-*limit10-seed3.json"))
                        .read_text())
    assert report["sets"]["all"]["count"] == 10 and report["machine"] and report["limit"] == 10
    lo, hi = report["sets"]["all"]["exact_accuracy_ci95"]
    assert 0 <= lo <= report["sets"]["all"]["exact_accuracy"] <= hi <= 1

    out = tmp_path / "export"
    assert main(["export", str(run), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    original, exported = trm.load(run), trm.load(out)
    assert exported.config == original.config and exported.meta["weights"] == "ema"
    a, b = original.model.state_dict(), exported.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    batch = {"inputs": torch.randint(1, 5, (3, 6), dtype=torch.int32), "labels": torch.zeros(3, 6, dtype=torch.int32),
             "puzzle_identifiers": torch.ones(3, dtype=torch.int32)}
    with torch.no_grad():
        la = original.model.eval()(original.model.initial_carry(batch), batch)[1].logits
        lb = exported.model.eval()(exported.model.initial_carry(batch), batch)[1].logits
    assert torch.equal(la, lb)
    bare = trm.load(out / "model.safetensors").model.state_dict()  # a weights file with config.json beside it
    assert all(torch.equal(bare[k], a[k]) for k in a)

    card = (out / "README.md").read_text()
    accuracy = f"{100 * report['sets']['all']['exact_accuracy']:.2f}%"
    assert card.startswith("---\nlibrary_name: trm") and accuracy in card and report["machine"] in card
    assert "(random 10)" in card and "Held-out evaluation during training" in card and "@article{" in card
    assert f"Trained on `{run.parent / 'data'}`" in card and "trm eval OUT --data" in card

    assert main(["export", str(run), str(out)]) == 2  # never over an existing export
    assert "already exists" in capsys.readouterr().err and trm.load(out).config == original.config
    with pytest.raises(CheckpointError, match="not a run or checkpoint folder of ours"):
        from trm.export import export

        export(tmp_path / "data", tmp_path / "x")


def test_eval_prints_the_interval_of_its_subset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = trained_run(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(run), "--limit", "5", "--seed", "3", "--dtype", "float32", "--device", "cpu",
                 "--no-report", "--out", str(tmp_path / "results")]) == 0
    printed = capsys.readouterr()
    assert "95% interval" in printed.out and "a seeded random 5 (--limit 5, --seed 3)" in printed.out
    assert "evaluating 5 examples in 1 batches" in printed.err  # the subset is what runs (a bar on a terminal)
    assert len(list((tmp_path / "results").glob("eval-*-limit5-seed3.json"))) == 1


def test_eval_limit_is_a_seeded_subset(tmp_path: Path) -> None:
    from trm.data.format import load_dataset
    from trm.data.sampler import test_subset

    split = load_dataset(write_copy_task(tmp_path / "d", test_examples=40)).test
    assert split is not None
    a, b, c = test_subset(split, 10, 1)["all"], test_subset(split, 10, 1)["all"], test_subset(split, 10, 2)["all"]
    assert len(a) == 10 and len(set(a.tolist())) == 10 and list(a) == sorted(a)
    assert (a == b).all() and not (a == c).all()
    assert (test_subset(split, 100, 1)["all"] == range(40)).all()


def test_wilson_interval() -> None:
    from trm.stats import wilson_interval

    lo, hi = wilson_interval(848, 1000)  # 84.8%: about +-2.2 points
    assert lo == pytest.approx(0.8242, abs=1e-3) and hi == pytest.approx(0.8692, abs=1e-3)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_our_run_checked_against_another_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_published import write_dataset

    run = trained_run(tmp_path)
    other = write_dataset(tmp_path / "other", ids=7, seq_len=6, vocab=6)
    with pytest.raises(CheckpointError, match=r"the checkpoint has 2 puzzle identifiers, the dataset .* 7: "):
        trm.load(run, data=other)
    assert main(["solve", str(run), "1" * 6, "--data", str(other), "--device", "cpu", "--dtype", "float32"]) == 2
    assert "has 2 puzzle identifiers" in capsys.readouterr().err
