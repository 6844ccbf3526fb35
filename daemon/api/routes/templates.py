"""Sequence templates: list, create, read, replace, delete, check against the equipment."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, status

from daemon import templates as service
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import RecordId
from daemon.api.schemas.sequences import (
    ExampleRead,
    IssueRead,
    NinaImportRead,
    NinaImportWrite,
    NinaReportRead,
    TemplateRead,
    TemplateWrite,
    TimelineEntryRead,
)
from sequences.document import SequenceDocument

router = APIRouter(prefix="/api/templates", tags=["templates"])


def _read(row: object) -> TemplateRead:
    return TemplateRead.model_validate(row, from_attributes=True)


@router.get("")
async def templates(engine: EngineDep) -> list[TemplateRead]:
    return [_read(row) for row in await asyncio.to_thread(service.list_templates, engine)]


@router.get("/examples")
async def examples() -> list[ExampleRead]:
    """The example sequences shipped with Nightowl; post one's document to make a template."""
    return [
        ExampleRead(
            file=e.file,
            name=str(e.document.get("name", e.file)),
            description=str(e.document.get("description", "")),
            document=e.document,
        )
        for e in await asyncio.to_thread(service.example_documents)
    ]


@router.get("/schema")
async def schema() -> dict[str, Any]:
    """The JSON schema of a sequence document: every node kind and its fields, with types,
    limits, defaults and descriptions, so an editor needs no list of its own."""
    return SequenceDocument.model_json_schema()


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: TemplateWrite, engine: EngineDep) -> TemplateRead:
    """Save a new template; 422 lists every problem of the document with its node path."""
    document = service.load_document(body.document)
    return _read(await asyncio.to_thread(service.save_template, engine, document))


@router.post("/import", status_code=status.HTTP_201_CREATED)
async def import_nina(body: NinaImportWrite, engine: EngineDep) -> NinaImportRead:
    """Import a N.I.N.A. Advanced Sequencer file as a new template: `{"nina": <the file's
    JSON>, "name": optional, "strict": false}`. The report lists every NINA node with its path
    (`Items[2].Items[0]`) and `$type`: mapped, approximated (the note says how) or not mapped
    (left out: plugins, instructions we have no equivalent for, fields we do not read).
    A name already used becomes "Name (2)", so a file imported twice makes two templates.
    422 for a file that is not NINA's, or with `strict` anything not mapped (one issue per
    node)."""
    text = json.dumps(body.nina)
    imported = await asyncio.to_thread(
        service.import_nina_template, engine, text, name=body.name, strict=body.strict
    )
    return NinaImportRead(
        template=_read(imported.template),
        report=NinaReportRead.model_validate(imported.report.to_dict()),
    )


@router.get("/{template_id}", responses=responses(404))
async def read(template_id: RecordId, engine: EngineDep) -> TemplateRead:
    return _read(await asyncio.to_thread(service.get_template, engine, template_id))


@router.put("/{template_id}", responses=responses(404))
async def replace(template_id: RecordId, body: TemplateWrite, engine: EngineDep) -> TemplateRead:
    document = service.load_document(body.document)
    return _read(await asyncio.to_thread(service.save_template, engine, document, template_id))


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
async def delete(template_id: RecordId, engine: EngineDep) -> None:
    await asyncio.to_thread(service.delete_template, engine, template_id)


@router.get("/{template_id}/timeline", responses=responses(404))
async def timeline(template_id: RecordId, runtime: RuntimeDep) -> list[TimelineEntryRead]:
    """When each node would run if started now (on the daemon's clock), from the ephemerides
    and each instruction's estimate; no device moves. Loops count one pass."""
    entries = await service.template_timeline(
        runtime.engine, runtime.equipment, runtime.clock, template_id
    )
    return [
        TimelineEntryRead(path=e.path, label=e.label, start=e.start, end=e.end) for e in entries
    ]


@router.get("/{template_id}/issues", responses=responses(404))
async def issues(template_id: RecordId, runtime: RuntimeDep) -> list[IssueRead]:
    """What would fail tonight with the connected equipment (empty: ready to run)."""
    found = await service.template_issues(
        runtime.engine, runtime.equipment, runtime.clock, template_id, runtime.settings.scripts_dir
    )
    return [IssueRead(path=i.path, message=i.message, fix=i.fix) for i in found]
