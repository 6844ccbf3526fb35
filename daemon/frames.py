"""Frames and nights (imaging sessions) as the API shows them: queries, capture on request,
and the preview JPEGs, made once per frame and kept under ``DATA_DIR/previews/``.

Several daemons may share one database (`daemon.frame_owners`): the lists and the latest
frame are this daemon's own nights and frames unless every profile's are asked for (records,
plain metadata); a frame's file (FITS, preview, histogram, stars, header) is served only by
the daemon that took it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from daemon.capture import CaptureRequest, CaptureService
from daemon.db.engine import owner_of
from daemon.db.models import Frame, FrameStars, ImagingSession, ObservatoryProfile
from daemon.errors import Gone, NotFound
from daemon.events import record_event
from daemon.fits_headers import TargetInfo
from daemon.frame_owners import (
    AnotherTelescope,
    own_frames,
    own_sessions,
    refuse_another_telescopes_frame,
    session_profile,
)
from daemon.states import SessionState
from daemon.store import FrameStore
from processing.export import preview_jpeg
from processing.io import read_fits, read_fits_header, write_atomic
from processing.star_lists import StarList
from processing.stars import measure_frame_stars
from processing.stretch import auto_stf, full_scale
from sequences.frames import ExposureSpec, FrameType


@dataclass(frozen=True)
class SessionSummary:
    id: int
    profile: str
    night_date: date
    state: SessionState
    started_at: datetime
    ended_at: datetime | None
    frames: int
    accepted_lights: int


@dataclass(frozen=True)
class FramePage:
    items: list[Frame]
    total: int


@dataclass(frozen=True)
class FrameFilter:
    frame_type: FrameType | None = None
    filter_name: str | None = None
    accepted: bool | None = None


@dataclass(frozen=True)
class TargetPosition:
    name: str
    ra_deg: float | None
    dec_deg: float | None


async def capture(
    service: CaptureService,
    engine: Engine,
    spec: ExposureSpec,
    count: int,
    target: TargetPosition | None,
) -> list[Frame]:
    """Take `count` frames now; their records in order (rejected frames included)."""
    info = TargetInfo(target.name, target.ra_deg, target.dec_deg) if target else None
    saved = await service.capture(CaptureRequest(spec, count, info))
    return await asyncio.to_thread(frames_by_id, engine, [f.id for f in saved])


def list_sessions(engine: Engine, all_profiles: bool = False) -> list[SessionSummary]:
    """This daemon's nights (every profile's with `all_profiles`), newest first, with their
    frame count and accepted lights. Blocking."""
    accepted_light = case(
        ((Frame.frame_type == FrameType.LIGHT) & Frame.accepted.is_(True), 1), else_=0
    )
    query = (
        select(
            ImagingSession,
            ObservatoryProfile.name,
            func.count(Frame.id),
            func.coalesce(func.sum(accepted_light), 0),
        )
        .join(ObservatoryProfile, ObservatoryProfile.id == ImagingSession.profile_id)
        .outerjoin(Frame, Frame.session_id == ImagingSession.id)
        .where(*([] if all_profiles else own_sessions(engine)))
        .group_by(ImagingSession.id, ObservatoryProfile.name)
        .order_by(ImagingSession.night_date.desc())
    )
    with Session(engine) as db:
        return [
            SessionSummary(
                id=s.id,
                profile=profile,
                night_date=s.night_date,
                state=s.state,
                started_at=s.started_at,
                ended_at=s.ended_at,
                frames=frames,
                accepted_lights=int(accepted),
            )
            for s, profile, frames, accepted in db.execute(query)
        ]


def session_frames(
    engine: Engine,
    session_id: int,
    where: FrameFilter,
    limit: int,
    offset: int,
    all_profiles: bool = False,
) -> FramePage:
    """A page of a night's frames in exposure order; `NotFound` for an unknown night,
    `AnotherTelescope` for a night of another profile unless `all_profiles` (its records
    are plain metadata; their files are on that profile's daemon)."""
    with Session(engine) as db:
        if db.get(ImagingSession, session_id) is None:
            raise NotFound(f"no session {session_id}")
        owner = owner_of(engine)
        profile = session_profile(db, session_id)
        if not all_profiles and owner is not None and profile != owner:
            raise AnotherTelescope(
                f"night {session_id} belongs to profile {profile!r}: its frames are on the "
                "disk of that profile's daemon; ask that daemon, or add all_profiles=true "
                "to list their records here"
            )
        clauses = [Frame.session_id == session_id]
        if where.frame_type is not None:
            clauses.append(Frame.frame_type == where.frame_type)
        if where.filter_name is not None:
            clauses.append(Frame.filter_name == where.filter_name)
        if where.accepted is not None:
            clauses.append(Frame.accepted.is_(where.accepted))
        total = db.scalar(select(func.count(Frame.id)).where(*clauses)) or 0
        rows = db.scalars(
            select(Frame)
            .where(*clauses)
            .order_by(Frame.exposure_start_utc, Frame.id)
            .limit(limit)
            .offset(offset)
        )
        return FramePage(list(rows), total)


def latest_frame(engine: Engine, frame_type: FrameType | None) -> Frame:
    """This daemon's newest frame (of a type); `NotFound` before the first."""
    with Session(engine) as db:
        where = own_frames(engine)
        if frame_type is not None:
            where.append(Frame.frame_type == frame_type)
        row = db.scalars(select(Frame).where(*where).order_by(Frame.id.desc()).limit(1)).first()
        if row is None:
            raise NotFound("no frame yet")
        return row


def get_frame(engine: Engine, frame_id: int) -> Frame:
    """A frame's record, of any profile (plain metadata); `NotFound` for an unknown id.
    Blocking."""
    with Session(engine) as db:
        frame = db.get(Frame, frame_id)
        if frame is None:
            raise NotFound(f"no frame {frame_id}")
        db.expunge(frame)
        return frame


def frames_by_id(engine: Engine, ids: list[int]) -> list[Frame]:
    with Session(engine) as db:
        rows = {f.id: f for f in db.scalars(select(Frame).where(Frame.id.in_(ids)))}
        return [rows[i] for i in ids]


def frame_file(engine: Engine, store: FrameStore, frame_id: int) -> Path:
    """Where the frame's FITS file is; `NotFound` for an unknown id, `AnotherTelescope` for a
    frame another profile's daemon took, `Gone` when the file is no longer on disk. Blocking."""
    return _file_on_disk(engine, store, own_frame(engine, frame_id))


def own_frame(engine: Engine, frame_id: int) -> Frame:
    """A frame this daemon took (its file lies under this daemon's frames root); `NotFound`
    for an unknown id, `AnotherTelescope` naming the profile of another daemon's. Blocking."""
    with Session(engine) as db:
        frame = db.get(Frame, frame_id)
        if frame is None:
            raise NotFound(f"no frame {frame_id}")
        refuse_another_telescopes_frame(db, engine, frame)
        db.expunge(frame)
        return frame


def frame_preview(engine: Engine, store: FrameStore, cache_dir: Path, frame_id: int) -> bytes:
    """An auto-stretched (linked STF), downscaled JPEG of the frame, made once and then read
    from `cache_dir` (named by id and checksum, so a replaced file gets a new preview).
    `NotFound`, `AnotherTelescope` as `frame_file`; `Gone` when the FITS file is no longer on
    disk, even if a preview of it is cached: the preview would show a frame the archive has
    lost. Blocking."""
    frame = own_frame(engine, frame_id)
    path = _file_on_disk(engine, store, frame)
    cache = cache_dir / f"{frame.id}-{frame.sha256[:12]}.jpg"
    if cache.exists():
        return cache.read_bytes()
    data, _ = read_fits(path)
    jpeg = preview_jpeg(data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, jpeg)
    return jpeg


def _file_on_disk(engine: Engine, store: FrameStore, frame: Frame) -> Path:
    """The frame's file; `Gone` and a warning event (source "store") when it is missing, so
    the event log tells that the archive lost a file the database still lists."""
    path = store.absolute(frame.path)
    if not path.is_file():
        message = (
            f"frame {frame.id}: its file {frame.path} is no longer on disk "
            "(moved or deleted outside Nightowl)"
        )
        record_event(engine, "warning", "store", message, {"frame_id": frame.id, "path": str(path)})
        raise Gone(message, path)
    return path


HISTOGRAM_BINS = 256


@dataclass(frozen=True)
class FrameHistogram:
    """Counts of the linear data in `HISTOGRAM_BINS` equal bins over 0..`upper_adu` (the full
    scale, 65535 ADU for uint16, unless a narrower range was asked for), one list per channel,
    with the auto-STF the preview is stretched by (on the [0, 1] scale of the full range) and
    the data's median and extremes in ADU."""

    full_scale_adu: float
    upper_adu: float
    channels: list[list[int]]
    shadows: float
    midtones: float
    highlights: float
    median_adu: float
    min_adu: float
    max_adu: float


@dataclass(frozen=True)
class StarMark:
    x: float
    y: float
    hfr_px: float


@dataclass(frozen=True)
class FrameStarMarks:
    """Stars of a frame in its own pixel coordinates ((0, 0) = centre of the first pixel),
    brightest first: from capture's stored star list, else measured now."""

    width_px: int
    height_px: int
    star_count: int
    hfr_px: float | None
    measured_now: bool
    stars: list[StarMark]


def frame_histogram(
    engine: Engine, store: FrameStore, frame_id: int, upper_adu: float | None = None
) -> FrameHistogram:
    """Bins over 0..`upper_adu` (None: the full scale; pixels above it are not counted): linear
    data sits in the lowest percent of the range. `NotFound`, `AnotherTelescope`, `Gone` as
    `frame_file`. Blocking (reads and bins the whole frame)."""
    data, _ = read_fits(frame_file(engine, store, frame_id))
    scale = full_scale(data.dtype)
    upper = scale if upper_adu is None else min(upper_adu, scale)
    cube = data if data.ndim == 3 else data[:, :, None]
    channels = [
        np.histogram(cube[:, :, c], bins=HISTOGRAM_BINS, range=(0.0, upper))[0].tolist()
        for c in range(cube.shape[2])
    ]
    stf = auto_stf(data)
    return FrameHistogram(
        full_scale_adu=scale,
        upper_adu=upper,
        channels=channels,
        shadows=stf.shadows,
        midtones=stf.midtones,
        highlights=stf.highlights,
        median_adu=float(np.median(data)),
        min_adu=float(data.min()),
        max_adu=float(data.max()),
    )


def frame_stars(engine: Engine, store: FrameStore, frame_id: int, limit: int) -> FrameStarMarks:
    """The `limit` brightest stars; `NotFound`, `AnotherTelescope`, `Gone` as `frame_file`.
    Blocking."""
    frame = own_frame(engine, frame_id)
    with Session(engine) as db:
        kept = db.get(FrameStars, frame_id)
        blob = kept.stars if kept is not None else None
    if blob is not None:
        rows = StarList.from_bytes(blob).rows
        marks = [StarMark(float(r[1]), float(r[0]), float(r[3])) for r in rows[:limit]]
        return FrameStarMarks(
            frame.width_px,
            frame.height_px,
            frame.star_count or len(rows),
            frame.hfr_px,
            False,
            marks,
        )
    data, _ = read_fits(_file_on_disk(engine, store, frame))
    quality, table = measure_frame_stars(data, saturation_adu=full_scale(data.dtype))
    marks = [
        StarMark(float(x), float(y), float(hfr))
        for y, x, hfr in zip(table.y[:limit], table.x[:limit], table.hfr_px[:limit], strict=True)
    ]
    return FrameStarMarks(
        frame.width_px, frame.height_px, quality.star_count, quality.hfr_px, True, marks
    )


def frame_header(engine: Engine, store: FrameStore, frame_id: int) -> list[tuple[str, str]]:
    """The FITS cards as (keyword, value text), HISTORY and COMMENT one card per line;
    `NotFound`, `AnotherTelescope`, `Gone` as `frame_file`. Blocking."""
    _, cards = read_fits_header(frame_file(engine, store, frame_id))
    listed: list[tuple[str, str]] = []
    for keyword, value in cards.items():
        values = value if isinstance(value, list) else [value]
        listed.extend((keyword, str(v)) for v in values)
    return listed
