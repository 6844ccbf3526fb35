"""Ephemerides with astropy, offline: time and Earth-orientation data come from installed packages.

astropy normally downloads fresh IERS tables when its bundled ones are older than 30 days, and
raises for dates past the tables. An observatory has no guaranteed internet, so Nightowl uses
the tables of the `astropy-iers-data` package only, and degrades to a warning (at most a few
arcseconds of error in sidereal time) past their end instead of failing a night.

Conditions and triggers ask for altitudes and twilight times often, and astropy's full AltAz
transform costs milliseconds per call. So astropy is asked only for what changes slowly, once
per UTC day and cached: Greenwich apparent sidereal time at the day's two ends (interpolated
linearly between them) and the Sun's apparent place at five nodes (interpolated linearly).
A target's apparent place (J2000 precessed and nutated to the true equator and equinox of date,
with aberration) is computed once per target and day. Altitude and azimuth then follow from
spherical trigonometry on numpy arrays: microseconds per time.

All altitudes are geometric: no refraction (which lifts a star ~0.5 deg at the horizon and
~0.03 deg at 30 deg), as astropy's AltAz gives without pressure. Twilight altitudes are defined
on that geometric altitude of the Sun's centre. Polar motion (under an arcsecond) is left out;
the Sun's diurnal parallax (9 arcseconds) is applied. Against astropy's full AltAz the altitudes
agree to about an arcsecond. Azimuths run from north through east. Times are timezone-aware
datetimes or, for the vectorised functions, POSIX seconds (`unix_s`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import astropy.units as u
import numpy as np
import numpy.typing as npt
from astropy.coordinates import TETE, EarthLocation, SkyCoord, get_body, get_sun
from astropy.time import Time
from astropy.utils import data as astropy_data
from astropy.utils import iers

from drivers.base import MountInfo, RaDec

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

CIVIL_TWILIGHT_DEG = -6.0
NAUTICAL_TWILIGHT_DEG = -12.0
ASTRONOMICAL_TWILIGHT_DEG = -18.0
SUNRISE_SUNSET_DEG = -0.833
"""Geometric altitude of the Sun's centre when its upper limb touches a refracted horizon."""

_DAY_S = 86400.0
_SIDEREAL_DAY_S = 86164.0905
_SUN_NODES_S = np.linspace(0.0, _DAY_S, 5)
_SUN_PARALLAX_DEG = 8.794 / 3600.0
"""The Sun seen from the surface instead of the Earth's centre is this much lower at the horizon."""
_GRID_S = 600.0
"""Search grid: finer than any rise/set pair of a target grazing its limit that matters."""
_TOLERANCE_S = 0.5
_DEFAULT_SEARCH_H = 36.0
_TWO_PI = 2.0 * math.pi


def configure_astropy_offline() -> None:
    """Forbid astropy any network access; call once at process start (idempotent)."""
    astropy_data.conf.allow_internet = False
    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"


def load_earth_orientation() -> None:
    """Read astropy's Earth orientation (IERS) table now, off any event loop: the first
    sidereal time otherwise pays for it (about a second, several on a busy machine), and a
    daemon's first run check or plan with it."""
    iers.earth_orientation_table.get()


def airmass(altitude_deg: float) -> float | None:
    """Airmass at an apparent altitude (Pickering 2002; good to the horizon), None below it."""
    if altitude_deg <= 0.0:
        return None
    h = altitude_deg
    return 1.0 / math.sin(math.radians(h + 244.0 / (165.0 + 47.0 * h**1.1)))


