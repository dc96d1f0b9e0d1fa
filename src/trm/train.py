"""Training with deep supervision: one function for one process and for `torchrun`.

    trm train RECIPE [key=value ...]          # one process (CPU, CUDA or MPS)
    torchrun --nproc-per-node 8 -m trm train RECIPE ...

Every optimizer step runs one supervision step for each of the B slots of the persistent ACT
carry: halted slots take the next example from the sampler's batch, all slots step once, the loss
of that step is back-propagated (divided by the global batch), AdamATan2 updates the parameters
and sign-SGD the touched puzzle-embedding rows. Processes average gradients by all-reduce (each
divides by the global batch, so the sum is the global mean), merge embedding updates by all-gather,
and reduce metrics; only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from trm.checkpoint import CheckpointError, Trainable, latest_checkpoint, restore_training, save_training
from trm.loss import act_loss
from trm.models import ACTModel, Carry, ModelConfig, build_model, config_from_dict
from trm.models.config import ConfigError, check_types
from trm.runtime import COMPILE, DEVICES, DTYPE_CHOICES, NumericMode, numeric_mode, pick_device


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a run needs besides the data; recipes are YAML files of these fields."""

    data: str
    """Dataset folder (with train/ and test/ in the on-disk puzzle format)."""
    model: dict[str, Any]
    """Model configuration: `arch` plus its fields; sizes set by the data are filled in."""
    run_dir: str = "runs/run"
    """Where logs and checkpoints go."""
    loss_type: str = "stablemax"
    """Token loss: stablemax or softmax cross-entropy."""
    global_batch_size: int = 768
    """Slots of the ACT carry, summed over processes."""
    epochs: float = 1.0
    """Passes over the training puzzle groups (sets the number of steps unless `steps` is given)."""
    steps: int | None = None
    """Optimizer steps; overrides `epochs`."""
    bf16_steps: int | None = None
    """Optimizer steps when the run trains in bfloat16, instead of `steps` (None: `steps`). A recipe whose
    numeric mode is `auto` can spend part of the time that bf16 saves on more steps, since bf16 training
    is noisier; an override of `steps` alone (`steps=500`) drops it."""
    lr: float = 1e-4
    """Peak learning rate of AdamATan2."""
    lr_min_ratio: float = 1.0
    """Final lr as a fraction of the peak after the cosine decay (1.0: constant after warmup)."""
    lr_warmup_steps: int = 2000
    """Linear warmup length."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2
    """Learning rate of the sign-SGD puzzle-embedding update."""
    puzzle_emb_weight_decay: float = 0.1
    ema: bool = True
    """Keep an exponential moving average of the weights (used for evaluation and saved)."""
    ema_rate: float = 0.999
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end)."""
    eval_max_batches: int | None = None
    """Cap on evaluation batches (None: the whole test split)."""
    checkpoint_every: int = 0
    """Save every this many steps (0: only at the end and on interruption)."""
    log_every: int = 10
    """Steps between metric lines."""
    init_from: str | None = None
    """Start from these weights (fine-tuning): one of our checkpoint folders, or a checkpoint file
    saved by the reference implementation (with its all_config.yaml beside it), or any source `trm.load`
    reads (hf://owner/name, a reference or HRM run folder)."""
    init_from_puzzle_rows: str = "check"
    """init_from's puzzle-embedding table: check (rows matched by puzzle name where both datasets name them,
    see init_from_identifiers; otherwise a table of another size is an error naming both sizes) or reset
    (every row starts afresh, for fine-tuning on other puzzles)."""
    init_from_identifiers: str | None = None
    """The identifiers.json (or dataset folder) naming the rows of init_from's puzzle table (default: the
    dataset recorded in init_from, when it is still there); "none": its rows serve no puzzle of this dataset.
    With the names known, rows are matched by puzzle name to this run's dataset (`trm.puzzle_rows`)."""
    init_puzzle_rows: str = "zeros"
    """How rows of puzzles init_from did not know start: zeros (as a fresh table) or mean (of its rows)."""
    max_train_seconds: float | None = None
    """Wall-clock training budget: stop (with a checkpoint, as an interruption would) once the training time
    of this invocation reaches it; evaluation and checkpoint pauses do not count (None: no budget)."""
    stop_at_accuracy: float | None = None
    """End the run (with a final checkpoint) at the first evaluation whose held-out exact accuracy
    reaches this fraction (None: run every step)."""
    depth_curriculum: list[list[float]] = field(default_factory=list)
    """(n, T) depth curriculum: stages [start fraction of training, n, T] (CGAR, arXiv 2511.08653, e.g.
    [[0, 2, 1], [0.3, 4, 2], [0.6, 6, 3]]); TRM only; evaluation always runs the model's own n and T."""
    optimizer: str = "adam_atan2"
    """adam_atan2 (the published optimizer), or muon: Muon for the network's matrices, AdamATan2 for the
    rest (trm.optim.MuonAdamATan2), both on the `lr` schedule."""
    muon_lr_ratio: float = 1.0
    """With optimizer=muon: the Muon learning rate as a multiple of `lr`."""
    step_weight_decay: float = 1.0
    """Decaying supervision-step weights (CGAR): step k of an example weighs lambda^(k-1), normalised
    (1.0: every step weighs the same, as published)."""
    wta_latents: int = 1
    """Winner-take-all training over K initial latents: each example runs as K copies (all but the first
    from a noise-perturbed initial state, `wta_noise`) and only the copy with the lowest token loss is
    trained; K times the compute per step (1: off)."""
    wta_noise: float = 1.0
    """Standard deviation of the initial-state noise of the winner-take-all copies."""
    seed: int = 0
    device: str = "auto"
    """cpu, cuda, mps, or auto (cuda > mps > cpu)."""
    dtype: str = "auto"
    """Activation dtype: float32, bfloat16, or auto (bfloat16 on CUDA; on CPU the faster of the two,
    measured once per machine and shape: see trm.runtime)."""
    compile: str = "auto"
    """torch.compile the model's step: on, off, or auto (on for CUDA; on CPU only when measured to pay
    back its compile time over the run)."""
    loggers: list[str] = field(default_factory=list)
    """Extra metric sinks: tensorboard, wandb (JSONL and the console are always on)."""
    project: str = "trm"
    """Project name for wandb."""

    keep_last: int = 0
    """Keep only the newest this many checkpoints (the one `latest` names always stays; 0: keep all)."""

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):  # YAML 1.1 reads a bare on/off as a boolean
            object.__setattr__(self, "compile", "on" if self.compile else "off")
        check_types(self)
        for name, ok, allowed in (
                ("data", bool(self.data), "a dataset folder"),
                ("run_dir", bool(self.run_dir), "a folder for logs and checkpoints"),
                ("global_batch_size", self.global_batch_size >= 1, "a positive integer"),
                ("epochs", self.epochs > 0 and math.isfinite(self.epochs), "a positive number"),
                ("steps", self.steps is None or self.steps >= 1, "a positive integer (or null: from epochs)"),
                ("bf16_steps", self.bf16_steps is None or self.bf16_steps >= 1, "a positive integer (or null: steps)"),
                ("lr", self.lr >= 0 and math.isfinite(self.lr), "0 or more (0: the weights stay as they are)"),
                ("lr_min_ratio", 0 <= self.lr_min_ratio <= 1, "in [0, 1]"),
                ("lr_warmup_steps", self.lr_warmup_steps >= 0, "0 or more"),
                ("weight_decay", self.weight_decay >= 0, "0 or more"),
                ("beta1", 0 <= self.beta1 < 1, "in [0, 1)"),
                ("beta2", 0 <= self.beta2 < 1, "in [0, 1)"),
                ("puzzle_emb_lr", self.puzzle_emb_lr >= 0 and math.isfinite(self.puzzle_emb_lr), "0 or more"),
                ("puzzle_emb_weight_decay", self.puzzle_emb_weight_decay >= 0, "0 or more"),
                ("ema_rate", 0 <= self.ema_rate < 1, "in [0, 1)"),
                ("eval_every", self.eval_every >= 0, "0 (only at the end) or a positive number of steps"),
                ("eval_max_batches", self.eval_max_batches is None or self.eval_max_batches >= 1,
                 "a positive integer (or null: the whole test split)"),
                ("checkpoint_every", self.checkpoint_every >= 0, "0 (only at the end) or a positive number of steps"),
                ("log_every", self.log_every >= 1, "a positive number of steps"),
                ("stop_at_accuracy", self.stop_at_accuracy is None or 0 < self.stop_at_accuracy <= 1,
                 "a fraction in (0, 1] (or null)"),
                ("seed", self.seed >= 0, "0 or more"),
                ("keep_last", self.keep_last >= 0, "0 (keep every checkpoint) or a positive count"),
                ("loss_type", self.loss_type in ("stablemax", "softmax"), "'stablemax' or 'softmax'"),
                ("loggers", set(self.loggers) <= {"tensorboard", "wandb"}, "a list of tensorboard, wandb"),
                ("init_from_puzzle_rows", self.init_from_puzzle_rows in ("check", "reset"), "'check' or 'reset'"),
                ("init_puzzle_rows", self.init_puzzle_rows in ("zeros", "mean"), "'zeros' or 'mean'"),
                ("max_train_seconds", self.max_train_seconds is None or self.max_train_seconds > 0,
                 "a positive number of seconds (or null: no budget)"),
                ("optimizer", self.optimizer in ("adam_atan2", "muon"), "'adam_atan2' or 'muon'"),
                ("muon_lr_ratio", self.muon_lr_ratio > 0 and math.isfinite(self.muon_lr_ratio), "a positive number"),
                ("step_weight_decay", 0 < self.step_weight_decay <= 1, "in (0, 1] (1: off)"),
                ("wta_latents", self.wta_latents >= 1, "a positive integer (1: off)"),
                ("wta_noise", self.wta_noise >= 0 and math.isfinite(self.wta_noise), "0 or more")):
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: must be {allowed}")
        if "arch" not in self.model:
            raise ConfigError("model: needs an 'arch' (trm, hrm or transformer)")
        for i, stage in enumerate(self.depth_curriculum):
            if len(stage) != 3 or not 0 <= stage[0] < 1 or any(x < 1 or x != int(x) for x in stage[1:]):
                raise ConfigError(f"depth_curriculum[{i}]={stage!r}: must be [start fraction in [0, 1), n, T] "
                                  "with whole n, T >= 1")
        for name in ("dtype", "device", "compile"):
            choices = {"dtype": DTYPE_CHOICES, "device": DEVICES, "compile": COMPILE}[name]
            value = getattr(self, name)
            if value not in choices and not (name == "device" and str(value).startswith("cuda:")):
                raise ConfigError(f"{name}={value!r}: must be one of {choices}")

    def steps_in(self, dtype: str) -> int | None:
        """The step count for a run training in `dtype` (a name: float32, bfloat16); None: from epochs."""
        return self.bf16_steps if dtype == "bfloat16" and self.bf16_steps else self.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Process group


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group when launched by torchrun (RANK / WORLD_SIZE set), else run alone."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return Dist()
    if not dist.is_initialized():
        # A finite timeout makes the others fail instead of hanging when one rank dies.
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", timeout=timedelta(minutes=10))
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", 0)))


