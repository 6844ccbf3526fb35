"""Request and response bodies for finding targets, their framing chart and the camera field.

Coordinates are read as decimal or sexagesimal text (`sequences.coordinates`) and always
answered in both forms: `ra_hours` / `dec_deg` numbers beside `ra_hms` / `dec_dms` text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from daemon.api.schemas.common import JsonDocument, RequestBody
from sequences.base import TargetName
from sequences.coordinates import DecDeg, RaHours


class TargetRead(BaseModel):
    name: str
    aliases: list[str] = Field(description="other designations and common names")
    kind: str = Field(description='"galaxy", "open cluster", "star", "coordinates"...')
    ra_hours: float
    dec_deg: float
    ra_hms: str = Field(description="the right ascension as 00h42m44.35s")
    dec_dms: str = Field(description="the declination as +41d16m08.6s")
    size_arcmin: list[float] | None = Field(
        description="[major, minor] axes in arcminutes; null when the catalog has no size"
    )
    position_angle_deg: float | None = Field(description="of the major axis, east of north")
    magnitude: float | None


class ChartStarRead(BaseModel):
    ra_hours: float
    dec_deg: float
    magnitude: float


class ChartRead(BaseModel):
    """What the framing chart draws around its centre."""

    ra_hours: float
    dec_deg: float
    ra_hms: str
    dec_dms: str
    radius_deg: float
    stars: list[ChartStarRead] = Field(description="brightest first")
    objects: list[TargetRead] = Field(description="deep-sky objects in the field, largest first")


class CameraFieldRead(BaseModel):
    """The main camera's unbinned field: its sensor with the focal length the mount reports."""

    width_px: int
    height_px: int
    pixel_size_um: float
    focal_length_mm: float
    pixel_scale_arcsec: float
    width_deg: float
    height_deg: float


class FramedTargetWrite(RequestBody):
    """A framed target: centre and the camera's position angle (east of north)."""

    name: TargetName
    ra_hours: RaHours
    dec_deg: DecDeg
    rotation_deg: float | None = Field(default=None, ge=0, lt=360)


class AddToTemplateWrite(RequestBody):
    """One target container is appended per target (a mosaic sends one per panel)."""

    template_id: int = Field(ge=1, le=2**63 - 1)
    targets: list[FramedTargetWrite] = Field(min_length=1, max_length=100)


class AddToPlanWrite(RequestBody):
    plan_id: int = Field(ge=1, le=2**63 - 1)
    targets: list[FramedTargetWrite] = Field(min_length=1, max_length=100)
    goals: list[JsonDocument] | None = Field(
        default=None,
        max_length=50,
        description="frames to take for each target (as a plan target's goals); "
        "default: the plan's first target's",
    )


class TargetsAddedRead(BaseModel):
    id: int = Field(description="the template's or plan's id")
    name: str
    added: list[str] = Field(description="the names of the targets added")
    document: dict[str, Any]


class UnderlayCornerRead(BaseModel):
    x: float = Field(description="on the picture: 0 at its left edge, width_px at its right edge")
    y: float = Field(
        description="0 at its top edge (the first row stored), height_px at its bottom"
    )
    ra_hours: float
    dec_deg: float


class UnderlayRead(BaseModel):
    """A plate-solved light of ours that can lie under the chart: its preview and where the
    preview's corners fall on the sky."""

    frame_id: int
    preview_url: str = Field(description="the frame's preview JPEG (its whole picture)")
    width_px: int = Field(description="the frame's width: the corners' x run 0 .. width_px")
    height_px: int
    corners: list[UnderlayCornerRead] = Field(
        description="top left, top right, bottom right, bottom left (J2000)"
    )
    taken_at: datetime = Field(description="the exposure's start (UTC)")
    filter: str | None
