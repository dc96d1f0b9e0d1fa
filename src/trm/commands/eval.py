"""`trm eval SOURCE [--data DIR] [--limit N --seed S] [--steps N] [--policy fixed|early] [--blank-ids] [--augment A]`.

SOURCE is anything `trm.load` reads: our run or checkpoint folder, a reference TRM or HRM run folder,
a weights file with its config beside it, or hf://owner/name[/subfolder][@revision].

Writes next to the checkpoint (for a Hub model: under ./evals/, or `--out DIR`) `eval-<tag>.json`
(every number printed, with each accuracy's 95% confidence interval and the machine it ran on),
`eval-<tag>.html` (per-step accuracy plot, right and wrong examples) and, for ARC,
`submission-<tag>.json` (Kaggle format) with pass@k when the answers are known. The tag names every
option that changes the numbers (policy and step budget, test-time scaling, a subset, raw weights, dtype,
a partial run, another dataset or task); a file holding a result of other options is never replaced (the
new one gets a `-2`, `-3`, ... name). A checkpoint folder that cannot be written to still gets its table
printed; the files then go to `./eval-results/<run>-<checkpoint>/` (or `--out DIR`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trm.atomic import atomic_write_text
from trm.cli import UsageError
from trm.results import claim, result_tag, writable_folder
from trm.tasks import TASKS, task_class

if TYPE_CHECKING:
    from trm.evaluate import Scaling
    from trm.tasks.base import Scorer


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: per-set accuracy and accuracy after each step")
    p.add_argument("checkpoint", metavar="SOURCE",
                   help="a checkpoint or run folder (its latest checkpoint), a reference TRM / HRM run folder or "
                        "weights file, or hf://owner/name[/subfolder][@revision]")
    p.add_argument("--data", help="dataset folder (default: the one the run trained on)")
    p.add_argument("--limit", type=int, metavar="N",
                   help="evaluate a seeded random N examples of each test set (--seed), with a 95%% interval")
    p.add_argument("--out", help="folder for the results (default: beside the checkpoint, ./evals/ for a Hub model; "
                   "a read-only checkpoint folder falls back to ./eval-results/<run>)")
    p.add_argument("--task", choices=list(TASKS), help="what the tokens encode (default: from the dataset)")
    p.add_argument("--steps", type=int, help="supervision-step budget (default: N_sup of training)")
    p.add_argument("--policy", choices=["fixed", "early"], default="fixed",
                   help="fixed: run every step (the reference); early: stop when the halting head fires")
    p.add_argument("--blank-ids", action="store_true", help="ablation: blank puzzle identifiers at test time")
    p.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA")
    add_dtype_argument(p)
    add_scaling_arguments(p)
    for name in TASKS:
        task_class(name).add_eval_arguments(p)
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-batches", type=int, help="evaluate only the first this many batches (a quick look)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


DTYPE_CHOICES = ("train", "auto", "float32", "bfloat16")
"""`--dtype` of `trm eval` and `trm solve` (trm.runtime.INFERENCE_DTYPES, spelled out here so that
building the command line does not import torch)."""


def add_dtype_argument(p: argparse.ArgumentParser) -> None:
    """The activation-dtype option, shared by `trm eval` and `trm solve`."""
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="train",
                   help="activation dtype: train (default: the one the run trained with, unless bfloat16 is "
                   "measured slower on this CPU), auto (measured), float32 or bfloat16")


def add_scaling_arguments(p: argparse.ArgumentParser) -> None:
    """The test-time-scaling options, shared by `trm eval` and `trm solve`."""
    g = p.add_argument_group("test-time scaling (cost: augment x noise times the steps)")
    g.add_argument("--augment", type=int, default=1, metavar="A",
                   help="answers from A views (the original and A-1 transforms), inverted and voted (Sudoku, Maze)")
    g.add_argument("--noise", type=int, default=1, metavar="K",
                   help="K trajectories per view, all but the first from a noise-perturbed initial state")
    g.add_argument("--noise-scale", type=float, default=0.1, help="standard deviation of that noise")
    g.add_argument("--step-noise", type=float, default=0.0, metavar="S",
                   help="also perturb those trajectories by noise of deviation S before every later step (PTRM)")
    g.add_argument("--select", choices=["auto", "vote", "halt", "first"], default="auto",
                   help="vote: most frequent answer (ties: halting confidence); halt: most confident answer; "
                        "first: halt-first ensemble, stop at the first run that halts and take its answer; "
                        "auto: vote when augmenting, else halt")
    g.add_argument("--seed", type=int, default=0, help="seeds the transforms and the noise (and eval's --limit subset)")


def scaling_from_args(args: argparse.Namespace) -> Scaling | None:
    """The `Scaling` the options ask for; None for one plain answer. UsageError on impossible settings."""
    from trm.evaluate import Scaling

    try:
        scaling = Scaling(augment=args.augment, noise=args.noise, noise_scale=args.noise_scale,
                          step_noise=args.step_noise, select=args.select, seed=args.seed)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return scaling if scaling.runs > 1 else None


def run(args: argparse.Namespace) -> int:
    from trm.data.sampler import open_dataset, test_subset
    from trm.evaluate import EvalOptions, evaluate
    from trm.loader import check_fits, describe, load
    from trm.machine import machine_kind
    from trm.runtime import pick_device
    from trm.tasks import dataset_task, task_for

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be at least 1")
    check_eval_arguments(args)
    scaling = scaling_from_args(args)
    device = pick_device(args.device)
    loaded = load(args.checkpoint, data=args.data, use_ema=not args.raw, device=device, dtype=args.dtype)
    print(describe(loaded), file=sys.stderr)
    print(f"numeric mode: {loaded.numeric}", file=sys.stderr)
    trained_on = loaded.meta.get("train", {}).get("data")
    data_dir = args.data or trained_on
    if not data_dir:
        raise UsageError(f"{args.checkpoint}: no dataset recorded; pass --data DIR")
    data = open_dataset(data_dir)
    meta = data.dataset.train.meta
    check_fits(loaded.config, meta, where=args.checkpoint, data=str(data_dir))
    check_task(loaded.config, meta, args.task)
    task = task_for(meta.vocab_size, meta.seq_len, args.task) if args.task else dataset_task(data.dataset)
    if task is not None and args.augment > 1 and task.no_augmentation:
        raise UsageError(task.no_augmentation)
    if task is None and args.augment > 1:
        raise UsageError(f"--augment {args.augment}: the dataset's task is not known, so there are no transforms to "
                         f"vote over; pass --task ({', '.join(TASKS)})")
    scorer: Scorer | None = task.scorer(data.dataset, args) if task is not None else None

    options = EvalOptions(steps=args.steps, policy=args.policy, scaling=scaling, blank_ids=args.blank_ids,
                          keep_examples=0 if args.no_report else 4, max_batches=args.max_batches)
    subset = test_subset(data.dataset.test, args.limit, args.seed) if args.limit and data.dataset.test else None
    total, batch_count = _examples(data, subset, args.batch_size)
    print(f"evaluating {total} examples in {batch_count} batches of {args.batch_size}"
          + (f" (the first {args.max_batches} only)" if args.max_batches is not None else ""),
          file=sys.stderr, flush=True)
    batches = with_progress(data.test_batches(args.batch_size, subset=subset), total, args.batch_size,
                            args.max_batches)
    result = evaluate(loaded.model, batches, options, device=device, task=task,
                      collect=scorer.collect if scorer is not None else None)
    dtype = str(loaded.model.dtype).removeprefix("torch.")
    chosen = result_options(args, result.budget, dtype, data_dir, trained_on, task.name if task else None)
    report: dict[str, Any] = {"checkpoint": str(loaded.path), "source": str(loaded.meta.get("source", loaded.path)),
                              "data": str(data_dir),
                              "format": loaded.meta.get("format"), "task": task.name if task else None,
                              "blank_ids": args.blank_ids, "dtype": dtype, "weights": "raw" if args.raw else "ema",
                              "limit": args.limit, "seed": args.seed if args.limit else None,
                              "machine": machine_kind(), "options": chosen, **result.to_dict()}
    add_intervals(report)
    print(format_table(report, None), flush=True)  # the numbers first, whatever happens to the files
    fallback = Path("eval-results") / f"{loaded.path.parent.name}-{loaded.path.name}"
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    folder, note = writable_folder(results_folder(args, loaded), fallback)
    if note:
        print(note, file=sys.stderr)
    out = claim(folder, "eval", result_tag(tag_parts(chosen, trained_on)), chosen)
    tag = out.stem.removeprefix("eval-")
    if scorer is not None and task is not None:
        report[task.name] = scorer.report(folder, tag)
        for line in scorer.lines(report[task.name]):
            print(line)
    atomic_write_text(out, json.dumps(report, indent=1))
    print(f"wrote {out}")
    if not args.no_report:
        print(f"wrote {_write_report(folder / f'eval-{tag}.html', report, result.examples, scorer)}")
    return 0


def results_folder(args: argparse.Namespace, loaded: Any) -> Path:
    """Where the results go: --out, else beside the checkpoint, else (a Hub model: the download cache is no
    place for them) ./evals/<owner>--<name>."""
    if args.out:
        return Path(args.out)
    if str(args.checkpoint).startswith("hf://"):
        folder = Path("evals") / str(args.checkpoint)[len("hf://"):].replace("/", "--").replace("@", "--")
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return Path(loaded.path)


def _examples(data: Any, subset: dict[str, Any] | None, batch_size: int) -> tuple[int, int]:
    """(examples, batches) of the test split, or of its --limit subset."""
    split = data.dataset.test
    if split is None:
        return 0, 0
    sizes = [a.num_examples if subset is None else len(subset.get(name, [])) for name, a in split.sets.items()]
    return sum(sizes), sum(-(-n // batch_size) for n in sizes)


def with_progress(batches: Any, total: int, batch_size: int, max_batches: int | None) -> Any:
    """The batches, with a progress bar on standard error (examples done, rate, time left)."""
    from tqdm import tqdm

    if max_batches is not None:
        total = min(total, max_batches * batch_size)
    with tqdm(total=total, unit="example", file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
              disable=not sys.stderr.isatty(), leave=False) as bar:
        for batch in batches:
            yield batch
            bar.update(batch.real_rows)


def add_intervals(report: dict[str, Any]) -> None:
    """Each set's exact (and valid) accuracy gets its 95% Wilson interval."""
    from trm.stats import wilson_interval

    for r in report["sets"].values():
        for key in ("exact_accuracy", "valid_accuracy"):
            if key in r:
                r[f"{key}_ci95"] = list(wilson_interval(round(r[key] * r["count"]), r["count"]))


