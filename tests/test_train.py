"""Training: resume equals an uninterrupted run, two processes equal one, checkpoints survive a
kill, faults stop the run cleanly, recipes load, a run learns."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_data import write_copy_task

from trm.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, load_train_state
from trm.models.config import ConfigError
from trm.train import NonFiniteLoss, TrainConfig, list_recipes, load_recipe, train

MODEL = dict(arch="trm", hidden_size=32, num_heads=2, T=2, n=2, layers=1, puzzle_emb_ndim=32, puzzle_emb_len=1,
             halt_max_steps=3, halt_exploration_prob=0.0)


def _cfg(tmp_path: Path, run: str, **changes) -> TrainConfig:
    data = tmp_path / "data"
    if not data.exists():
        write_copy_task(data)
    values = dict(data=str(data), run_dir=str(tmp_path / run), model=MODEL, global_batch_size=8, steps=8, lr=3e-3,
                  lr_warmup_steps=3, lr_min_ratio=0.1, log_every=100, eval_max_batches=1, puzzle_emb_lr=1e-2,
                  device="cpu", dtype="float32", compile="off")
    values.update(changes)
    return TrainConfig(**values)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    return {**load_file(ckpt / "model.safetensors"), **{f"ema.{k}": v for k, v in
                                                       load_file(ckpt / "ema.safetensors").items()}}


def _losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["lm_loss"] for r in lines if r["kind"] == "train"]


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    # Exploration on, so the random state of halting must survive the resume too.
    cfg_full = _cfg(tmp_path, "full", log_every=1, model={**MODEL, "halt_exploration_prob": 0.5})
    train(cfg_full, progress=False)
    cfg_split = _cfg(tmp_path, "split", log_every=1, model={**MODEL, "halt_exploration_prob": 0.5})
    first = train(cfg_split, progress=False, stop_after=3)
    assert first == {"step": 3, "interrupted": True, "reason": "stop_after"}
    train(cfg_split, resume=True, progress=False)
    assert _losses(tmp_path / "split") == _losses(tmp_path / "full")
    full, split = _weights(tmp_path / "full"), _weights(tmp_path / "split")
    assert full.keys() == split.keys()
    for k in full:
        assert torch.equal(full[k], split[k]), k


def test_a_resume_that_changes_the_schedule_says_so(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    cfg = _cfg(tmp_path, "run", steps=4, eval_every=0)
    train(cfg, progress=False)
    capfd.readouterr()
    train(_cfg(tmp_path, "run", steps=6, eval_every=0), resume=True, progress=False)
    out = "".join(capfd.readouterr())
    assert "resuming with changed settings (steps: 4 -> 6)" in out
    train(_cfg(tmp_path, "run", steps=6, eval_every=0), resume=True, progress=False)
    assert "changed settings" not in "".join(capfd.readouterr())


def _worker(rank: int, cfg: TrainConfig, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        train(cfg, progress=False)
    finally:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def test_the_schedule_numbers_updates_from_one_as_the_reference_does(tmp_path: Path) -> None:
    """The reference increments its step before computing the rate: the first update runs at lr/warmup
    (not at 0), the last at the cosine's floor lr * lr_min_ratio."""
    run = tmp_path / "run"
    train(_cfg(tmp_path, "run", steps=8, log_every=1, eval_every=0, checkpoint_every=0))
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lr = {r["step"]: r["lr"] for r in lines if r["kind"] == "train"}
    assert lr[1] == pytest.approx(3e-3 / 3) and lr[3] == pytest.approx(3e-3)
    assert lr[8] == pytest.approx(3e-3 * 0.1)


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    single = _cfg(tmp_path, "single", log_every=1, steps=20)
    train(single, progress=False)
    double = _cfg(tmp_path, "double", log_every=1, steps=20)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(double, port), nprocs=2, join=True)
    a, b = _losses(tmp_path / "single"), _losses(tmp_path / "double")
    assert len(a) == len(b) == 20
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-6)
    wa, wb = _weights(tmp_path / "single"), _weights(tmp_path / "double")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)