class NonFiniteLoss(RuntimeError):
    """Raised when the loss becomes NaN or infinite; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------
# The parts of a run


@dataclass
class Run:
    """A run set up from its config: where it runs, its data, and what training updates."""

    cfg: TrainConfig
    ddp: Dist
    device: torch.device
    data: Any
    """`trm.data.sampler.PuzzleData`."""
    parts: Trainable
    total_steps: int
    mode: NumericMode
    """The resolved activation dtype and compile setting, with the reason."""

    @property
    def local_batch(self) -> int:
        return self.cfg.global_batch_size // self.ddp.world_size


def setup(cfg: TrainConfig) -> Run:
    """Join the process group, pick device and dtype, open the data, and build the model, optimizers, EMA,
    sampler and exploration generator."""
    from trm.data.sampler import open_dataset
    from trm.optim import EMA, SignSGDEmbedding

    ddp = init_distributed(pick_device(cfg.device).type)
    device = pick_device(cfg.device, ddp.local_rank)
    if cfg.global_batch_size % ddp.world_size:
        raise ConfigError(f"global_batch_size={cfg.global_batch_size} is not divisible by {ddp.world_size} processes")
    data = open_dataset(cfg.data)
    model_cfg = config_from_dict({**data.model_fields(), **cfg.model})
    if cfg.depth_curriculum and model_cfg.arch != "trm":
        raise ConfigError(f"depth_curriculum: only TRM has (n, T) to schedule, not {model_cfg.arch}")
    total_steps = cfg.steps or max(1, int(cfg.epochs * data.steps_per_epoch(cfg.global_batch_size)))
    mode = numeric_mode(cfg.dtype, cfg.compile, device, model_cfg, cfg.global_batch_size // ddp.world_size,
                        steps=total_steps, curriculum=cfg.depth_curriculum, max_seconds=cfg.max_train_seconds)
    total_steps = cfg.steps_in(mode.dtype_name) or total_steps
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model: ACTModel = build_model(model_cfg, dtype=mode.dtype, device=device)
    if cfg.init_from:
        model.load_state_dict(_initial_weights(cfg, model_cfg, data.dataset, ddp.main))
    parts = Trainable(
        model=model,
        optimizer=_optimizer(cfg, model),
        emb_optimizer=(SignSGDEmbedding(model.embed.puzzle, lr=cfg.puzzle_emb_lr,
                                        weight_decay=cfg.puzzle_emb_weight_decay)
                       if model.embed.puzzle is not None else None),
        ema=EMA(model, decay=cfg.ema_rate) if cfg.ema else None,
        sampler=data.train_sampler(cfg.global_batch_size, rank=ddp.rank, world_size=ddp.world_size, seed=cfg.seed),
        generator=torch.Generator(device=device).manual_seed(cfg.seed * 1000 + ddp.rank))
    return Run(cfg=cfg, ddp=ddp, device=device, data=data, parts=parts, total_steps=total_steps, mode=mode)


def _optimizer(cfg: TrainConfig, model: ACTModel) -> torch.optim.Optimizer:
    from trm.optim import AdamATan2, MuonAdamATan2, muon_parameters

    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "muon":
        matrices, rest = muon_parameters(model)
        groups: list[dict[str, Any]] = [{"params": matrices, "muon": True, "lr_ratio": cfg.muon_lr_ratio},
                                        {"params": rest}]
        return MuonAdamATan2(groups, lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)
    return AdamATan2(model.parameters(), lr=cfg.lr, betas=betas, weight_decay=cfg.weight_decay)


class Checkpointer:
    """Writes the whole training state every `checkpoint_every` steps (it decides at each `save`), or when
    forced (the end, an interruption); only rank 0 writes, each step at most once, keeping the newest
    `keep_last`."""

    def __init__(self, run: Run) -> None:
        self.run, self.run_dir = run, Path(run.cfg.run_dir)
        self.saved_step: int | None = None
        """The step of the newest checkpoint on disk (written or resumed from)."""
        self.path: Path | None = None
        self.fallback = False
        """Whether `restore` found `latest` dangling and took the newest complete checkpoint."""
        self.changes: list[str] = []
        """The schedule settings `restore` found changed since the checkpoint (see RESUME_SCHEDULE)."""

    def restore(self) -> tuple[int, Carry | None]:
        """The latest checkpoint's (step, carry), loaded into the run's parts."""
        from trm.checkpoint import pointed_checkpoint, read_meta

        ckpt = latest_checkpoint(self.run_dir)
        if ckpt is None:
            raise CheckpointError(f"--resume: {self.run_dir} has no checkpoint to resume from")
        self.fallback = ckpt != pointed_checkpoint(self.run_dir)
        meta = read_meta(ckpt)
        check_resumable(meta, self.run)
        self.changes = changed_settings(meta, self.run.cfg, RESUME_SCHEDULE)
        step, carry = restore_training(ckpt, self.run.parts, self.run.device)
        self.saved_step, self.path = step, ckpt
        return step, carry

    def save(self, step: int, carry: Carry | None, *, force: bool = False) -> None:
        every = self.run.cfg.checkpoint_every
        if not self.run.ddp.main or not (force or (every and step % every == 0)) or step == self.saved_step:
            return
        mode = self.run.mode
        save_training(self.run_dir, step, self.run.parts, carry,
                      extra={"train": self.run.cfg.to_dict(), "world_size": self.run.ddp.world_size,
                             "numeric": {"dtype": mode.dtype_name, "compile": mode.compile}})
        self.saved_step = step
        from trm.runfolder import retain

        retain(self.run_dir, self.run.cfg.keep_last)


RESUME_FIXED = ("global_batch_size", "loss_type", "ema")
"""Training settings a resumed run must share with the checkpoint (besides the model)."""
RESUME_SCHEDULE = ("steps", "bf16_steps", "epochs", "lr", "lr_warmup_steps", "lr_min_ratio", "puzzle_emb_lr",
                   "depth_curriculum")
"""Settings a resumed run may change, each said in one line: they move the schedule from here on."""


def changed_settings(meta: dict[str, Any], cfg: TrainConfig, keys: tuple[str, ...]) -> list[str]:
    """`key: old -> new` for each of `keys` whose training setting differs from the checkpoint's."""
    saved, now = meta.get("train", {}), cfg.to_dict()
    return [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in keys if k in saved and saved[k] != now[k]]


