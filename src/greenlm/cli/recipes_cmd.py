"""``greenlm recipes``: list the bundled recipes, or print one to copy and edit."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def recipes_command(
    action: Annotated[Optional[str], typer.Argument(help="'show' to print a recipe.")] = None,
    name: Annotated[Optional[str], typer.Argument(help="Recipe to show (quick, full).")] = None,
    resolved: Annotated[bool, typer.Option(help="With show: print every setting, defaults filled in.")] = False,
) -> None:
    """List bundled recipes; `greenlm recipes show NAME` prints one (copy it, edit it, `greenlm run it.yaml`)."""
    from greenlm.common import GreenlmError
    from greenlm.pipeline.recipes import bundled_recipe_text, describe_bundled_recipes, load_recipe

    if action is None:
        for recipe_name, line in describe_bundled_recipes():
            print(f"{recipe_name:8s} {line}")
        print("\ngreenlm recipes show NAME [--resolved]   print one; greenlm run NAME|FILE   run one")
        return
    if action != "show" or not name:
        raise GreenlmError("use 'greenlm recipes' to list, or 'greenlm recipes show NAME'")
    if resolved:
        import yaml

        print(yaml.safe_dump(load_recipe(name, machine=False).to_dict(), sort_keys=False), end="")
    else:
        print(bundled_recipe_text(name), end="")


def register(app: typer.Typer) -> None:
    app.command("recipes")(recipes_command)