def unix_s(when: datetime) -> float:
    """POSIX seconds of an aware datetime; a naive one raises ValueError (its zone is a guess)."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {when.isoformat()}")
    return when.timestamp()


def from_unix_s(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class Site:
    """Where the observatory stands; longitude east positive, as ASCOM reports it."""

    latitude_deg: float
    longitude_deg: float
    elevation_m: float = 0.0

    def __post_init__(self) -> None:
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise ValueError(f"latitude_deg must be in [-90, 90], got {self.latitude_deg}")
        if not -180.0 <= self.longitude_deg <= 360.0:
            raise ValueError(f"longitude_deg must be in [-180, 360], got {self.longitude_deg}")
        if not math.isfinite(self.elevation_m):
            raise ValueError(f"elevation_m must be finite, got {self.elevation_m}")

    @classmethod
    def from_mount_info(cls, info: MountInfo) -> Site:
        """The site a mount reports; ValueError when it reports no latitude or longitude."""
        if info.site_latitude_deg is None or info.site_longitude_deg is None:
            raise ValueError(f"mount {info.name!r} reports no site latitude/longitude")
        return cls(info.site_latitude_deg, info.site_longitude_deg, info.site_elevation_m or 0.0)

    @property
    def earth_location(self) -> EarthLocation:
        return EarthLocation(
            lat=self.latitude_deg * u.deg,
            lon=self.longitude_deg * u.deg,
            height=self.elevation_m * u.m,
        )


class Window(NamedTuple):
    """A time interval [start, end), both aware UTC; unpacks as ``start, end``."""

    start: datetime
    end: datetime

    @property
    def duration_s(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Horizon:
    """A custom horizon: the lowest usable altitude per azimuth, linear between points.

    Interpolation wraps around north (the point before 0 deg is the last one below 360).
    Build it with `from_points` or `from_text`; a single point is a flat horizon.
    """

    azimuths_deg: tuple[float, ...]
    altitudes_deg: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.azimuths_deg:
            raise ValueError("a horizon needs at least one (azimuth, altitude) point")
        if len(self.azimuths_deg) != len(self.altitudes_deg):
            raise ValueError("a horizon needs as many altitudes as azimuths")
        for i, (az, alt) in enumerate(zip(self.azimuths_deg, self.altitudes_deg, strict=True)):
            if not (math.isfinite(az) and 0.0 <= az < 360.0):
                raise ValueError(f"horizon point {i + 1}: azimuth {az} is outside [0, 360)")
            if not (math.isfinite(alt) and -90.0 <= alt <= 90.0):
                raise ValueError(f"horizon point {i + 1}: altitude {alt} is outside [-90, 90]")
        if any(b <= a for a, b in zip(self.azimuths_deg, self.azimuths_deg[1:], strict=False)):
            raise ValueError("horizon azimuths must be strictly increasing")

    @classmethod
    def flat(cls, altitude_deg: float = 0.0) -> Horizon:
        return cls((0.0,), (float(altitude_deg),))

    @classmethod
    def from_points(cls, points: Iterable[tuple[float, float]]) -> Horizon:
        """Points in any order; azimuth 360 is north again. ValueError names a bad point."""
        labelled: list[tuple[str, float, float]] = []
        for i, point in enumerate(points, start=1):
            try:
                az, alt = (float(v) for v in point)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"horizon point {i}: expected (azimuth, altitude), got {point!r}"
                ) from e
            labelled.append((f"horizon point {i}", az, alt))
        return cls._from_labelled(labelled)

    @classmethod
    def from_text(cls, text: str) -> Horizon:
        """A horizon file as NINA reads it: "azimuth altitude" per line, separated by spaces,
        tabs, commas or semicolons; '#' notes, blank lines and a column header before the
        first point pass; an azimuth repeated on the next line replaces the one before (a
        step, as in NINA). MountWizzard4's `.hpts` (JSON [altitude, azimuth] pairs) is read too.
        ValueError names the line of anything else."""
        if text.lstrip().startswith("["):
            return cls._from_mw4(text)
        labelled: list[tuple[str, float, float]] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            fields = re.split(r"[\s,;]+", raw.split("#", 1)[0].strip())
            fields = [f for f in fields if f]
            if not fields:
                continue
            if not labelled and not any(_is_number(f) for f in fields):
                continue  # a column header such as "Az El"
            try:
                if len(fields) != 2:
                    raise ValueError(f"{len(fields)} fields")
                az, alt = float(fields[0]), float(fields[1])
            except ValueError as e:
                raise ValueError(
                    f"horizon line {number}: expected two numbers 'azimuth altitude', got {raw!r}"
                ) from e
            labelled.append((f"horizon line {number}", az, alt))
        return cls._from_labelled(labelled)

    @classmethod
    def _from_mw4(cls, text: str) -> Horizon:
        try:
            pairs = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"a MountWizzard4 horizon (.hpts) that is not JSON: {e}") from e
        if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 for p in pairs
        ):
            raise ValueError(
                "a MountWizzard4 horizon (.hpts) must be a list of [altitude, azimuth]"
            )
        return cls._from_labelled(
            (f"horizon point {i}", float(az), float(alt))
            for i, (alt, az) in enumerate(pairs, start=1)
        )

    @classmethod
    def _from_labelled(cls, points: Iterable[tuple[str, float, float]]) -> Horizon:
        by_azimuth: dict[float, float] = {}
        previous: float | None = None
        for where, az, alt in points:
            if az == previous:
                log.warning("%s: azimuth %g again: its altitude replaces", where, az)
                by_azimuth.pop(az % 360.0, None)
            previous = az
            if not (math.isfinite(az) and 0.0 <= az <= 360.0):
                raise ValueError(f"{where}: azimuth {az} is outside [0, 360]")
            if not (math.isfinite(alt) and -90.0 <= alt <= 90.0):
                raise ValueError(f"{where}: altitude {alt} is outside [-90, 90]")
            key = az % 360.0
            if key in by_azimuth and by_azimuth[key] != alt:
                north = " (0 and 360 are both north)" if key == 0.0 else ""
                raise ValueError(
                    f"{where}: azimuth {az} already has altitude {by_azimuth[key]}{north}"
                )
            by_azimuth[key] = alt
        if not by_azimuth:
            raise ValueError("a horizon needs at least one (azimuth, altitude) point")
        ordered = sorted(by_azimuth.items())
        return cls(tuple(az for az, _ in ordered), tuple(alt for _, alt in ordered))

    @functools.cached_property
    def _table(self) -> tuple[FloatArray, FloatArray]:
        return np.asarray(self.azimuths_deg), np.asarray(self.altitudes_deg)

    def altitudes_at(self, azimuths_deg: npt.ArrayLike) -> FloatArray:
        xp, fp = self._table
        az = np.asarray(azimuths_deg, dtype=np.float64)
        return np.asarray(np.interp(az, xp, fp, period=360.0), dtype=np.float64)

    def altitude_at(self, azimuth_deg: float) -> float:
        return float(self.altitudes_at(azimuth_deg))

    def raised(self, offset_deg: float) -> Horizon:
        """The same horizon `offset_deg` higher (a safety margin over trees and roofs)."""
        return Horizon(
            self.azimuths_deg,
            tuple(min(90.0, max(-90.0, alt + offset_deg)) for alt in self.altitudes_deg),
        )


Limit = float | Horizon


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


"""The altitude a target must be above: degrees everywhere, or a custom horizon."""


@dataclass(frozen=True)
class _DayTable:
    gast0_rad: float
    gast_rate_rad_s: float
    sun_ra_rad: FloatArray
    sun_dec_rad: FloatArray


@functools.lru_cache(maxsize=64)
def _day_table(day: int) -> _DayTable:
    """Sidereal time and the Sun's apparent place over one UTC day (POSIX day number)."""
    start_s = day * _DAY_S
    times = Time(start_s + _SUN_NODES_S, format="unix")
    gast = times[[0, -1]].sidereal_time("apparent", "greenwich").rad
    turn = (gast[1] - gast[0]) % _TWO_PI + _TWO_PI
    sun = get_sun(times).transform_to(TETE(obstime=times))
    return _DayTable(
        gast0_rad=float(gast[0]),
        gast_rate_rad_s=float(turn / _DAY_S),
        sun_ra_rad=np.unwrap(np.asarray(sun.ra.rad, dtype=np.float64)),
        sun_dec_rad=np.asarray(sun.dec.rad, dtype=np.float64),
    )


@functools.lru_cache(maxsize=1024)
def _apparent_place(ra_hours: float, dec_deg: float, day: int) -> tuple[float, float]:
    """J2000 -> true equator and equinox at the day's middle; drifts < 1 arcsec per day."""
    obstime = Time((day + 0.5) * _DAY_S, format="unix")
    coord = SkyCoord(ra=ra_hours * 15.0 * u.deg, dec=dec_deg * u.deg, frame="icrs")
    apparent = coord.transform_to(TETE(obstime=obstime))
    return float(apparent.ra.rad), float(apparent.dec.rad)


def _days(t: FloatArray) -> list[tuple[int, npt.NDArray[np.bool_]]]:
    days = np.floor(t / _DAY_S).astype(np.int64)
    return [(int(d), days == d) for d in np.unique(days)]


def _times(times_unix_s: npt.ArrayLike) -> FloatArray:
    t = np.atleast_1d(np.asarray(times_unix_s, dtype=np.float64))
    if not np.all(np.isfinite(t)):
        raise ValueError("times must be finite POSIX seconds")
    return t


def _last_rad(site: Site, t: FloatArray) -> FloatArray:
    out = np.empty_like(t)
    for day, m in _days(t):
        table = _day_table(day)
        out[m] = table.gast0_rad + table.gast_rate_rad_s * (t[m] - day * _DAY_S)
    return np.mod(out + math.radians(site.longitude_deg), _TWO_PI)


def _target_place(radec: RaDec, t: FloatArray) -> tuple[FloatArray, FloatArray]:
    ra = np.empty_like(t)
    dec = np.empty_like(t)
    for day, m in _days(t):
        ra[m], dec[m] = _apparent_place(radec.ra_hours, radec.dec_deg, day)
    return ra, dec


def _sun_place(t: FloatArray) -> tuple[FloatArray, FloatArray]:
    ra = np.empty_like(t)
    dec = np.empty_like(t)
    for day, m in _days(t):
        table = _day_table(day)
        into_day = t[m] - day * _DAY_S
        ra[m] = np.interp(into_day, _SUN_NODES_S, table.sun_ra_rad)
        dec[m] = np.interp(into_day, _SUN_NODES_S, table.sun_dec_rad)
    return ra, dec


def _wrap_pi(angle_rad: FloatArray) -> FloatArray:
    return np.mod(angle_rad + math.pi, _TWO_PI) - math.pi


def _horizontal_deg(
    hour_angle_rad: FloatArray, dec_rad: FloatArray, site: Site
) -> tuple[FloatArray, FloatArray]:
    lat = math.radians(site.latitude_deg)
    sin_alt = math.sin(lat) * np.sin(dec_rad) + math.cos(lat) * np.cos(dec_rad) * np.cos(
        hour_angle_rad
    )
    altitude = np.degrees(np.arcsin(np.clip(sin_alt, -1.0, 1.0)))
    azimuth = np.degrees(
        np.arctan2(
            -np.cos(dec_rad) * np.sin(hour_angle_rad),
            np.sin(dec_rad) * math.cos(lat)
            - np.cos(dec_rad) * math.sin(lat) * np.cos(hour_angle_rad),
        )
    )
    return altitude, np.mod(azimuth, 360.0)


