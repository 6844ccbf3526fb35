"""Processing jobs: what a request asks for and what the API shows of a job."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from daemon.api.schemas.common import RecordId
from daemon.db.models import JobState
from daemon.worker import FOLDER_REFUSED, ProcessingOptions


class JobCreate(BaseModel):
    """Process a night (`session_id`) or a folder of FITS files inside the processing roots
    (NIGHTOWL_PROCESSING_ROOTS, the data folder by default)."""

    model_config = ConfigDict(extra="forbid")

    session_id: RecordId | None = None
    folder: Path | None = None
    options: ProcessingOptions = Field(default_factory=ProcessingOptions)

    @field_validator("folder", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        """An empty path would mean the daemon's working folder."""
        if isinstance(value, str) and not value.strip():
            raise PydanticCustomError("value_error", FOLDER_REFUSED)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> JobCreate:
        if (self.session_id is None) == (self.folder is None):
            raise ValueError("give either session_id or folder")
        return self


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: int | None
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
