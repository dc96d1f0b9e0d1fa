"""`trm eval CHECKPOINT [--data DIR] [--steps N] [--policy fixed|early] [--blank-ids]`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: per-set accuracy and accuracy after each step")
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its latest checkpoint)")
    p.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    p.add_argument("--steps", type=int, help="supervision-step budget (default: N_sup of training)")
    p.add_argument("--policy", choices=["fixed", "early"], default="fixed",
                   help="fixed: run every step (the reference); early: stop when the halting head fires")
    p.add_argument("--blank-ids", action="store_true", help="ablation: blank puzzle identifiers at test time")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-batches", type=int)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trm.checkpoint import load_checkpoint
    from trm.data.sampler import open_dataset
    from trm.evaluate import evaluate
    from trm.train import pick_device

    device = pick_device(args.device)
    loaded = load_checkpoint(args.checkpoint, use_ema=not args.raw, device=device)
    data_dir = args.data or loaded.meta.get("train", {}).get("data")
    if not data_dir:
        raise SystemExit(f"{loaded.path}: no dataset recorded; pass --data DIR")
    data = open_dataset(data_dir)
    batches: Iterable[tuple[Any, ...]] = data.test_batches(args.batch_size)
    if args.blank_ids:
        batches = ((item[0], {**item[1], "puzzle_identifiers": item[1]["puzzle_identifiers"] * 0}) for item in batches)
    result = evaluate(loaded.model, batches, device=device, steps=args.steps, policy=args.policy,
                      max_batches=args.max_batches)
    report = {"checkpoint": str(loaded.path), "data": str(data_dir), "blank_ids": args.blank_ids,
              "weights": "raw" if args.raw else "ema", **result.to_dict()}
    suffix = f"{args.policy}-{result.budget}{'-blank' if args.blank_ids else ''}"
    out = Path(loaded.path) / f"eval-{suffix}.json"
    out.write_text(json.dumps(report, indent=1))
    print(format_table(report))
    print(f"wrote {out}")
    return 0


def format_table(report: dict) -> str:
    lines = [f"{'set':<16}{'count':>8}{'token acc':>11}{'exact acc':>11}{'mean steps':>12}"]
    for name, r in report["sets"].items():
        lines.append(f"{name:<16}{r['count']:>8}{r['accuracy']:>11.2%}{r['exact_accuracy']:>11.2%}{r['mean_steps']:>12.2f}")
    for name, r in report["sets"].items():
        steps = "  ".join(f"{i + 1}:{a:.0%}" for i, a in enumerate(r["exact_accuracy_per_step"]))
        lines.append(f"exact accuracy after each step ({name}): {steps}")
    return "\n".join(lines)