def check_resumable(meta: dict[str, Any], run: Run) -> None:
    """ConfigError naming what differs when the run's configuration cannot continue this checkpoint."""
    saved_model = meta.get("model", {})
    model = run.parts.model.config.to_dict()
    changed = [f"model.{k}: {saved_model.get(k)!r} -> {model.get(k)!r}" for k in sorted(set(saved_model) | set(model))
               if saved_model.get(k) != model.get(k)]
    changed += changed_settings(meta, run.cfg, RESUME_FIXED)
    if meta.get("world_size", run.ddp.world_size) != run.ddp.world_size:
        changed.append(f"processes: {meta['world_size']} -> {run.ddp.world_size}")
    if changed:
        raise ConfigError(f"--resume: the configuration differs from the checkpoint's ({'; '.join(changed)}); "
                          "resume with the same settings, or --restart (or another run_dir) to train anew")


class StopSignals:
    """While active, SIGINT and SIGTERM set `reason` (the loop then saves and stops) instead of killing."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: Any) -> None:
        self.reason = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def learning_rate_scale(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The schedule's factor for the update after `step` completed ones: linear warmup, then cosine decay to
    `lr_min_ratio` (a factor of the peak rates). As in the reference, updates are numbered from 1, so the
    first runs at 1/warmup of the peak (not at 0) and the last at `lr_min_ratio`."""
    from trm.optim import cosine_schedule_with_warmup

    return cosine_schedule_with_warmup(step + 1, 1.0, cfg.lr_warmup_steps, total_steps, cfg.lr_min_ratio)


