"""Device protocols and their frozen status snapshots.

Every method is async, runs with a deadline computed from its arguments, and raises
`drivers.errors.DeviceError` subclasses. Snapshots are immutable values: a caller may keep
one (e.g. in a frame's record) without it changing underneath. Angles carry their unit in
the name; right ascension is in hours as ASCOM has it. Image axes are ``(y, x)``.
"""

from __future__ import annotations

import asyncio
import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from drivers.profile import DomeGeometry


class CameraState(enum.Enum):
    IDLE = 0
    WAITING = 1
    EXPOSING = 2
    READING = 3
    DOWNLOAD = 4
    ERROR = 5


class SensorType(enum.Enum):
    MONOCHROME = 0
    COLOR = 1
    RGGB = 2
    CMYG = 3
    CMYG2 = 4
    LRGB = 5


class PierSide(enum.Enum):
    UNKNOWN = -1
    EAST = 0
    WEST = 1


class GuideDirection(enum.Enum):
    NORTH = 0
    SOUTH = 1
    EAST = 2
    WEST = 3


@dataclass(frozen=True)
class RaDec:
    """An equatorial position in the mount's equatorial system (J2000 for our simulator)."""

    ra_hours: float
    dec_deg: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.ra_hours < 24.0:
            raise ValueError(f"ra_hours must be in [0, 24), got {self.ra_hours}")
        if not -90.0 <= self.dec_deg <= 90.0:
            raise ValueError(f"dec_deg must be in [-90, 90], got {self.dec_deg}")

    @property
    def ra_deg(self) -> float:
        return self.ra_hours * 15.0

    def separation_deg(self, other: RaDec) -> float:
        """Great-circle distance (haversine form: accurate down to arcseconds)."""
        ra1, dec1, ra2, dec2 = map(
            math.radians, (self.ra_deg, self.dec_deg, other.ra_deg, other.dec_deg)
        )
        h = (
            math.sin((dec2 - dec1) / 2) ** 2
            + math.cos(dec1) * math.cos(dec2) * math.sin((ra2 - ra1) / 2) ** 2
        )
        return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


@dataclass(frozen=True)
class CameraInfo:
    """What a camera is and can do; read once when it connects."""

    name: str
    sensor_name: str
    width_px: int
    height_px: int
    pixel_size_x_um: float
    pixel_size_y_um: float
    max_bin_x: int
    max_bin_y: int
    sensor_type: SensorType
    bayer_offset_x: int | None
    bayer_offset_y: int | None
    gains: tuple[str, ...] | None
    offsets: tuple[str, ...] | None
    readout_modes: tuple[str, ...]
    can_set_temperature: bool
    can_get_cooler_power: bool
    can_abort_exposure: bool
    can_pulse_guide: bool
    has_shutter: bool
    exposure_min_s: float
    exposure_max_s: float
    max_adu: int
    electrons_per_adu: float | None
    full_well_e: float | None


@dataclass(frozen=True)
class CameraStatus:
    state: CameraState
    sensor_temperature_c: float | None
    set_point_c: float | None
    cooler_on: bool | None
    cooler_power_pct: float | None
    gain: int | None
    offset: int | None
    bin_x: int
    bin_y: int
    readout_mode: int | None


@dataclass(frozen=True, eq=False)
class RawFrame:
    """One downloaded exposure with the camera state needed for its FITS header.

    `data` is ``uint16`` with axes ``(y, x)``; `status` was read just before the shutter opened.
    """

    data: npt.NDArray[np.uint16]
    exposure_start_utc: datetime
    exposure_s: float
    light: bool
    info: CameraInfo
    status: CameraStatus


@dataclass(frozen=True)
class MountInfo:
    name: str
    alignment_mode: int
    equatorial_system: int
    can_park: bool
    can_pulse_guide: bool
    can_sync: bool
    can_set_tracking: bool
    site_latitude_deg: float | None
    site_longitude_deg: float | None
    site_elevation_m: float | None
    focal_length_m: float | None
    aperture_m: float | None


@dataclass(frozen=True)
class MountStatus:
    position: RaDec
    altitude_deg: float | None
    azimuth_deg: float | None
    sidereal_time_hours: float | None
    tracking: bool
    slewing: bool
    at_park: bool
    at_home: bool | None
    side_of_pier: PierSide
    is_pulse_guiding: bool | None
    guide_rate_ra_deg_s: float | None
    guide_rate_dec_deg_s: float | None


@dataclass(frozen=True)
class FocuserInfo:
    name: str
    absolute: bool
    max_step: int
    max_increment: int
    step_size_um: float | None