def check_eval_arguments(args: argparse.Namespace) -> None:
    """UsageError naming the option when a number cannot work."""
    numbers = (("--steps", args.steps), ("--batch-size", args.batch_size), ("--max-batches", args.max_batches))
    for name, value in numbers:
        if value is not None and value < 1:
            raise UsageError(f"{name} {value}: must be a positive integer")


def check_task(config: Any, meta: Any, task: str | None) -> None:
    """UsageError when the model cannot read this dataset, or `--task` is not what the model was made for."""
    if (config.vocab_size, config.seq_len) != (meta.vocab_size, meta.seq_len):
        raise UsageError(f"the model reads {config.seq_len} tokens of {config.vocab_size} ids, the dataset has "
                         f"{meta.seq_len} tokens of {meta.vocab_size} ids: pass the --data it was trained for")
    declared = getattr(meta, "task", None)
    if task is not None and declared and task != declared:
        raise UsageError(f"--task {task}: the dataset holds {declared} puzzles (its dataset.json says so); "
                         f"evaluate it as {declared}, or pass the --data of a {task} dataset")
    if task is not None and not task_class(task).recognises(config.vocab_size, config.seq_len):
        fits = [n for n in TASKS if task_class(n).recognises(config.vocab_size, config.seq_len)]
        raise UsageError(f"--task {task}: a model of {config.vocab_size} token ids and {config.seq_len} positions is "
                         f"not a {task} model" + (f" (it fits: {', '.join(fits)})" if fits else ""))


