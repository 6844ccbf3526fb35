"""Request and response bodies for processing recipes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from daemon.api.schemas.common import JsonDocument, RequestBody


class RecipeWrite(RequestBody):
    """The document is checked against the recipe schema and the pipeline's stacking
    settings (422 listing each problem with its path, such as ``steps[3].smoothing``); it is
    saved under its own `name`, unique among recipes."""

    document: JsonDocument = Field(description="a recipe (GET /api/recipes/default)")


class RecipeRead(BaseModel):
    id: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime
