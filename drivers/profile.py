"""Equipment profiles: which device plays which role, and where to reach it.

A profile is a YAML (or JSON) file such as::

    name: backyard-refractor
    camera:          {url: "http://192.168.1.20:11111", device_number: 0}
    guide_camera:    {url: "http://192.168.1.20:11111", device_number: 1}
    mount:           {url: "http://192.168.1.21:11111", device_number: 0}
    focuser:         {url: "http://192.168.1.20:11111", device_number: 0, move_timeout_s: 90}
    filter_wheel:    {url: "http://192.168.1.20:11111", device_number: 0}
    safety_monitor:  {url: "http://192.168.1.22:11111", device_number: 0}
    dome:            {url: "http://192.168.1.22:11111", device_number: 0, shutter_timeout_s: 120}
    cover_calibrator: {url: "http://192.168.1.20:11111", device_number: 0}
    rotator:         {url: "http://192.168.1.20:11111", device_number: 0}
    weather:         {url: "http://192.168.1.22:11111", device_number: 0}
    switch:          {url: "http://192.168.1.22:11111", device_number: 0}

Every role is optional. Timeouts are margins on top of what each call's arguments imply.
Guiding is done by the native guider (``guide_camera`` + the mount's pulse guiding) unless
``guider:`` chooses PHD2, which then runs its own guide camera::

    guider:
      kind: phd2
      host: localhost
      port: 4400
      settle: {pixels: 1.5, time_s: 10, timeout_s: 60}

An optional ``acceptance:`` mapping overrides the frame quality rules
(`processing.acceptance.AcceptanceRules`), e.g. ``acceptance: {max_hfr_factor: 1.3}``.

An optional ``site:`` holds where the observatory stands, used when the mount reports no site
(latitude and longitude in decimal degrees or sexagesimal text, longitude east positive)::

    site: {latitude_deg: "+47 22 30", longitude_deg: 8.54, elevation_m: 450}
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import astropy.units as u
import yaml
from astropy.coordinates import Angle
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from drivers.base import WeatherReading
from processing.acceptance import AcceptanceRules

ROLES = (
    "camera",
    "guide_camera",
    "mount",
    "focuser",
    "filter_wheel",
    "safety_monitor",
    "dome",
    "cover_calibrator",
    "rotator",
    "weather",
    "switch",
)


class ProfileError(ValueError):
    """A profile file is missing, unreadable or invalid; the message names the field."""


class DeviceAddress(BaseModel):
    """An Alpaca device: server URL (``http://host:port``) and device number."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Alpaca server base URL, e.g. http://127.0.0.1:11111")
    device_number: int = Field(default=0, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
            raise ValueError("must look like http://host:port (scheme, host and port)")
        if parts.path not in ("", "/"):
            raise ValueError("must be the server's base URL, without a path")
        return f"{parts.scheme}://{parts.netloc}"


class CameraAddress(DeviceAddress):
    readout_timeout_s: float = Field(
        default=30.0, gt=0, description="time allowed after the exposure until the image is ready"
    )


class MountAddress(DeviceAddress):
    min_slew_rate_deg_s: float = Field(
        default=1.0, gt=0, description="slowest slew speed expected; sets slew deadlines"
    )
    park_timeout_s: float = Field(default=180.0, gt=0)


class FocuserAddress(DeviceAddress):
    move_timeout_s: float = Field(default=60.0, gt=0, description="margin on top of the travel")
    steps_per_s: float = Field(default=500.0, gt=0, description="slowest expected focuser speed")


class FilterWheelAddress(DeviceAddress):
    move_timeout_s: float = Field(default=60.0, gt=0)


class DomeGeometry(BaseModel):
    """Where the mount stands in the dome, for slaving (the dome follows the mount's pointing).

    Offsets are from the dome's centre to the intersection of the mount's axes, in metres
    (east, north, up); `gem_axis_offset_m` is the distance from that intersection along the
    declination axis to the optical axis of a German equatorial mount.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    radius_m: float = Field(default=1.5, gt=0)
    mount_offset_east_m: float = 0.0
    mount_offset_north_m: float = 0.0
    mount_offset_up_m: float = 0.0
    gem_axis_offset_m: float = Field(default=0.0, ge=0)
    slit_width_m: float = Field(default=0.8, gt=0)
    resync_tolerance_deg: float = Field(
        default=0.0, ge=0, description="0: re-slew when the slit would vignette (half the slit)"
    )


class DomeAddress(DeviceAddress):
    shutter_timeout_s: float = Field(
        default=120.0, gt=0, description="time allowed for the shutter or roof to open or close"
    )
    slew_timeout_s: float = Field(default=180.0, gt=0, description="time allowed for a slew")
    geometry: DomeGeometry = Field(default_factory=DomeGeometry)


class CoverCalibratorAddress(DeviceAddress):
    cover_timeout_s: float = Field(default=60.0, gt=0)
    calibrator_timeout_s: float = Field(default=30.0, gt=0, description="panel warm-up allowed")


class RotatorAddress(DeviceAddress):
    move_timeout_s: float = Field(default=30.0, gt=0, description="margin on top of the travel")
    deg_per_s: float = Field(default=3.0, gt=0, description="slowest expected rotator speed")


class WeatherLimits(BaseModel):
    """Readings that make the sky unsafe (each limit optional): the safety supervisor treats a
    broken limit as the safety monitor saying unsafe. A missing reading breaks no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rain_rate_mm_h: float | None = Field(
        default=0.0, ge=0, description="unsafe above this rain rate (0: any rain)"
    )
    wind_gust_m_s: float | None = Field(default=None, gt=0)
    wind_speed_m_s: float | None = Field(default=None, gt=0)
    humidity_pct: float | None = Field(default=None, gt=0, le=100)
    cloud_cover_pct: float | None = Field(default=None, ge=0, le=100)

    def violations(self, reading: WeatherReading) -> list[str]:
        """Why `reading` is unsafe, one phrase per broken limit (empty: safe)."""
        found = []
        for name, (label, unit) in _LIMITS.items():
            limit, value = getattr(self, name), getattr(reading, name)
            if limit is not None and value is not None and value > limit:
                found.append(f"{label} {value:g} {unit} above {limit:g} {unit}")
        return found


_LIMITS = {
    "rain_rate_mm_h": ("rain rate", "mm/h"),
    "wind_gust_m_s": ("wind gust", "m/s"),
    "wind_speed_m_s": ("wind speed", "m/s"),
    "humidity_pct": ("humidity", "%"),
    "cloud_cover_pct": ("cloud cover", "%"),
}


class WeatherAddress(DeviceAddress):
    unsafe: WeatherLimits = Field(
        default_factory=WeatherLimits, description="readings that count as unsafe"
    )


class NativeGuiderChoice(BaseModel):
    """Guide with Nightowl's own guider on `guide_camera` and the mount (the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["native"] = "native"


class Phd2Settle(BaseModel):
    """PHD2's SETTLE object, sent with every guide start and dither: guiding counts as settled
    once the error stays under `pixels` for `time_s`; `timeout_s` ends the wait as failed.
    PHD2 counts whole seconds, hence the integers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixels: float = Field(default=1.5, gt=0, le=20, description="largest guide error, guide px")
    time_s: int = Field(default=10, ge=0, le=600)
    timeout_s: int = Field(default=60, gt=0, le=1800)


class Phd2GuiderChoice(BaseModel):
    """Guide with PHD2 through its event server (PHD2: Tools > Enable Server)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["phd2"]
    host: str = Field(default="localhost", min_length=1)
    port: int | None = Field(
        default=None, ge=1, le=65535, description="default: 4400 + instance - 1 (PHD2's rule)"
    )
    instance: int = Field(default=1, ge=1, le=100, description="PHD2's instance number")
    settle: Phd2Settle = Field(default_factory=Phd2Settle)
    call_timeout_s: float = Field(default=10.0, gt=0, description="deadline of each call")
    start_timeout_s: float = Field(
        default=300.0, gt=0, description="time allowed from `guide` to guiding (calibration)"
    )
    reconnect_max_s: float = Field(
        default=10.0, gt=0, description="longest wait between reconnection attempts"
    )
    pixel_scale_arcsec: float | None = Field(
        default=None, gt=0, description="guide px scale when PHD2 does not know it (for RMS)"
    )

    @property
    def tcp_port(self) -> int:
        return self.port if self.port is not None else 4400 + self.instance - 1


DEGREE_FORMS = "47.375, +47 22 30, 47:22:30, 47d22m30s or 47°22'30\""
"""The forms a site's latitude or longitude may be typed in."""


def parse_degrees(value: object, what: str) -> object:
    """Degrees from sexagesimal or decimal text (a number passes through for the range check).

    Raises ValueError naming `what` and the forms that work."""
    if not isinstance(value, str):
        return value
    cleaned = value.strip().replace("−", "-").replace("′", "'").replace("″", '"')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            degrees = float(Angle(cleaned, unit=u.deg).deg)
    except (ValueError, TypeError, ArithmeticError, u.UnitsError) as e:
        raise ValueError(f"cannot read {value!r} as a {what}: give it as {DEGREE_FORMS}") from e
    if not cleaned or not math.isfinite(degrees):
        raise ValueError(f"cannot read {value!r} as a {what}: give it as {DEGREE_FORMS}")
    return degrees


def _degrees_schema(low: float, high: float) -> WithJsonSchema:
    """A number in [low, high] or the text of one (sexagesimal), as forms and clients see it."""
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": low, "maximum": high},
                {"type": "string", "examples": ["+47 22 30", "-71:14:30", "8d32m"]},
            ]
        },
        mode="validation",
    )


