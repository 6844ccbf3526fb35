"""A database that refuses a frame's row after its file is written (disk full): the frame is
not kept, its file is removed, the caller is told, frames recorded before stay intact."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureRequest, CaptureService
from daemon.db.models import Event, Frame
from daemon.store import FrameNotRecorded
from sequences.frames import ExposureSpec, FrameType

DARK = ExposureSpec(FrameType.DARK, 0.2)


@contextlib.contextmanager
def full_disk_on_insert(engine: Engine, table: str, after: int = 0) -> Iterator[None]:
    """SQLite answers "database or disk is full" to INSERTs into `table` after the first
    `after` of them: the fault a full disk gives, at the moment after the file is written."""
    inserts = 0

    def refuse(*args: Any) -> None:
        nonlocal inserts
        if args[2].startswith(f"INSERT INTO {table} "):
            inserts += 1
            if inserts > after:
                raise sqlite3.OperationalError("database or disk is full")

    event.listen(engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", refuse)


def files_and_rows(service: CaptureService) -> tuple[set[str], set[str]]:
    root = service._store.root
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    with Session(service._engine) as db:
        return files, set(db.scalars(select(Frame.path)))


def events(service: CaptureService, level: str) -> list[str]:
    with Session(service._engine) as db:
        query = select(Event.message).where(Event.source == "capture", Event.level == level)
        return list(db.scalars(query))


async def test_a_refused_row_removes_its_file_and_keeps_the_frames_before(
    service: CaptureService,
) -> None:
    (earlier,) = await service.capture(CaptureRequest(DARK))
    earlier_file = service._store.absolute(earlier.path)
    earlier_sha = hashlib.sha256(earlier_file.read_bytes()).hexdigest()

    with (
        full_disk_on_insert(service._engine, "frame", after=1),
        pytest.raises(FrameNotRecorded) as refused,
    ):
        await service.capture(CaptureRequest(DARK, count=3))

    message = str(refused.value)
    assert "database or disk is full" in message
    assert "file removed" in message
    files, recorded = files_and_rows(service)
    assert files == recorded  # no file without a row, no row without a file
    assert len(recorded) == 2  # the earlier frame and the first of the three
    (first_of_three,) = recorded - {earlier.path}
    with Session(service._engine) as db:
        kept_id = db.scalar(select(Frame.id).where(Frame.path == first_of_three))
    assert f"saved before it in this request: frame id(s) {kept_id}" in message
    assert hashlib.sha256(earlier_file.read_bytes()).hexdigest() == earlier_sha
    assert any("database or disk is full" in m for m in events(service, "error"))


async def test_an_event_the_database_refuses_does_not_unsave_a_frame(
    service: CaptureService,
) -> None:
    """The frame's row is committed before its event: a full disk then costs the event only."""
    with full_disk_on_insert(service._engine, "event"):
        (frame,) = await service.capture(CaptureRequest(DARK))
    files, recorded = files_and_rows(service)
    assert files == recorded == {frame.path}
    assert events(service, "info") == []