_KILL_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from trm.train import TrainConfig, train
cfg = TrainConfig(**{cfg!r})
train(cfg, progress=False)
"""


def _spawn_run(tmp_path: Path, cfg: TrainConfig) -> subprocess.Popen:
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), cfg=cfg.to_dict())
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_while_checkpointing_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "killed", steps=100000, checkpoint_every=1,
               model={**MODEL, "hidden_size": 64, "num_heads": 2})
    run_dir = Path(cfg.run_dir)
    proc = _spawn_run(tmp_path, cfg)
    try:
        deadline = time.time() + 120
        while latest_checkpoint(run_dir) is None or len(list(run_dir.glob("step_*"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.time() < deadline
            time.sleep(0.05)
        # Kill at arbitrary moments of a loop that writes a checkpoint every step.
        time.sleep(0.37)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    loaded = load_checkpoint(run_dir)
    assert loaded.meta["step"] >= 1
    assert load_train_state(loaded.path)["sampler"]["epoch"] >= 0


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "terminated", steps=100000)
    proc = _spawn_run(tmp_path, cfg)
    run_dir = Path(cfg.run_dir)
    deadline = time.time() + 120
    while not (run_dir / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    loaded = load_checkpoint(run_dir)
    assert loaded.meta["step"] > 0


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "diverged", steps=50, checkpoint_every=2)
    import trm.train as t

    original = t.act_loss
    calls = {"n": 0}

    def poisoned(carry, out, loss_type="stablemax", **options):
        calls["n"] += 1
        result = original(carry, out, loss_type, **options)
        if calls["n"] == 5:
            result.total = result.total * float("nan")
            result.metrics["lm_loss"] = result.metrics["lm_loss"] * float("nan")
        return result

    t.act_loss = poisoned
    try:
        with pytest.raises(NonFiniteLoss, match="step 5"):
            train(cfg, progress=False)
    finally:
        t.act_loss = original
    loaded = load_checkpoint(cfg.run_dir)
    assert loaded.meta["step"] == 4
    assert all(torch.isfinite(v).all() for v in loaded.model.state_dict().values())


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "corrupt", steps=2)
    train(cfg, progress=False)
    ckpt = latest_checkpoint(cfg.run_dir)
    assert ckpt is not None
    (ckpt / "ema.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="ema.safetensors: cannot read weights"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="config.json: corrupt JSON"):
        load_checkpoint(ckpt)


def test_every_shipped_recipe_loads_and_its_model_validates() -> None:
    from trm.models import config_from_dict

    recipes = list_recipes()
    assert {"sudoku-extreme-mlp", "maze-hard", "arc-agi-1", "hrm-sudoku-extreme"} <= set(recipes)
    for name, about in recipes.items():
        assert about, f"{name}: needs a first comment line"
        cfg = load_recipe(name)
        config_from_dict({"vocab_size": 12, "seq_len": 81, "num_puzzle_identifiers": 10, **cfg.model})
    cfg = load_recipe("maze-hard", ["model.hidden_size=256", "lr=3e-4", "steps=10"])
    assert cfg.model["hidden_size"] == 256 and cfg.lr == 3e-4 and cfg.steps == 10
    with pytest.raises(ConfigError, match="unknown setting"):
        load_recipe("maze-hard", ["learning_rate=1"])
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe("not-a-recipe")


def test_bf16_steps_apply_only_to_a_bfloat16_run_and_an_override_of_steps_drops_them(tmp_path: Path) -> None:
    for dtype, expected in (("float32", 2), ("bfloat16", 3)):
        result = train(_cfg(tmp_path, dtype, dtype=dtype, steps=2, bf16_steps=3, eval_every=0), progress=False)
        assert result["step"] == expected, dtype
    assert load_recipe("sudoku6-cpu").bf16_steps is not None
    assert load_recipe("sudoku6-cpu", ["steps=100"]).steps_in("bfloat16") == 100
    assert load_recipe("sudoku6-cpu", ["steps=100", "bf16_steps=150"]).steps_in("bfloat16") == 150


@pytest.mark.slow
def test_the_small_sudoku_recipe_learns(tmp_path: Path) -> None:
    """The sudoku4-cpu recipe: held-out exact accuracy from 0 to well above chance ((1/4)^~10)."""
    from trm.tasks.sudoku import puzzles as sudoku

    data = tmp_path / "data"
    sudoku.build_dataset(data, sudoku.SudokuBuildConfig(source="generate", n=4, count=2000, test_fraction=0.2,
                                                        generator=sudoku.GeneratorConfig(n=4)))
    cfg = load_recipe("sudoku4-cpu", [f"data={data}", f"run_dir={tmp_path / 'run'}"])
    result = train(cfg, progress=False)
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curve = [r["eval/all/exact_accuracy"] for r in evals if r["kind"] == "eval"]
    assert curve[0] < 0.5 < result["all/exact_accuracy"], curve  # measured here: 0.0, 0.915, 0.9825


def test_fine_tuning_starts_from_a_reference_checkpoint(tmp_path: Path) -> None:
    """A checkpoint in the reference's layout (names, packing, compile prefix) seeds a run."""
    import yaml
    from model_shapes import reference_state

    from trm.models import build_model, config_from_dict

    cfg = _cfg(tmp_path, "finetune", steps=1, lr=0.0, puzzle_emb_lr=0.0, ema=False)
    model = build_model(config_from_dict({**MODEL, "vocab_size": 6, "seq_len": 6, "num_puzzle_identifiers": 2}))
    torch.save(reference_state(model), tmp_path / "step_500")
    arch = {"name": "recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1", "H_cycles": 2, "L_cycles": 2,
            "H_layers": 0, "L_layers": 1, "hidden_size": 32, "num_heads": 2, "expansion": 4, "pos_encodings": "rope",
            "puzzle_emb_ndim": 32, "puzzle_emb_len": 1, "halt_max_steps": 3, "halt_exploration_prob": 0.0,
            "forward_dtype": "float32", "seq_len": 6}
    (tmp_path / "all_config.yaml").write_text(yaml.safe_dump({"arch": arch}))
    train(TrainConfig(**{**cfg.to_dict(), "init_from": str(tmp_path / "step_500")}), progress=False)
    trained = load_checkpoint(cfg.run_dir, use_ema=False).model.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(trained[name], value), name  # lr 0: the weights are exactly the imported ones
