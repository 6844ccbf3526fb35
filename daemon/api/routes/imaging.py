"""Imaging by hand: looped exposures, flats wizard, centering on a point of a frame."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, status

from daemon.api.deps import RuntimeDep
from daemon.api.responses import DEVICE, responses
from daemon.api.schemas.imaging import (
    CenterCreate,
    CenterRead,
    FlatsCreate,
    FlatsRead,
    LoopCreate,
    LoopRead,
)
from daemon.errors import Conflict
from daemon.imaging import ImagingService

router = APIRouter(prefix="/api/imaging", tags=["imaging"])


def get_imaging(runtime: RuntimeDep) -> ImagingService:
    if runtime.imaging is None:
        raise Conflict("imaging by hand is not available in this daemon")
    return runtime.imaging


ImagingDep = Annotated[ImagingService, Depends(get_imaging)]


@router.post("/loop", status_code=status.HTTP_202_ACCEPTED, responses=responses(409))
async def start_loop(body: LoopCreate, imaging: ImagingDep) -> LoopRead:
    """Start exposing in a loop (`count` frames, or until stopped); 409 naming what holds the
    camera (a run, a capture, an autofocus). Each frame is stored as a LIGHT of the night."""
    return LoopRead.of(await imaging.start_loop(body.settings()))


@router.get("/loop")
async def loop_state(imaging: ImagingDep) -> LoopRead:
    """The loop's state: running, done, stopped or failed (with why), and its newest frame."""
    return LoopRead.of(imaging.loop)


@router.delete("/loop")
async def stop_loop(imaging: ImagingDep) -> LoopRead:
    """Stop the loop: the exposure under way is aborted, a frame already read out is kept."""
    return LoopRead.of(await imaging.stop_loop())


@router.post("/flats", status_code=status.HTTP_202_ACCEPTED, responses=responses(409))
async def start_flats(body: FlatsCreate, imaging: ImagingDep) -> FlatsRead:
    """Start the flats wizard: per filter, trial exposures (exposure *= target / median,
    within the bounds; with a panel, its brightness when the exposure leaves them) until the
    median is within tolerance of `target_adu`, then `count` FLAT frames."""
    return FlatsRead.of(await imaging.start_flats(body.settings()))


@router.get("/flats")
async def flats_state(imaging: ImagingDep) -> FlatsRead:
    return FlatsRead.of(imaging.flats)


@router.delete("/flats")
async def stop_flats(imaging: ImagingDep) -> FlatsRead:
    """Stop the wizard; the panel is turned off (the cover stays closed)."""
    return FlatsRead.of(await imaging.stop_flats())


@router.post("/center", responses=responses(404, 409, 410, *DEVICE))
async def center_here(body: CenterCreate, imaging: ImagingDep) -> CenterRead:
    """Plate-solve the frame (once) and center the mount on the sky position of its pixel
    (x, y): slew, expose, solve, correct. 409 while a run or a capture uses the mount or
    camera; 422 naming `frame_id` when the frame does not solve."""
    done = await imaging.center(body.frame_id, body.x, body.y, body.config())
    return CenterRead(
        frame_id=done.frame_id,
        x=done.x,
        y=done.y,
        ra_hours=done.target.ra_hours,
        dec_deg=done.target.dec_deg,
        success=done.success,
        attempts=done.attempts,
        final_error_arcsec=done.final_error_arcsec,
        reason=done.reason,
    )
