"""The event log: what the daemon did and what went wrong, in the database and the log.

Levels: debug, info, warning and error by rising severity, and alert: something a person
should hear about now, whatever its severity (the roof did not close, a device stayed lost,
a night ended by safety, a night's picture is ready). Alerts also go to the configured
webhooks (`daemon.notifications`).

Readers follow the log by id (`after_id`), so ids must become visible in the order they were
given. SQLite has one writer at a time; on PostgreSQL (several daemons, many threads) an id is
drawn from a sequence before its transaction commits, so a later id could show up first and a
reader past it would never see the earlier one. Writers there take a transaction-scoped
advisory lock first: events are written one after another, in id order. An event carries the
daemon that wrote it (`owner`, its profile name).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from daemon.db.engine import is_postgresql
from daemon.db.models import Event

log = logging.getLogger(__name__)
_EVENT_WRITER_LOCK = 0x4E4F574C  # an arbitrary key of our own for pg_advisory_xact_lock
EventLevel = Literal["debug", "info", "warning", "error", "alert"]
"""The event levels: four of rising severity, then alert."""
LEVELS: tuple[str, ...] = get_args(EventLevel)
_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "alert": logging.WARNING,  # news for a person, not always a failure
}


def record_event(
    engine: Engine,
    level: str,
    source: str,
    message: str,
    data: dict[str, Any] | None = None,
    *,
    run_id: int | None = None,
    node_path: str | None = None,
) -> int:
    """Store an event and log it; returns its id. `ValueError` for a level not in `LEVELS`.
    Blocking: call off the event loop."""
    if level not in _LOG_LEVELS:
        raise ValueError(f"unknown event level {level!r}; use one of {', '.join(LEVELS)}")
    log.log(_LOG_LEVELS[level], "[%s] %s", source, message)
    with Session(engine) as db, db.begin():
        if is_postgresql(engine):
            db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _EVENT_WRITER_LOCK})
        event = Event(
            level=level,
            source=source,
            message=message,
            data=data or {},
            run_id=run_id,
            node_path=node_path,
        )
        db.add(event)
        db.flush()
        return event.id


def list_events(
    engine: Engine,
    *,
    after_id: int = 0,
    limit: int = 200,
    levels: Sequence[str] = (),
    sources: Sequence[str] = (),
    newest: bool = False,
    text: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[Event]:
    """Events after `after_id`, oldest first; with `newest`, the last `limit` of them (still
    oldest first), which is what a log view opens with. `text` keeps the events whose message
    holds it (any case); `since` and `until` (aware) bound their time, `until` excluded.
    Blocking: call off the event loop."""
    query = select(Event).where(Event.id > after_id)
    if levels:
        query = query.where(Event.level.in_(levels))
    if sources:
        query = query.where(Event.source.in_(sources))
    if text:
        escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Event.message.ilike(f"%{escaped}%", escape="\\"))
    if since is not None:
        query = query.where(Event.time >= since)
    if until is not None:
        query = query.where(Event.time < until)
    query = query.order_by(Event.id.desc() if newest else Event.id).limit(limit)
    with Session(engine) as db:
        rows = list(db.scalars(query))
    return sorted(rows, key=lambda e: e.id) if newest else rows


def last_event_id(engine: Engine) -> int:
    """The id of the newest event (0 when there is none): where a live tail starts."""
    with Session(engine) as db:
        return int(db.scalar(select(func.max(Event.id))) or 0)


def event_sources(engine: Engine) -> list[str]:
    """Every source that has recorded an event, sorted: the choices of a log filter."""
    with Session(engine) as db:
        return sorted(db.scalars(select(Event.source).distinct()))
