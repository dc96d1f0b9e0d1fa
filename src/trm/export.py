"""`trm export RUN OUT`: a trained model as the Hugging Face ecosystem expects it.

    OUT/config.json         {"model": {...}, "step": N, "train": {...}, "weights": "ema" | "raw", "metrics": [...]}
    OUT/model.safetensors   the weights evaluation uses (the EMA when the run kept one), byte for byte
    OUT/README.md           the model card: task, data and its build command, recipe, measured metrics with
                            the machine they were measured on, how to evaluate and solve, citation

`trm.load(OUT)` gives back exactly the model `trm.load(RUN)` gives. `push` uploads OUT to a Hub
repository with huggingface_hub (the optional `hub` extra).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from trm.atomic import atomic_folder
from trm.checkpoint import CheckpointError, latest_checkpoint, read_meta

CITATION = """@article{jolicoeurmartineau2025tiny,
  title   = {Less is More: Recursive Reasoning with Tiny Networks},
  author  = {Jolicoeur-Martineau, Alexia},
  journal = {arXiv preprint arXiv:2510.04871},
  year    = {2025}
}"""
HRM_CITATION = """@article{wang2025hierarchical,
  title   = {Hierarchical Reasoning Model},
  author  = {Wang, Guan and Li, Jin and Sun, Yuhao and Chen, Xing and Liu, Changling and Wu, Yue and Lu, Meng and
             Song, Sen and Abbasi Yadkori, Yasin},
  journal = {arXiv preprint arXiv:2506.21734},
  year    = {2025}
}"""


def checkpoint_folder(run: str | Path) -> Path:
    """The checkpoint a run folder's `latest` names, or the checkpoint folder itself."""
    path = Path(run)
    if (path / "latest").is_file():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"{path}: 'latest' names a checkpoint that does not exist")
        return found
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a run or checkpoint folder of ours (no latest, no config.json); a "
                              "reference checkpoint is already in the format it was published in")
    return path


def export(run: str | Path, out: str | Path, *, repo_id: str | None = None, raw: bool = False) -> Path:
    """Write the export folder `out` (it must not exist yet, or be empty) from a run or checkpoint folder."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out}: already exists and is not empty; choose a new folder (nothing was written)")
    src = checkpoint_folder(run)
    meta = read_meta(src)
    weights = src / ("ema.safetensors" if not raw and (src / "ema.safetensors").is_file() else "model.safetensors")
    if not weights.is_file():
        raise CheckpointError(f"{src}: no {weights.name}")
    metrics = measured_metrics(src)
    training = training_evaluation(src, meta)
    config = {k: v for k, v in meta.items() if k not in ("world_size",)}
    config.update({"weights": "ema" if weights.name == "ema.safetensors" else "raw", "exported_from": str(src),
                   "metrics": metrics, "training_evaluation": training, "format": "trm"})
    with atomic_folder(out) as tmp:
        shutil.copyfile(weights, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True, default=str))
        (tmp / "README.md").write_text(model_card(config, repo_id=repo_id))
    return out


def measured_metrics(folder: Path) -> list[dict[str, Any]]:
    """The `trm eval` results stored beside a checkpoint (eval-*.json), summarised."""
    out = []
    for path in sorted(folder.glob("eval-*.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for name, r in report.get("sets", {}).items():
            out.append({"file": path.name, "set": name, "data": report.get("data"), "policy": report.get("policy"),
                        "budget": report.get("budget"), "count": r.get("count"),
                        "exact_accuracy": r.get("exact_accuracy"), "exact_accuracy_ci95": r.get("exact_accuracy_ci95"),
                        "valid_accuracy": r.get("valid_accuracy"), "mean_steps": r.get("mean_steps"),
                        "limit": report.get("limit"), "seconds": report.get("cost", {}).get("seconds"),
                        "machine": report.get("machine") or "not recorded (evaluated before trm recorded it)"})
    return out


def training_evaluation(folder: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The run's last held-out evaluation at or before the checkpoint's step (its metrics.jsonl)."""
    log = folder.parent / "metrics.jsonl"
    if not log.is_file():
        return None
    last = None
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == "eval" and record.get("step", 0) <= meta.get("step", 0):
            last = record
    if last is None:
        return None
    return {k: v for k, v in last.items() if k not in ("kind", "time")}


