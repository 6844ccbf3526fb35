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
    engine: Engine, level: str, source: str, message: str, data: dict[str, Any] | None = None
) -> None:
    """Store an event and log it. Blocking: call off the event loop."""
    log.log(_LEVELS.get(level, logging.INFO), "[%s] %s", source, message)
    with Session(engine) as db, db.begin():
        db.add(Event(level=level, source=source, message=message, data=data or {}))
