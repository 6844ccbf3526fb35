"""The schema: migrations build exactly the models, timestamps stay UTC-aware."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import current_revision, head_revision, upgrade
from daemon.db.models import Base, ImagingSession, ObservatoryProfile


def test_migrations_build_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_timestamps_are_utc_aware_and_naive_ones_are_refused(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as db, db.begin():
        profile = ObservatoryProfile(name="roof")
        db.add(profile)
        db.flush()
        db.add(
            ImagingSession(
                profile_id=profile.id,
                night_date=date(2026, 11, 21),
                started_at=datetime(2026, 11, 21, 18, 0, tzinfo=UTC),
            )
        )
    with Session(engine) as db:
        session = db.query(ImagingSession).one()
        assert session.started_at == datetime(2026, 11, 21, 18, 0, tzinfo=UTC)
        assert session.started_at.tzinfo is not None
    with Session(engine) as db:
        db.add(ObservatoryProfile(name="x", created_at=datetime(2026, 1, 1)))
        with pytest.raises(StatementError, match="naive datetime"):
            db.flush()


def test_foreign_keys_are_enforced(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(engine) as db:
        db.add(ImagingSession(profile_id=999, night_date=date(2026, 1, 1)))
        with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
            db.flush()
