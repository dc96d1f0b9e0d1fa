"""Nothing lost: run folders own their checkpoints, faults (kill -9 between renames, two runs at once, a re-run
without --resume, a full disk, a read-only folder) leave a run that resumes and no temporary folder behind."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from tiny_data import write_copy_task

from trm.atomic import umask
from trm.checkpoint import checkpoint_folders, latest_checkpoint, load_checkpoint, pointed_checkpoint
from trm.cli import main
from trm.train import TrainConfig, _summarise, train

MODEL = dict(arch="trm", hidden_size=32, num_heads=2, T=1, n=1, layers=1, puzzle_emb_ndim=0, halt_max_steps=2,
             halt_exploration_prob=0.0)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _values(tmp_path: Path, **changes) -> dict:
    data = tmp_path / "data"
    if not data.exists():
        write_copy_task(data)
    values = dict(data=str(data), run_dir=str(tmp_path / "run"), model=MODEL, global_batch_size=8, steps=4, lr=1e-3,
                  lr_warmup_steps=1, log_every=1, eval_max_batches=1, device="cpu", dtype="float32", compile="off")
    values.update(changes)
    return values


def _recipe(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_values(tmp_path, **changes)))
    return path


def _temporaries(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock")


def _steps(run_dir: Path) -> list[str]:
    return [p.name for p in checkpoint_folders(run_dir)]


_CHILD = """
import os, sys, time
sys.path.insert(0, {src!r})
import trm.atomic
from trm.train import TrainConfig, train

stage, at_step, marker = {stage!r}, {at_step!r}, {marker!r}
saved = []

def wide_window(where):
    # The window between two renames made wide, so the parent can kill -9 inside it.
    if where == stage and (at_step is None or len(saved) + 1 >= at_step):
        open(marker, "w").write(str(os.getpid()))
        time.sleep(600)
    saved.append(where)

trm.atomic._rename_hook = wide_window
train(TrainConfig(**{cfg!r}), progress=False, resume={resume!r})
"""


def _spawn(values: dict, *, stage: str = "", at_step: int | None = None, marker: Path | None = None,
           resume: bool = False) -> subprocess.Popen:
    script = _CHILD.format(src=SRC, stage=stage, at_step=at_step, marker=str(marker) if marker else "", cfg=values,
                           resume=resume)
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "child exited")
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def _kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_kill_9_between_checkpoint_rename_and_latest_resumes_from_the_newest(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=6, checkpoint_every=2)
    run_dir, marker = Path(values["run_dir"]), tmp_path / "in-window"
    proc = _spawn(values, stage="latest", at_step=2, marker=marker)  # the second checkpoint (step 4)
    _wait_for(proc, marker.exists)
    _kill9(proc)
    assert _steps(run_dir) == ["step_0000002", "step_0000004"]
    assert pointed_checkpoint(run_dir).name == "step_0000002"  # latest still names the previous one
    assert latest_checkpoint(run_dir).name == "step_0000004"  # the newest complete one wins
    result = train(TrainConfig(**values), resume=True, progress=False)
    assert result["step"] == 6 and pointed_checkpoint(run_dir).name == "step_0000006"
    assert _temporaries(run_dir) == [] and not (run_dir / ".lock").exists()
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "train"]
    assert steps[-2:] == [5, 6]  # continued from step 4


def test_kill_9_between_the_two_renames_of_a_replace_loses_nothing(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=4, checkpoint_every=2)
    train(TrainConfig(**values), progress=False)
    run_dir, marker = Path(values["run_dir"]), tmp_path / "in-window"
    # A replace of the newest checkpoint, killed after the old one moved aside, before the new one moved in.
    script = f"""
import shutil, sys, time
sys.path.insert(0, {SRC!r})
import trm.atomic
from trm.atomic import atomic_folder
def hold(stage):
    open({str(marker)!r}, "w").write("x")
    time.sleep(600)
trm.atomic._rename_hook = hold
with atomic_folder({str(run_dir / 'step_0000004')!r}) as tmp:
    shutil.copytree({str(run_dir / 'step_0000004')!r}, tmp, dirs_exist_ok=True)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    _wait_for(proc, marker.exists)
    _kill9(proc)
    assert not (run_dir / "step_0000004").exists()  # the state the old code could leave: latest dangling
    assert any(".old-" in n for n in _temporaries(run_dir)) and any(n.endswith(".tmp") for n in _temporaries(run_dir))
    result = train(TrainConfig(**{**values, "steps": 6}), resume=True, progress=False)
    assert result["step"] == 6
    assert _steps(run_dir) == ["step_0000002", "step_0000004", "step_0000006"]  # put back, then continued
    assert _temporaries(run_dir) == []


def test_kill_9_at_random_moments_always_resumes(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=100000, checkpoint_every=1)
    run_dir = Path(values["run_dir"])
    proc = _spawn(values)
    _wait_for(proc, lambda: len(_steps(run_dir)) >= 3)
    time.sleep(0.29)
    _kill9(proc)
    newest = latest_checkpoint(run_dir)
    assert newest is not None
    step = load_checkpoint(run_dir).meta["step"]
    result = train(TrainConfig(**{**values, "steps": step + 2}), resume=True, progress=False)
    assert result["step"] == step + 2
    assert _temporaries(run_dir) == []


def test_a_second_run_into_the_same_folder_is_refused_and_a_dead_ones_lock_is_not(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    values = _values(tmp_path, steps=100000, checkpoint_every=3)
    run_dir = Path(values["run_dir"])
    proc = _spawn(values)
    try:
        _wait_for(proc, lambda: len(_steps(run_dir)) >= 1)
        recipe = _recipe(tmp_path, steps=100000, checkpoint_every=3)
        for extra in ([], ["--resume"], ["--restart"]):
            assert main(["train", str(recipe), *extra]) == 2
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err.startswith("trm train: ") and f"process {proc.pid}" in err and "another run" in err
    finally:
        _kill9(proc)
    assert (run_dir / ".lock").exists()  # left by the killed process: stale
    before = _steps(run_dir)
    result = train(TrainConfig(**{**values, "steps": load_checkpoint(run_dir).meta["step"] + 1}), resume=True,
                   progress=False)
    assert result["step"] > 0 and set(before) <= set(_steps(run_dir))


def test_a_lock_naming_a_dead_process_is_stale(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=2)
    run_dir = Path(values["run_dir"])
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run_dir / ".lock").write_text(f"{dead.pid} {os.uname().nodename}\n")
    assert train(TrainConfig(**values), progress=False)["step"] == 2


