"""Measure the research options against the baseline recipe: docs/research.md's table.

Every training option runs for the same wall-clock budget as the baseline: the cost of a step of each is
measured first, interleaved and at every depth of the recipe's curriculum (so a busy machine slows all
alike), and each option gets the steps that fit the baseline's budget at its own cost. Each is trained
with several seeds and evaluated on the whole held-out split. Evaluation options run on the baseline's
checkpoints. Every finished unit (one training or one evaluation, for one seed) is written to its own
record under OUT/records, so an interrupted measurement keeps what it has and the same command goes on.

    .venv/bin/python scripts/research_table.py --out runs/research --base-steps 700 --seeds 0 1 2 --jobs 2
    .venv/bin/python scripts/research_table.py --out runs/research --table   # the table from the records

`--jobs N` runs N units at a time, each in its own process with cores / N threads: on a small CPU the
network is too small for several threads to pay, so two one-thread runs do more work per second than one
two-thread run. The recipe is `sudoku6-cpu` (the demo's task) unless --recipe says otherwise; --data is
built as the demo builds it when missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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

Unit = tuple[str, str, int]
"""(kind, row name, seed): one training ("train") or one evaluation of a baseline checkpoint ("eval")."""


def _config(recipe: str, data: Path, run_dir: Path, overrides: list[str], steps: int, seed: int):
    from trm.train import load_recipe

    return load_recipe(recipe, [f"data={data}", f"run_dir={run_dir}", f"steps={steps}", f"seed={seed}",
                                "eval_every=0", "eval_max_batches=null", "checkpoint_every=0",
                                "dtype=float32", "compile='off'", *overrides])


def depth_stages(recipe: str, data: Path) -> list[tuple[float, str]]:
    """(share of the training steps, override that fixes the depth) for every stage of the recipe's depth
    curriculum (the stages as training takes them, `trm.runtime.depth_stages`)."""
    from trm.runtime import depth_stages as stages

    cfg = _config(recipe, data, Path("unused"), [], 1, 0)
    total = 10_000
    return [(count / total, f"depth_curriculum=[[0,{depth[0]},{depth[1]}]]" if depth else "depth_curriculum=[]")
            for depth, count in stages(total, cfg.depth_curriculum)]


def step_costs(recipe: str, data: Path, out: Path, rounds: int = 2, steps: int = 20) -> dict[str, float]:
    """Mean seconds per training step of every option over the recipe's curriculum: per stage, the median of
    `rounds` interleaved short runs at that stage's depth, weighted by the stage's share of the steps."""
    from trm.train import train

    stages = depth_stages(recipe, data)
    times: dict[tuple[str, int], list[float]] = {}
    for r in range(rounds):
        for name, overrides in TRAINING.items():
            for i, (_, depth) in enumerate(stages):
                run_dir = out / "cost" / f"{_slug(name)}-stage{i}-{r}"
                cfg = _config(recipe, data, run_dir, [*overrides, depth, "eval_max_batches=1"], steps, seed=0)
                train(cfg, progress=False)
                times.setdefault((name, i), []).append(_train_seconds(run_dir) / steps)
                print(f"cost {name}, stage {i}: {times[name, i][-1]:.3f} s/step", file=sys.stderr, flush=True)
    return {name: sum(share * statistics.median(times[name, i]) for i, (share, _) in enumerate(stages))
            for name in TRAINING}


def _train_seconds(run_dir: Path) -> float:
    """Training time of a finished run (evaluation and checkpoints excluded), from its metrics log."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return float([x for x in lines if x.get("kind") == "train"][-1]["train_seconds"])


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _record_path(out: Path, unit: Unit) -> Path:
    kind, name, seed = unit
    return out / "records" / f"{kind}-{_slug(name)}-seed{seed}.json"


def _write_record(out: Path, unit: Unit, record: dict[str, Any]) -> None:
    path = _record_path(out, unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)  # a record exists whole or not at all
    print(json.dumps(record), file=sys.stderr, flush=True)


def run_unit(args: argparse.Namespace, unit: Unit, steps: int) -> None:
    """Train one option or evaluate one evaluation option on one seed; write its record."""
    from trm.checkpoint import load_checkpoint
    from trm.data.sampler import open_dataset
    from trm.evaluate import EvalOptions, Scaling, evaluate
    from trm.tasks import dataset_task
    from trm.train import train

    out, data = Path(args.out), Path(args.data)
    kind, name, seed = unit
    if kind == "train":
        overrides = TRAINING[name]
        run_dir = out / "runs" / f"{_slug(name)}-seed{seed}"
        cfg = _config(args.recipe, data, run_dir, overrides, steps, seed)
        start = time.perf_counter()
        result = train(cfg, restart=run_dir.exists(), progress=False)  # a run cut short before its record
        if result.get("interrupted"):
            raise SystemExit(f"interrupted during {name} (seed {seed}); run the same command again to go on")
        _write_record(out, unit, {
            "kind": kind, "name": name, "seed": seed, "steps": steps, "overrides": overrides,
            "threads": _threads(), "train_seconds": _train_seconds(run_dir),
            "wall_seconds": time.perf_counter() - start,
            "exact_accuracy": result.get("all/exact_accuracy"), "token_accuracy": result.get("all/accuracy"),
            "run_dir": str(run_dir),
            "command": f"trm train {args.recipe} data={data} steps={steps} seed={seed} " + " ".join(overrides)})
        return
    options = EVALUATION[name]
    baseline = out / "runs" / f"baseline-seed{seed}"
    dataset = open_dataset(data)
    loaded = load_checkpoint(baseline, dtype="float32")
    policy = options.get("policy", "fixed")
    scaling_args = {k: v for k, v in options.items() if k != "policy"}
    scaling = Scaling(seed=seed, **scaling_args) if scaling_args else None
    result = evaluate(loaded.model, dataset.test_batches(256), EvalOptions(policy=policy, scaling=scaling),
                      task=dataset_task(dataset.dataset))
    summary = result.to_dict()
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in options.items())
    _write_record(out, unit, {
        "kind": kind, "name": name, "seed": seed, "options": options, "threads": _threads(),
        "exact_accuracy": summary["sets"]["all"]["exact_accuracy"],
        "token_accuracy": summary["sets"]["all"]["accuracy"],
        "steps_per_puzzle": summary["cost"]["supervision_steps_per_example"],
        "seconds": summary["cost"]["seconds"], "puzzles": summary["sets"]["all"]["count"],
        "command": f"trm eval {baseline} {flags}".strip()})


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def units(seeds: list[int]) -> list[Unit]:
    """Every unit, in the order they start: each seed's baseline first (the evaluations need it)."""
    train = [("train", name, seed) for seed in seeds for name in TRAINING]
    return sorted(train, key=lambda u: u[1] != "baseline") + [
        ("eval", name, seed) for seed in seeds for name in EVALUATION]


