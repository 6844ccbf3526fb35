"""The event log: a page of it (filtered by level, source, text and time), a live tail as
server-sent events for the web UI, and the filtered log as a CSV or JSON lines download."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime
from sqlalchemy import Engine

from daemon.api.deps import EngineDep
from daemon.api.schemas.common import AfterId, PageLimit
from daemon.api.schemas.events import EventRead
from daemon.events import EventLevel, event_sources, last_event_id, list_events

router = APIRouter(prefix="/api/events", tags=["events"])

_POLL_S = 1.0
_KEEP_ALIVE_S = 15.0
_STREAM_MAX_S = 10.0
"""A stream ends after this long and the browser reconnects at once from its last id: uvicorn
waits for open responses before it stops, so an endless stream would hold up a shutdown."""

Levels = Annotated[list[EventLevel], Query(description="only these levels (repeat the parameter)")]
Sources = Annotated[list[str], Query(description="only these sources (repeat the parameter)")]
Text = Annotated[
    str | None, Query(max_length=200, description="only events whose message holds this text")
]
Since = Annotated[
    AwareDatetime | None, Query(description="only events at or after this time (ISO 8601, zoned)")
]
Until = Annotated[
    AwareDatetime | None, Query(description="only events before this time (ISO 8601, zoned)")
]

_EXPORT_BATCH = 1000
_CSV_COLUMNS = (
    "id",
    "time",
    "level",
    "source",
    "message",
    "run_id",
    "node_path",
    "data",
    "owner",
)


def _page(
    engine: Engine,
    after_id: int,
    limit: int,
    levels: list[EventLevel],
    sources: list[str],
    newest: bool,
    text: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[EventRead]:
    rows = list_events(
        engine,
        after_id=after_id,
        limit=limit,
        levels=levels,
        sources=sources,
        newest=newest,
        text=text,
        since=since,
        until=until,
    )
    return [EventRead.model_validate(row) for row in rows]


@router.get("")
async def events(
    engine: EngineDep,
    after_id: AfterId = 0,
    limit: PageLimit = 200,
    level: Levels = [],  # noqa: B006 (FastAPI copies query defaults)
    source: Sources = [],  # noqa: B006
    newest: Annotated[bool, Query(description="the last `limit` events instead")] = False,
    q: Text = None,
    since: Since = None,
    until: Until = None,
) -> list[EventRead]:
    """Events oldest first; page on with `after_id` = the last id seen."""
    return await asyncio.to_thread(
        _page, engine, after_id, limit, level, source, newest, q, since, until
    )


@router.get("/sources")
async def sources(engine: EngineDep) -> list[str]:
    """Every source that has recorded an event (capture, sequence, plan, ...), sorted."""
    return await asyncio.to_thread(event_sources, engine)


def _csv_line(values: list[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


def _export_line(event: EventRead, file_format: Literal["csv", "jsonl"]) -> str:
    if file_format == "jsonl":
        return event.model_dump_json() + "\n"
    row = event.model_dump(mode="json")
    row["data"] = json.dumps(row["data"], ensure_ascii=False) if row["data"] else ""
    return _csv_line(["" if row[c] is None else row[c] for c in _CSV_COLUMNS])


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
async def export(
    engine: EngineDep,
    file_format: Annotated[
        Literal["csv", "jsonl"],
        Query(alias="format", description="csv (with a header row) or JSON lines"),
    ] = "csv",
    level: Levels = [],  # noqa: B006
    source: Sources = [],  # noqa: B006
    q: Text = None,
    since: Since = None,
    until: Until = None,
) -> StreamingResponse:
    """The events the filters keep, oldest first, as a file download, read from the database
    a thousand at a time however long the log is."""

    async def lines() -> AsyncIterator[str]:
        if file_format == "csv":
            yield _csv_line(list(_CSV_COLUMNS))
        last = 0
        while True:
            page = await asyncio.to_thread(
                _page, engine, last, _EXPORT_BATCH, level, source, False, q, since, until
            )
            if page:
                yield "".join(_export_line(event, file_format) for event in page)
                last = page[-1].id
            if len(page) < _EXPORT_BATCH:
                return

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    media = "text/csv; charset=utf-8" if file_format == "csv" else "application/x-ndjson"
    name = f"nightowl-events-{stamp}.{file_format}"
    return StreamingResponse(
        lines(),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/stream")
async def stream(
    request: Request,
    engine: EngineDep,
    after_id: Annotated[AfterId | None, Query(description="default: only new events")] = None,
    level: Levels = [],  # noqa: B006
    source: Sources = [],  # noqa: B006
    last_event_id_header: Annotated[AfterId | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """New events as server-sent events (`id:` and `data: {json}`), read from the database
    every second, so events of any thread or process show; a reconnecting browser continues
    from its `Last-Event-ID`."""
    start = last_event_id_header if last_event_id_header is not None else after_id
    if start is None:
        start = await asyncio.to_thread(last_event_id, engine)

    async def tail(last: int) -> AsyncIterator[str]:
        began = quiet_since = time.monotonic()
        yield "retry: 1000\n: connected\n\n"
        while time.monotonic() - began < _STREAM_MAX_S:
            if await request.is_disconnected():
                return
            page = await asyncio.to_thread(_page, engine, last, 200, level, source, False)
            for event in page:
                last = event.id
                yield f"id: {event.id}\ndata: {event.model_dump_json()}\n\n"
            now = time.monotonic()
            if page:
                quiet_since = now
            elif now - quiet_since >= _KEEP_ALIVE_S:
                quiet_since = now
                yield ": keep-alive\n\n"
            if len(page) < 200:
                await asyncio.sleep(_POLL_S)

    return StreamingResponse(
        tail(start), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )
