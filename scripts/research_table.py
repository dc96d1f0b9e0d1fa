"""Measure the research options against the baseline recipe: docs/research.md's table.

Every training option runs for the same wall-clock budget as the baseline: the cost of a step of each is
measured first, interleaved (so a busy machine slows all alike), and each gets the steps that fit the
budget at its own cost. Each is trained with several seeds and evaluated on the whole held-out split.
Evaluation options run on the baseline's checkpoints. Results go to a JSON file (one record per run,
appended as they finish, so an interrupted measurement keeps what it has) and a Markdown table.

    .venv/bin/python scripts/research_table.py --out runs/research --budget 120 --seeds 0 1 2
    .venv/bin/python scripts/research_table.py --out runs/research --table   # the table from the JSON

The recipe is `sudoku6-cpu` (the demo's task) unless --recipe says otherwise; --data is built as the demo
builds it when missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TRAINING: dict[str, list[str]] = {
    "baseline": [],
    "muon": ["optimizer=muon"],
    "step weights 0.7": ["step_weight_decay=0.7"],
    "winner-take-all K=4": ["wta_latents=4"],
    "gradient depth 2(n+1)": ["model.grad_depth=6"],
    "dense recursion loss": ["model.recursion_loss=true"],
    "ConvSwiGLU 3x3": ["model.conv_kernel=3"],
}
"""Row name -> overrides of the recipe (gradient depth 6 = both recursions of T=2, n=2)."""

EVALUATION: dict[str, dict[str, Any]] = {
    "single answer (published)": {},
    "early halting": {"policy": "early"},
    "noise K=4, most confident": {"noise": 4, "noise_scale": 0.5, "select": "halt"},
    "noise K=4 + step noise 0.2": {"noise": 4, "noise_scale": 0.5, "step_noise": 0.2, "select": "halt"},
    "halt-first K=4": {"noise": 4, "noise_scale": 0.5, "select": "first"},
    "halt-first K=4 + step noise 0.2": {"noise": 4, "noise_scale": 0.5, "step_noise": 0.2, "select": "first"},
}


def _config(recipe: str, data: Path, run_dir: Path, overrides: list[str], steps: int, seed: int):
    from trm.train import load_recipe

    return load_recipe(recipe, [f"data={data}", f"run_dir={run_dir}", f"steps={steps}", f"seed={seed}",
                                "eval_every=0", "eval_max_batches=null", "checkpoint_every=0",
                                "dtype=float32", "compile='off'", *overrides])


def step_costs(recipe: str, data: Path, out: Path, rounds: int = 2, steps: int = 20) -> dict[str, float]:
    """Seconds per training step of every option, median of `rounds` interleaved short runs."""
    from trm.train import train

    times: dict[str, list[float]] = {name: [] for name in TRAINING}
    for r in range(rounds):
        for name, overrides in TRAINING.items():
            run_dir = out / "cost" / f"{_slug(name)}-{r}"
            cfg = _config(recipe, data, run_dir, [*overrides, "eval_max_batches=1"], steps, seed=0)
            train(cfg, progress=False)
            times[name].append(_train_seconds(run_dir) / steps)
            print(f"cost {name}: {times[name][-1]:.3f} s/step", file=sys.stderr, flush=True)
    return {name: statistics.median(t) for name, t in times.items()}


def _train_seconds(run_dir: Path) -> float:
    """Training time of a finished run (evaluation and checkpoints excluded), from its metrics log."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float([x for x in lines if x.get("kind") == "train"][-1]["train_seconds"])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _done(records: list[dict[str, Any]], kind: str, name: str, seed: int) -> bool:
    return any(r["kind"] == kind and r["name"] == name and r["seed"] == seed for r in records)


