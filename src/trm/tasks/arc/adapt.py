"""Test-time training for ARC: from a pretrained checkpoint and a Kaggle challenges file to submission.json.

    trm arc adapt runs/arc-agi-1 arc-agi_test_challenges.json --budget 2h --work adapt/ --submission submission.json

The steps, each recorded in `<work>/adapt.json` so that a second invocation with the same arguments
continues where an interrupted one stopped:

1. build: the challenge tasks become a dataset (`<work>/data`): every demonstration pair, under
   `--num-aug` augmented variants per task, is training data; the test inputs, with unknown answers,
   are the test split. The canvas is the pretrained model's (30x30, or N x N for a small-canvas model).
2. train: full fine-tuning of the pretrained weights on those demonstrations (`<work>/run`), new
   puzzle-embedding rows for the new tasks (`trm.puzzle_rows`), checkpointing as it goes; it stops
   when the budget, less the time prediction is measured to need, is spent.
3. predict: every variant of every test input is answered, the answers are un-augmented and voted
   (`trm.tasks.arc.scoring`), and the two best candidates of each test input go to the submission.

Nothing is downloaded. The budget counts the wall time of all invocations together (build, training,
prediction); an invocation killed without a chance to save loses the training time since its last
checkpoint from the account, never the checkpoint itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from trm.atomic import atomic_write_text

STATE_FILE = "adapt.json"
DATA_KEYS = ("vocab_size", "seq_len", "num_puzzle_identifiers")
"""Model fields the dataset sets (dropped from the pretrained configuration)."""


class AdaptError(ValueError):
    """Adapt inputs that cannot work (budget, files, a work folder from another run)."""


def parse_budget(text: str) -> float:
    """Seconds of a budget written as `2h`, `90m`, `1h30m`, `45s` or a plain number of seconds."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or parts is None or not any(parts.groups()):
        raise AdaptError(f"--budget {text!r}: write it like 2h, 90m, 1h30m, 45s or a number of seconds")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


@dataclass(frozen=True, kw_only=True)
class AdaptConfig:
    checkpoint: str
    """Pretrained checkpoint (our checkpoint or run folder)."""
    challenges: str
    """Kaggle challenges file (test outputs unknown, or known with `solutions`)."""
    work: str
    """Folder for the dataset, the fine-tuning run and the progress record."""
    submission: str
    budget: float = 7200.0
    """Wall-clock seconds for everything, all invocations together."""
    solutions: str | None = None
    """Its solutions file, for pass@k (optional)."""
    num_aug: int = 64
    seed: int = 0
    max_steps: int = 1_000_000
    """Cap on fine-tuning steps (the budget normally ends training first)."""
    batch_size: int | None = None
    """Global batch size (default: the pretrained run's)."""
    lr: float | None = None
    """Peak learning rate (default: the pretrained run's)."""
    warmup: int = 100
    checkpoint_every: int = 100
    eval_batch_size: int = 256
    identifiers: str | None = None
    """identifiers.json of the pretraining dataset (default: the recorded dataset when it is there; else every
    puzzle row of the new tasks starts fresh, which is the case for unseen tasks anyway)."""
    skip_empty: bool = False
    device: str = "auto"
    dtype: str = "auto"
    compile: str = "auto"


def _digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class Progress:
    """The record in `<work>/adapt.json`: what was asked, the phases done, the seconds spent."""

    def __init__(self, work: Path, cfg: AdaptConfig) -> None:
        self.path = work / STATE_FILE
        self.identity = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "challenges": _digest(cfg.challenges),
                         "num_aug": cfg.num_aug, "seed": cfg.seed}
        self.state: dict[str, Any] = {"spent_seconds": 0.0, "done": []}
        if self.path.is_file():
            saved = json.loads(self.path.read_text())
            if saved.get("identity") != self.identity:
                raise AdaptError(f"{work}: holds an adapt run of another checkpoint, challenges file or build "
                                 f"({saved.get('identity')}); pick another --work folder, or delete this one")
            self.state = saved
        self.began = time.monotonic()
        self.spent_before = float(self.state["spent_seconds"])

    def spent(self) -> float:
        return self.spent_before + time.monotonic() - self.began

    def save(self, **extra: Any) -> None:
        self.state.update(extra, identity=self.identity, spent_seconds=round(self.spent(), 3))
        atomic_write_text(self.path, json.dumps(self.state, indent=1))

    def mark(self, phase: str, **extra: Any) -> None:
        if phase not in self.state["done"]:
            self.state["done"].append(phase)
        self.save(**extra)

    def done(self, phase: str) -> bool:
        return phase in self.state["done"]


def say(text: str) -> None:
    print(f"adapt: {text}", file=sys.stderr, flush=True)