def alt_az_many(
    radec: RaDec, site: Site, times_unix_s: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Geometric (altitude_deg, azimuth_deg) of a J2000 position at many POSIX times."""
    t = _times(times_unix_s)
    ra, dec = _target_place(radec, t)
    return _horizontal_deg(_last_rad(site, t) - ra, dec, site)


def alt_az_deg(radec: RaDec, site: Site, when: datetime) -> tuple[float, float]:
    """Geometric (altitude_deg, azimuth_deg) of a J2000 position."""
    altitude, azimuth = alt_az_many(radec, site, unix_s(when))
    return float(altitude[0]), float(azimuth[0])


def altitude_deg(radec: RaDec, site: Site, when: datetime) -> float:
    return alt_az_deg(radec, site, when)[0]


def local_sidereal_time_hours(site: Site, when: datetime) -> float:
    """Local apparent sidereal time in [0, 24)."""
    return float(np.degrees(_last_rad(site, _times(unix_s(when)))[0]) / 15.0) % 24.0


def _hour_angle_rad(radec: RaDec, site: Site, t: FloatArray) -> FloatArray:
    ra, _ = _target_place(radec, t)
    return _wrap_pi(_last_rad(site, t) - ra)


def hour_angle_hours(radec: RaDec, site: Site, when: datetime) -> float:
    """Hour angle in [-12, 12): negative east of the meridian (rising), positive west."""
    return float(np.degrees(_hour_angle_rad(radec, site, _times(unix_s(when)))[0]) / 15.0)


_MOON_STEP_S = 600.0
_TRANSIT_PRECISION_S = 0.05


@functools.lru_cache(maxsize=4096)
def _moon_gcrs(step: int, site: Site) -> SkyCoord:
    when = Time(step * _MOON_STEP_S, format="unix")
    return get_body("moon", when, site.earth_location)


def moon_separation_deg(radec: RaDec, site: Site, when: datetime) -> float:
    """Distance on the sky from the target to the Moon as seen from the site (topocentric).

    The Moon's place comes from astropy's built-in ephemeris (no download), on a 10 min grid:
    it moves about 0.1 deg in that time, far below any useful separation limit.
    """
    moon = _moon_gcrs(round(unix_s(when) / _MOON_STEP_S), site)
    target = SkyCoord(ra=radec.ra_deg * u.deg, dec=radec.dec_deg * u.deg, frame="icrs")
    return float(moon.separation(target.transform_to(moon.frame)).deg)


def next_transit(radec: RaDec, site: Site, after: datetime) -> datetime:
    """The next upper meridian transit (hour angle 0) at or after `after`, to ~10 ms.

    Asked at a transit (within that precision, either side), it is that transit: a hour angle
    a rounding error past zero does not push the answer a sidereal day on."""
    omega = _TWO_PI / _SIDEREAL_DAY_S
    t0 = unix_s(after)
    hour_angle = float(_hour_angle_rad(radec, site, _times(t0))[0])
    wait_rad = (-hour_angle) % _TWO_PI
    if wait_rad > _TWO_PI - omega * _TRANSIT_PRECISION_S:
        wait_rad -= _TWO_PI
    t = t0 + wait_rad / omega
    for _ in range(2):
        t -= float(_hour_angle_rad(radec, site, _times(t))[0]) / omega
    return from_unix_s(t)


def sun_alt_az_many(site: Site, times_unix_s: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Geometric (altitude_deg, azimuth_deg) of the Sun's centre at many POSIX times."""
    t = _times(times_unix_s)
    ra, dec = _sun_place(t)
    altitude, azimuth = _horizontal_deg(_last_rad(site, t) - ra, dec, site)
    return altitude - _SUN_PARALLAX_DEG * np.cos(np.radians(altitude)), azimuth


def sun_altitude_deg(site: Site, when: datetime) -> float:
    return float(sun_alt_az_many(site, unix_s(when))[0][0])


def _clearance_many(radec: RaDec, site: Site, limit: Limit, t: FloatArray) -> FloatArray:
    altitude, azimuth = alt_az_many(radec, site, t)
    if isinstance(limit, Horizon):
        return altitude - limit.altitudes_at(azimuth)
    return altitude - float(limit)


def clearance_deg(radec: RaDec, site: Site, when: datetime, limit: Limit = 0.0) -> float:
    """Degrees above the limit (an altitude or the horizon at the target's azimuth); < 0 below."""
    return float(_clearance_many(radec, site, limit, _times(unix_s(when)))[0])


def _crossings(
    f: Callable[[FloatArray], FloatArray], start_s: float, end_s: float
) -> tuple[FloatArray, npt.NDArray[np.bool_], bool]:
    """Times where f changes sign in (start, end], whether each is upward, and f(start) >= 0.

    A 10 min grid is evaluated at once, then every bracket is bisected together to 0.5 s.
    """
    n = max(2, math.ceil((end_s - start_s) / _GRID_S) + 1)
    grid = np.linspace(start_s, end_s, n)
    above = f(grid) >= 0.0
    index = np.flatnonzero(above[:-1] != above[1:])
    lo = grid[index]
    hi = grid[index + 1]
    lo_above = above[index]
    while lo.size and float(np.max(hi - lo)) > _TOLERANCE_S:
        mid = 0.5 * (lo + hi)
        same_as_lo = (f(mid) >= 0.0) == lo_above
        lo = np.where(same_as_lo, mid, lo)
        hi = np.where(same_as_lo, hi, mid)
    return 0.5 * (lo + hi), ~lo_above, bool(above[0])


def _next_crossing(
    f: Callable[[FloatArray], FloatArray], after: datetime, rising: bool, search_h: float
) -> datetime | None:
    if not (math.isfinite(search_h) and search_h > 0):
        raise ValueError(f"search_h must be positive, got {search_h}")
    start_s = unix_s(after)
    times, upward, _ = _crossings(f, start_s, start_s + search_h * 3600.0)
    matching = times[upward == rising]
    return from_unix_s(float(matching[0])) if matching.size else None


def next_sun_crossing(
    site: Site,
    after: datetime,
    altitude_deg: float,
    *,
    rising: bool,
    search_h: float = _DEFAULT_SEARCH_H,
) -> datetime | None:
    """When the Sun's centre next passes `altitude_deg` going up (`rising`) or down.

    None when it does not within `search_h` (midnight sun, polar night, a summer night that
    never gets astronomically dark at high latitude).
    """

    def above(t: FloatArray) -> FloatArray:
        return sun_alt_az_many(site, t)[0] - altitude_deg

    return _next_crossing(above, after, rising, search_h)


def next_dusk(
    site: Site,
    after: datetime,
    twilight_deg: float = NAUTICAL_TWILIGHT_DEG,
    *,
    search_h: float = _DEFAULT_SEARCH_H,
) -> datetime | None:
    """The Sun next sinks below `twilight_deg` (e.g. -12 nautical, -18 astronomical)."""
    return next_sun_crossing(site, after, twilight_deg, rising=False, search_h=search_h)


def next_dawn(
    site: Site,
    after: datetime,
    twilight_deg: float = NAUTICAL_TWILIGHT_DEG,
    *,
    search_h: float = _DEFAULT_SEARCH_H,
) -> datetime | None:
    """The Sun next climbs above `twilight_deg`."""
    return next_sun_crossing(site, after, twilight_deg, rising=True, search_h=search_h)


def night_window(
    site: Site,
    when: datetime,
    twilight_deg: float = NAUTICAL_TWILIGHT_DEG,
    *,
    search_h: float = _DEFAULT_SEARCH_H,
) -> Window | None:
    """Tonight's dark time from `when` on: now if already dark, else from the next dusk, to dawn.

    None when it does not get that dark within `search_h`; a polar night ends after `search_h`.
    """
    if sun_altitude_deg(site, when) < twilight_deg:
        start = when
    else:
        dusk = next_dusk(site, when, twilight_deg, search_h=search_h)
        if dusk is None:
            return None
        start = dusk
    dawn = next_dawn(site, start, twilight_deg, search_h=search_h)
    return Window(start, dawn if dawn is not None else start + timedelta(hours=search_h))


def next_rise(
    radec: RaDec,
    site: Site,
    after: datetime,
    limit: Limit = 0.0,
    *,
    search_h: float = _DEFAULT_SEARCH_H,
) -> datetime | None:
    """When the target next climbs above the limit; None if it does not within `search_h`."""
    return _next_crossing(lambda t: _clearance_many(radec, site, limit, t), after, True, search_h)


def next_set(
    radec: RaDec,
    site: Site,
    after: datetime,
    limit: Limit = 0.0,
    *,
    search_h: float = _DEFAULT_SEARCH_H,
) -> datetime | None:
    """When the target next sinks below the limit; None if it does not within `search_h`."""
    return _next_crossing(lambda t: _clearance_many(radec, site, limit, t), after, False, search_h)


def intervals_above(
    radec: RaDec, site: Site, start: datetime, end: datetime, limit: Limit = 0.0
) -> list[Window]:
    """The parts of [start, end) during which the target is above the limit, in order.

    Found on a 10 min grid: a dip below (or peek above) the limit shorter than that, at a
    narrow notch of a custom horizon, can go unseen.
    """
    start_s, end_s = unix_s(start), unix_s(end)
    if end_s <= start_s:
        return []
    times, upward, above_at_start = _crossings(
        lambda t: _clearance_many(radec, site, limit, t), start_s, end_s
    )
    windows: list[Window] = []
    opened: datetime | None = start if above_at_start else None
    for t, up in zip(times.tolist(), upward.tolist(), strict=True):
        if up:
            opened = from_unix_s(t)
        elif opened is not None:
            windows.append(Window(opened, from_unix_s(t)))
            opened = None
    if opened is not None:
        windows.append(Window(opened, end))
    return windows


def observable_windows(
    radec: RaDec,
    site: Site,
    when: datetime,
    limit: Limit = 0.0,
    *,
    twilight_deg: float = NAUTICAL_TWILIGHT_DEG,
) -> list[Window]:
    """When the target is above the limit in tonight's dark time; empty: not observable tonight."""
    window = night_window(site, when, twilight_deg)
    if window is None:
        return []
    return intervals_above(radec, site, window.start, window.end, limit)
