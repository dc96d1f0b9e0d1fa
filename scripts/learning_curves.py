"""Learning curves of several training runs side by side: held-out exact accuracy at each evaluation and
the training token loss (per example) averaged over the steps since the previous evaluation, mean and
spread over seeds, as a plot and a Markdown table.

    python scripts/learning_curves.py --title "6x6 Sudoku" --out docs/curves/sudoku6 \
        --runs "trm=runs/s0,runs/s1,runs/s2" --runs "reference=ref/s0.jsonl,ref/s1.jsonl,ref/s2.jsonl"

A run is one of our run folders (its metrics.jsonl) or a JSONL of the metrics the reference's training
loop logs to W&B, one record per `wandb.log` call: `step`, `train/<metric>` while training,
`<set>/<metric>` (e.g. `all/exact_accuracy`) at evaluations. Log every step (`log_every=1`) so that the
loss windows hold the same steps on both sides. Needs the `plot` extra for the picture.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

Run = tuple[dict[int, float], dict[int, float], dict[int, float]]


def read_run(path: Path, eval_set: str = "all") -> Run:
    """(training lm_loss, held-out exact accuracy, held-out token accuracy), each by step, of one run."""
    file = path / "metrics.jsonl" if path.is_dir() else path
    loss: dict[int, float] = {}
    exact: dict[int, float] = {}
    token: dict[int, float] = {}
    for line in file.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        step = int(r["step"])
        if "kind" in r:  # ours
            if r["kind"] == "train" and "lm_loss" in r:
                loss[step] = float(r["lm_loss"])
            elif r["kind"] == "eval" and f"eval/{eval_set}/exact_accuracy" in r:
                exact[step] = float(r[f"eval/{eval_set}/exact_accuracy"])
                token[step] = float(r[f"eval/{eval_set}/accuracy"])
        else:  # the reference's W&B records
            if "train/lm_loss" in r:
                loss[step] = float(r["train/lm_loss"])
            if f"{eval_set}/exact_accuracy" in r:
                exact[step] = float(r[f"{eval_set}/exact_accuracy"])
                token[step] = float(r[f"{eval_set}/accuracy"])
    return loss, exact, token


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def summarise(runs: list[Run], steps: list[int]) -> list[dict[str, Any]]:
    """Per evaluation step: mean and sd over runs of exact and token accuracy and of the window-mean loss."""
    rows = []
    previous = 0
    for step in steps:
        window_means = []
        for loss, _, _ in runs:
            window = [v for s, v in loss.items() if previous < s <= step]
            if window:
                window_means.append(sum(window) / len(window))
        acc = [exact[step] for _, exact, _ in runs if step in exact]
        (am, asd), (lm, lsd) = _mean_sd(acc), _mean_sd(window_means)
        tm, tsd = _mean_sd([token[step] for _, _, token in runs if step in token])
        rows.append({"step": step, "exact": am, "exact_sd": asd, "loss": lm, "loss_sd": lsd, "token": tm,
                     "token_sd": tsd, "exact_runs": acc, "n": len(acc)})
        previous = step
    return rows


def first_steps(groups: dict[str, list[Run]]) -> list[int]:
    """The evaluation steps of the first run of the first group."""
    return sorted(next(iter(groups.values()))[0][1])


def align(run: Run, steps: list[int], tolerance: int) -> Run:
    """The run with each evaluation moved to the nearest of `steps` when at most `tolerance` away
    (the training loss keeps its own steps)."""
    def snap(s: int) -> int:
        near = min(steps, key=lambda t: abs(t - s))
        return near if abs(near - s) <= tolerance else s

    loss, exact, token = run
    return loss, {snap(s): v for s, v in exact.items()}, {snap(s): v for s, v in token.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", action="append", required=True, metavar="NAME=RUN,RUN,...",
                        help="a named group of runs (seeds): run folders or JSONL files")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.png and OUT.md")
    parser.add_argument("--title", default="")
    parser.add_argument("--set", default="all", help="evaluation set (default all)")
    parser.add_argument("--tolerance", type=int, default=0, metavar="K",
                        help="count evaluations up to K steps apart as the same step, the first run's (the "
                             "reference drops an incomplete batch once per evaluation interval, ours once per "
                             "epoch, so the two can evaluate a step apart)")
    args = parser.parse_args(argv)

    groups: dict[str, list[Run]] = {}
    for spec in args.runs:
        name, _, paths = spec.partition("=")
        groups[name] = [read_run(Path(p), args.set) for p in paths.split(",") if p]
    if args.tolerance:
        steps0 = first_steps(groups)
        groups = {name: [align(run, steps0, args.tolerance) for run in runs] for name, runs in groups.items()}
    steps = sorted(set.intersection(*[set(e) for runs in groups.values() for _, e, _ in runs]))
    if not steps:
        raise SystemExit("the runs share no evaluation step")
    table = {name: summarise(runs, steps) for name, runs in groups.items()}

    lines = [f"# {args.title}".rstrip(), "",
             "Held-out exact accuracy (mean ± sd over seeds; the seeds' values in brackets), held-out token",
             "accuracy, and training token loss per example (mean over the steps since the previous evaluation);",
             "mean ± sd over seeds.", "",
             "| step | " + " | ".join(f"{n} exact | {n} token | {n} loss" for n in table) + " |",
             "|---|" + "---|---|---|" * len(table)]
    for i, step in enumerate(steps):
        cells = []
        for rows in table.values():
            r = rows[i]
            seeds = ", ".join(f"{100 * v:.1f}" for v in r["exact_runs"])
            cells.append(f"{100 * r['exact']:.1f} ± {100 * r['exact_sd']:.1f}% ({seeds})")
            cells.append(f"{100 * r['token']:.1f} ± {100 * r['token_sd']:.1f}%")
            cells.append(f"{r['loss']:.4f} ± {r['loss_sd']:.4f}")
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"wrote {args.out.with_suffix('.md')} (no plot: pip install 'trm[plot]')")
        return 0
    fig, (ax_acc, ax_tok, ax_loss) = plt.subplots(1, 3, figsize=(14, 3.8))
    for name, runs in groups.items():
        rows = table[name]
        line = ax_acc.errorbar(steps, [100 * r["exact"] for r in rows], yerr=[100 * r["exact_sd"] for r in rows],
                               marker="o", capsize=3, label=f"{name} ({len(runs)} seeds)")
        colour = line[0].get_color()
        ax_tok.errorbar(steps, [100 * r["token"] for r in rows], yerr=[100 * r["token_sd"] for r in rows],
                        marker="o", capsize=3, color=colour, label=name)
        for loss, _, _ in runs:
            s = sorted(loss)
            width = max(1, len(s) // 60)
            xs = [s[j] for j in range(width - 1, len(s), width)]
            ys = [sum(loss[k] for k in s[j - width + 1:j + 1]) / width for j in range(width - 1, len(s), width)]
            ax_loss.plot(xs, ys, color=colour, alpha=0.6, linewidth=1)
        ax_loss.plot([], [], color=colour, label=name)
    ax_acc.set(xlabel="step", ylabel="held-out exact accuracy (%)", ylim=(0, 100))
    ax_tok.set(xlabel="step", ylabel="held-out token accuracy (%)", ylim=(0, 100))
    ax_loss.set(xlabel="step", ylabel="training lm_loss per example", yscale="log")
    for ax in (ax_acc, ax_tok, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
