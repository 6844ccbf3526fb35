"""Targets: find an object by name or coordinates, and its framing chart."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from daemon import targets as service
from daemon import underlay as underlay_service
from daemon.api.deps import EngineDep, EquipmentDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.targets import (
    AddToPlanWrite,
    AddToTemplateWrite,
    CameraFieldRead,
    ChartRead,
    ChartStarRead,
    FramedTargetWrite,
    TargetRead,
    TargetsAddedRead,
    UnderlayCornerRead,
    UnderlayRead,
)
from sequences.coordinates import CoordinateError, format_dec, format_ra, parse_dec_deg
from sequences.coordinates import parse_ra_hours as parse_ra

router = APIRouter(prefix="/api/targets", tags=["targets"])


def _read(match: service.TargetMatch) -> TargetRead:
    return TargetRead(
        name=match.name,
        aliases=list(match.aliases),
        kind=match.kind,
        ra_hours=match.ra_hours,
        dec_deg=match.dec_deg,
        ra_hms=format_ra(match.ra_hours),
        dec_dms=format_dec(match.dec_deg),
        size_arcmin=list(match.size_arcmin) if match.size_arcmin else None,
        position_angle_deg=match.position_angle_deg,
        magnitude=match.magnitude,
    )


def _framed(body: list[FramedTargetWrite]) -> list[service.FramedTarget]:
    return [service.FramedTarget(t.name, t.ra_hours, t.dec_deg, t.rotation_deg) for t in body]


@router.get("/search")
async def search(
    q: Annotated[str, Query(min_length=1, max_length=200, description="a name or coordinates")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[TargetRead]:
    """Messier, NGC, IC and other designations, common names ("Andromeda Galaxy") and bright
    star names; text that reads as coordinates ("00 42 44.3 +41 16 09") answers one result of
    kind "coordinates"."""
    return [_read(m) for m in await asyncio.to_thread(service.search, q, limit)]


@router.get("/chart")
async def chart(
    ra: Annotated[str, Query(max_length=50, description="centre RA: hours or 00 42 44.3")],
    dec: Annotated[str, Query(max_length=50, description="centre Dec: degrees or +41 16 09")],
    radius_deg: Annotated[float, Query(gt=0, le=10)] = 2.0,
    mag_limit: Annotated[float, Query(ge=-2, le=12)] = 10.0,
    max_stars: Annotated[int, Query(ge=1, le=5000)] = 1500,
) -> ChartRead:
    """The stars (Gaia DR3 / Hipparcos) and deep-sky objects (OpenNGC) around a centre."""
    ra_hours, dec_deg = _centre(ra, dec)
    found = await asyncio.to_thread(
        service.chart, ra_hours, dec_deg, radius_deg, mag_limit, max_stars
    )
    return ChartRead(
        ra_hours=ra_hours,
        dec_deg=dec_deg,
        ra_hms=format_ra(ra_hours),
        dec_dms=format_dec(dec_deg),
        radius_deg=radius_deg,
        stars=[
            ChartStarRead(ra_hours=s.ra_hours, dec_deg=s.dec_deg, magnitude=s.magnitude)
            for s in found.stars
        ],
        objects=[_read(m) for m in found.objects],
    )


def _centre(ra: str, dec: str) -> tuple[float, float]:
    """The query's centre; 422 naming the coordinate that does not read."""
    try:
        ra_hours = parse_ra(ra)
    except CoordinateError as e:
        raise RequestValidationError(
            [{"loc": ("query", "ra"), "msg": str(e), "type": "value_error", "input": ra}]
        ) from e
    try:
        dec_deg = parse_dec_deg(dec)
    except CoordinateError as e:
        raise RequestValidationError(
            [{"loc": ("query", "dec"), "msg": str(e), "type": "value_error", "input": dec}]
        ) from e
    return ra_hours, dec_deg


@router.get("/underlay", responses=responses(404))
async def underlay(
    ra: Annotated[str, Query(max_length=50, description="centre RA: hours or 00 42 44.3")],
    dec: Annotated[str, Query(max_length=50, description="centre Dec: degrees or +41 16 09")],
    runtime: RuntimeDep,
    radius_deg: Annotated[float, Query(gt=0, le=10)] = 2.0,
) -> UnderlayRead:
    """The newest light of ours whose pointing lies within `radius_deg` of the centre, plate
    solved (once; the first time takes a few seconds), with the sky position of its preview's
    corners; 404 "no solved frame of ours near this field" when there is none."""
    ra_hours, dec_deg = _centre(ra, dec)
    found = await underlay_service.find_underlay(
        runtime.engine, runtime.imaging, ra_hours, dec_deg, radius_deg
    )
    return UnderlayRead(
        frame_id=found.frame_id,
        preview_url=f"/api/frames/{found.frame_id}/preview.jpg",
        width_px=found.width_px,
        height_px=found.height_px,
        corners=[UnderlayCornerRead(**c.__dict__) for c in found.corners],
        taken_at=found.taken_at,
        filter=found.filter_name,
    )


@router.get("/fov", responses=responses(409))
async def fov(equipment: EquipmentDep) -> CameraFieldRead:
    """The connected camera's field with the focal length the mount reports; 409 saying
    what is missing."""
    field = service.camera_field(equipment)
    return CameraFieldRead(**field.__dict__)


@router.post("/add-to-template", responses=responses(404))
async def add_to_template(body: AddToTemplateWrite, engine: EngineDep) -> TargetsAddedRead:
    """Append a target container per target to a template, modelled on its first target
    container (or a slew, a centering and ten 120 s exposures). 422 when the result is not
    a valid document."""
    row = await asyncio.to_thread(
        service.add_to_template, engine, body.template_id, _framed(body.targets)
    )
    return TargetsAddedRead(
        id=row.id, name=row.name, added=[t.name for t in body.targets], document=row.document
    )


@router.post("/add-to-plan", responses=responses(404))
async def add_to_plan(body: AddToPlanWrite, runtime: RuntimeDep) -> TargetsAddedRead:
    """Append the targets to a plan with `goals` (default: its first target's). 422 for a
    name the plan already has or a plan that would not be valid."""
    row = await asyncio.to_thread(
        service.add_to_plan, runtime.engine, body.plan_id, _framed(body.targets), body.goals
    )
    await runtime.scheduler.arm(row.id)
    return TargetsAddedRead(
        id=row.id, name=row.name, added=[t.name for t in body.targets], document=row.document
    )