def apply_depth(run: Run, step: int) -> None:
    """The depth curriculum's (n, T) for this step (the model's own depth outside it)."""
    from trm.optim import depth_at

    if run.cfg.depth_curriculum:
        depth = depth_at(step, run.total_steps, run.cfg.depth_curriculum)
        run.parts.model.set_depth(*(depth or (None, None)))  # type: ignore[operator]


def optimizer_step(run: Run, lr_scale: float) -> None:
    """Average gradients over processes, update parameters (AdamATan2), puzzle embeddings (sign-SGD) and EMA."""
    cfg, parts = run.cfg, run.parts
    if run.ddp.world_size > 1:
        _all_reduce_grads(parts.model)
    optimizer = parts.optimizer
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * lr_scale
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if parts.emb_optimizer is not None:
        for group in parts.emb_optimizer.param_groups:
            group["lr"] = cfg.puzzle_emb_lr * lr_scale
        parts.emb_optimizer.step()
        parts.emb_optimizer.zero_grad()
    if parts.ema is not None:
        parts.ema.update(parts.model)


class EvalHook:
    """Evaluates (with the EMA weights when kept) every `eval_every` steps before the last, and at the end;
    logs `eval/<set>/<metric>`."""

    def __init__(self, run: Run, logger: Any) -> None:
        self.run, self.logger = run, logger
        self.last: dict[str, Any] = {}
        """The latest evaluation's figures."""

    def maybe(self, step: int, train_seconds: float) -> bool:
        """Evaluate when due; True when held-out exact accuracy reached `stop_at_accuracy`."""
        every, target = self.run.cfg.eval_every, self.run.cfg.stop_at_accuracy
        if not (every and step % every == 0 and step < self.run.total_steps):
            return False
        result = self(step, train_seconds)
        if target is None or result.get("all/exact_accuracy", 0.0) < target:
            return False
        self.logger.message(f"held-out exact accuracy {result['all/exact_accuracy']:.1%} reached "
                            f"stop_at_accuracy={target:g} at step {step}")
        return True

    def __call__(self, step: int, train_seconds: float | None = None) -> dict[str, Any]:
        from trm.evaluate import EvalOptions, evaluate
        from trm.tasks import dataset_task

        run, model, ema = self.run, self.run.parts.model, self.run.parts.ema
        context = ema.swapped_in(model) if ema is not None else contextlib.nullcontext()
        with context:
            result = evaluate(model, run.data.test_batches(run.local_batch, rank=run.ddp.rank,
                                                           world_size=run.ddp.world_size),
                              EvalOptions(max_batches=run.cfg.eval_max_batches, reduce=run.ddp.world_size > 1),
                              device=run.device, task=dataset_task(run.data.dataset))
        model.train()
        extra = {"train_seconds": round(train_seconds, 3)} if train_seconds is not None else {}
        self.logger.log(step, {**{f"eval/{k}": v for k, v in result.flat().items()}, **extra}, kind="eval")
        self.last = result.flat()
        return self.last


