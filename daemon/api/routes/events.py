"""The event log: a page of it, and a live tail as server-sent events for the web UI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from daemon.api.deps import EngineDep
from daemon.api.schemas.common import AfterId, PageLimit
from daemon.api.schemas.events import EventRead
from daemon.events import EventLevel, last_event_id, list_events

router = APIRouter(prefix="/api/events", tags=["events"])

_POLL_S = 1.0
_KEEP_ALIVE_S = 15.0
_STREAM_MAX_S = 10.0
"""A stream ends after this long and the browser reconnects at once from its last id: uvicorn
waits for open responses before it stops, so an endless stream would hold up a shutdown."""

Levels = Annotated[list[EventLevel], Query(description="only these levels (repeat the parameter)")]
Sources = Annotated[list[str], Query(description="only these sources (repeat the parameter)")]


def _page(
    engine: Engine,
    after_id: int,
    limit: int,
    levels: list[EventLevel],
    sources: list[str],
    newest: bool,
) -> list[EventRead]:
    rows = list_events(
        engine, after_id=after_id, limit=limit, levels=levels, sources=sources, newest=newest
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
) -> list[EventRead]:
    """Events oldest first; page on with `after_id` = the last id seen."""
    return await asyncio.to_thread(_page, engine, after_id, limit, level, source, newest)


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
