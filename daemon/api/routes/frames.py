"""Capture, nights (imaging sessions) and frames: records, FITS files and previews."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import FileResponse, Response
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from daemon.api.deps import CaptureDep, EngineDep, RuntimeDep
from daemon.api.errors import unprocessable
from daemon.api.schemas.frames import CaptureCreate, FrameList, FrameRead, SessionRead
from daemon.capture import CaptureBusy, CaptureRequest
from daemon.db.models import Frame, ImagingSession, ObservatoryProfile
from daemon.fits_headers import TargetInfo
from processing.export import preview_jpeg
from processing.io import read_fits
from sequences.frames import FrameType

router = APIRouter(prefix="/api", tags=["frames"])


@router.post("/capture", status_code=status.HTTP_201_CREATED)
async def capture(body: CaptureCreate, service: CaptureDep, engine: EngineDep) -> list[FrameRead]:
    """Take `count` exposures now and return their records (rejected frames included)."""
    if body.exposure_s == 0 and body.frame_type is not FrameType.BIAS:
        raise unprocessable("exposure_s", "must be > 0 except for BIAS frames")
    target = body.target
    request = CaptureRequest(
        frame_type=body.frame_type,
        exposure_s=body.exposure_s,
        count=body.count,
        filter_name=body.filter_name,
        gain=body.gain,
        offset=body.offset,
        binning=body.binning,
        target=TargetInfo(target.name, target.ra_deg, target.dec_deg) if target else None,
    )
    try:
        saved = await service.capture(request)
    except CaptureBusy as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
    except ValueError as e:
        raise unprocessable(None, str(e)) from e
    return await asyncio.to_thread(_frames_by_id, engine, [f.id for f in saved])


@router.get("/sessions")
async def list_sessions(engine: EngineDep) -> list[SessionRead]:
    return await asyncio.to_thread(_sessions, engine)


@router.get("/sessions/{session_id}/frames")
async def list_frames(
    session_id: int,
    engine: EngineDep,
    frame_type: FrameType | None = None,
    filter_name: str | None = None,
    accepted: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> FrameList:
    def query() -> FrameList:
        with Session(engine) as db:
            if db.get(ImagingSession, session_id) is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no session {session_id}")
            where = [Frame.session_id == session_id]
            if frame_type is not None:
                where.append(Frame.frame_type == frame_type)
            if filter_name is not None:
                where.append(Frame.filter_name == filter_name)
            if accepted is not None:
                where.append(Frame.accepted.is_(accepted))
            total = db.scalar(select(func.count(Frame.id)).where(*where)) or 0
            rows = db.scalars(
                select(Frame)
                .where(*where)
                .order_by(Frame.exposure_start_utc, Frame.id)
                .limit(limit)
                .offset(offset)
            )
            items = [FrameRead.model_validate(r) for r in rows]
        return FrameList(items=items, total=total, limit=limit, offset=offset)

    return await asyncio.to_thread(query)


@router.get("/frames/latest")
async def latest_frame(engine: EngineDep, frame_type: FrameType | None = None) -> FrameRead:
    """The newest frame (of a type): what the dashboard previews. 404 before the first."""

    def query() -> FrameRead:
        with Session(engine) as db:
            where = [] if frame_type is None else [Frame.frame_type == frame_type]
            row = db.scalars(select(Frame).where(*where).order_by(Frame.id.desc()).limit(1)).first()
            if row is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, "no frame yet")
            return FrameRead.model_validate(row)

    return await asyncio.to_thread(query)


@router.get("/frames/{frame_id}")
async def get_frame(frame_id: int, engine: EngineDep) -> FrameRead:
    return FrameRead.model_validate(await asyncio.to_thread(_frame, engine, frame_id))


@router.get("/frames/{frame_id}/fits", response_class=FileResponse)
async def get_frame_fits(frame_id: int, engine: EngineDep, runtime: RuntimeDep) -> FileResponse:
    frame = await asyncio.to_thread(_frame, engine, frame_id)
    path = runtime.store.absolute(frame.path)
    return FileResponse(path, media_type="application/fits", filename=Path(frame.path).name)


@router.get("/frames/{frame_id}/preview.jpg", response_class=Response)
async def get_frame_preview(frame_id: int, engine: EngineDep, runtime: RuntimeDep) -> Response:
    """An auto-stretched (linked STF), downscaled JPEG; made once, then served from a cache."""
    frame = await asyncio.to_thread(_frame, engine, frame_id)
    cache = runtime.settings.data_dir / "previews" / f"{frame.id}-{frame.sha256[:12]}.jpg"

    def make() -> bytes:
        if cache.exists():
            return cache.read_bytes()
        data, _ = read_fits(runtime.store.absolute(frame.path))
        jpeg = preview_jpeg(data)
        cache.parent.mkdir(parents=True, exist_ok=True)
        temp = cache.with_suffix(".partial")
        temp.write_bytes(jpeg)
        temp.replace(cache)
        return jpeg

    return Response(await asyncio.to_thread(make), media_type="image/jpeg")


def _frame(engine: Engine, frame_id: int) -> Frame:
    with Session(engine) as db:
        frame = db.get(Frame, frame_id)
        if frame is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no frame {frame_id}")
        db.expunge(frame)
        return frame


def _frames_by_id(engine: Engine, ids: list[int]) -> list[FrameRead]:
    with Session(engine) as db:
        rows = {f.id: f for f in db.scalars(select(Frame).where(Frame.id.in_(ids)))}
        return [FrameRead.model_validate(rows[i]) for i in ids]


def _sessions(engine: Engine) -> list[SessionRead]:
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
        .group_by(ImagingSession.id, ObservatoryProfile.name)
        .order_by(ImagingSession.night_date.desc())
    )
    with Session(engine) as db:
        return [
            SessionRead(
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