@dataclass(frozen=True)
class FocuserStatus:
    position: int
    is_moving: bool
    temperature_c: float | None


@dataclass(frozen=True)
class FilterWheelInfo:
    name: str
    names: tuple[str, ...]
    focus_offsets: tuple[int, ...]


@dataclass(frozen=True)
class FilterWheelStatus:
    position: int | None
    """None while the wheel is moving."""
    filter_name: str | None


@dataclass(frozen=True)
class SafetyInfo:
    name: str


@dataclass(frozen=True)
class SafetyStatus:
    is_safe: bool


class ShutterState(enum.Enum):
    """A dome shutter or roll-off roof, with ASCOM's values."""

    OPEN = 0
    CLOSED = 1
    OPENING = 2
    CLOSING = 3
    ERROR = 4


@dataclass(frozen=True)
class DomeInfo:
    """`can_set_azimuth` is false for a roll-off roof: a dome without azimuth."""

    name: str
    can_set_azimuth: bool
    can_set_shutter: bool
    can_park: bool
    can_find_home: bool
    can_slave: bool


@dataclass(frozen=True)
class DomeStatus:
    shutter: ShutterState | None
    """None when the dome cannot report its shutter."""
    azimuth_deg: float | None
    """None for a roll-off roof."""
    slewing: bool
    at_park: bool | None
    at_home: bool | None


class CoverState(enum.Enum):
    """A dust cover (flip-flat), with ASCOM's CoverStatus values."""

    NOT_PRESENT = 0
    CLOSED = 1
    MOVING = 2
    OPEN = 3
    UNKNOWN = 4
    ERROR = 5


class CalibratorState(enum.Enum):
    """A flat panel's light, with ASCOM's CalibratorStatus values."""

    NOT_PRESENT = 0
    OFF = 1
    NOT_READY = 2
    READY = 3
    UNKNOWN = 4
    ERROR = 5


@dataclass(frozen=True)
class CoverCalibratorInfo:
    name: str
    max_brightness: int
    """0 when there is no calibrator."""


@dataclass(frozen=True)
class CoverCalibratorStatus:
    cover: CoverState
    calibrator: CalibratorState
    brightness: int | None
    """None when there is no calibrator."""


@dataclass(frozen=True)
class RotatorInfo:
    name: str
    can_reverse: bool
    step_size_deg: float | None


@dataclass(frozen=True)
class RotatorStatus:
    position_deg: float
    """The synced position: the sky position angle once synced to a plate solve."""
    mechanical_position_deg: float
    is_moving: bool


@dataclass(frozen=True)
class WeatherInfo:
    name: str


@dataclass(frozen=True)
class WeatherReading:
    """One reading of an ObservingConditions device; None where the station has no sensor.

    Units as ASCOM has them: percent, degrees Celsius, hPa, mm/h, lux, mag/arcsec², arcsec,
    degrees (wind from, clockwise from north), m/s.
    """

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
    wind_direction_deg: float | None = None
    wind_gust_m_s: float | None = None
    wind_speed_m_s: float | None = None


@dataclass(frozen=True)
class SwitchChannel:
    """One switch of a Switch device: boolean when its range is 0..1 in steps of 1."""

    id: int
    name: str
    description: str
    can_write: bool
    minimum: float
    maximum: float
    step: float

    @property
    def boolean(self) -> bool:
        return self.minimum == 0.0 and self.maximum == 1.0 and self.step == 1.0


@dataclass(frozen=True)
class SwitchInfo:
    name: str
    channels: tuple[SwitchChannel, ...]


@dataclass(frozen=True)
class SwitchStatus:
    values: tuple[float, ...]
    """The value of every channel, in `SwitchInfo.channels` order."""


@runtime_checkable
class Device(Protocol):
    """What every device offers: a role name, connect/disconnect and a status snapshot."""

    @property
    def role(self) -> str: ...

    @property
    def location(self) -> str:
        """Where the device is reached, for people (e.g. ``http://host:11111 #0``)."""
        ...

    @property
    def connected(self) -> bool:
        """Whether the last connect succeeded and no disconnect followed (no device call)."""
        ...

    @property
    def info(self) -> object:
        """The static facts read at connect; raises `NotConnected` before that."""
        ...

    async def connect(self) -> object: ...

    async def disconnect(self) -> None: ...

    async def status(self) -> object: ...


