"""Request and response bodies for sequence templates and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from daemon.api.schemas.common import JsonDocument, RecordId, RequestBody
from sequences.base import TargetName
from sequences.coordinates import DecDeg, RaHours


class IssueRead(BaseModel):
    path: str
    message: str
    fix: str


class TemplateWrite(RequestBody):
    """The document is checked by the sequence engine (422 naming the node and field)."""

    document: JsonDocument


class TemplateRead(BaseModel):
    id: int
    name: str
    document: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class NinaImportWrite(RequestBody):
    """A N.I.N.A. Advanced Sequencer file (a `*.template.json`, a saved sequence or a list of
    targets) as it is on disk, and how to import it."""

    nina: dict[str, Any] | list[Any] = Field(description="the NINA file's JSON, unchanged")
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="the template's name; default: the NINA container's name",
    )
    strict: bool = Field(
        default=False, description="refuse the file (422) if any node or field is not mapped"
    )


class NinaReportEntryRead(BaseModel):
    nina_path: str = Field(description="where in the NINA file, e.g. Items[2].Items[0]")
    nina_type: str = Field(description="NINA's $type class, without its assembly")
    status: str = Field(description="mapped, approximated (see note) or not_mapped")
    kinds: list[str] = Field(description="our node kinds it became")
    note: str


class NinaReportRead(BaseModel):
    mapped: int
    approximated: int
    not_mapped: int
    entries: list[NinaReportEntryRead]


class NinaImportRead(BaseModel):
    template: TemplateRead
    report: NinaReportRead


class TimelineEntryRead(BaseModel):
    path: str
    label: str
    start: datetime
    end: datetime


class TargetDrop(RequestBody):
    """A target dropped into a template: it replaces the template's first target container's
    name and coordinates (one copy of that container per target)."""

    name: TargetName
    ra_hours: RaHours
    dec_deg: DecDeg
    rotation_deg: float | None = Field(default=None, ge=0, lt=360)


class RunCreate(RequestBody):
    template_id: RecordId | None = None
    document: JsonDocument | None = None
    targets: list[TargetDrop] = Field(default_factory=list)
    ignore_issues: bool = Field(
        default=False, description="start even when validation finds problems"
    )


class RunRead(BaseModel):
    id: int
    template_id: int | None
    name: str
    status: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    current: str | None
    pause_requested: bool = Field(
        default=False, description="a pause was asked for; it takes effect after the current step"
    )
    status_text: str = Field(
        description='the status for people, e.g. "paused (takes effect after the current step)"'
    )
    document: dict[str, Any] | None = None
    nodes: dict[str, Any] | None = None
    """Per node path: status, attempts, error, counters (with `document`, the tree)."""
    owner: str | None = Field(
        description="the observatory profile of the daemon that runs it (several daemons may "
        "share one database); null: made without one"
    )


class RunEventRead(BaseModel):
    id: int
    time: datetime
    level: str
    message: str
    path: str | None
    data: dict[str, Any]


class ExampleRead(BaseModel):
    """An example sequence shipped with Nightowl, to start a template from."""

    file: str
    name: str
    description: str
    document: dict[str, Any]
