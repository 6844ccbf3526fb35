"""A solved frame of ours under the framing chart.

No image survey is available offline, so the Framing page draws its field from the star
catalog; when we have taken a light of that area, its preview can lie under the chart. This
finds this daemon's newest LIGHT frame whose recorded pointing lies within the chart's radius, plate
solves it once (the Imaging page's solver and cache: `ImagingService.frame_wcs`) and answers
the sky position of its corners, from which the page places the preview.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.db.models import Frame
from daemon.errors import Conflict, NotFound, ServiceError
from daemon.frame_owners import own_frames
from daemon.imaging import ImagingService
from drivers.base import RaDec
from sequences.frames import FrameType

MAX_SOLVES = 3
"""Frames solved for one request at most (newest first); one that does not solve is
remembered, so the next request tries older ones."""
_CANDIDATES = 200
"""Newest lights in the declination band looked at for one request."""
_KEPT = 512
"""Frames whose corners (or failure to solve) are remembered."""

NO_FRAME = "no solved frame of ours near this field"


@dataclass(frozen=True)
class SkyCorner:
    x: float
    """On the picture: 0 at its left edge, the frame's width at its right edge."""
    y: float
    """0 at its top edge (the first row stored), the frame's height at its bottom edge."""
    ra_hours: float
    dec_deg: float


@dataclass(frozen=True)
class Underlay:
    frame_id: int
    width_px: int
    height_px: int
    corners: tuple[SkyCorner, ...]
    """Top left, top right, bottom right, bottom left."""
    taken_at: datetime
    filter_name: str | None


@dataclass(frozen=True)
class _Candidate:
    frame_id: int
    sha256: str
    width_px: int
    height_px: int
    taken_at: datetime
    filter_name: str | None


_corners: OrderedDict[str, tuple[SkyCorner, ...] | None] = OrderedDict()
"""Corners by the frame file's checksum (None: it did not solve), newest use last. Keyed by
content, so a frame replaced on disk is solved again and databases never mix answers."""


async def find_underlay(
    engine: Engine,
    imaging: ImagingService | None,
    ra_hours: float,
    dec_deg: float,
    radius_deg: float,
) -> Underlay:
    """The newest light taken within `radius_deg` of the centre that plate solves, with its
    corners on the sky; `NotFound` when there is none (or nothing can solve frames now)."""
    candidates = await asyncio.to_thread(_lights_near, engine, ra_hours, dec_deg, radius_deg)
    solves = 0
    for frame in candidates:
        if frame.sha256 in _corners:
            corners = _corners[frame.sha256]
            _corners.move_to_end(frame.sha256)
        else:
            if imaging is None or solves >= MAX_SOLVES:
                continue
            solves += 1
            try:
                wcs = await imaging.frame_wcs(frame.frame_id)
            except Conflict:
                raise NotFound(NO_FRAME) from None  # no camera or focal length: nothing solves
            except ServiceError:
                _remember(frame.sha256, None)  # does not solve, or its file is gone
                continue
            corners = _sky_corners(wcs, frame.width_px, frame.height_px)
            _remember(frame.sha256, corners)
        if corners is not None:
            return Underlay(
                frame.frame_id,
                frame.width_px,
                frame.height_px,
                corners,
                frame.taken_at,
                frame.filter_name,
            )
    raise NotFound(NO_FRAME)


def _remember(sha256: str, corners: tuple[SkyCorner, ...] | None) -> None:
    _corners[sha256] = corners
    while len(_corners) > _KEPT:
        _corners.popitem(last=False)


def _sky_corners(wcs: Any, width_px: int, height_px: int) -> tuple[SkyCorner, ...]:
    """The picture's outer corners: pixel centres are at 0 .. n-1 (0-based), so its edges
    lie half a pixel beyond them."""
    corners = []
    for x, y in ((0, 0), (width_px, 0), (width_px, height_px), (0, height_px)):
        ra_deg, dec_deg = (float(v) for v in wcs.pixel_to_world_values(x - 0.5, y - 0.5))
        corners.append(SkyCorner(float(x), float(y), (ra_deg / 15.0) % 24.0, dec_deg))
    return tuple(corners)


def _lights_near(
    engine: Engine, ra_hours: float, dec_deg: float, radius_deg: float
) -> list[_Candidate]:
    """This daemon's accepted lights (another telescope's files are not on its disk) whose
    recorded pointing lies within `radius_deg`, newest first."""
    with Session(engine) as db:
        rows = db.execute(
            select(
                Frame.id,
                Frame.sha256,
                Frame.width_px,
                Frame.height_px,
                Frame.exposure_start_utc,
                Frame.filter_name,
                Frame.ra_deg,
                Frame.dec_deg,
            )
            .where(
                Frame.frame_type == FrameType.LIGHT,
                Frame.accepted.is_(True),
                Frame.ra_deg.is_not(None),
                Frame.dec_deg.between(dec_deg - radius_deg, dec_deg + radius_deg),
                *own_frames(engine),
            )
            .order_by(Frame.exposure_start_utc.desc(), Frame.id.desc())
            .limit(_CANDIDATES)
        ).all()
    centre = RaDec(ra_hours, dec_deg)
    return [
        _Candidate(row[0], row[1], row[2], row[3], row[4], row[5])
        for row in rows
        if row[6] is not None
        and row[7] is not None
        and centre.separation_deg(RaDec((row[6] / 15.0) % 24.0, row[7])) <= radius_deg
    ]