def result_options(args: argparse.Namespace, budget: int, dtype: str, data_dir: str, trained_on: str | None,
                   task: str | None) -> dict[str, Any]:
    """Every option that changes the numbers of an evaluation (they name its files)."""
    return {"policy": args.policy, "steps": budget, "blank_ids": args.blank_ids, "augment": args.augment,
            "noise": args.noise, "noise_scale": args.noise_scale if args.noise > 1 else None,
            "step_noise": getattr(args, "step_noise", 0.0) or None, "select": args.select,
            "limit": getattr(args, "limit", None),
            "seed": args.seed if args.augment > 1 or args.noise > 1 or getattr(args, "limit", None) else None,
            "weights": "raw" if args.raw else "ema", "dtype": dtype, "max_batches": args.max_batches,
            "data": str(data_dir) if trained_on is None or Path(data_dir) != Path(trained_on) else None,
            "task": task if args.task else None}


def tag_parts(o: dict[str, Any], trained_on: str | None) -> dict[str, Any]:
    """The file-name tag of `result_options`: defaults left out, so a plain evaluation is `fixed-<steps>`."""
    return {"policy": o["policy"], "steps": o["steps"], "blank": o["blank_ids"],
            "aug": o["augment"] if o["augment"] > 1 else None, "noise": o["noise"] if o["noise"] > 1 else None,
            "scale": o["noise_scale"] if o["noise"] > 1 and o["noise_scale"] != 0.1 else None,
            "stepnoise": o.get("step_noise"), "select": o["select"] if o["select"] != "auto" else None,
            "limit": o.get("limit"), "seed": o["seed"] if o["seed"] or o.get("limit") else None,
            "raw": o["weights"] == "raw",
            "": o["dtype"] if o["dtype"] != "float32" else None,
            "first": o["max_batches"], "data-": Path(o["data"]).name if o["data"] else None,
            "task-": o["task"]}