def measure(args: argparse.Namespace) -> None:
    from trm.checkpoint import load_checkpoint
    from trm.commands.demo import ensure_demo_data
    from trm.data.sampler import open_dataset
    from trm.evaluate import EvalOptions, Scaling, evaluate
    from trm.tasks import dataset_task
    from trm.train import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else out / "sudoku6"
    if not args.data:
        ensure_demo_data(data)
    results = out / "results.json"
    records: list[dict[str, Any]] = json.loads(results.read_text()) if results.exists() else []
    costs_file = out / "step_costs.json"
    if costs_file.exists():
        costs = json.loads(costs_file.read_text())
    else:
        costs = step_costs(args.recipe, data, out, rounds=args.cost_rounds, steps=args.cost_steps)
        costs_file.write_text(json.dumps(costs, indent=1))
    base_steps = args.base_steps or int(args.budget / costs["baseline"])

    def save(record: dict[str, Any]) -> None:
        records.append(record)
        results.write_text(json.dumps(records, indent=1))
        print(json.dumps(record), file=sys.stderr, flush=True)

    for seed in args.seeds:
        for name, overrides in TRAINING.items():
            if _done(records, "train", name, seed):
                continue
            steps = max(1, round(base_steps * costs["baseline"] / costs[name]))
            run_dir = out / "runs" / f"{_slug(name)}-seed{seed}"
            cfg = _config(args.recipe, data, run_dir, overrides, steps, seed)
            start = time.perf_counter()
            result = train(cfg, progress=False)
            if result.get("interrupted"):  # stopped by a signal: leave the rest for the next invocation
                raise SystemExit(f"interrupted during {name} (seed {seed}); run the same command again to go on")
            save({"kind": "train", "name": name, "seed": seed, "steps": steps, "overrides": overrides,
                  "train_seconds": _train_seconds(run_dir), "wall_seconds": time.perf_counter() - start,
                  "exact_accuracy": result.get("all/exact_accuracy"), "token_accuracy": result.get("all/accuracy"),
                  "run_dir": str(run_dir),
                  "command": f"trm train {args.recipe} data={data} steps={steps} seed={seed} " + " ".join(overrides)})
        baseline = out / "runs" / f"baseline-seed{seed}"
        dataset = open_dataset(data)
        for name, options in EVALUATION.items():
            if _done(records, "eval", name, seed):
                continue
            loaded = load_checkpoint(baseline, dtype="float32")
            policy = options.get("policy", "fixed")
            scaling_args = {k: v for k, v in options.items() if k != "policy"}
            scaling = Scaling(seed=seed, **scaling_args) if scaling_args else None
            result = evaluate(loaded.model, dataset.test_batches(256), EvalOptions(policy=policy, scaling=scaling),
                              task=dataset_task(dataset.dataset))
            summary = result.to_dict()
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
            save({"kind": "eval", "name": name, "seed": seed, "options": options,
                  "exact_accuracy": summary["sets"]["all"]["exact_accuracy"],
                  "token_accuracy": summary["sets"]["all"]["accuracy"],
                  "steps_per_puzzle": summary["cost"]["supervision_steps_per_example"],
                  "seconds": summary["cost"]["seconds"], "puzzles": summary["sets"]["all"]["count"],
                  "command": f"trm eval {baseline} {flags}".strip()})


def table(out: Path) -> str:
    records = json.loads((out / "results.json").read_text())
    lines = ["| option | held-out exact accuracy (mean ± spread, seeds) | token accuracy | steps | training s "
             "| cost per puzzle |", "|---|---|---|---|---|---|"]

    def row(kind: str, name: str) -> str | None:
        rs = [r for r in records if r["kind"] == kind and r["name"] == name]
        if not rs:
            return None
        acc = [100 * r["exact_accuracy"] for r in rs]
        spread = (max(acc) - min(acc)) / 2
        seeds = ",".join(str(r["seed"]) for r in rs)
        tokens = f"{statistics.mean(100 * r['token_accuracy'] for r in rs):.1f}%" if all(
            r.get("token_accuracy") is not None for r in rs) else ""
        if kind == "train":
            steps = statistics.median(r["steps"] for r in rs)
            secs = statistics.median(r["train_seconds"] for r in rs)
            return (f"| {name} | {statistics.mean(acc):.1f}% ± {spread:.1f} ({seeds}) | {tokens} | {steps:.0f} "
                    f"| {secs:.0f} | 8 steps |")
        cost = statistics.median(r["steps_per_puzzle"] for r in rs)
        ms = statistics.median(1000 * r["seconds"] / r["puzzles"] for r in rs)
        return (f"| {name} | {statistics.mean(acc):.1f}% ± {spread:.1f} ({seeds}) | {tokens} | | "
                f"| {cost:.1f} steps, {ms:.1f} ms |")

    lines += [r for name in TRAINING if (r := row("train", name))]
    lines += ["", "| evaluation option (on the baseline's checkpoints) | held-out exact accuracy | token accuracy | | "
              "| cost per puzzle |", "|---|---|---|---|---|---|"]
    lines += [r for name in EVALUATION if (r := row("eval", name))]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/research")
    p.add_argument("--recipe", default="sudoku6-cpu")
    p.add_argument("--data", help="a built dataset (default: the demo's, built under --out)")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds of the baseline per run")
    p.add_argument("--base-steps", type=int, help="the baseline's steps instead of --budget (the others get the "
                   "same time at their measured relative cost; for a machine too busy to time the budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cost-steps", type=int, default=20, help="steps of each interleaved cost measurement")
    p.add_argument("--cost-rounds", type=int, default=2, help="interleaved rounds of cost measurement")
    p.add_argument("--table", action="store_true", help="only print the table of what was measured")
    args = p.parse_args()
    if not args.table:
        measure(args)
    print(table(Path(args.out)))


if __name__ == "__main__":
    main()
