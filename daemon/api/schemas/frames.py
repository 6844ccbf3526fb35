"""Capture requests and frame / session records."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from daemon.api.schemas.common import RequestBody
from daemon.states import SessionState
from sequences.frames import ExposureSpec, FrameType

ALPACA_INT32_MAX = 2**31 - 1
"""Gain and offset travel as Alpaca Int32 values; the camera's own range is checked at capture."""


class TargetCreate(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    ra_deg: float | None = Field(default=None, ge=0, lt=360)
    dec_deg: float | None = Field(default=None, ge=-90, le=90)


class CaptureCreate(RequestBody):
    """One exposure or a short series of the same settings."""

    frame_type: FrameType = FrameType.LIGHT
    exposure_s: float = Field(ge=0, le=3600, description="0 is allowed for bias frames only")
    count: int = Field(default=1, ge=1, le=500)
    filter_name: str | None = Field(default=None, max_length=50)
    gain: int | None = Field(default=None, ge=0, le=ALPACA_INT32_MAX)
    offset: int | None = Field(default=None, ge=0, le=ALPACA_INT32_MAX)
    binning: int = Field(default=1, ge=1, le=8)
    target: TargetCreate | None = None

    def spec(self) -> ExposureSpec:
        return ExposureSpec(
            self.frame_type,
            self.exposure_s,
            self.filter_name,
            self.gain,
            self.offset,
            self.binning,
        )


class WeatherRead(BaseModel):
    """The weather station's reading (ASCOM's units); None where it has no such sensor."""

    cloud_cover_pct: float | None = None
    dew_point_c: float | None = None
    humidity_pct: float | None = None
    pressure_hpa: float | None = None
    rain_rate_mm_h: float | None = None
    sky_brightness_lux: float | None = None
    sky_quality_mag_arcsec2: float | None = None
    sky_temperature_c: float | None = None
    star_fwhm_arcsec: float | None = None
    temperature_c: float | None = None
    wind_direction_deg: float | None = Field(default=None, description="wind from, 0 = north")
    wind_gust_m_s: float | None = None
    wind_speed_m_s: float | None = None


class FrameRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    session_id: int
    target_id: int | None
    path: str
    sha256: str
    size_bytes: int
    frame_type: FrameType
    filter_name: str | None
    exposure_s: float
    exposure_start_utc: datetime
    camera_name: str | None
    width_px: int
    height_px: int
    gain: int | None
    offset: int | None
    bin_x: int
    bin_y: int
    readout_mode: int | None
    sensor_temperature_c: float | None
    set_point_c: float | None
    ra_deg: float | None
    dec_deg: float | None
    pier_side: str | None
    altitude_deg: float | None
    azimuth_deg: float | None
    airmass: float | None
    focuser_position: int | None
    focuser_temperature_c: float | None
    star_count: int | None
    hfr_px: float | None
    hfr_arcsec: float | None
    fwhm_px: float | None
    eccentricity: float | None
    background_adu: float | None
    noise_adu: float | None
    saturated_fraction: float | None
    guiding_rms_arcsec: float | None
    bayer_pattern: str | None = Field(
        default=None, description="the colour sensor's FITS BAYERPAT (e.g. RGGB); null: mono"
    )
    run_id: int | None = Field(default=None, description="the sequence run that took it")
    node_path: str | None = Field(default=None, description="its instruction in that run")
    accepted: bool
    reject_reason: str | None
    weather: WeatherRead | None = Field(
        default=None, description="the weather station's reading as the exposure started"
    )
    created_at: datetime


class FrameList(BaseModel):
    items: list[FrameRead]
    total: int
    limit: int
    offset: int


class SessionRead(BaseModel):
    id: int
    profile: str
    night_date: date
    state: SessionState
    started_at: datetime
    ended_at: datetime | None
    frames: int
    accepted_lights: int