def adapt(cfg: AdaptConfig, *, progress_bars: bool = True, stop_after: int | None = None) -> dict[str, Any]:
    """Run (or continue) the adapt workflow; returns its report (also written beside the submission).
    `stop_after` ends training after that many steps of this invocation, as an interruption would."""
    from trm.loader import load
    from trm.tasks.arc.augment import VOCAB_SIZE, canvas_side
    from trm.tasks.arc.puzzles import load_kaggle_file

    if cfg.budget <= 0:
        raise AdaptError(f"budget {cfg.budget:g}s: must be positive")
    work = Path(cfg.work)
    work.mkdir(parents=True, exist_ok=True)
    state = Progress(work, cfg)
    state.save(config=asdict(cfg))
    tasks = load_kaggle_file(cfg.challenges, cfg.solutions)
    pretrained = load(cfg.checkpoint, use_ema=True, dtype="float32")  # any source trm.load reads
    model_cfg = pretrained.config
    if model_cfg.vocab_size != VOCAB_SIZE:
        raise AdaptError(f"{cfg.checkpoint}: vocabulary {model_cfg.vocab_size}, an ARC model has {VOCAB_SIZE}")
    try:
        canvas = canvas_side(model_cfg.seq_len)
    except ValueError as e:
        raise AdaptError(f"{cfg.checkpoint}: {e}") from None

    data = work / "data"
    if not state.done("build"):
        _build(cfg, tasks, data, canvas, progress_bars)
        state.mark("build")
    say(f"{len(tasks)} tasks; dataset {data}; {state.spent():.0f}s of the {cfg.budget:.0f}s budget spent")

    run_dir = work / "run"
    if not state.done("train"):
        reserve = _prediction_seconds(cfg, data, pretrained)
        left = cfg.budget - state.spent() - reserve
        say(f"prediction measured at ~{reserve:.0f}s; {max(left, 0):.0f}s left for fine-tuning")
        if left > 0:
            result = _train(cfg, pretrained, data, run_dir, left, progress_bars, stop_after)
            state.save(train_result=result)
            if result.get("interrupted") and not str(result.get("reason", "")).startswith("max_train_seconds"):
                say(f"interrupted at step {result.get('step')} ({result.get('reason')}); run the same command "
                    "again to continue")
                return {"interrupted": True, "step": result.get("step"), "work": str(work),
                        "seconds": round(state.spent(), 1)}
        state.mark("train")
    report = _predict(cfg, tasks, data, run_dir, pretrained)
    report["seconds"] = round(state.spent(), 1)
    report["budget_seconds"] = cfg.budget
    state.mark("predict", report=report)
    atomic_write_text(Path(cfg.submission).with_suffix(".report.json"), json.dumps(report, indent=1))
    return report


def _build(cfg: AdaptConfig, tasks: dict[str, Any], data: Path, canvas: int, progress_bars: bool) -> None:
    from trm.tasks.arc.build import ArcBuildConfig, build_arc
    from trm.tasks.base import progress_bar

    source = data.with_name("source")
    source.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cfg.challenges, source / "arc-agi_test_challenges.json")
    if cfg.solutions:
        shutil.copyfile(cfg.solutions, source / "arc-agi_test_solutions.json")
    build = ArcBuildConfig(source=source, output=data, subsets=("test",), num_variants=cfg.num_aug, seed=cfg.seed,
                           overwrite=True, canvas=canvas)
    if progress_bars:
        with progress_bar(None, "adapt: build") as update:
            summary = build_arc(build, log=False, progress=update)
    else:
        summary = build_arc(build, log=False)
    if summary.get("tasks_left_out"):
        say(f"{summary['tasks_left_out']} tasks do not fit the model's {canvas}x{canvas} canvas: their attempts "
            "will be [[0]]")
    say(f"built {summary['puzzle_ids'] - 1} puzzles, {summary['train_examples']} demonstration examples")