class Camera(Device, Protocol):
    @property
    def info(self) -> CameraInfo: ...

    async def status(self) -> CameraStatus: ...

    async def set_cooler(self, on: bool, set_point_c: float | None = None) -> None: ...

    async def set_gain(self, gain: int) -> None: ...

    async def set_offset(self, offset: int) -> None: ...

    async def set_binning(self, bin_x: int, bin_y: int) -> None: ...

    async def set_readout_mode(self, mode: int) -> None: ...

    async def expose(
        self, exposure_s: float, *, light: bool, started: asyncio.Event | None = None
    ) -> RawFrame:
        """Expose and download; `started` is set once the camera has accepted the exposure."""
        ...

    async def abort(self) -> None: ...


class Mount(Device, Protocol):
    @property
    def info(self) -> MountInfo: ...

    async def status(self) -> MountStatus: ...

    async def unpark(self) -> None: ...

    async def park(self) -> None: ...

    async def set_tracking(self, on: bool) -> None: ...

    async def slew(self, target: RaDec) -> None: ...

    async def abort_slew(self) -> None: ...

    async def sync(self, position: RaDec) -> None: ...

    async def pulse_guide(self, direction: GuideDirection, duration_ms: int) -> None: ...

    async def set_guide_rates(self, ra_deg_s: float, dec_deg_s: float) -> None: ...


class Focuser(Device, Protocol):
    @property
    def info(self) -> FocuserInfo: ...

    async def status(self) -> FocuserStatus: ...

    async def move_to(self, position: int) -> None: ...

    async def halt(self) -> None: ...


class FilterWheel(Device, Protocol):
    @property
    def info(self) -> FilterWheelInfo: ...

    async def status(self) -> FilterWheelStatus: ...

    async def select(self, filter_name: str) -> None: ...


class SafetyMonitor(Device, Protocol):
    @property
    def info(self) -> SafetyInfo: ...

    async def status(self) -> SafetyStatus: ...


class Dome(Device, Protocol):
    """A dome or roll-off roof. Shutter and slew methods return once the device reports the
    end state and raise `DeviceTimeout` when it does not within the profile's timeout, or
    `OperationFailed` when the shutter reports an error."""

    @property
    def info(self) -> DomeInfo: ...

    @property
    def geometry(self) -> DomeGeometry:
        """Where the mount stands in the dome (the profile's), for slaving."""
        ...

    async def status(self) -> DomeStatus: ...

    async def open_shutter(self) -> None: ...

    async def close_shutter(self) -> None: ...

    async def slew_to_azimuth(self, azimuth_deg: float) -> None: ...

    async def abort_slew(self) -> None: ...

    async def park(self) -> None: ...

    async def find_home(self) -> None: ...


class CoverCalibrator(Device, Protocol):
    """A dust cover and/or flat panel; methods return once the device reports the end state."""

    @property
    def info(self) -> CoverCalibratorInfo: ...

    async def status(self) -> CoverCalibratorStatus: ...

    async def open_cover(self) -> None: ...

    async def close_cover(self) -> None: ...

    async def calibrator_on(self, brightness: int) -> None: ...

    async def calibrator_off(self) -> None: ...


class Rotator(Device, Protocol):
    @property
    def info(self) -> RotatorInfo: ...

    async def status(self) -> RotatorStatus: ...

    async def move_to(self, position_deg: float) -> None:
        """Move to a synced position (degrees) and wait until the rotator stops there."""
        ...

    async def move_mechanical(self, position_deg: float) -> None: ...

    async def sync(self, position_deg: float) -> None:
        """Declare the current position to be `position_deg` (e.g. a plate solve's angle)."""
        ...

    async def halt(self) -> None: ...


class WeatherStation(Device, Protocol):
    """An ASCOM ObservingConditions device."""

    @property
    def info(self) -> WeatherInfo: ...

    async def status(self) -> WeatherReading: ...


class Switch(Device, Protocol):
    @property
    def info(self) -> SwitchInfo: ...

    async def status(self) -> SwitchStatus: ...

    async def set_switch(self, channel: int, value: float) -> None:
        """Set a channel (a boolean channel takes 0 or 1); `ValueError` outside its range."""
        ...


class GuiderState(enum.Enum):
    """What a guider is doing; `LOST` keeps looping and trying to find its stars again."""

    STOPPED = "stopped"
    ACQUIRING = "acquiring"
    CALIBRATING = "calibrating"
    GUIDING = "guiding"
    LOST = "lost"


@dataclass(frozen=True)
class GuidePulse:
    direction: GuideDirection
    duration_ms: int


@dataclass(frozen=True)
class GuideRms:
    """Root mean square of the guide error from the lock position (not about its mean, so a
    steady lag counts), over `steps` guide steps."""

    ra_arcsec: float
    dec_arcsec: float
    total_arcsec: float
    steps: int


