"""The schema on SQLite and PostgreSQL: migrations build exactly the models, timestamps stay
UTC-aware, rows carry the daemon that made them, events become visible in id order."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import func, inspect, select, update
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine, owned_by_engine, owned_engine, owner_of
from daemon.db.migrate import alembic_config, current_revision, head_revision, upgrade
from daemon.db.models import (
    Base,
    Event,
    Frame,
    ImagingSession,
    ObservatoryProfile,
    SequenceRun,
    Target,
)
from daemon.db.ownership import adopt_unowned
from daemon.events import list_events, record_event
from daemon.fits_headers import TargetInfo
from daemon.frame_records import ensure_target
from daemon.runs import RunConflict, RunManager
from daemon.settings import Settings
from sequences.clock import SimulatedClock
from sequences.context import RunContext
from sequences.frames import FrameType
from tests.pg import PostgresServer


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


def _run(db: Session, name: str, status: str) -> SequenceRun:
    row = SequenceRun(name=name, document={}, state={"status": status}, status=status)
    db.add(row)
    db.flush()
    return row


def test_rows_carry_the_owner_of_the_engine_that_made_them(database_url: str) -> None:
    """Daemons sharing a database stamp what they create with their profile name; a daemon
    takes over the rows without an owner (made before sharing) at its start."""
    plain = make_engine(database_url)
    upgrade(plain)
    east, west = owned_engine(plain, "east pier"), owned_engine(plain, "west pier")
    assert (owner_of(plain), owner_of(east)) == (None, "east pier")
    with Session(plain) as db, db.begin():
        legacy = _run(db, "legacy", "running").id
    with Session(east) as db, db.begin():
        mine = _run(db, "east", "running").id
    with Session(west) as db, db.begin():
        theirs = _run(db, "west", "running").id
    with Session(plain) as db:
        owners = {i: o for i, o in db.execute(select(SequenceRun.id, SequenceRun.owner))}
        assert owners == {legacy: None, mine: "east pier", theirs: "west pier"}
        owned = select(SequenceRun.id).where(owned_by_engine(SequenceRun.owner, east))
        assert db.scalars(owned).all() == [mine]
    assert adopt_unowned(east)["sequence_run"] == 1
    assert adopt_unowned(west)["sequence_run"] == 0
    assert adopt_unowned(plain) == {}
    with Session(plain) as db:
        assert db.get(SequenceRun, legacy).owner == "east pier"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="1-200 characters"):
        owned_engine(plain, " ")


async def test_a_daemon_marks_and_resumes_only_its_own_runs(database_url: str) -> None:
    plain = make_engine(database_url)
    upgrade(plain)
    east, west = owned_engine(plain, "east"), owned_engine(plain, "west")
    with Session(east) as db, db.begin():
        mine = [_run(db, "a", "running").id, _run(db, "b", "paused").id]
    with Session(west) as db, db.begin():
        theirs = _run(db, "c", "running").id

    def no_context(run_id: int, events: object) -> RunContext:
        raise AssertionError("no run may start here")

    clock = SimulatedClock(datetime(2026, 12, 1, 20, 0, tzinfo=UTC))
    manager = RunManager(east, no_context, clock)
    assert await manager.mark_interrupted() == mine
    with Session(plain) as db:
        assert db.get(SequenceRun, theirs).status == "running"  # type: ignore[union-attr]
        assert {db.get(SequenceRun, i).status for i in mine} == {"interrupted"}  # type: ignore[union-attr]
    with Session(plain) as db, db.begin():
        db.execute(update(SequenceRun).where(SequenceRun.id == theirs).values(status="interrupted"))
    with pytest.raises(RunConflict, match="belongs to the daemon of profile 'west'"):
        await manager.resume(theirs)


def test_frame_paths_are_unique_within_a_night_only(database_url: str) -> None:
    """Two telescopes write the same relative path under their own frames roots."""
    engine = make_engine(database_url)
    upgrade(engine)
    start = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    fields = {
        "path": "2026-12-01/M31/LIGHT/M31_L_60s_0001.fits",
        "sha256": "0" * 64,
        "size_bytes": 1,
        "frame_type": FrameType.LIGHT,
        "exposure_s": 60.0,
        "exposure_start_utc": start,
        "width_px": 10,
        "height_px": 10,
        "bin_x": 1,
        "bin_y": 1,
    }
    with Session(engine) as db, db.begin():
        nights = []
        for name in ("east", "west"):
            profile = ObservatoryProfile(name=name)
            db.add(profile)
            db.flush()
            night = ImagingSession(profile_id=profile.id, night_date=date(2026, 12, 1))
            db.add(night)
            db.flush()
            nights.append(night.id)
        for night_id in nights:
            db.add(Frame(session_id=night_id, **fields))
    with Session(engine) as db:
        assert db.scalar(select(func.count(Frame.id))) == 2
        db.add(Frame(session_id=nights[0], **fields))
        with pytest.raises(IntegrityError, match=r"(?i)unique"):
            db.flush()


def test_events_become_visible_in_id_order_under_concurrent_writers(database_url: str) -> None:
    """A reader following the log by id (the live stream, the notifier) misses no event while
    several threads write: an id never becomes visible after a larger one was read."""
    engine = make_engine(database_url)
    upgrade(engine)
    writers, per_writer = 4, 40
    done = threading.Event()
    seen: list[int] = []

    def write(n: int) -> None:
        for i in range(per_writer):
            record_event(engine, "debug", "test", f"writer {n} event {i}")

    def follow() -> None:
        last = 0
        while True:
            finished = done.is_set()
            for event in list_events(engine, after_id=last, limit=1000):
                seen.append(event.id)
                last = event.id
            if finished:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join(timeout=60)
    with Session(engine) as db:
        stored = db.scalars(select(Event.id).order_by(Event.id)).all()
    assert len(stored) == writers * per_writer
    assert seen == list(stored)
    assert [e.message for e in list_events(engine, text="WRITER 3 EVENT 39")] == [
        "writer 3 event 39"
    ]


def test_two_daemons_naming_a_new_target_at_once_share_its_row(postgres: PostgresServer) -> None:
    """The target table is shared: the second of two concurrent captures of a new target
    waits for the first one's row and uses it, instead of failing on the unique name."""
    engine = make_engine(postgres.create_database())
    upgrade(engine)
    first_added = threading.Event()
    ids: dict[str, int] = {}

    def first() -> None:
        with Session(engine) as db, db.begin():
            row = ensure_target(db, TargetInfo("NGC 7000", 314.7, 44.3))
            assert row is not None
            ids["first"] = row.id
            first_added.set()
            time.sleep(0.5)  # the second one meanwhile waits on the unique index

    def second() -> None:
        assert first_added.wait(30)
        with Session(engine) as db, db.begin():
            row = ensure_target(db, TargetInfo("NGC 7000", 314.7, 44.3))
            assert row is not None
            ids["second"] = row.id

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert ids["first"] == ids["second"]
    with Session(engine) as db:
        assert db.scalar(select(func.count(Target.id))) == 1


def test_the_database_url_names_the_setting_and_the_forms_it_takes() -> None:
    plain = Settings(database_url="postgresql://observer@db.example:5432/nightowl")
    assert plain.resolved_database_url == "postgresql+psycopg://observer@db.example:5432/nightowl"
    for url, reason in (("mysql://a@b/c", "'mysql' database is not supported"), ("db", "not a")):
        with pytest.raises(ValidationError, match=reason) as refused:
            Settings(database_url=url)
        assert "NIGHTOWL_DATABASE_URL" in str(refused.value)
        assert "postgresql+psycopg://" in str(refused.value)


def test_the_shared_database_migration_goes_down_and_up_again(database_url: str) -> None:
    """0009 (owners, frame paths unique per night) is undone and redone on both backends;
    the runs stored meanwhile are kept."""
    engine = make_engine(database_url)
    upgrade(engine)
    with Session(owned_engine(engine, "east")) as db, db.begin():
        run_id = _run(db, "kept", "finished").id
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert current_revision(engine) == "0008"
    with engine.connect() as connection:
        columns = {c["name"] for c in inspect(connection).get_columns("sequence_run")}
    assert "owner" not in columns
    upgrade(engine)
    with Session(engine) as db:
        row = db.get(SequenceRun, run_id)
        assert row is not None
        assert (row.name, row.owner) == ("kept", None)
