"""`trm arc adapt CHECKPOINT CHALLENGES --budget 2h`: test-time training to a Kaggle submission
(`trm.tasks.arc.adapt`)."""

from __future__ import annotations

import argparse
import json

from trm.cli import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arc", help="ARC workflows: adapt (test-time training to a Kaggle submission)")
    inner = p.add_subparsers(dest="arc_command", metavar="WORKFLOW")
    a = inner.add_parser("adapt", help="fine-tune a pretrained checkpoint on a challenges file's demonstrations "
                                       "within a time budget, then write submission.json (resumable, offline)")
    a.add_argument("checkpoint", help="pretrained ARC checkpoint or run folder")
    a.add_argument("challenges", help="Kaggle challenges file (arc-agi_test_challenges.json)")
    a.add_argument("--solutions", help="its solutions file, when known: pass@k is reported")
    a.add_argument("--budget", default="2h", help="wall time for everything, all invocations together "
                                                  "(2h, 90m, 1h30m, 45s; default 2h); prediction's share is measured")
    a.add_argument("--work", help="folder for the dataset, run and progress (default: adapt-<challenges name>); "
                                  "run the same command again to continue an interrupted adapt")
    a.add_argument("--submission", default="submission.json", help="where to write the submission")
    a.add_argument("--num-aug", type=int, default=64, help="augmented variants per task (default 64)")
    a.add_argument("--batch-size", type=int, help="global batch size (default: the pretrained run's)")
    a.add_argument("--lr", type=float, help="peak learning rate (default: the pretrained run's)")
    a.add_argument("--warmup", type=int, default=100, help="learning-rate warmup steps")
    a.add_argument("--max-steps", type=int, default=1_000_000, help="cap on fine-tuning steps")
    a.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    a.add_argument("--identifiers", help="identifiers.json of the pretraining dataset, to keep the rows of tasks "
                                         "in both (default: the recorded dataset, when present)")
    a.add_argument("--skip-empty", action="store_true", help="no empty grid among the attempts (Kaggle rule)")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--device", default="auto")
    a.add_argument("--compile", choices=["auto", "on", "off"], default="auto", help="torch.compile the model")
    a.set_defaults(func=_adapt)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def _adapt(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trm.tasks.arc.adapt import AdaptConfig, AdaptError, adapt, parse_budget

    try:
        budget = parse_budget(args.budget)
        if not Path(args.challenges).is_file():
            raise AdaptError(f"{args.challenges}: no such challenges file")
        cfg = AdaptConfig(checkpoint=args.checkpoint, challenges=args.challenges, solutions=args.solutions,
                          work=args.work or f"adapt-{Path(args.challenges).stem}", submission=args.submission,
                          budget=budget, num_aug=args.num_aug, seed=args.seed, max_steps=args.max_steps,
                          batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                          checkpoint_every=args.checkpoint_every, identifiers=args.identifiers,
                          skip_empty=args.skip_empty, device=args.device, compile=args.compile)
        report = adapt(cfg)
    except AdaptError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(report, indent=1))
    return 130 if report.get("interrupted") else 0
