"""Sequence runs: start from a template (targets dropped in), watch, pause, resume, skip, abort."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.schemas.sequences import (
    IssueRead,
    RunCreate,
    RunEventRead,
    RunRead,
)
from daemon.db.models import Event, SequenceRun
from daemon.runs import drop_targets
from daemon.templates import TemplateNotFound, get_template, load_document
from sequences.validation import validation_env

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED)
async def start_run(body: RunCreate, runtime: RuntimeDep) -> RunRead:
    """Start a run; 409 with the issues when validation finds problems (unless ignored)."""
    if (body.template_id is None) == (body.document is None):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "give exactly one of template_id or document"
        )
    if body.template_id is not None:
        try:
            row = await asyncio.to_thread(get_template, runtime.engine, body.template_id)
        except TemplateNotFound as e:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no template {body.template_id}") from e
        data = row.document
    else:
        assert body.document is not None
        data = body.document
    document = drop_targets(load_document(data), [t.model_dump() for t in body.targets])
    issues = document.check(await validation_env(runtime.equipment, runtime.clock))
    if issues and not body.ignore_issues:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            {
                "message": "the sequence would fail: fix these or pass ignore_issues",
                "issues": [
                    IssueRead(path=i.path, message=i.message, fix=i.fix).model_dump()
                    for i in issues
                ],
            },
        )
    run_id = await runtime.runs.start(document, body.template_id)
    return await asyncio.to_thread(_run_read, runtime.engine, run_id, True)


@router.get("")
async def list_runs(engine: EngineDep) -> list[RunRead]:
    def query() -> list[RunRead]:
        with Session(engine) as db:
            rows = db.scalars(select(SequenceRun).order_by(SequenceRun.id.desc())).all()
            return [_to_read(row, full=False) for row in rows]

    return await asyncio.to_thread(query)


@router.get("/{run_id}")
async def read_run(run_id: int, engine: EngineDep) -> RunRead:
    """The run with its document and per-node state (status, attempts, error, counters)."""
    return await asyncio.to_thread(_run_read, engine, run_id, True)


@router.post("/{run_id}/{action}")
async def control(
    run_id: int, action: Literal["pause", "resume", "skip", "abort"], runtime: RuntimeDep
) -> RunRead:
    """pause (after the current exposure), resume (also an interrupted run), skip, abort."""
    if action == "resume" and runtime.runs.active_run_id != run_id:
        await runtime.runs.resume(run_id)
    else:
        runtime.runs.control(run_id, action)
    return await asyncio.to_thread(_run_read, runtime.engine, run_id, False)


@router.get("/{run_id}/events")
async def run_events(
    run_id: int,
    engine: EngineDep,
    after_id: int = Query(default=0, ge=0, description="events after this id"),
    limit: int = Query(default=200, ge=1, le=1000),
) -> list[RunEventRead]:
    def query() -> list[RunEventRead]:
        with Session(engine) as db:
            rows = db.scalars(
                select(Event)
                .where(Event.run_id == run_id, Event.id > after_id)
                .order_by(Event.id)
                .limit(limit)
            )
            return [
                RunEventRead(
                    id=e.id,
                    time=e.time,
                    level=e.level,
                    message=e.message,
                    path=e.node_path,
                    data=e.data,
                )
                for e in rows
            ]

    return await asyncio.to_thread(query)


@router.get("/{run_id}/stream")
async def stream(run_id: int, runtime: RuntimeDep) -> StreamingResponse:
    """Live events as server-sent events (`data: {json}`), with a comment every 15 s."""

    async def events() -> AsyncIterator[str]:
        async with runtime.runs.bus.subscribe(run_id) as queue:
            yield ": connected\n\n"
            while True:
                try:
                    async with asyncio.timeout(15.0):
                        event: dict[str, Any] = await queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield f"id: {event['id']}\ndata: {json.dumps(event)}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


def _run_read(engine: Any, run_id: int, full: bool) -> RunRead:
    with Session(engine) as db:
        row = db.get(SequenceRun, run_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
        return _to_read(row, full)


def _to_read(row: SequenceRun, full: bool) -> RunRead:
    return RunRead(
        id=row.id,
        template_id=row.template_id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
        current=row.state.get("current"),
        document=row.document if full else None,
        nodes=row.state.get("nodes") if full else None,
    )