@dataclass(frozen=True)
class GuideStep:
    """One guide frame: where the guide stars were against the lock and what was sent.

    time_utc: when the guide exposure started.
    dy_px, dx_px: mean guide-star position minus the lock position, image px, axes (y, x).
    ra_arcsec, dec_arcsec: the same error along the mount's axes (calibrated directions).
    latency_s: from the end of the exposure to the first pulse sent (None without a pulse);
    processing_s: from the frame in hand to the pulses sent (or to the decision not to).
    """

    frame: int
    time_utc: datetime
    dy_px: float
    dx_px: float
    ra_arcsec: float
    dec_arcsec: float
    stars: int
    ra_pulse: GuidePulse | None
    dec_pulse: GuidePulse | None
    latency_s: float | None
    processing_s: float

    @property
    def distance_px(self) -> float:
        return float(np.hypot(self.dy_px, self.dx_px))


@dataclass(frozen=True)
class StarLost:
    """No guide star where it was expected; no correction was sent for this frame."""

    frame: int
    time_utc: datetime
    consecutive_frames: int
    reason: str


@dataclass(frozen=True)
class GuideStarsSelected:
    """Guide stars were (re)chosen: at start, after calibration, or after a lost lock.

    `reacquired` is true when the old stars were found again (the lock position is kept);
    false when new stars were chosen and the lock moved to where they are now.
    """

    frame: int
    time_utc: datetime
    stars: int
    lock_y_px: float
    lock_x_px: float
    reacquired: bool


@dataclass(frozen=True)
class GuideCalibrated:
    """Pulse-guide calibration in use: image angle (from +x towards +y, degrees) in which a
    West / North pulse moves the stars, and how fast (px per second of pulse)."""

    pier_side: PierSide
    declination_deg: float
    ra_angle_deg: float
    dec_angle_deg: float
    ra_rate_px_s: float
    dec_rate_px_s: float
    measured: bool
    """False when reused or derived (another declination or pier side) rather than measured."""


@dataclass(frozen=True)
class Dithered:
    dy_px: float
    dx_px: float
    lock_y_px: float
    lock_x_px: float


@dataclass(frozen=True)
class SettleDone:
    success: bool
    duration_s: float
    distance_px: float | None
    message: str


@dataclass(frozen=True)
class GuiderFault:
    """A device call failed during guiding; the guider retries unless `GuidingStopped` follows."""

    time_utc: datetime
    message: str
    consecutive: int


@dataclass(frozen=True)
class GuidingStopped:
    time_utc: datetime
    reason: str
    error: bool


GuideEvent: TypeAlias = (
    GuideStep
    | StarLost
    | GuideStarsSelected
    | GuideCalibrated
    | Dithered
    | SettleDone
    | GuiderFault
    | GuidingStopped
)


class Guider(Protocol):
    """Keeps guide stars locked; implemented by the native guider and the PHD2 client.

    Errors are `drivers.guider.errors.GuiderError`s (a `DeviceError` with device "guider").
    Events go to every queue from `subscribe()`; a full queue drops its oldest event rather
    than stall the guide loop.
    """

    @property
    def state(self) -> GuiderState: ...

    @property
    def lock_position(self) -> tuple[float, float] | None:
        """The lock position (y, x) in guide-camera px, None until stars are selected."""
        ...

    async def start(self) -> None:
        """Return once guiding (stars selected, calibrated); raise `GuiderError` if it cannot."""
        ...

    async def stop(self) -> None:
        """Stop promptly (aborting a running exposure); safe to call when stopped."""
        ...

    async def dither(self, offset_px: float = 5.0, *, ra_only: bool = False) -> tuple[float, float]:
        """Move the lock by a random offset of at most `offset_px`; return it as (dy, dx) px.

        Does not wait: call `settle` next. Raises `NotGuiding` when not guiding.
        """
        ...

    async def settle(
        self, tolerance_px: float = 1.5, min_time_s: float = 10.0, timeout_s: float = 40.0
    ) -> None:
        """Wait until the error stays under `tolerance_px` for `min_time_s`.

        Raises `SettleTimeout` after `timeout_s`, `NotGuiding` if guiding stops meanwhile.
        """
        ...

    def rms(self) -> GuideRms | None:
        """RMS error since the last `reset_rms()` (None before the first guide step)."""
        ...

    def reset_rms(self) -> None:
        """Start a new RMS window, e.g. when an exposure starts, so its record gets its own."""
        ...

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[GuideEvent]: ...

    def unsubscribe(self, queue: asyncio.Queue[GuideEvent]) -> None: ...
