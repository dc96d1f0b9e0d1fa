"""Metric logging for training runs: a progress bar, a metrics line per interval, a JSONL file in
the run folder, and TensorBoard / Weights & Biases when their extras are installed. Only the
process that is `enabled` (rank 0) writes anything."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


class MetricLogger:
    def __init__(self, run_dir: str | Path, config: dict[str, Any], loggers: list[str], *, project: str = "trm",
                 enabled: bool = True, total_steps: int = 0, initial_step: int = 0, progress: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self._bar: Any = None
        self._tb: Any = None
        self._wandb: Any = None
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "train_config.json").write_text(json.dumps(config, indent=1, default=str))
        self._jsonl = open(self.run_dir / "metrics.jsonl", "a")
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True, file=sys.stderr)
        for name in loggers:
            if name == "tensorboard":
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:
                    raise ImportError("the tensorboard logger needs: pip install 'trm[tensorboard]'") from None
                self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            elif name == "wandb":
                try:
                    import wandb
                except ImportError:
                    raise ImportError("the wandb logger needs: pip install 'trm[wandb]'") from None
                self._wandb = wandb.init(project=project, config=config, dir=str(self.run_dir))
            else:
                raise ValueError(f"unknown logger {name!r}; choose from tensorboard, wandb")

    def log(self, step: int, metrics: dict[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, "kind": kind, "time": time.time(), **metrics}
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        line = f"{kind} step {step}: " + "  ".join(f"{k} {_fmt(v)}" for k, v in metrics.items())
        self.message(line)
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k if "/" in k else f"{kind}/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({k if "/" in k else f"{kind}/{k}": v for k, v in metrics.items()}, step=step)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def advance(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(step - self._bar.n)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _fmt(v: float) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