class TrainClock:
    """Training wall time without the pauses for evaluation and checkpoints (the time-to-accuracy clock)."""

    def __init__(self) -> None:
        self.start, self.paused = time.perf_counter(), 0.0

    def seconds(self) -> float:
        return time.perf_counter() - self.start - self.paused

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.paused += time.perf_counter() - began


def _endless(sampler: Any) -> Iterator[dict[str, np.ndarray]]:
    while True:
        yield from sampler


# ---------------------------------------------------------------------------------------------
# The loop


def train(cfg: TrainConfig, *, resume: bool = False, restart: bool = False, progress: bool = True,
          stop_after: int | None = None) -> dict[str, Any]:
    """Train according to `cfg`; returns the final metrics (rank 0's view, reduced over ranks).

    A run folder that already holds checkpoints is refused unless `resume` (continue from its newest
    checkpoint) or `restart` (move its files aside and start over); a second run into the same folder
    is refused while the first lives (see trm.runfolder).

    `stop_after` ends this invocation after that many steps with a checkpoint, as an interruption
    would (the schedule still spans the whole run), so that `resume=True` can continue it. An
    interrupted run returns `interrupted: True` and `signal` (SIGINT, SIGTERM or stop_after).
    """
    from trm.runfolder import RunFolder

    main = os.environ.get("RANK", "0") == "0"  # the process group is joined later, in setup
    with RunFolder.open(cfg.run_dir, resume=resume, restart=restart, main=main) as folder:
        return _train(setup(cfg), folder.notes, resume=resume, progress=progress, stop_after=stop_after)


