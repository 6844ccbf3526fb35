"""Engine creation. SQLite gets WAL and foreign keys; other databases are used as they are.

Several daemons (one per telescope) may share one database (PostgreSQL). Each stamps its
engine with its owner, the name of its observatory profile (`owned_engine`): the rows it
creates in owned tables (runs, processing jobs, night plans, events) carry that name, and it
resumes, requeues and arms only its own. An engine without an owner (tools, tests) owns the
rows that have none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import InstrumentedAttribute

_OWNER_OPTION = "nightowl_owner"


def normal_database_url(url: str) -> str:
    """`url` checked: SQLite, or PostgreSQL through psycopg 3 (a plain ``postgresql://`` URL
    is given that driver). ValueError naming NIGHTOWL_DATABASE_URL and the forms it takes."""
    forms = "use sqlite:////path/to/nightowl.db or postgresql+psycopg://user:password@host:5432/db"
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise ValueError(f"NIGHTOWL_DATABASE_URL is not a database URL; {forms}") from e
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        # psycopg2 is SQLAlchemy's default PostgreSQL driver; Nightowl ships psycopg 3.
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise ValueError(
        f"NIGHTOWL_DATABASE_URL: the {parsed.drivername!r} database is not supported; {forms}"
    )


def make_engine(url: str) -> Engine:
    """Create the engine for `url`, creating a SQLite file's folder when needed."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def owned_engine(engine: Engine, owner: str) -> Engine:
    """`engine` (same pool) whose inserts into owned tables carry `owner`. ValueError for an
    empty owner or one longer than the owner columns (200 characters)."""
    if not owner.strip() or len(owner) > 200:
        raise ValueError(
            f"owner {owner!r}: the observatory profile's name must have 1-200 characters"
        )
    return engine.execution_options(**{_OWNER_OPTION: owner})


def owner_of(engine: Engine) -> str | None:
    """The owner `owned_engine` gave `engine`; None for a plain engine."""
    owner = engine.get_execution_options().get(_OWNER_OPTION)
    return owner if isinstance(owner, str) else None


def owner_default(context: Any) -> str | None:
    """Column default of the owner columns: the owner of the engine that inserts the row."""
    owner = context.execution_options.get(_OWNER_OPTION)
    return owner if isinstance(owner, str) else None


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def owned_by_engine(
    column: InstrumentedAttribute[str | None], engine: Engine
) -> ColumnElement[bool]:
    """The filter "owned by `engine`'s owner" on an owner column (no owner: rows without)."""
    owner = owner_of(engine)
    condition: ColumnElement[bool] = column.is_(None) if owner is None else column == owner
    return condition
