"""`trm demo`: the whole story on a laptop CPU in minutes.

Builds a small 6x6 Sudoku dataset with the generator, trains a TRM on it (the `sudoku6-cpu`
recipe), evaluates it and prints the accuracy after each supervision step (the answer improving as
the model thinks longer), solves one unseen puzzle with a per-step trace, and writes a GIF of that
solve and an HTML report. Run it again and it reuses the dataset and the trained checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="build a small Sudoku set, train on CPU, evaluate, solve and draw one puzzle")
    p.add_argument("--out", default="runs/demo", help="folder for the dataset, the run and the pictures")
    p.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    p.add_argument("--fresh", action="store_true", help="rebuild and retrain even if results exist")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="training dtype (default auto: the faster one on this machine, measured)")
    p.set_defaults(func=run)


DEMO_PUZZLES, DEMO_TEST, DEMO_AUGMENTED = 3000, 500, 100


def ensure_demo_data(data_dir: Path) -> dict[str, int] | None:
    """Build the demo's dataset unless it exists: 3000 generated 6x6 puzzles, 500 held out, and each
    training puzzle with 100 augmented variants (rows, columns and digits permuted; the sampler draws
    one variant of a puzzle each time). Returns the counts when it was built."""
    from trm.tasks.sudoku import puzzles as sudoku

    if (data_dir / "test" / "dataset.json").is_file():
        return None
    build = sudoku.SudokuBuildConfig(source="generate", n=6, count=DEMO_PUZZLES, test_fraction=DEMO_TEST / DEMO_PUZZLES,
                                     num_aug=DEMO_AUGMENTED, seed=0,
                                     generator=sudoku.GeneratorConfig(n=6, target_givens=10))
    return dict(sudoku.build_dataset(data_dir, build))


def run(args: argparse.Namespace) -> int:
    import shutil
    import time

    import torch

    from trm.checkpoint import latest_checkpoint, load_checkpoint, read_meta
    from trm.data.sampler import open_dataset
    from trm.evaluate import EvalOptions, evaluate
    from trm.models.config import ConfigError
    from trm.solve import Solver
    from trm.tasks.sudoku import SudokuTask
    from trm.tasks.sudoku import puzzles as sudoku
    from trm.train import load_recipe, train

    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    data_dir, run_dir = out / "sudoku6", out / "train"
    overrides = ([f"data={data_dir}", f"run_dir={run_dir}", f"dtype={args.dtype}"]
                 + ([f"steps={args.steps}"] if args.steps else []))
    cfg = load_recipe("sudoku6-cpu", overrides)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    phases: dict[str, float] = {}

    print("== 1. data: 6x6 Sudoku puzzles with a unique solution, about 26 blanks each")
    t = time.perf_counter()
    counts = ensure_demo_data(data_dir)
    phases["data"] = time.perf_counter() - t
    if counts:
        print(f"   wrote {data_dir}: {counts['train_groups']} training puzzles (each with {DEMO_AUGMENTED} augmented "
              f"variants) and {counts['test_examples']} test puzzles")
    else:
        print(f"   reusing {data_dir}")

    stages = cfg.depth_curriculum
    shallow = (f", the first {stages[1][0]:.0%} at n={int(stages[0][1])}, T={int(stages[0][2])}"
               if len(stages) > 1 else "")
    bf16 = f" ({cfg.bf16_steps} if it trains in bfloat16)" if cfg.bf16_steps and cfg.bf16_steps != cfg.steps else ""
    print(f"== 2. training a {cfg.model['arch'].upper()} (token-MLP, hidden {cfg.model['hidden_size']}, "
          f"T={cfg.model['T']}, n={cfg.model['n']}, N_sup={cfg.model['halt_max_steps']}) for {cfg.steps} steps{bf16} "
          f"on CPU{shallow}")
    t = time.perf_counter()
    ckpt = latest_checkpoint(run_dir)
    meta = read_meta(ckpt) if ckpt is not None else None
    trained = meta.get("numeric", {}).get("dtype", "float32") if meta is not None else None
    if trained is not None and args.dtype not in ("auto", trained):
        raise ConfigError(f"{run_dir} trains in {trained}, not {args.dtype}; add --fresh to start again in "
                          f"{args.dtype} (it replaces {out})")
    if meta is not None and meta["step"] >= (cfg.steps_in(trained or "float32") or 0):
        print(f"   reusing {ckpt}")
    else:
        if train(cfg, resume=ckpt is not None, progress=True).get("interrupted"):
            print("   interrupted: run `make demo` again to continue from the saved checkpoint")
            return 130
        ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    phases["training"] = time.perf_counter() - t
    t = time.perf_counter()
    model = load_checkpoint(ckpt, dtype="train").model.eval()  # EMA weights, the training dtype

    print("== 3. held-out accuracy after each supervision step")
    data = open_dataset(data_dir)
    result = evaluate(model, data.test_batches(250), EvalOptions(steps=model.halt_max_steps, keep_examples=3),
                      task=SudokuTask(6))
    summary = result.sets["all"].summary()
    per_step = summary["exact_accuracy_per_step"]
    for i, acc in enumerate(per_step):
        print(f"   step {i + 1}: {acc:6.1%} " + "#" * round(40 * acc))
    print(f"   exact accuracy {summary['exact_accuracy']:.1%} on {summary['count']} unseen puzzles "
          f"(valid {summary['valid_accuracy']:.1%}, token accuracy {summary['accuracy']:.1%})")
    phases["evaluation"] = time.perf_counter() - t

    print("== 4. solving one new puzzle, step by step")
    rng = np.random.default_rng(12345)
    puzzle, solution, _ = sudoku.generate(sudoku.GeneratorConfig(n=6, target_givens=10), rng)
    solved = Solver(model, SudokuTask(6)).solve_one(sudoku.encode(puzzle))
    steps = solved.steps

    def show(tokens: np.ndarray) -> None:
        print("\n".join("      " + line for line in solved.task.format(tokens).splitlines()))

    print("   the puzzle:")
    show(solved.puzzle)
    for k in range(1, solved.settled + 1):  # later steps leave the answer as it is
        print(f"   after step {k} ({solved.changed(k)} cells changed):")
        show(steps[k - 1])
    if solved.settled < len(steps):
        print(f"   steps {solved.settled + 1}-{len(steps)}: no cell changed")
    from trm.commands.solve import settled_line

    print(f"   valid: {solved.valid}; {settled_line(solved)}")

    print("== 5. pictures")
    from trm import viz

    givens = sudoku.encode(puzzle).reshape(-1)
    answer = sudoku.encode(solution).reshape(-1)
    gif = viz.save_gif([s.reshape(-1) for s in steps], "sudoku", out / "solve.gif", givens=givens, solution=answer)
    examples = result.examples
    report = viz.html_report(out / "report.html", "trm demo: 6x6 Sudoku", {"held-out": per_step}, examples,
                             {"exact accuracy": f"{summary['exact_accuracy']:.1%}", "puzzles": summary["count"],
                              "checkpoint": str(ckpt)}, task="sudoku")
    (out / "results.json").write_text(json.dumps({"checkpoint": str(ckpt), **result.to_dict()}, indent=1))
    print(f"   wrote {gif} and {report}")
    total = time.perf_counter() - started
    print(f"== done in {total / 60:.1f} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ")")
    return 0
