"""Sequence runs: start from a template (targets dropped in), watch, pause, resume, skip, abort."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, status
from fastapi.responses import StreamingResponse

from daemon import runs as service
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import AfterId, PageLimit, RecordId
from daemon.api.schemas.sequences import RunCreate, RunEventRead, RunRead

router = APIRouter(prefix="/api/runs", tags=["runs"])


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(404, 409))
async def start_run(body: RunCreate, runtime: RuntimeDep) -> RunRead:
    """Start a run; 409 with the issues when validation finds problems (unless ignored)."""
    run_id = await runtime.runs.start_checked(
        runtime.equipment,
        template_id=body.template_id,
        document=body.document,
        targets=[t.model_dump() for t in body.targets],
        ignore_issues=body.ignore_issues,
    )
    return _read(await asyncio.to_thread(service.get_run, runtime.engine, run_id), full=True)


@router.get("")
async def list_runs(engine: EngineDep) -> list[RunRead]:
    rows = await asyncio.to_thread(service.list_runs, engine)
    return [_read(row, full=False) for row in rows]


@router.get("/{run_id}", responses=responses(404))
async def read_run(run_id: RecordId, engine: EngineDep) -> RunRead:
    """The run with its document and per-node state (status, attempts, error, counters)."""
    return _read(await asyncio.to_thread(service.get_run, engine, run_id), full=True)


@router.post("/{run_id}/{action}", responses=responses(404, 409))
async def control(
    run_id: RecordId, action: Literal["pause", "resume", "skip", "abort"], runtime: RuntimeDep
) -> RunRead:
    """pause (at once during a wait, else after the current step; the run says so until it
    takes effect), resume (also an interrupted run), skip, abort;
    409 when the run is not in a state that allows it."""
    await runtime.runs.request(run_id, action)
    return _read(await asyncio.to_thread(service.get_run, runtime.engine, run_id), full=False)


@router.get("/{run_id}/events", responses=responses(404))
async def run_events(
    run_id: RecordId, engine: EngineDep, after_id: AfterId = 0, limit: PageLimit = 200
) -> list[RunEventRead]:
    rows = await asyncio.to_thread(service.run_events, engine, run_id, after_id, limit)
    return [
        RunEventRead(
            id=e.id, time=e.time, level=e.level, message=e.message, path=e.node_path, data=e.data
        )
        for e in rows
    ]


@router.get("/{run_id}/stream", responses=responses(404))
async def stream(run_id: RecordId, runtime: RuntimeDep) -> StreamingResponse:
    """Live events as server-sent events (`data: {json}`), with a comment every 15 s; 404
    for an unknown run, before the stream opens."""
    await asyncio.to_thread(service.get_run, runtime.engine, run_id)

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


def _read(row: service.RunRow, full: bool) -> RunRead:
    pause_requested = bool(row.state.get("pause_requested")) and row.status == "running"
    return RunRead(
        id=row.id,
        template_id=row.template_id,
        name=row.name,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
        current=row.state.get("current"),
        pause_requested=pause_requested,
        status_text=(
            "paused (takes effect after the current step)" if pause_requested else row.status
        ),
        document=row.document if full else None,
        nodes=row.state.get("nodes") if full else None,
        owner=row.owner,
    )
