"""Capture, nights (imaging sessions) and frames: records, FITS files and previews."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse, Response

from daemon import frames as service
from daemon.api.deps import CaptureDep, EngineDep, RuntimeDep
from daemon.api.responses import DEVICE, responses
from daemon.api.schemas.common import Offset, PageLimit, RecordId
from daemon.api.schemas.frames import CaptureCreate, FrameList, FrameRead, SessionRead
from daemon.api.schemas.imaging import HeaderCardRead, HistogramRead, StarsRead
from sequences.frames import FrameType

router = APIRouter(prefix="/api", tags=["frames"])


@router.post("/capture", status_code=status.HTTP_201_CREATED, responses=responses(*DEVICE, 507))
async def capture(body: CaptureCreate, capture: CaptureDep, engine: EngineDep) -> list[FrameRead]:
    """Take `count` exposures now and return their records (rejected frames included)."""
    target = body.target
    where = service.TargetPosition(target.name, target.ra_deg, target.dec_deg) if target else None
    rows = await service.capture(capture, engine, body.spec(), body.count, where)
    return [FrameRead.model_validate(row) for row in rows]


AllProfiles = Annotated[
    bool,
    Query(
        description="also the records of other telescopes' daemons sharing the database "
        "(their files are served by those daemons only)"
    ),
]


@router.get("/sessions")
async def list_sessions(engine: EngineDep, all_profiles: AllProfiles = False) -> list[SessionRead]:
    """This daemon's nights, newest first (every profile's with `all_profiles=true`)."""
    rows = await asyncio.to_thread(service.list_sessions, engine, all_profiles)
    return [SessionRead.model_validate(row, from_attributes=True) for row in rows]


@router.get("/sessions/{session_id}/frames", responses=responses(404, 409))
async def list_frames(
    session_id: RecordId,
    engine: EngineDep,
    frame_type: FrameType | None = None,
    filter_name: str | None = None,
    accepted: bool | None = None,
    limit: PageLimit = 100,
    offset: Offset = 0,
    all_profiles: AllProfiles = False,
) -> FrameList:
    """A page of a night's frames; 409 for another profile's night unless `all_profiles`."""
    where = service.FrameFilter(frame_type, filter_name, accepted)
    page = await asyncio.to_thread(
        service.session_frames, engine, session_id, where, limit, offset, all_profiles
    )
    items = [FrameRead.model_validate(r) for r in page.items]
    return FrameList(items=items, total=page.total, limit=limit, offset=offset)


@router.get("/frames/latest", responses=responses(404))
async def latest_frame(engine: EngineDep, frame_type: FrameType | None = None) -> FrameRead:
    """This daemon's newest frame (of a type): what the dashboard previews. 404 before the
    first."""
    return FrameRead.model_validate(
        await asyncio.to_thread(service.latest_frame, engine, frame_type)
    )


@router.get("/frames/{frame_id}", responses=responses(404))
async def get_frame(frame_id: RecordId, engine: EngineDep) -> FrameRead:
    """A frame's record, of any profile (its file only from the daemon that took it)."""
    return FrameRead.model_validate(await asyncio.to_thread(service.get_frame, engine, frame_id))


@router.get(
    "/frames/{frame_id}/fits", response_class=FileResponse, responses=responses(404, 409, 410)
)
async def get_frame_fits(frame_id: RecordId, runtime: RuntimeDep) -> FileResponse:
    """The frame's FITS file as stored; 409 naming the profile for a frame another
    telescope's daemon took; 410 with its path when it is no longer on disk."""
    path = await asyncio.to_thread(service.frame_file, runtime.engine, runtime.store, frame_id)
    return FileResponse(path, media_type="application/fits", filename=Path(path).name)


@router.get(
    "/frames/{frame_id}/preview.jpg", response_class=Response, responses=responses(404, 409, 410)
)
async def get_frame_preview(frame_id: RecordId, runtime: RuntimeDep) -> Response:
    """An auto-stretched (linked STF), downscaled JPEG; made once, then served from a cache.
    410 when the frame's FITS file is no longer on disk."""
    jpeg = await asyncio.to_thread(
        service.frame_preview,
        runtime.engine,
        runtime.store,
        runtime.settings.previews_root,
        frame_id,
    )
    return Response(jpeg, media_type="image/jpeg")


@router.get("/frames/{frame_id}/histogram", responses=responses(404, 409, 410))
async def get_frame_histogram(
    frame_id: RecordId,
    runtime: RuntimeDep,
    upper_adu: Annotated[float | None, Query(gt=0, le=1e9, description="bin 0..this")] = None,
) -> HistogramRead:
    """256-bin counts of the linear data per channel (over 0..`upper_adu`, default the full
    scale) and the preview's auto-STF."""
    found = await asyncio.to_thread(
        service.frame_histogram, runtime.engine, runtime.store, frame_id, upper_adu
    )
    return HistogramRead.model_validate(found, from_attributes=True)


@router.get("/frames/{frame_id}/stars", responses=responses(404, 409, 410))
async def get_frame_stars(
    frame_id: RecordId, runtime: RuntimeDep, limit: PageLimit = 300
) -> StarsRead:
    """The brightest stars (x, y, HFR in px): those capture kept, else measured now."""
    found = await asyncio.to_thread(
        service.frame_stars, runtime.engine, runtime.store, frame_id, limit
    )
    return StarsRead.model_validate(found, from_attributes=True)


@router.get("/frames/{frame_id}/header", responses=responses(404, 409, 410))
async def get_frame_header(frame_id: RecordId, runtime: RuntimeDep) -> list[HeaderCardRead]:
    """The FITS header's cards as text, in file order."""
    cards = await asyncio.to_thread(service.frame_header, runtime.engine, runtime.store, frame_id)
    return [HeaderCardRead(keyword=k, value=v) for k, v in cards]