def build_command(data: str | None) -> str | None:
    """The build command of the recipe that trains on `data` (its '# Data:' line), if one does."""
    from trm.train import RECIPES_DIR

    if not data:
        return None
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        text = path.read_text()
        if any(line.strip() == f"data: {data}" for line in text.splitlines()):
            for line in text.splitlines():
                if line.startswith("# Data:"):
                    return line[len("# Data:"):].strip()
    return None


def _percent(x: Any) -> str:
    return f"{100 * x:.2f}%" if isinstance(x, (int, float)) else "-"


def model_card(config: dict[str, Any], *, repo_id: str | None = None) -> str:
    """The README.md of an export."""
    import yaml

    model = config.get("model", {})
    train = config.get("train", {})
    data = train.get("data")
    task = _task_of(data)
    arch = model.get("arch", "trm")
    source = f"hf://{repo_id}" if repo_id else "OUT"
    build = build_command(data)
    lines = ["---", "library_name: trm", f"tags: [trm, tiny-recursive-model, {arch}" + (f", {task}]" if task else "]"),
             "license: mit", "---", "", f"# {arch.upper()} on {task or data or 'its dataset'}", "",
             f"A {arch.upper()} model trained with the `trm` library (tiny recursive reasoning models), "
             f"exported from step {config.get('step')} with its {config.get('weights')} weights.", "",
             "## Data", "", f"Trained on `{data}`." if data else "The training dataset was not recorded.", ""]
    lines += [f"Built with:\n\n```\n{build}\n```", ""] if build else \
        ["Its build command was not recorded (`trm build --help` lists the builders).", ""]
    recipe = {k: train[k] for k in ("steps", "epochs", "global_batch_size", "lr", "lr_warmup_steps", "weight_decay",
                                     "puzzle_emb_lr", "puzzle_emb_weight_decay", "ema", "ema_rate", "loss_type",
                                     "seed", "dtype") if k in train}
    lines += ["## Model and recipe", "", "```yaml", yaml.safe_dump({"model": model, "train": recipe},
                                                                   sort_keys=False).rstrip(), "```", ""]
    lines += ["## Measured", ""]
    metrics = config.get("metrics") or []
    if metrics:
        lines += ["| set | examples | policy, budget | exact accuracy | 95% interval | valid | mean steps | machine |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in metrics:
            ci = m.get("exact_accuracy_ci95")
            interval = f"{_percent(ci[0])}-{_percent(ci[1])}" if ci else "-"
            subset = f" (random {m['limit']})" if m.get("limit") else ""
            lines.append(f"| {m['set']} ({m.get('data')}) | {m.get('count')}{subset} | {m.get('policy')}, "
                         f"{m.get('budget')} | {_percent(m.get('exact_accuracy'))} | {interval} | "
                         f"{_percent(m.get('valid_accuracy'))} | {m.get('mean_steps')} | {m.get('machine')} |")
        lines.append("")
    else:
        lines += ["No `trm eval` result was stored with this checkpoint (run `trm eval RUN` before exporting to "
                  "put one here).", ""]
    training = config.get("training_evaluation")
    if training:
        shown = ", ".join(f"{k.removeprefix('eval/')} {_percent(v) if 'accuracy' in k else v}"
                          for k, v in training.items() if k.startswith("eval/") or k in ("step", "train_seconds"))
        lines += [f"Held-out evaluation during training (the run's metrics.jsonl): {shown}.", ""]
    data_arg = data or "DATA"
    lines += ["## Use it", "", "```", "pip install 'trm[hub]'",
              f"trm eval {source} --data {data_arg}            # accuracy with its 95% interval",
              f"trm eval {source} --data {data_arg} --limit 1000 --seed 0  # a seeded subset, faster",
              f"trm solve {source} PUZZLE --data {data_arg} --trace", "```", "", "```python", "import trm",
              f'm = trm.load("{source}")', "m.model, m.config", "```", "",
              "## Citation", "", "```bibtex", HRM_CITATION if arch == "hrm" else CITATION, "```", ""]
    return "\n".join(lines)


def _task_of(data: str | None) -> str | None:
    """The task a dataset folder holds (its dataset.json), when it is here."""
    if not data:
        return None
    try:
        return json.loads((Path(data) / "train" / "dataset.json").read_text()).get("task")
    except (OSError, json.JSONDecodeError):
        return None
