"""Processing recipes: list, create, read, replace, delete; the default and the schema."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, status

from daemon import recipes as service
from daemon.api.deps import EngineDep
from daemon.api.responses import responses
from daemon.api.schemas.common import RecordId
from daemon.api.schemas.recipes import RecipeRead, RecipeWrite

router = APIRouter(prefix="/api/recipes", tags=["recipes"])


def _read(row: object) -> RecipeRead:
    return RecipeRead.model_validate(row, from_attributes=True)


@router.get("")
async def recipes(engine: EngineDep) -> list[RecipeRead]:
    """Saved recipes by name."""
    return [_read(row) for row in await asyncio.to_thread(service.list_recipes, engine)]


@router.get("/default")
async def default() -> dict[str, Any]:
    """The default recipe: a starting point to edit and save under another name."""
    return service.default_document()


@router.get("/schema")
async def schema() -> dict[str, Any]:
    """The JSON schema of a recipe: every step kind and its fields, with types, limits,
    defaults and descriptions."""
    return service.recipe_schema()


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(409))
async def create(body: RecipeWrite, engine: EngineDep) -> RecipeRead:
    """Save a new recipe; 422 lists every problem of the document with its path, 409 when
    another recipe has its name."""
    recipe = service.load_recipe(body.document)
    return _read(await asyncio.to_thread(service.save_recipe, engine, recipe))


@router.get("/{recipe_id}", responses=responses(404))
async def read(recipe_id: RecordId, engine: EngineDep) -> RecipeRead:
    return _read(await asyncio.to_thread(service.get_recipe, engine, recipe_id))


@router.put("/{recipe_id}", responses=responses(404, 409))
async def replace(recipe_id: RecordId, body: RecipeWrite, engine: EngineDep) -> RecipeRead:
    """Replace a recipe; the jobs that ran it keep their own copy."""
    recipe = service.load_recipe(body.document)
    return _read(await asyncio.to_thread(service.save_recipe, engine, recipe, recipe_id))


@router.delete("/{recipe_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
async def delete(recipe_id: RecordId, engine: EngineDep) -> None:
    await asyncio.to_thread(service.delete_recipe, engine, recipe_id)
