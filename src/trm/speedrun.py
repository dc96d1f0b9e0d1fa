"""Time to accuracy: how long training takes to reach 95% and 97% held-out exact accuracy.

The headline speed figure of the project (`trm bench --only speedrun`): throughput alone can be
bought by a recipe that learns less per step, so this measures what a user waits for. It trains a
recipe (by default the demo's, `sudoku6-cpu`, on the demo's dataset) for several seeds, evaluates
on held-out puzzles every `eval_every` steps, stops once the highest target is reached, and reports
the training wall time to each target (evaluation time excluded; the dtype probe included) as the
median over seeds, with each seed's accuracy curve.

    python -m trm.speedrun [--recipe sudoku6-cpu] [--seeds 0 1 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

TARGETS = (0.95, 0.97)


@dataclass
class SeedRun:
    """One seed's curve: (step, training seconds, held-out exact accuracy) at each evaluation."""

    seed: int
    curve: list[tuple[int, float, float]] = field(default_factory=list)

    def time_to(self, target: float) -> float | None:
        return next((t for _, t, acc in self.curve if acc >= target), None)

    def steps_to(self, target: float) -> int | None:
        return next((s for s, _, acc in self.curve if acc >= target), None)


def read_curve(metrics: Path) -> list[tuple[int, float, float]]:
    """The evaluation points of a run's metrics.jsonl."""
    curve = []
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "eval" and "eval/all/exact_accuracy" in record:
            accuracy = float(record["eval/all/exact_accuracy"])
            curve.append((int(record["step"]), float(record["train_seconds"]), accuracy))
    return curve


def speedrun(recipe: str = "sudoku6-cpu", seeds: tuple[int, ...] = (0, 1, 2), overrides: tuple[str, ...] = (),
             data: str | None = None, eval_every: int = 25, eval_puzzles: int = 256,
             targets: tuple[float, ...] = TARGETS, out: Path | None = None) -> list[SeedRun]:
    """Train `recipe` once per seed until max(targets) and return the curves."""
    from trm.commands.demo import ensure_demo_data
    from trm.train import load_recipe, train

    cfg = load_recipe(recipe, list(overrides))
    data_dir = Path(data or cfg.data)
    if recipe == "sudoku6-cpu" and data is None:
        ensure_demo_data(data_dir)
    batch = cfg.global_batch_size
    runs = []
    with tempfile.TemporaryDirectory(prefix="trm-speedrun-") as tmp:
        for seed in seeds:
            run_dir = (out or Path(tmp)) / f"seed{seed}"
            seed_cfg = replace(cfg, data=str(data_dir), run_dir=str(run_dir), seed=seed, eval_every=eval_every,
                               eval_max_batches=max(1, -(-eval_puzzles // batch)), checkpoint_every=0,
                               stop_at_accuracy=max(targets))
            print(f"speedrun: {recipe} seed {seed}", file=sys.stderr, flush=True)
            train(seed_cfg, progress=False)
            runs.append(SeedRun(seed, read_curve(run_dir / "metrics.jsonl")))
    return runs


def summarise(runs: list[SeedRun], targets: tuple[float, ...] = TARGETS) -> dict[str, Any]:
    """Median (and each seed's) time and steps to every target; None where a seed never got there."""
    out: dict[str, Any] = {}
    for target in targets:
        times = [r.time_to(target) for r in runs]
        steps = [r.steps_to(target) for r in runs]
        reached = [t for t in times if t is not None]
        out[f"{target:.0%}"] = {
            "median_s": statistics.median(reached) if len(reached) == len(runs) else None,
            "seconds": times, "steps": steps}
    out["curves"] = {r.seed: r.curve for r in runs}
    return out


def time_to_accuracy_rows() -> list[Any]:
    """The bench's rows: median training seconds to each target on the demo task."""
    from trm.bench import Row

    runs = speedrun()
    summary = summarise(runs)
    rows = []
    nan = float("nan")
    for target in TARGETS:
        entry = summary[f"{target:.0%}"]
        reached = [t for t in entry["seconds"] if t is not None]
        median = entry["median_s"] if entry["median_s"] is not None else nan
        rows.append(Row(f"speedrun.sudoku6-cpu.to_{round(100 * target)}", f"train to {target:.0%} held-out exact",
                        "s", median, min(reached, default=nan), max(reached, default=nan), len(runs),
                        {"seconds": entry["seconds"], "steps": entry["steps"], "curves": summary["curves"]}))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trm.speedrun", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="sudoku6-cpu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", help="dataset folder (default: the recipe's; the demo's is built if missing)")
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--out", type=Path, help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, key=value")
    args = parser.parse_args(argv)
    runs = speedrun(args.recipe, tuple(args.seeds), tuple(args.overrides), args.data, args.eval_every, out=args.out)
    summary = summarise(runs)
    for target in TARGETS:
        entry = summary[f"{target:.0%}"]
        median = "not reached by every seed" if entry["median_s"] is None else f"{entry['median_s']:.0f} s"
        print(f"to {target:.0%}: median {median}; per seed {entry['seconds']} s, steps {entry['steps']}")
    for r in runs:
        print(f"seed {r.seed}: " + ", ".join(f"{s}:{acc:.1%}@{t:.0f}s" for s, t, acc in r.curve))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
