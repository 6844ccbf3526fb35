"""Processing recipes in the database, and the recipe a processing job runs.

A recipe (`processing.recipe.Recipe`) is stored like a sequence template: a row with a unique
name and the validated document. Besides the document's own rules, a saved recipe must name
stacking settings the pipeline has (an interpolation kernel, a debayering method, a pixel
rejection algorithm), so a recipe that saves also runs.

A job stores the FULL recipe document it runs in its config, never a reference to a row: a
job stays reproducible after its recipe is edited or deleted. A job given no recipe runs the
default recipe's finishing steps with its `ProcessingOptions` deciding the stacking (see
`job_recipe`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from daemon.db.models import RecipeRow
from daemon.documents import NamedDocuments
from daemon.errors import Conflict, Refused
from processing.debayer import Demosaic
from processing.recipe import (
    STACKING_KINDS,
    CalibrateStep,
    IntegrateStep,
    Recipe,
    RecipeIssue,
    RegisterStep,
    default_recipe,
    validate_recipe,
)
from processing.register import Interpolation
from processing.rejection import Rejection
from sequences.errors import DocumentError
from sequences.model import Issue

RECIPES = NamedDocuments(RecipeRow, "recipe", "document")


def load_recipe(data: object, field: str = "document") -> Recipe:
    """Parse and check a recipe document. `DocumentError` lists every problem with its path
    inside the recipe (``steps[3].smoothing``); `field` names the request body's field that
    held it (the answer's `loc` is ``["body", field, "steps[3]", "smoothing"]``)."""
    recipe, issues = validate_recipe(data)
    if recipe is not None:
        issues = stacking_issues(recipe)
    if issues:
        raise DocumentError([Issue(i.path, i.message, i.fix) for i in issues], field=field)
    assert recipe is not None
    return recipe


def stacking_issues(recipe: Recipe) -> list[RecipeIssue]:
    """Stacking settings the recipe's schema allows but the pipeline does not have."""
    issues: list[RecipeIssue] = []
    for index, step in enumerate(recipe.steps):
        path = f"steps[{index}]"
        if isinstance(step, RegisterStep):
            _check(issues, f"{path}.interpolation", step.interpolation, Interpolation)
        elif isinstance(step, CalibrateStep):
            _check(issues, f"{path}.demosaic", step.demosaic, Demosaic)
        elif isinstance(step, IntegrateStep):
            _check(issues, f"{path}.rejection", step.rejection, Rejection)
    return issues


def _check(issues: list[RecipeIssue], path: str, value: str, known: type[Any]) -> None:
    names = [member.value for member in known]
    if value not in names:
        issues.append(
            RecipeIssue(path, f"the pipeline has no {value!r}", f"use one of {', '.join(names)}")
        )


def recipe_schema() -> dict[str, Any]:
    """The JSON schema of a recipe document: every step kind, its fields and limits."""
    return Recipe.model_json_schema()


def default_document() -> dict[str, Any]:
    return default_recipe().model_dump(mode="json")


def list_recipes(engine: Engine) -> list[RecipeRow]:
    """Saved recipes by name. Blocking."""
    return RECIPES.list(engine)


def get_recipe(engine: Engine, recipe_id: int) -> RecipeRow:
    """`NotFound` for an unknown id. Blocking."""
    return RECIPES.get(engine, recipe_id)


def save_recipe(engine: Engine, recipe: Recipe, recipe_id: int | None = None) -> RecipeRow:
    """Create (no id) or replace a recipe under its document's name; `Conflict` when another
    recipe has that name, `NotFound` for an unknown id. Blocking."""
    try:
        return RECIPES.save(engine, recipe.name, recipe.model_dump(mode="json"), recipe_id)
    except DocumentError as e:  # the only one `save` raises: the name is taken
        raise Conflict(f"a recipe named {recipe.name!r} exists: choose another name") from e


def delete_recipe(engine: Engine, recipe_id: int) -> None:
    """`NotFound` for an unknown id. Jobs keep their own copy of the recipe. Blocking."""
    RECIPES.delete(engine, recipe_id)


def job_recipe(
    engine: Engine, document: dict[str, Any] | None, recipe_id: int | None
) -> Recipe | None:
    """The recipe a request names: an inline `document` (`DocumentError` with field
    ``recipe``), a saved one by `recipe_id` (`NotFound`), or None for neither (the caller's
    default). `Refused` for both. Blocking."""
    if document is not None and recipe_id is not None:
        raise Refused(None, "give recipe or recipe_id, not both")
    if document is not None:
        return load_recipe(document, field="recipe")
    if recipe_id is not None:
        return load_recipe(get_recipe(engine, recipe_id).document, field="recipe")
    return None


def default_job_recipe() -> Recipe:
    """What a job without a recipe runs: the default recipe's finishing steps. It has no
    stacking steps, so the job's `ProcessingOptions` decide the stacking as they always did;
    a recipe with stacking steps overrides the options it covers."""
    recipe = default_recipe()
    finishing = tuple(step for step in recipe.steps if step.kind not in STACKING_KINDS)
    return recipe.model_copy(update={"steps": finishing})
