"""`trm export RUN OUT [--push owner/name]`: config.json, model.safetensors and a model card (README.md)
that `trm.load(OUT)` reads back bit for bit; `--push` uploads the folder to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's model as config.json + model.safetensors + model card")
    p.add_argument("run", help="a run folder (its latest checkpoint) or a checkpoint folder")
    p.add_argument("out", help="folder to write (must not exist, or be empty)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA")
    p.add_argument("--push", metavar="OWNER/NAME", help="then upload it to this Hub repository (needs trm[hub])")
    p.add_argument("--private", action="store_true", help="with --push: create the repository private")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from trm.export import export
    from trm.loader import describe, load

    out = export(args.run, args.out, repo_id=args.push, raw=args.raw)
    print(f"wrote {out}: config.json, model.safetensors, README.md ({describe(load(out))})")
    if args.push:
        from trm.hub import push

        print(f"pushed to {push(out, args.push, private=args.private)}")
    return 0
