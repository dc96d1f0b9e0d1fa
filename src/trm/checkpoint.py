"""Checkpoints: weights as safetensors, configuration as JSON, training state for resuming.

A checkpoint is a folder:

    model.safetensors   raw weights (the puzzle-embedding table included)
    ema.safetensors     EMA weights (what evaluation uses), when training kept an EMA
    config.json         {"model": {...arch config...}, "train": {...}, "step": N, ...}
    train_state.pt      optimizer, sampler, ACT carry and RNG states (only needed to resume)

`save_training` / `restore_training` write and read back everything a run needs to resume exactly
(`Trainable`: the model, optimizers, EMA, sampler and exploration generator, plus the ACT carry).

Weights and configuration load without executing code; `train_state.pt` is read with
`torch.load(weights_only=True)`. A folder is written under a temporary name and renamed into
place, and the run's `latest` pointer is replaced atomically afterwards, so a run killed while
writing never leaves a half-written checkpoint as the latest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from trm.atomic import atomic_folder, rename_window, shared_mode
from trm.models import ACTModel, Carry, ModelConfig, build_model, config_from_dict


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or corrupt; the message names the file."""


class CheckpointWriteError(CheckpointError):
    """A checkpoint that could not be written (disk full, no permission); the previous one is kept."""


def _write_failure(folder: Path, e: BaseException) -> str:
    """One line for a checkpoint that could not be written: the cause in words, and the free space."""
    import errno
    import shutil

    try:
        free: int | None = shutil.disk_usage(folder.parent).free
    except OSError:
        free = None
    if isinstance(e, OSError):
        why = e.strerror or str(e)
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    else:  # torch's zip writer reports a short write as "[enforce fail at inline_container.cc] unexpected pos"
        why = "the write was cut short"
        full = free is not None and free < 64 * 2**20
        why = "No space left on device" if full else f"{why} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
    space = "" if free is None else (f"; {free / 2**20:.0f} MiB free there" if free >= 2**20 else
                                     f"; {free / 2**10:.0f} KiB free there")
    hint = ": free some space, or set run_dir elsewhere" if full else ""
    return f"{folder}: cannot write the checkpoint ({why}{space}); the previous checkpoint is kept{hint}"


def _save_tensors(tensors: dict[str, Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))


def _load_tensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several error types for truncated/corrupt files
        raise CheckpointError(f"{path}: cannot read weights ({type(e).__name__}: {e})") from None


def _write_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True, default=str))


def save_checkpoint(folder: str | Path, *, model: ACTModel, step: int, ema_state: dict[str, Tensor] | None = None,
                    train_state: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint folder atomically and return its path."""
    folder = Path(folder)
    try:
        with atomic_folder(folder) as tmp:
            _save_tensors(model.state_dict(), tmp / "model.safetensors")
            if ema_state is not None:
                _save_tensors(ema_state, tmp / "ema.safetensors")
            if train_state is not None:
                torch.save(train_state, tmp / "train_state.pt")
            _write_json({"model": model.config.to_dict(), "step": step, **(extra or {})}, tmp / "config.json")
            for f in tmp.iterdir():  # the data must be on disk before the rename makes it visible
                os.chmod(f, shared_mode(folder=False))  # safetensors writes owner-only files
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError of its writer
        raise CheckpointWriteError(_write_failure(folder, e)) from None
    _fsync_dir(folder.parent)
    return folder


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside `folder` durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def set_latest(run_dir: str | Path, checkpoint: str | Path) -> None:
    """Point `run_dir/latest` at `checkpoint`: a small text file written beside it and swapped in by one
    `os.replace`, so `latest` names the old checkpoint or the new one at every moment."""
    run_dir = Path(run_dir)
    tmp = run_dir / f".latest.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(Path(checkpoint).name + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / "latest")
    _fsync_dir(run_dir)


CHECKPOINT_PREFIX = "step_"


def is_complete(folder: Path) -> bool:
    """Whether a folder holds a whole checkpoint (folders are renamed into place only once written)."""
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def checkpoint_folders(run_dir: str | Path) -> list[Path]:
    """The complete `step_*` checkpoints of a run folder, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and p.is_dir() and is_complete(p)]
    return sorted(found, key=lambda p: (len(p.name), p.name))


def pointed_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `run_dir/latest` names, when that is a complete checkpoint."""
    pointer = Path(run_dir) / "latest"
    try:
        name = pointer.read_text().strip()
    except OSError:
        return None
    folder = Path(run_dir) / name
    return folder if name and "/" not in name and folder.is_dir() and is_complete(folder) else None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run: the one `run_dir/latest` names, unless a newer complete
    `step_*` exists (a run killed after renaming a checkpoint into place, before pointing `latest` at it)
    or `latest` names nothing complete (a run killed at the wrong moment, a folder removed by hand);
    None when there is none."""
    pointed = pointed_checkpoint(run_dir)
    folders = checkpoint_folders(run_dir)
    newest = folders[-1] if folders else None
    if pointed is None or (newest is not None and _step_of(newest) > _step_of(pointed)):
        return newest
    return pointed


def _step_of(folder: Path) -> int:
    digits = folder.name.removeprefix(CHECKPOINT_PREFIX)
    return int(digits) if digits.isdigit() else -1


def is_run_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "latest").is_file() or bool(checkpoint_folders(path))