class ObservingSite(BaseModel):
    """Where the observatory stands, kept in the profile as NINA keeps it. Nightowl uses the
    site the mount reports and this one when the mount reports none (or there is no mount)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latitude_deg: Annotated[float, _degrees_schema(-90, 90)] = Field(
        ge=-90, le=90, description="north positive; decimal degrees or +47 22 30"
    )
    longitude_deg: Annotated[float, _degrees_schema(-180, 180)] = Field(
        ge=-180, le=180, description="east positive (as ASCOM); decimal degrees or 8 32 00"
    )
    elevation_m: float = Field(
        default=0.0, ge=-500, le=9000, description="height above sea level in metres"
    )

    @field_validator("latitude_deg", mode="before")
    @classmethod
    def _latitude_text(cls, value: object) -> object:
        return parse_degrees(value, "latitude")

    @field_validator("longitude_deg", mode="before")
    @classmethod
    def _longitude_text(cls, value: object) -> object:
        return parse_degrees(value, "longitude")


class EquipmentProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    camera: CameraAddress | None = None
    guide_camera: CameraAddress | None = None
    mount: MountAddress | None = None
    focuser: FocuserAddress | None = None
    filter_wheel: FilterWheelAddress | None = None
    safety_monitor: DeviceAddress | None = None
    dome: DomeAddress | None = None
    cover_calibrator: CoverCalibratorAddress | None = None
    rotator: RotatorAddress | None = None
    weather: WeatherAddress | None = None
    switch: DeviceAddress | None = None
    guider: NativeGuiderChoice | Phd2GuiderChoice = Field(
        default_factory=NativeGuiderChoice,
        discriminator="kind",
        description="who guides: native (guide_camera + mount) or phd2",
    )
    acceptance: AcceptanceRules = Field(
        default_factory=AcceptanceRules,
        description="frame quality rules; rejected frames are kept with their reason",
    )
    site: ObservingSite | None = Field(
        default=None, description="where the observatory stands, when the mount reports no site"
    )


def load_profile(path: Path) -> EquipmentProfile:
    """Read and validate a profile file; `ProfileError` names the file and the bad field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ProfileError(f"cannot read equipment profile {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ProfileError(f"equipment profile {path} is not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ProfileError(f"equipment profile {path} must be a mapping of roles to devices")
    try:
        return EquipmentProfile.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ProfileError(f"equipment profile {path} is invalid: {problems}") from e
