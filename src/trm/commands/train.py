"""`trm train RECIPE [key=value ...]` and `trm recipes`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a recipe (works under torchrun too)")
    p.add_argument("recipe", help="a recipe name (see `trm recipes`) or a YAML file")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. model.hidden_size=256 lr=3e-4")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in run_dir from its latest checkpoint")
    again.add_argument("--restart", action="store_true",
                       help="start over in a run_dir that holds checkpoints (the old files are moved into "
                            "run_dir/previous-<time>/, not deleted)")
    p.set_defaults(func=_train)

    r = sub.add_parser("recipes", help="list the training recipes shipped with trm")
    r.set_defaults(func=_recipes)


def _train(args: argparse.Namespace) -> int:
    from trm.train import main_train

    return main_train(args.recipe, args.overrides, resume=args.resume, restart=args.restart)


def _recipes(args: argparse.Namespace) -> int:
    from trm.train import list_recipes

    recipes = list_recipes()
    width = max((len(n) for n in recipes), default=0)
    for name, about in recipes.items():
        print(f"{name:<{width}}  {about}")
    return 0