@dataclass
class Loaded:
    """A checkpoint read back: the model (raw or EMA weights), its config and the stored metadata."""

    model: ACTModel
    config: ModelConfig
    meta: dict[str, Any]
    path: Path
    numeric: str = ""
    """What activation dtype was chosen and why (empty when the caller gave a torch dtype)."""


def read_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint folder (no config.json)")
    try:
        return dict(json.loads(cfg_path.read_text()))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: corrupt JSON ({e})") from None


def load_checkpoint(path: str | Path, *, use_ema: bool = True, device: torch.device | str | None = None,
                    dtype: torch.dtype | str = torch.float32) -> Loaded:
    """Rebuild the model of a checkpoint folder (a run folder means its latest checkpoint).

    With `use_ema` the EMA weights are loaded when the checkpoint has them. `dtype` is the activation
    dtype (parameters stay float32); "train" means the one the run trained with.
    """
    path = Path(path)
    if not (path / "config.json").is_file() and is_run_folder(path):
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: 'latest' names a checkpoint that does not exist, and no other is complete")
        path = found
    meta = read_meta(path)
    try:
        config = config_from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / 'config.json'}: bad model config ({e})") from None
    note = ""
    if isinstance(dtype, str):
        from trm.runtime import inference_mode

        trained = meta.get("numeric", {}).get("dtype") or meta.get("train", {}).get("dtype", "float32")
        mode = inference_mode(dtype, trained, torch.device(device or "cpu"), config)
        dtype, note = mode.dtype, mode.reason
    model = build_model(config, dtype=dtype, device=device)
    weights = path / ("ema.safetensors" if use_ema and (path / "ema.safetensors").is_file() else "model.safetensors")
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {weights.name}")
    state = _load_tensors(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: weights do not fit the model in config.json ({e})") from None
    return Loaded(model=model, config=config, meta=meta, path=path, numeric=note)


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The resumable training state of a checkpoint folder."""
    file = Path(path) / "train_state.pt"
    if not file.is_file():
        raise CheckpointError(f"{path}: no train_state.pt, so it cannot be resumed (it can still be evaluated)")
    try:
        return dict(torch.load(file, map_location="cpu", weights_only=True))
    except Exception as e:
        raise CheckpointError(f"{file}: corrupt training state ({type(e).__name__}: {e})") from None


# ---------------------------------------------------------------------------------------------
# The whole training state


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@dataclass
class Trainable:
    """What a training run updates and must restore to resume bit-identically."""

    model: ACTModel
    optimizer: torch.optim.Optimizer
    sampler: Stateful
    generator: torch.Generator
    """The halting-exploration generator."""
    emb_optimizer: torch.optim.Optimizer | None = None
    ema: Any = None
    """`trm.optim.EMA` (state_dict / load_state_dict / ema_state_dict), or None."""


def _carry_state(carry: Carry | None) -> dict[str, Any] | None:
    if carry is None:
        return None
    return {"state": {k: v.cpu() for k, v in carry.state.items()}, "steps": carry.steps.cpu(),
            "halted": carry.halted.cpu(), "data": {k: v.cpu() for k, v in carry.data.items()}}


def _load_carry(state: dict[str, Any] | None, device: torch.device) -> Carry | None:
    if state is None:
        return None
    return Carry(state={k: v.to(device) for k, v in state["state"].items()}, steps=state["steps"].to(device),
                 halted=state["halted"].to(device), data={k: v.to(device) for k, v in state["data"].items()})


def save_training(run_dir: str | Path, step: int, parts: Trainable, carry: Carry | None,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write `run_dir/step_<step>` with the weights, the EMA and everything needed to resume, then point
    `run_dir/latest` at it; returns the folder."""
    state = {"optimizer": parts.optimizer.state_dict(), "sampler": parts.sampler.state_dict(),
             "emb_optimizer": parts.emb_optimizer.state_dict() if parts.emb_optimizer else None,
             "ema": parts.ema.state_dict() if parts.ema else None, "carry": _carry_state(carry),
             "rng": {"torch": torch.get_rng_state(), "exploration": parts.generator.get_state()}}
    folder = save_checkpoint(Path(run_dir) / f"step_{step:07d}", model=parts.model, step=step,
                             ema_state=parts.ema.ema_state_dict() if parts.ema else None, train_state=state,
                             extra=extra)
    rename_window("latest")
    set_latest(run_dir, folder)
    return folder


def restore_training(folder: str | Path, parts: Trainable, device: torch.device) -> tuple[int, Carry | None]:
    """Load a checkpoint written by `save_training` into `parts`; returns (its step, the ACT carry)."""
    folder = Path(folder)
    meta = read_meta(folder)
    parts.model.load_state_dict(_load_tensors(folder / "model.safetensors"))
    state = load_train_state(folder)
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.emb_optimizer is not None and state.get("emb_optimizer"):
        parts.emb_optimizer.load_state_dict(state["emb_optimizer"])
    if parts.ema is not None and state.get("ema"):
        parts.ema.load_state_dict(state["ema"])
    parts.sampler.load_state_dict(state["sampler"])
    torch.set_rng_state(state["rng"]["torch"])
    parts.generator.set_state(state["rng"]["exploration"])
    return int(meta["step"]), _load_carry(state["carry"], device)