def measure(args: argparse.Namespace) -> None:
    from trm.commands.demo import ensure_demo_data

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.data:
        args.data = str(out / "sudoku6")
        ensure_demo_data(Path(args.data))
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    costs_file = out / "step_costs.json"
    if costs_file.exists():
        costs = json.loads(costs_file.read_text())
    else:
        import torch

        torch.set_num_threads(threads)  # the costs are measured at the threads the runs will have
        costs = step_costs(args.recipe, Path(args.data), out, rounds=args.cost_rounds, steps=args.cost_steps)
        costs_file.write_text(json.dumps(costs, indent=1))
    base_steps = args.base_steps or int(args.budget / costs["baseline"])

    def steps_of(unit: Unit) -> int:
        return max(1, round(base_steps * costs["baseline"] / costs[unit[1]])) if unit[0] == "train" else 0

    todo = [u for u in units(args.seeds) if not _record_path(out, u).exists()]
    if args.jobs == 1:
        for unit in todo:
            run_unit(args, unit, steps_of(unit))
        return
    running: dict[Unit, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    while todo or running:
        for unit, proc in list(running.items()):
            if proc.poll() is not None:
                del running[unit]
                if proc.returncode:
                    for p in running.values():
                        p.terminate()
                    raise SystemExit(f"{unit[0]} {unit[1]} (seed {unit[2]}) failed with exit {proc.returncode}")
        ready = [u for u in todo if u[0] == "train" or _record_path(out, ("train", "baseline", u[2])).exists()]
        while ready and len(running) < args.jobs:
            unit = ready.pop(0)
            todo.remove(unit)
            cmd = [sys.executable, __file__, "--out", args.out, "--recipe", args.recipe, "--data", args.data,
                   "--unit", json.dumps([*unit, steps_of(unit)])]
            running[unit] = subprocess.Popen(cmd, env=env)
        time.sleep(2)


def table(out: Path) -> str:
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    lines = ["| option | held-out exact accuracy (mean ± spread, seeds) | token accuracy | steps | training s "
             "| cost per puzzle |", "|---|---|---|---|---|---|"]

    def row(kind: str, name: str) -> str | None:
        rs = sorted((r for r in records if r["kind"] == kind and r["name"] == name), key=lambda r: r["seed"])
        if not rs:
            return None
        acc = [100 * r["exact_accuracy"] for r in rs]
        spread = (max(acc) - min(acc)) / 2
        each = " / ".join(f"{a:.1f}" for a in acc)
        seeds = ",".join(str(r["seed"]) for r in rs)
        tokens = f"{statistics.mean(100 * r['token_accuracy'] for r in rs):.1f}%" if all(
            r.get("token_accuracy") is not None for r in rs) else ""
        if kind == "train":
            steps = statistics.median(r["steps"] for r in rs)
            secs = statistics.median(r["train_seconds"] for r in rs)
            return (f"| {name} | {statistics.mean(acc):.1f}% ± {spread:.1f} ({each}; seeds {seeds}) | {tokens} "
                    f"| {steps:.0f} | {secs:.0f} | 8 steps |")
        cost = statistics.median(r["steps_per_puzzle"] for r in rs)
        ms = statistics.median(1000 * r["seconds"] / r["puzzles"] for r in rs)
        return (f"| {name} | {statistics.mean(acc):.1f}% ± {spread:.1f} ({each}; seeds {seeds}) | {tokens} | | "
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
    p.add_argument("--jobs", type=int, default=1, help="units run at a time, each with cores / jobs threads")
    p.add_argument("--cost-steps", type=int, default=20, help="steps of each interleaved cost measurement")
    p.add_argument("--cost-rounds", type=int, default=2, help="interleaved rounds of cost measurement")
    p.add_argument("--table", action="store_true", help="only print the table of what was measured")
    p.add_argument("--unit", help=argparse.SUPPRESS)  # one unit, as the --jobs scheduler starts it
    args = p.parse_args()
    if args.unit:
        kind, name, seed, steps = json.loads(args.unit)
        run_unit(args, (kind, name, seed), steps)
        return
    if not args.table:
        measure(args)
    print(table(Path(args.out)))


if __name__ == "__main__":
    main()