def _prediction_seconds(cfg: AdaptConfig, data: Path, pretrained: Any) -> float:
    """Seconds prediction will take: one batch timed with the pretrained model, scaled to the test split,
    with a 25% margin."""
    import torch

    from trm.data.sampler import open_dataset
    from trm.evaluate import run_steps
    from trm.runtime import pick_device

    device = pick_device(cfg.device)
    split = open_dataset(data)
    assert split.dataset.test is not None
    count = sum(s.num_examples for s in split.dataset.test.sets.values())
    _, first, _ = next(split.test_batches(cfg.eval_batch_size))
    model = pretrained.model.to(device)
    model.eval()
    batch = {k: torch.as_tensor(v).to(device) for k, v in first.items()}
    batch["puzzle_identifiers"] = torch.zeros_like(batch["puzzle_identifiers"])  # the old table may be smaller
    began = time.perf_counter()
    run_steps(model, batch, model.halt_max_steps)
    per_batch = time.perf_counter() - began
    return 1.25 * per_batch * -(-count // cfg.eval_batch_size) + 5.0


def _train(cfg: AdaptConfig, pretrained: Any, data: Path, run_dir: Path, seconds: float, progress_bars: bool,
           stop_after: int | None) -> dict[str, Any]:
    from trm.checkpoint import latest_checkpoint
    from trm.train import TrainConfig, train

    old = pretrained.meta.get("train", {})
    model = {k: v for k, v in pretrained.config.to_dict().items() if k not in DATA_KEYS}
    recorded = old.get("data")
    identifiers = cfg.identifiers
    if identifiers is None and not (recorded and (Path(recorded) / "identifiers.json").is_file()):
        identifiers = "none"  # the pretraining dataset is not here: the new tasks' rows start fresh
    train_cfg = TrainConfig(
        data=str(data), model=model, run_dir=str(run_dir), init_from=str(cfg.checkpoint),
        init_from_identifiers=identifiers,
        global_batch_size=cfg.batch_size or int(old.get("global_batch_size", 64)),
        steps=cfg.max_steps, lr=cfg.lr or float(old.get("lr", 1e-4)), lr_warmup_steps=cfg.warmup,
        weight_decay=float(old.get("weight_decay", 0.1)), puzzle_emb_lr=float(old.get("puzzle_emb_lr", 1e-2)),
        puzzle_emb_weight_decay=float(old.get("puzzle_emb_weight_decay", 0.1)), ema=bool(old.get("ema", True)),
        ema_rate=float(old.get("ema_rate", 0.999)), loss_type=str(old.get("loss_type", "stablemax")),
        checkpoint_every=cfg.checkpoint_every, eval_every=0, eval_max_batches=1, log_every=10,
        max_train_seconds=seconds, seed=cfg.seed, device=cfg.device, dtype=cfg.dtype, compile=cfg.compile)
    per_epoch = _examples_per_epoch(data)
    if train_cfg.global_batch_size > per_epoch:  # the sampler takes one variant per task and epoch
        say(f"batch size {train_cfg.global_batch_size} is more than the {per_epoch} demonstrations of one pass over "
            f"the tasks: using {per_epoch}")
        train_cfg = dataclasses.replace(train_cfg, global_batch_size=per_epoch)
    resume = latest_checkpoint(run_dir) is not None
    say(("resuming fine-tuning from " + str(latest_checkpoint(run_dir))) if resume else
        f"fine-tuning {pretrained.path} for up to {seconds:.0f}s")
    return train(train_cfg, resume=resume, progress=progress_bars and sys.stderr.isatty(), stop_after=stop_after)


def _examples_per_epoch(data: Path) -> int:
    """Examples in one pass of the training sampler: one variant of every task, all its demonstrations."""
    import numpy as np

    from trm.data.format import load_dataset

    total = 0
    for arrays in load_dataset(data).train.sets.values():
        groups, puzzles = np.asarray(arrays.group_indices), np.asarray(arrays.puzzle_indices)
        total += int((puzzles[groups[:-1] + 1] - puzzles[groups[:-1]]).sum())
    return total


def _predict(cfg: AdaptConfig, tasks: dict[str, Any], data: Path, run_dir: Path, pretrained: Any) -> dict[str, Any]:
    from trm.checkpoint import latest_checkpoint, load_checkpoint
    from trm.data.sampler import open_dataset
    from trm.evaluate import EvalOptions, evaluate
    from trm.runtime import pick_device
    from trm.tasks.arc.scoring import ArcVoter, make_submission, pass_at_k, write_submission

    device = pick_device(cfg.device)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise AdaptError(f"no fine-tuned checkpoint in {run_dir}: the budget left no time to train (raise --budget)")
    loaded = load_checkpoint(ckpt, use_ema=True, device=device, dtype="auto")
    split = open_dataset(data)
    voter = ArcVoter.from_dataset(data)
    assert split.dataset.test is not None
    total = sum(s.num_examples for s in split.dataset.test.sets.values())
    batches = _with_progress(split.test_batches(cfg.eval_batch_size), total)
    evaluate(loaded.model, batches, EvalOptions(), device=device,
             collect=lambda batch, final, q: voter.add(batch["puzzle_identifiers"], batch["inputs"], final, q))
    submission = make_submission(voter, tasks, skip_empty=cfg.skip_empty)
    write_submission(cfg.submission, submission)
    report: dict[str, Any] = {"submission": cfg.submission, "checkpoint": str(ckpt), "step": loaded.meta.get("step"),
                              "tasks": len(tasks),
                              "test_inputs": sum(len(t.test) for t in tasks.values()),
                              "test_inputs_with_predictions": sum(1 for t in tasks.values() for p in t.test
                                                                  if voter.ranked(t.id, p.input))}
    if all(t.has_solutions for t in tasks.values()):
        report.update(pass_at_k(voter, tasks))
        if cfg.skip_empty:
            report.update({f"skip-empty {k}": v for k, v in pass_at_k(voter, tasks, skip_empty=True).items()})
    say(f"wrote {cfg.submission}: {report['test_inputs_with_predictions']}/{report['test_inputs']} test inputs "
        f"answered from step {report['step']}" + "".join(f", {k} {v:.2%}" for k, v in report.items()
                                                          if k.startswith("pass@")))
    return report


def _with_progress(batches: Any, total: int) -> Any:
    from tqdm import tqdm

    bar = tqdm(total=total, desc="adapt: predict", unit="example", file=sys.stderr, disable=not sys.stderr.isatty())
    try:
        for item in batches:
            yield item
            bar.update(item[2])
    finally:
        bar.close()