def start_line(run: Run, step: int) -> str:
    """What a run is about to do, in one line: folder, size, device, numerics, steps."""
    from trm.models import count_parameters

    cfg = run.cfg
    params = count_parameters(run.parts.model)
    start = f"resuming at step {step} of {run.total_steps}" if step else f"{run.total_steps} steps"
    procs = f" x {run.ddp.world_size} processes" if run.ddp.world_size > 1 else ""
    return (f"training {run.parts.model.config.arch.upper()} ({params / 1e6:.2f}M parameters) into {cfg.run_dir}: "
            f"{start}, batch {cfg.global_batch_size}, device {run.device}{procs}, dtype {run.mode.dtype_name}, "
            f"compile {'on' if run.mode.compile else 'off'}")


def _train(run: Run, notes: list[str], *, resume: bool, progress: bool, stop_after: int | None) -> dict[str, Any]:
    from trm.logging import MetricLogger

    cfg = run.cfg
    model, device, ddp, total_steps = run.parts.model, run.device, run.ddp, run.total_steps
    step_fn = _maybe_compile(model, run.mode.compile, static=bool(cfg.depth_curriculum))
    checkpointer = Checkpointer(run)
    step, carry = checkpointer.restore() if resume else (0, None)
    logger = MetricLogger(Path(cfg.run_dir), cfg.to_dict(), cfg.loggers, project=cfg.project, enabled=ddp.main,
                          total_steps=total_steps, initial_step=step, progress=progress)
    evaluator = EvalHook(run, logger)
    for note in notes:
        logger.message(f"{cfg.run_dir}: {note}")
    if resume and checkpointer.fallback:
        logger.message(f"'latest' does not name the newest complete checkpoint; resuming from that one, "
                       f"{checkpointer.path}")
    if checkpointer.changes:
        logger.message(f"resuming with changed settings ({'; '.join(checkpointer.changes)}): the schedule "
                       "follows them from this step on")
    logger.message(start_line(run, step))
    logger.message(f"numeric mode: {run.mode.reason}")
    model.train()
    model.group, model.group_noise = cfg.wta_latents, cfg.wta_noise
    batches = _endless(run.parts.sampler)
    t_last, steps_since = time.perf_counter(), 0
    clock = TrainClock()
    try:
        with StopSignals() as stop:
            while step < total_steps:
                batch = {k: torch.from_numpy(np.asarray(v)).to(device, non_blocking=True)
                         for k, v in next(batches).items()}
                if cfg.wta_latents > 1:  # K consecutive copies of every example
                    batch = {k: v.repeat_interleave(cfg.wta_latents, 0) for k, v in batch.items()}
                if carry is None:
                    carry = model.initial_carry(batch)
                lr_scale = learning_rate_scale(cfg, step, total_steps)
                apply_depth(run, step)
                carry, out = step_fn(carry, batch, run.parts.generator)
                loss = act_loss(carry, out, cfg.loss_type, step_weight_decay=cfg.step_weight_decay,
                                max_steps=model.halt_max_steps, group=cfg.wta_latents)
                (loss.total / cfg.global_batch_size).backward()
                optimizer_step(run, lr_scale)
                step += 1
                steps_since += 1

                metrics = _reduce_metrics(loss.metrics, ddp)
                if not math.isfinite(metrics["lm_loss"]) or not torch.isfinite(loss.total):
                    raise NonFiniteLoss(f"non-finite loss at step {step}; the last good checkpoint is kept in "
                                        f"{cfg.run_dir}")
                if step % cfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    rate = steps_since * cfg.global_batch_size / (now - t_last)
                    t_last, steps_since = now, 0
                    logger.log(step, {**_summarise(metrics, cfg.global_batch_size), "lr": cfg.lr * lr_scale,
                                      "example_steps_per_s": rate, "train_seconds": round(clock.seconds(), 3)})
                logger.advance(step)

                seconds = clock.seconds()  # before the pause: a checkpoint written now is not training time
                with clock.pause():
                    checkpointer.save(step, carry)
                    reached = evaluator.maybe(step, seconds)
                if reached:
                    checkpointer.save(step, carry, force=True)
                    if ddp.world_size > 1:
                        dist.barrier()
                    return {"step": step, **evaluator.last}
                if stop_after is not None and step >= stop_after and step < total_steps:
                    stop.reason = "stop_after"
                if cfg.max_train_seconds is not None and seconds >= cfg.max_train_seconds and step < total_steps:
                    stop.reason = f"max_train_seconds={cfg.max_train_seconds:g}"
                if stop.reason is not None:
                    logger.message(f"stopping at step {step} ({stop.reason}): saving a checkpoint")
                    checkpointer.save(step, carry, force=True)
                    if ddp.world_size > 1:
                        dist.barrier()
                    return {"step": step, "interrupted": True, "reason": stop.reason}
            seconds = clock.seconds()
            checkpointer.save(step, carry, force=True)
            final = evaluator(step, seconds)
            if ddp.world_size > 1:
                dist.barrier()  # nobody tears the group down while rank 0 still writes
            return {"step": step, **final}
    finally:
        logger.close()


