"""The event log: what the daemon did and what went wrong, in the database and the log."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from daemon.db.models import Event

log = logging.getLogger(__name__)
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
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
    """Store an event and log it; returns its id. Blocking: call off the event loop."""
    log.log(_LEVELS.get(level, logging.INFO), "[%s] %s", source, message)
    with Session(engine) as db, db.begin():
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