def test_rerun_without_resume_is_refused_and_restart_keeps_the_old_checkpoints(tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture) -> None:
    recipe = _recipe(tmp_path, steps=2)
    run_dir = tmp_path / "run"
    assert main(["train", str(recipe)]) == 0
    weights = (run_dir / "step_0000002" / "model.safetensors").read_bytes()
    metrics = (run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["train", str(recipe), "seed=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("trm train: ") and "already holds 1 checkpoint" in err and "--resume" in err
    assert "--restart" in err
    assert (run_dir / "step_0000002" / "model.safetensors").read_bytes() == weights
    assert (run_dir / "metrics.jsonl").read_text() == metrics
    assert main(["train", str(recipe), "seed=1", "--restart"]) == 0
    previous = [p for p in run_dir.iterdir() if p.name.startswith("previous-")]
    assert len(previous) == 1
    assert (previous[0] / "step_0000002" / "model.safetensors").read_bytes() == weights
    assert (previous[0] / "metrics.jsonl").read_text() == metrics
    assert (run_dir / "step_0000002" / "model.safetensors").read_bytes() != weights  # the new run's
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # one run's lines, no duplicates


def test_the_final_checkpoint_is_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trm.checkpoint as ck

    written = []
    original = ck.save_checkpoint

    def counting(folder, **kw):
        written.append(Path(folder).name)
        return original(folder, **kw)

    monkeypatch.setattr(ck, "save_checkpoint", counting)
    train(TrainConfig(**_values(tmp_path, steps=4, checkpoint_every=2)), progress=False)
    assert written == ["step_0000002", "step_0000004"]


def test_keep_last_keeps_the_newest(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=6, checkpoint_every=1, keep_last=2)
    train(TrainConfig(**values), progress=False)
    run_dir = Path(values["run_dir"])
    assert _steps(run_dir) == ["step_0000005", "step_0000006"] and pointed_checkpoint(run_dir).name == "step_0000006"
    assert _temporaries(run_dir) == []


def test_a_dangling_latest_falls_back_to_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=4, checkpoint_every=2)
    train(TrainConfig(**values), progress=False)
    run_dir = Path(values["run_dir"])
    (run_dir / "latest").write_text("step_0000099\n")
    assert load_checkpoint(run_dir).meta["step"] == 4
    assert train(TrainConfig(**{**values, "steps": 5}), resume=True, progress=False)["step"] == 5


def test_a_runs_latest_pointer_file_loads_as_the_run(tmp_path: Path) -> None:
    from trm.loader import load

    values = _values(tmp_path, steps=4, checkpoint_every=2)
    train(TrainConfig(**values), progress=False)
    assert load(Path(values["run_dir"]) / "latest").meta["step"] == 4


def test_temporaries_of_dead_runs_are_cleaned_at_start(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=2)
    train(TrainConfig(**values), progress=False)
    run_dir = Path(values["run_dir"])
    (run_dir / ".step_0000003.k2j4h.tmp").mkdir()
    (run_dir / ".step_0000003.k2j4h.tmp" / "model.safetensors").write_bytes(b"half")
    (run_dir / ".latest.tmp-99999").write_text("step_0000003")
    train(TrainConfig(**{**values, "steps": 3}), resume=True, progress=False)
    assert _temporaries(run_dir) == []


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    import torch

    import trm.checkpoint as ck

    recipe = _recipe(tmp_path, steps=4, checkpoint_every=2)
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        if Path(f).parent.name.startswith(".step_0000004"):
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ck.torch, "save", full_disk)
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("trm train: ") and "No space left on device" in err and "previous checkpoint is kept" in err
    run_dir = tmp_path / "run"
    assert _steps(run_dir) == ["step_0000002"] and pointed_checkpoint(run_dir).name == "step_0000002"
    assert _temporaries(run_dir) == [] and not (run_dir / ".lock").exists()

    def writer_failure(obj, f, *a, **kw):  # how torch's zip writer reports a full disk
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 1216 vs 1114")

    monkeypatch.setattr(ck.torch, "save", writer_failure)
    assert main(["train", str(recipe), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot write the checkpoint" in err and "free there" in err


def test_an_interrupted_run_exits_130_or_143_after_saving(tmp_path: Path) -> None:
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        folder = tmp_path / sig.name
        folder.mkdir()
        recipe = _recipe(folder, steps=100000)
        env = {**os.environ, "PYTHONPATH": SRC}
        proc = subprocess.Popen([sys.executable, "-m", "trm", "train", str(recipe)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait_for(proc, lambda f=folder: (f / "run" / "metrics.jsonl").exists() and
                  (f / "run" / "metrics.jsonl").stat().st_size > 0)
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == code
        assert "interrupted" in proc.stderr.read().decode()
        assert load_checkpoint(folder / "run").meta["step"] > 0


def test_folders_and_files_are_shared_as_mkdir_makes_them(tmp_path: Path) -> None:
    values = _values(tmp_path, steps=2)
    train(TrainConfig(**values), progress=False)
    ckpt = latest_checkpoint(values["run_dir"])
    mask = umask()
    assert ckpt.stat().st_mode & 0o777 == 0o777 & ~mask
    for f in ckpt.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f
    assert main(["build", "sudoku", str(tmp_path / "s"), "--generate", "8", "--size", "4"]) == 0
    assert (tmp_path / "s").stat().st_mode & 0o777 == 0o777 & ~mask


def test_eval_of_a_read_only_checkpoint_prints_and_writes_elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    import trm.results as results

    values = _values(tmp_path, steps=2)
    train(TrainConfig(**values), progress=False)
    ckpt = latest_checkpoint(values["run_dir"])
    before = sorted(p.name for p in ckpt.iterdir())
    os.chmod(ckpt, 0o555)
    if os.geteuid() == 0:  # root writes anywhere: make the folder refuse as it would a user
        real = results.can_write
        monkeypatch.setattr(results, "can_write", lambda folder: False if folder == ckpt else real(folder))
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["eval", values["run_dir"], "--device", "cpu", "--no-report"]) == 0
    finally:
        os.chmod(ckpt, 0o755)
    out, err = capsys.readouterr()
    assert "exact acc" in out and "cannot be written to" in err
    assert sorted(p.name for p in ckpt.iterdir()) == before
    written = list((tmp_path / "eval-results").rglob("eval-*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["checkpoint"] == str(ckpt)


def test_eval_results_are_named_by_their_options_and_never_replace_another(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    values = _values(tmp_path, steps=2)
    train(TrainConfig(**values), progress=False)
    ckpt = latest_checkpoint(values["run_dir"])
    base = ["eval", values["run_dir"], "--device", "cpu", "--no-report"]
    for extra in ([], ["--max-batches", "1"], ["--raw"], ["--steps", "1"], ["--policy", "early"], []):
        assert main(base + extra) == 0
    assert main(base + ["--augment", "2"]) == 2  # no task, no transforms: refused, nothing written
    capsys.readouterr()
    names = sorted(p.name for p in ckpt.glob("eval-*.json"))
    assert names == ["eval-early-2.json", "eval-fixed-1.json", "eval-fixed-2-first1.json", "eval-fixed-2-raw.json",
                     "eval-fixed-2.json"]
    plain = ckpt / "eval-fixed-2.json"
    other = json.loads(plain.read_text())
    other["options"]["data"] = "somewhere else"
    plain.write_text(json.dumps(other))  # a result of other options under the name
    assert main(base) == 0
    assert json.loads(plain.read_text())["options"]["data"] == "somewhere else"  # kept
    assert (ckpt / "eval-fixed-2-2.json").exists()
    err = capsys.readouterr().err
    assert "evaluating 16 examples in 1 batches of 256" in err


def test_train_prints_a_start_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    values = _values(tmp_path, steps=2)
    train(TrainConfig(**values), progress=False)
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if x.startswith("training "))
    for words in (values["run_dir"], "parameters", "2 steps", "device cpu", "dtype float32", "compile off",
                  "batch 8"):
        assert words in line, words


def test_metric_lines_have_no_means_when_nothing_halted() -> None:
    quiet = _summarise({"count": 0.0, "accuracy": 0.0, "exact_accuracy": 0.0, "steps": 0.0, "lm_loss": 3.0}, 2)
    assert quiet == {"count": 0.0, "lm_loss": 1.5}
    busy = _summarise({"count": 4.0, "accuracy": 2.0, "steps": 8.0, "lm_loss": 3.0}, 2)
    assert busy == {"count": 4.0, "accuracy": 0.5, "steps": 2.0, "lm_loss": 1.5}


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A mount point for a small tmpfs (root on Linux, where the container allows mounting), else a skip."""
    import shutil as sh

    if sys.platform != "linux" or os.geteuid() != 0 or sh.which("mount") is None:
        pytest.skip("mounting a tiny file system needs root on Linux")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / "disk"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                              capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", str(point)], check=False)


def test_a_really_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path, tiny_disk,
                                                                           capsys: pytest.CaptureFixture) -> None:
    probe = _values(tmp_path, steps=1, run_dir=str(tmp_path / "probe"))
    train(TrainConfig(**probe), progress=False)
    size = sum(f.stat().st_size for f in (tmp_path / "probe" / "step_0000001").iterdir())
    disk = tiny_disk(size + size // 2 + 64 * 1024)  # room for one checkpoint, not for two
    recipe = _recipe(tmp_path, steps=4, checkpoint_every=2, run_dir=str(disk / "run"))
    capsys.readouterr()
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("trm train: ") and "cannot write the checkpoint" in err, err
    assert "No space left on device" in err and "KiB free there" in err and "free some space" in err
    run_dir = disk / "run"
    assert _steps(run_dir) == ["step_0000002"] and pointed_checkpoint(run_dir).name == "step_0000002"
    assert _temporaries(run_dir) == [] and not (run_dir / ".lock").exists()
    assert load_checkpoint(run_dir).meta["step"] == 2