def _initial_weights(cfg: TrainConfig, model_cfg: ModelConfig, dataset: Any, verbose: bool) -> dict[str, torch.Tensor]:
    """Weights to start from: any source `trm.load` reads (its EMA weights when present), fitted to this run:
    every shape checked; the puzzle rows reset on request, else matched by puzzle name where both datasets
    name their rows, else the table must fit as it is (the loader's error names both sizes)."""
    from trm.loader import initial_weights

    source = str(cfg.init_from)
    if cfg.init_from_puzzle_rows == "reset":
        return initial_weights(source, model_cfg, data=cfg.data, puzzle_rows="reset")
    old_names = _row_names(cfg, source)
    new_names = getattr(dataset, "identifiers", None)
    if old_names is None or new_names is None:
        return initial_weights(source, model_cfg, data=cfg.data, puzzle_rows="check")
    state = initial_weights(source, model_cfg, data=cfg.data, puzzle_rows="keep")
    return _fit_puzzle_rows(cfg, source, state, old_names, list(new_names), verbose)


def _row_names(cfg: TrainConfig, init_from: str) -> list[str] | str | None:
    """The puzzle names of init_from's table rows: from init_from_identifiers, else from the dataset the
    checkpoint recorded (when it is still there); "none" when asked to reuse no row; None when unknown."""
    from trm.puzzle_rows import read_identifiers

    source = cfg.init_from_identifiers
    if source is None and Path(init_from).is_dir():
        from trm.checkpoint import CheckpointError, latest_checkpoint, read_meta

        try:  # our own checkpoints record their dataset; a reference or HRM folder does not
            recorded = read_meta(latest_checkpoint(init_from) or init_from).get("train", {}).get("data")
        except CheckpointError:
            recorded = None
        if recorded and (Path(recorded) / "identifiers.json").is_file():
            source = recorded
    if source is None or source == "none":
        return source
    try:
        return list(read_identifiers(source))
    except (OSError, ValueError) as e:
        raise ConfigError(f"init_from_identifiers={source}: {e}") from None


def _fit_puzzle_rows(cfg: TrainConfig, init_from: str, state: dict[str, torch.Tensor], old_names: list[str] | str,
                     new_names: list[str], verbose: bool) -> dict[str, torch.Tensor]:
    """init_from's weights with the puzzle table laid out for this run's dataset, rows matched by puzzle name."""
    from trm.puzzle_rows import PUZZLE_TABLE, match_puzzle_rows

    if PUZZLE_TABLE not in state:
        return state
    if old_names == "none":  # names no dataset has: every row of this run starts fresh
        old_names = ["<blank>"] + [f"<row {i} of init_from>" for i in range(1, state[PUZZLE_TABLE].shape[0])]
    if list(old_names) == list(new_names):
        return state
    try:
        state, summary = match_puzzle_rows(state, list(old_names), list(new_names), new_rows=cfg.init_puzzle_rows)
    except ValueError as e:
        raise ConfigError(f"init_from={init_from}: {e}") from None
    if verbose:
        print(f"init_from: {summary.line()}", file=sys.stderr)
    return state