def _write_report(path: Path, report: dict[str, Any], examples: list[dict[str, Any]],
                  scorer: Scorer | None = None) -> Path:
    from trm import viz

    per_step = {}
    for name, r in report["sets"].items():
        per_step[f"{name} exact"] = r["exact_accuracy_per_step"]
        if "valid_accuracy_per_step" in r:
            per_step[f"{name} valid"] = r["valid_accuracy_per_step"]
    summary: dict[str, Any] = {"checkpoint": report["checkpoint"], "data": report["data"], "policy": report["policy"],
                               "budget": report["budget"], "blank ids": report["blank_ids"]}
    for name, r in report["sets"].items():
        summary[f"{name}: examples"] = r["count"]
        summary[f"{name}: exact accuracy"] = f"{r['exact_accuracy']:.2%}"
        if "valid_accuracy" in r:
            summary[f"{name}: valid accuracy"] = f"{r['valid_accuracy']:.2%}"
    if report.get("scaling"):
        summary["test-time scaling"] = json.dumps(report["scaling"])
    summary["cost: supervision steps per example"] = f"{report['cost']['supervision_steps_per_example']:.2f}"
    if scorer is not None:
        summary.update(scorer.summary(report[report["task"]]))
    drawable = [ex for ex in examples if ex.get("task")]
    return viz.html_report(path, f"trm eval: {Path(report['checkpoint']).name}", per_step, drawable, summary)


def format_table(report: dict, scorer: Scorer | None = None) -> str:
    has_valid = any("valid_accuracy" in r for r in report["sets"].values())
    header = f"{'set':<16}{'count':>8}{'token acc':>11}{'exact acc':>11}" + (f"{'valid acc':>11}" if has_valid else "")
    lines = [header + f"{'mean steps':>12}"]
    for name, r in report["sets"].items():
        valid = (f"{r['valid_accuracy']:>11.2%}" if "valid_accuracy" in r else f"{'-':>11}") if has_valid else ""
        lines.append(f"{name:<16}{r['count']:>8}{r['accuracy']:>11.2%}{r['exact_accuracy']:>11.2%}{valid}"
                     f"{r['mean_steps']:>12.2f}")
    for name, r in report["sets"].items():
        if "exact_accuracy_ci95" in r:
            lo, hi = r["exact_accuracy_ci95"]
            subset = f"a seeded random {r['count']} (--limit {report['limit']}, --seed {report['seed']})" \
                if report.get("limit") else f"all {r['count']}"
            lines.append(f"exact accuracy ({name}): {r['exact_accuracy']:.2%}, 95% interval {lo:.2%}-{hi:.2%} "
                         f"over {subset} examples")
    for name, r in report["sets"].items():
        steps = "  ".join(f"{i + 1}:{a:.0%}" for i, a in enumerate(r["exact_accuracy_per_step"]))
        lines.append(f"exact accuracy after each step ({name}): {steps}")
    cost = report["cost"]
    lines.append(f"cost: {cost['supervision_steps_per_example']:.2f} supervision steps per example "
                 f"({cost['relative_to_one_answer']}x one answer), {cost['seconds']:.1f} s")
    if scorer is not None:
        lines += scorer.lines(report[report["task"]])
    return "\n".join(lines)
