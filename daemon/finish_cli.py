"""`nightowl finish` and `nightowl recipe`: the finishing steps from the command line.

    nightowl finish MASTER.fits [MORE.fits ...] --out DIR [--recipe R.json] [--json]
    nightowl finish MASTER.fits --out DIR --recipe-from DIR/M_94_final.fits
    nightowl recipe default > my.json       (edit, then --recipe my.json)
    nightowl recipe check my.json           (the issues, each with its path and fix)

Several masters of one target (R, G, B; L; Ha, OIII, SII by their FILTER) are combined
by the recipe's ``combine`` step. The stacking steps of a recipe are ignored here: they
apply to ``nightowl process``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    finish = commands.add_parser("finish", help="finish linear masters into a picture")
    finish.add_argument("masters", type=Path, nargs="+", help="linear master FITS of one target")
    finish.add_argument("--out", type=Path, required=True, help="folder for the results")
    source = finish.add_mutually_exclusive_group()
    source.add_argument("--recipe", type=Path, help="a recipe JSON file (default: the default)")
    source.add_argument(
        "--recipe-from", type=Path, help="redo the recipe a finished FITS was made with"
    )
    finish.add_argument("--name", help="base name of the outputs (default: the target)")
    finish.add_argument("--json", action="store_true", help="print the summary as JSON")
    recipe = commands.add_parser("recipe", help="print or check a processing recipe")
    actions = recipe.add_subparsers(dest="recipe_command", required=True)
    actions.add_parser("default", help="print the default recipe as JSON")
    check = actions.add_parser("check", help="validate a recipe file")
    check.add_argument("file", type=Path)


def finish_masters(args: argparse.Namespace) -> int:
    """Finish the masters; exit status 0, or 1 with the reason on stderr."""
    from processing.finish import FinishError, finish, load_master, recipe_of_output
    from processing.recipe import RecipeError, default_recipe, recipe_from_json

    try:
        if args.recipe_from is not None:
            recipe = recipe_of_output(args.recipe_from)
        elif args.recipe is not None:
            recipe = recipe_from_json(args.recipe.read_bytes())
        else:
            recipe = default_recipe()
        masters = [load_master(path) for path in args.masters]
        result = finish(masters, recipe, args.out, name=args.name)
    except RecipeError as e:
        return _fail("the recipe has problems:\n" + _issue_lines(e))
    except (FinishError, OSError) as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps(result.summary(), indent=2))
        return 0
    for step in result.steps:
        print(f"{step.index:2d} {step.kind:16s} {step.seconds:6.2f} s  {'; '.join(step.notes)}")
    for kind, path in result.outputs.items():
        print(f"  {kind:19s} {path}")
    return 0


def recipe_command(args: argparse.Namespace) -> int:
    from processing.recipe import RecipeError, default_recipe, recipe_from_json

    if args.recipe_command == "default":
        print(json.dumps(default_recipe().model_dump(mode="json"), indent=2))
        return 0
    try:
        recipe = recipe_from_json(args.file.read_bytes())
    except OSError as e:
        return _fail(f"{args.file}: {e.strerror}")
    except RecipeError as e:
        return _fail(f"{args.file} has problems:\n" + _issue_lines(e))
    print(f"{args.file}: recipe {recipe.name!r}, {len(recipe.steps)} steps, valid")
    return 0


def _issue_lines(error: object) -> str:
    issues = getattr(error, "issues", [])
    return "\n".join(f"  {i.path}: {i.message} (fix: {i.fix})" for i in issues)


def _fail(message: str) -> int:
    print(f"nightowl: {message}", file=sys.stderr)
    return 1