def _maybe_compile(model: ACTModel, use_compile: bool, *, static: bool = False):
    """Compile the model's step. `static`: the step's Python integers change during the run (the depth
    curriculum's n and T), so each value gets its own graph; left to itself, torch.compile would turn
    them into symbolic integers after the first change, and the recursion loop cannot run on those."""
    def run(carry: Carry, batch: dict[str, torch.Tensor], generator: torch.Generator):
        return model(carry, batch, generator=generator)

    if use_compile:
        model.step = torch.compile(model.step, dynamic=False if static else None)  # type: ignore[method-assign]
    return run


def _all_reduce_grads(model: ACTModel) -> None:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _reduce_metrics(metrics: dict[str, torch.Tensor], ddp: Dist) -> dict[str, float]:
    names = sorted(metrics)
    values = torch.stack([metrics[k].detach().double().reshape(()) for k in names])
    if ddp.world_size > 1:
        values = values.to(next(iter(metrics.values())).device)
        dist.all_reduce(values)
    return dict(zip(names, values.tolist(), strict=True))


def _summarise(m: dict[str, float], global_batch_size: int) -> dict[str, float]:
    """Batch sums -> the figures the reference logs: accuracies and steps per halted example (none when
    nothing halted at this step), losses per example of the global batch (the sums divided by it, which is
    also what is back-propagated)."""
    count = m.get("count", 0.0)
    out = {"count": count}
    for key in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps"):
        if key in m and count > 0:  # means over halted examples: none when nothing halted at this step
            out[key] = m[key] / count
    for key in ("lm_loss", "q_halt_loss", "q_continue_loss"):
        if key in m:
            out[key] = m[key] / global_batch_size
    return out


# ---------------------------------------------------------------------------------------------
# Recipes


RECIPES_DIR = Path(__file__).parent / "recipes"


def list_recipes() -> dict[str, str]:
    """Recipe name -> its first comment line."""
    out = {}
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), "")
        out[path.stem] = first
    return out


def _parse_value(text: str) -> Any:
    """A command-line value as YAML would read it, except that `3e-4` is a number (YAML 1.1 says string)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML (e.g. `a: b: c`): the text itself, which the typed check then judges
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def load_recipe(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """A recipe (a name from `trm recipes` or a YAML path) with dotted `key=value` overrides."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"no recipe {name_or_path!r}: not a file, and not one of {sorted(list_recipes())}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of settings (key: value), not {type(values).__name__}")
    for item in overrides:
        key, eq, text = item.partition("=")
        parts = key.split(".")
        if not eq or not all(parts):
            raise ConfigError(f"override {item!r}: expected key=value (e.g. model.hidden_size=256)")
        node = values
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:depth + 1])} is {node!r}, not a group "
                                  "of settings")
        node[parts[-1]] = _parse_value(text)
    overridden = {item.partition("=")[0] for item in overrides}
    if "steps" in overridden and "bf16_steps" not in overridden:
        values.pop("bf16_steps", None)  # the steps asked for, in every numeric mode
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {unknown}; known: {sorted(known)}")
    missing = sorted(f.name for f in dataclasses.fields(TrainConfig)
                     if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                     and f.name not in values)
    if missing:
        raise ConfigError(f"{path}: missing setting(s) {missing}")
    return TrainConfig(**values)


EXIT_ON_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
"""Exit status of an interrupted run (128 + the signal number, as a shell reports a killed command), so that
`trm train ... && trm eval ...` does not evaluate an unfinished model."""


def main_train(recipe: str, overrides: list[str], resume: bool = False, restart: bool = False) -> int:
    cfg = load_recipe(recipe, overrides)
    try:
        result = train(cfg, resume=resume, restart=restart, progress=sys.stderr.isatty())
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(json.dumps(result, indent=1, default=str))
    if result.get("interrupted"):
        print(f"stopped ({result.get('reason')}) at step {result['step']}: the checkpoint is saved; "
              f"continue with --resume", file=sys.stderr)
        return EXIT_ON_SIGNAL.get(str(result.get("reason")), 0)
    return 0
