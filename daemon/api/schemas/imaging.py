"""Imaging by hand: loop, flats wizard and center-here requests and states; a frame's
histogram, stars and header."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from daemon.api.schemas.common import RecordId, RequestBody
from daemon.api.schemas.frames import ALPACA_INT32_MAX
from daemon.imaging_state import FlatsSettings, FlatsState, JobState, LoopSettings, LoopState
from sequences.centering import CenteringConfig

Gain = Field(default=None, ge=0, le=ALPACA_INT32_MAX)


class LoopCreate(RequestBody):
    """Expose again and again with one setting; every frame is kept as a LIGHT of the night."""

    exposure_s: float = Field(gt=0, le=3600)
    filter_name: str | None = Field(default=None, min_length=1, max_length=50)
    binning: int = Field(default=1, ge=1, le=8)
    gain: int | None = Gain
    count: int | None = Field(default=None, ge=1, le=10_000, description="null: until stopped")

    def settings(self) -> LoopSettings:
        return LoopSettings(self.exposure_s, self.filter_name, self.binning, self.gain, self.count)


class LoopFrameRead(BaseModel):
    id: int
    filter_name: str | None
    exposure_s: float
    star_count: int | None
    hfr_px: float | None
    accepted: bool


class LoopRead(BaseModel):
    state: JobState
    exposure_s: float | None
    filter_name: str | None
    binning: int | None
    gain: int | None
    count: int | None
    frames_taken: int
    last_frame: LoopFrameRead | None
    message: str
    started_at: datetime | None

    @classmethod
    def of(cls, state: LoopState) -> LoopRead:
        s = state.settings
        last = state.last_frame
        return cls(
            state=state.state,
            exposure_s=s.exposure_s if s else None,
            filter_name=s.filter_name if s else None,
            binning=s.binning if s else None,
            gain=s.gain if s else None,
            count=s.count if s else None,
            frames_taken=state.frames_taken,
            last_frame=None
            if last is None
            else LoopFrameRead(
                id=last.id,
                filter_name=last.filter_name,
                exposure_s=last.exposure_s,
                star_count=last.star_count,
                hfr_px=last.hfr_px,
                accepted=last.accepted,
            ),
            message=state.message,
            started_at=state.started_at,
        )


class FlatsCreate(RequestBody):
    """Find each filter's exposure by trial frames (not saved), then take `count` flats."""

    filters: list[str] = Field(
        default_factory=list, max_length=20, description="empty: the current filter"
    )
    count: int = Field(default=10, ge=1, le=1000)
    source: Literal["sky", "panel"] = "panel"
    target_adu: float = Field(default=32_000, gt=0, le=65_535, description="the median wanted")
    tolerance: float = Field(default=0.1, gt=0, lt=1, description="fraction of target_adu")
    min_exposure_s: float = Field(default=0.01, gt=0, le=3600)
    max_exposure_s: float = Field(default=30.0, gt=0, le=3600)
    panel_brightness: int | None = Field(
        default=None, ge=1, le=ALPACA_INT32_MAX, description="null: half the panel's maximum"
    )
    max_tries: int = Field(default=8, ge=1, le=30)
    binning: int = Field(default=1, ge=1, le=8)
    gain: int | None = Gain

    def settings(self) -> FlatsSettings:
        return FlatsSettings(
            filters=list(self.filters),
            count=self.count,
            source=self.source,
            target_adu=self.target_adu,
            tolerance=self.tolerance,
            min_exposure_s=self.min_exposure_s,
            max_exposure_s=self.max_exposure_s,
            panel_brightness=self.panel_brightness,
            max_tries=self.max_tries,
            binning=self.binning,
            gain=self.gain,
        )


class FlatTrialRead(BaseModel):
    exposure_s: float
    brightness: int | None
    median_adu: float


class FilterFlatsRead(BaseModel):
    filter_name: str | None
    trials: list[FlatTrialRead]
    exposure_s: float | None
    brightness: int | None
    frame_ids: list[int]


class FlatsRead(BaseModel):
    state: JobState
    source: str | None
    count: int | None
    target_adu: float | None
    filters: list[FilterFlatsRead]
    message: str
    started_at: datetime | None

    @classmethod
    def of(cls, state: FlatsState) -> FlatsRead:
        s = state.settings
        return cls(
            state=state.state,
            source=s.source if s else None,
            count=s.count if s else None,
            target_adu=s.target_adu if s else None,
            filters=[
                FilterFlatsRead(
                    filter_name=f.filter_name,
                    trials=[FlatTrialRead(**vars(t)) for t in f.trials],
                    exposure_s=f.exposure_s,
                    brightness=f.brightness,
                    frame_ids=list(f.frame_ids),
                )
                for f in state.filters
            ],
            message=state.message,
            started_at=state.started_at,
        )


class CenterCreate(RequestBody):
    """A pixel of a stored frame ((0, 0) = centre of the first pixel of its data, y down the
    rows): the mount is centred on its sky position."""

    frame_id: RecordId
    x: float = Field(ge=0, le=100_000)
    y: float = Field(ge=0, le=100_000)
    exposure_s: float = Field(default=2.0, gt=0, le=600, description="of the centering frames")
    tolerance_arcmin: float = Field(default=1.0, gt=0, le=600)
    max_attempts: int = Field(default=5, ge=1, le=20)

    def config(self) -> CenteringConfig:
        return CenteringConfig(
            tolerance_arcmin=self.tolerance_arcmin,
            max_attempts=self.max_attempts,
            exposure_s=self.exposure_s,
        )


class CenterRead(BaseModel):
    frame_id: int
    x: float
    y: float
    ra_hours: float
    dec_deg: float
    success: bool
    attempts: int
    final_error_arcsec: float | None
    reason: str


class HistogramRead(BaseModel):
    """Counts of the linear data in 256 equal bins over 0..upper_adu, one list per channel;
    the auto-STF (shadows, midtones, highlights) on the [0, 1] scale of 0..full_scale_adu."""

    full_scale_adu: float
    upper_adu: float
    channels: list[list[int]]
    shadows: float
    midtones: float
    highlights: float
    median_adu: float
    min_adu: float
    max_adu: float


class StarMarkRead(BaseModel):
    x: float
    y: float
    hfr_px: float


class StarsRead(BaseModel):
    width_px: int
    height_px: int
    star_count: int
    hfr_px: float | None
    measured_now: bool
    stars: list[StarMarkRead]


class HeaderCardRead(BaseModel):
    keyword: str
    value: str
