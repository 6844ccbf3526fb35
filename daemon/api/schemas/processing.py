"""Processing jobs: what a request asks for and what the API shows of a job."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from daemon.api.schemas.common import JsonDocument, RecordId, RequestBody
from daemon.processing_options import ProcessingOptions
from daemon.states import JobState
from daemon.worker import FOLDER_REFUSED


class JobCreate(BaseModel):
    """Process a night (`session_id`), a target across nights (`target`: every accepted
    light of it, in `filter` only when given, with each night's calibration frames) or a
    folder of FITS files inside the processing roots (NIGHTOWL_PROCESSING_ROOTS, the data
    folder by default): exactly one of the three. Then finish every target with a
    recipe: an inline `recipe` document or a saved one (`recipe_id`); with neither, the
    default recipe's finishing steps and `options` for the stacking. A recipe's stacking
    steps override the options they cover (`daemon.worker.recipe_pipeline_config`)."""

    model_config = ConfigDict(extra="forbid")

    session_id: RecordId | None = None
    folder: Path | None = None
    target: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="a target's name: all its accepted lights across nights",
    )
    filter: str | None = Field(
        default=None,
        min_length=1,
        max_length=50,
        description="with target: only its lights taken in this filter",
    )
    options: ProcessingOptions = Field(default_factory=ProcessingOptions)
    recipe: JsonDocument | None = Field(
        default=None, description="a recipe document (GET /api/recipes/default)"
    )
    recipe_id: RecordId | None = Field(default=None, description="a saved recipe")
    linear_only: bool = Field(
        default=False, description="stop after the linear masters: no finished pictures"
    )

    @field_validator("folder", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        """An empty path would mean the daemon's working folder."""
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("value_error", FOLDER_REFUSED)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JobCreate:
        if sum(s is not None for s in (self.session_id, self.folder, self.target)) != 1:
            raise ValueError(
                "give one source: either session_id or folder (a night, FITS files), or "
                "target (a target's lights across nights)"
            )
        if self.filter is not None and self.target is None:
            raise ValueError("filter chooses a target's lights: give target too, or leave it out")
        if self.recipe is not None and self.recipe_id is not None:
            raise ValueError("give recipe or recipe_id, not both")
        return self


class FinishCreate(RequestBody):
    """Finish a done job's linear masters again with another recipe (inline or saved; with
    neither, the default recipe). Stacking steps of the recipe are ignored: nothing is
    stacked again."""

    recipe: JsonDocument | None = Field(default=None, description="a recipe document")
    recipe_id: RecordId | None = Field(default=None, description="a saved recipe")

    @model_validator(mode="after")
    def _one_recipe(self) -> FinishCreate:
        if self.recipe is not None and self.recipe_id is not None:
            raise ValueError("give recipe or recipe_id, not both")
        return self


class PreviewCreate(FinishCreate):
    """Which finished picture of the job (by `target` or by its file `name`; either may be
    left out when the job has one) and the recipe whose steps from its first stretch on are
    applied to that picture's small linear proxy."""

    target: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: int | None
    target_id: int | None = Field(default=None, description="a target job's target")
    folder: str | None
    state: JobState
    stage: str | None
    progress: float = Field(description="0..1 over the whole job")
    config: dict[str, Any]
    out_dir: str | None
    outputs: dict[str, Any] = Field(description="the job's summary once done")
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    owner: str | None = Field(
        description="the observatory profile of the daemon that runs it (several daemons may "
        "share one database); null: made without one"
    )


class TargetLights(BaseModel):
    """A target a job across nights can stack: its accepted lights, over how many nights,
    in which filters (none listed: lights without a filter)."""

    name: str
    accepted_lights: int
    nights: int
    filters: list[str]


class HistogramStart(BaseModel):
    """The stretch the histogram's handles start from, as a histogram step's three levels
    (the midtones balance as in PixInsight: the input level mapped to 0.5 is
    ``shadows + midtones * (highlights - shadows)``), and where it comes from: the job's
    recipe (a histogram step), the job's linked auto-STF, or the proxy's own auto-STF."""

    shadows: float
    midtones: float
    highlights: float
    source: Literal["recipe", "job", "proxy"]


class HistogramRead(BaseModel):
    """The histogram of a finished picture's linear proxy: per channel (`channels`: L, or
    R, G, B) the pixel counts in equal bins over `range` (values outside are not counted)."""

    name: str
    target: str | None
    channels: list[str]
    bins: list[list[int]] = Field(description="one list of counts per channel")
    range: tuple[float, float] = Field(description="the levels the bins span, 0..1 scale")
    stf: HistogramStart
