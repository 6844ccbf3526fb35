"""The live cache's lifetime: a closed night's calibrated lights are removed once its job has
made the picture, or when the night closed long ago; the live stacks themselves stay."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from astropy.io import fits
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import ImagingSession, ObservatoryProfile, ProcessingJob
from daemon.frame_records import ensure_profile, ensure_session
from daemon.live import STATUS, LiveService, night_cache, night_folder
from daemon.processing_options import ProcessingOptions
from daemon.states import JobState, SessionState
from daemon.worker import ProcessingWorker
from tests.daemon.test_colour_nights import registered_nights


def live_night(live_root: Path, session_id: int) -> tuple[Path, Path]:
    """A night's live stack folder (with its status) and its cache (with one entry)."""
    stack = night_folder(live_root, session_id) / "SYNTH_L"
    stack.mkdir(parents=True)
    (stack / STATUS).write_text('{"frames": 5}')
    cache = night_cache(live_root, session_id)
    cache.mkdir()
    (cache / "entry.npy").write_bytes(b"\0" * 1024)
    return stack, cache


async def test_a_closed_nights_successful_job_removes_its_cache_an_open_nights_keeps_it(
    tmp_path: Path,
) -> None:
    """The colour night is over (the mono night came after it): its job removes its cache.
    The mono night is still open (its live stack may still write there): its job leaves the
    cache alone."""
    engine, root, colour, mono = registered_nights(tmp_path)
    with Session(engine) as db:
        states = {i: db.get_one(ImagingSession, i).state for i in (colour, mono)}
    assert states == {colour: SessionState.CLOSED, mono: SessionState.OPEN}
    live_root = tmp_path / "live"
    colour_stack, colour_cache = live_night(live_root, colour)
    mono_stack, mono_cache = live_night(live_root, mono)
    worker = ProcessingWorker(
        engine,
        root,
        tmp_path / "jobs",
        tmp_path / "masters",
        [tmp_path],
        night_cache=functools.partial(night_cache, live_root),
    )
    await worker.start()
    try:
        closed = await worker.submit(ProcessingOptions(), session_id=colour, linear_only=True)
        still_open = await worker.submit(ProcessingOptions(), session_id=mono, linear_only=True)
        assert await worker.wait(closed, 60) is JobState.DONE
        assert await worker.wait(still_open, 60) is JobState.DONE
    finally:
        await worker.stop()
    with Session(engine) as db:
        job = db.get(ProcessingJob, closed)
        assert job is not None
        (group,) = job.outputs["groups"]
    assert fits.getdata(group["outputs"]["fits"]).shape[0] == 3  # the job debayered
    assert not colour_cache.exists()
    assert (colour_stack / STATUS).is_file()
    assert (mono_cache / "entry.npy").is_file()
    assert (mono_stack / STATUS).is_file()
    engine.dispose()


async def test_caches_of_nights_closed_long_ago_are_removed_when_the_service_starts(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    with Session(engine) as db, db.begin():
        profile = ObservatoryProfile(name="simulators")
        db.add(profile)
        db.flush()
        nights = [
            ImagingSession(
                profile_id=profile.id,
                night_date=date(2026, 11, day),
                state=state,
                started_at=now - timedelta(days=days + 0.5),
                ended_at=None if state is SessionState.OPEN else now - timedelta(days=days),
            )
            for day, state, days in (
                (1, SessionState.CLOSED, 8.0),  # closed a day past the limit: removed
                (2, SessionState.CLOSED, 6.0),  # inside the limit: kept
                (3, SessionState.OPEN, 30.0),  # never closed (still stacking): kept
            )
        ]
        db.add_all(nights)
        db.flush()
        old, recent, open_ = (night.id for night in nights)
    live_root = tmp_path / "live"
    folders = {night: live_night(live_root, night) for night in (old, recent, open_)}

    live = LiveService(engine, tmp_path / "frames", tmp_path / "masters", live_root, cache_days=7)
    await live.start()
    await live.stop()

    assert not folders[old][1].exists()
    assert folders[recent][1].is_dir()
    assert folders[open_][1].is_dir()
    assert all((stack / STATUS).is_file() for stack, _ in folders.values())
    engine.dispose()


async def test_nights_without_a_run_close_when_the_next_night_begins_and_then_age_out(
    tmp_path: Path,
) -> None:
    """Manual captures have no run to close their night: the next night's first frame does,
    a frame of an older night (a scanned file) opens it closed, and the closed night's cache
    goes once the age rule applies."""
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    evening = datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    with Session(engine) as db, db.begin():
        profile = ensure_profile(db, "simulators", None)
        first = ensure_session(db, profile, evening, UTC)
        assert ensure_session(db, profile, evening + timedelta(hours=5), UTC) is first
        assert first.state is SessionState.OPEN  # past midnight: the same night
        second = ensure_session(db, profile, evening + timedelta(days=1), UTC)
        older = ensure_session(db, profile, evening - timedelta(days=3), UTC)
        first_id, second_id, older_id = first.id, second.id, older.id
    with Session(engine) as db:
        nights = {i: db.get_one(ImagingSession, i) for i in (first_id, second_id, older_id)}
        assert nights[first_id].state is SessionState.CLOSED
        assert nights[first_id].ended_at is not None
        assert nights[second_id].state is SessionState.OPEN
        assert nights[older_id].state is SessionState.CLOSED

    live_root = tmp_path / "live"
    folders = {night: live_night(live_root, night) for night in (first_id, second_id)}
    with Session(engine) as db, db.begin():  # eight days on
        db.get_one(ImagingSession, first_id).ended_at = datetime.now(UTC) - timedelta(days=8)
    live = LiveService(engine, tmp_path / "frames", tmp_path / "masters", live_root, cache_days=7)
    await live.start()
    await live.stop()
    assert not folders[first_id][1].exists()
    assert folders[second_id][1].is_dir()
    engine.dispose()
