"""Health: whether the database answers, for the open liveness route."""

from __future__ import annotations

import logging

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


def database_state(engine: Engine) -> str:
    """ "ok" when the database answers a query, else "error: <kind>". The details (paths,
    statements) go to the log only: the health route is open to anyone. Blocking."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        log.error("database check failed: %s", e)
        return f"error: {e.__class__.__name__}"
    return "ok"
