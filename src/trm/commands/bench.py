"""`trm bench [--quick] [--only NAME] [--out FILE.json]`: the benchmark suite (see trm.bench)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="measure ceilings, training and inference speed, MFU and memory")
    p.add_argument("--quick", action="store_true", help="fewer runs, skip the largest shapes (a few minutes on CPU)")
    p.add_argument("--only", metavar="NAME", help="run only the benchmarks whose name contains NAME "
                   "(e.g. train.trm_mlp, infer, memory, data)")
    p.add_argument("--out", default="bench-results/bench.json", help="where to write the JSON results")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when available)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from trm.bench import format_table, run_benchmarks, to_json

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    rows = run_benchmarks(quick=args.quick, only=args.only, device=device)
    print(format_table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_json(rows, args.quick), indent=1) + "\n")
    print(f"wrote {out}")
    return 0
