"""astropy runs offline: Earth-orientation data come from the installed astropy-iers-data."""

from __future__ import annotations

import dataclasses
import time
import warnings
from datetime import UTC, datetime, timedelta

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord, get_sun
from astropy.time import Time
from astropy.utils import iers
from astropy.utils.data import conf as data_conf

from drivers.base import MountInfo, RaDec
from sequences.astro import (
    ASTRONOMICAL_TWILIGHT_DEG,
    CIVIL_TWILIGHT_DEG,
    NAUTICAL_TWILIGHT_DEG,
    SUNRISE_SUNSET_DEG,
    Horizon,
    Site,
    airmass,
    alt_az_deg,
    alt_az_many,
    altitude_deg,
    clearance_deg,
    configure_astropy_offline,
    hour_angle_hours,
    intervals_above,
    local_sidereal_time_hours,
    next_dawn,
    next_dusk,
    next_rise,
    next_set,
    next_transit,
    night_window,
    observable_windows,
    sun_alt_az_many,
    sun_altitude_deg,
)


def test_offline_configuration_forbids_downloads() -> None:
    configure_astropy_offline()
    assert data_conf.allow_internet is False
    assert iers.conf.auto_download is False


def test_polaris_altitude_equals_the_site_latitude_within_its_polar_distance() -> None:
    configure_astropy_offline()
    site = EarthLocation(lat=47 * u.deg, lon=8 * u.deg, height=450 * u.m)
    polaris = SkyCoord(ra=37.9546 * u.deg, dec=89.2641 * u.deg)
    times = Time("2026-11-22T00:00:00") + np.linspace(0, 1, 5) * u.day
    altitude = polaris.transform_to(AltAz(obstime=times, location=site)).alt.deg
    # Polaris circles the pole at 0.74 deg; refraction is off (no pressure given).
    assert np.all(np.abs(altitude - 47.0) < 0.74 + 0.01)
    assert np.ptp(altitude) > 1.0


def test_a_date_past_the_bundled_tables_degrades_to_a_warning() -> None:
    configure_astropy_offline()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        sidereal = Time("2045-06-01T00:00:00").sidereal_time("apparent", longitude=8 * u.deg)
    assert 0 <= sidereal.hour < 24


def test_airmass_is_one_at_the_zenith_and_secant_like_above_30_degrees() -> None:
    assert airmass(90.0) == pytest.approx(1.0, abs=1e-3)
    # Above 30 deg the plane-parallel sec(z) is good to ~0.5 %; Pickering agrees with it there.
    for altitude in (30.0, 45.0, 60.0):
        assert airmass(altitude) == pytest.approx(1 / np.sin(np.radians(altitude)), rel=5e-3)
    assert airmass(0.0) is None
    assert airmass(-5.0) is None
    # At the horizon the atmosphere's curvature caps it near 38 (sec z would be infinite).
    assert 30 < (airmass(0.01) or 0) < 45


# --- Ephemerides: Nightowl's fast path checked against astropy's full transforms ---

SITE = Site(latitude_deg=47.0, longitude_deg=8.0, elevation_m=450.0)  # the simulator's site
NIGHT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
M42 = RaDec(5.588, -5.391)
POLARIS = RaDec(2.530, 89.264)
DEEP_SOUTH = RaDec(12.0, -60.0)
# The fast path keeps sidereal time and apparent places to well under an arcsecond (measured
# 0.5" for stars, 0.6" for the Sun over three days); 5" leaves room for table updates and is
# still far inside the 0.05 deg (180") that conditions and triggers need.
ARCSEC5_DEG = 5.0 / 3600.0


@pytest.fixture(autouse=True)
def _offline() -> None:
    configure_astropy_offline()


def astropy_altaz(coord: SkyCoord, times_unix_s: float | np.ndarray) -> SkyCoord:
    times = Time(times_unix_s, format="unix")
    return coord.transform_to(AltAz(obstime=times, location=SITE.earth_location))


def astropy_sun_altitude(times_unix_s: np.ndarray) -> np.ndarray:
    times = Time(times_unix_s, format="unix")
    sun = get_sun(times).transform_to(AltAz(obstime=times, location=SITE.earth_location))
    return np.asarray(sun.alt.deg)


def test_target_altitude_and_azimuth_match_astropy_over_three_days() -> None:
    times = NIGHT.timestamp() + np.arange(0.0, 3 * 86400.0, 1234.5)
    for radec in (M42, POLARIS, DEEP_SOUTH, RaDec(0.712, 41.269), RaDec(18.616, 38.784)):
        altitude, azimuth = alt_az_many(radec, SITE, times)
        ref = astropy_altaz(SkyCoord(radec.ra_deg * u.deg, radec.dec_deg * u.deg), times)
        np.testing.assert_allclose(altitude, ref.alt.deg, rtol=0, atol=ARCSEC5_DEG)
        # Azimuth error on the sky shrinks with cos(altitude); skip the zenith's singularity.
        away = ref.alt.deg < 85
        d_az = (azimuth - ref.az.deg + 180.0) % 360.0 - 180.0
        on_sky = d_az[away] * np.cos(np.radians(ref.alt.deg[away]))
        np.testing.assert_allclose(on_sky, 0.0, rtol=0, atol=ARCSEC5_DEG)
    scalar_alt, scalar_az = alt_az_deg(M42, SITE, NIGHT)
    many_alt, many_az = alt_az_many(M42, SITE, [NIGHT.timestamp()])
    assert (scalar_alt, scalar_az) == (many_alt[0], many_az[0])
    assert altitude_deg(M42, SITE, NIGHT) == scalar_alt


def test_sun_altitude_matches_astropy_at_known_instants() -> None:
    instants = [
        datetime(2026, 11, 22, 11, 30, tzinfo=UTC),  # near local noon
        datetime(2026, 11, 22, 16, 0, tzinfo=UTC),  # around sunset
        datetime(2026, 11, 23, 0, 0, tzinfo=UTC),  # deep night
        datetime(2027, 3, 20, 6, 0, tzinfo=UTC),  # equinox morning
        datetime(2027, 6, 21, 11, 28, tzinfo=UTC),  # solstice noon: 66.4 deg
    ]
    ours = [sun_altitude_deg(SITE, when) for when in instants]
    ref = astropy_sun_altitude(np.array([w.timestamp() for w in instants]))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=ARCSEC5_DEG)
    times = NIGHT.timestamp() + np.arange(0.0, 2 * 86400.0, 997.0)
    np.testing.assert_allclose(
        sun_alt_az_many(SITE, times)[0], astropy_sun_altitude(times), rtol=0, atol=ARCSEC5_DEG
    )


def test_local_sidereal_time_matches_astropy() -> None:
    ref = Time(NIGHT).sidereal_time("apparent", longitude=SITE.longitude_deg * u.deg).hour
    # 0.01 s of time (0.15"): the interpolation of sidereal time over the day.
    assert local_sidereal_time_hours(SITE, NIGHT) == pytest.approx(ref, abs=0.01 / 3600)


def test_the_hour_angle_is_zero_at_transit_and_the_target_is_due_south() -> None:
    transit = next_transit(M42, SITE, NIGHT)
    assert NIGHT < transit < NIGHT + timedelta(days=1)
    assert hour_angle_hours(M42, SITE, transit) == pytest.approx(0.0, abs=1 / 3600)
    assert hour_angle_hours(M42, SITE, transit - timedelta(hours=2)) == pytest.approx(-2, abs=0.01)
    assert hour_angle_hours(M42, SITE, transit + timedelta(hours=2)) == pytest.approx(2, abs=0.01)
    # Independent of our sidereal time: astropy puts the target on the meridian (azimuth
    # 180 deg for a target south of the zenith). M42's azimuth moves ~20"/s there, so 0.01 deg
    # is half a second of time.
    ref = astropy_altaz(SkyCoord(M42.ra_deg * u.deg, M42.dec_deg * u.deg), transit.timestamp())
    assert float(ref.az.deg) == pytest.approx(180.0, abs=0.01)


def test_transits_are_one_sidereal_day_apart() -> None:
    first = next_transit(M42, SITE, NIGHT)
    second = next_transit(M42, SITE, first + timedelta(seconds=1))
    sidereal_day_s = 23 * 3600 + 56 * 60 + 4.09
    assert (second - first).total_seconds() == pytest.approx(sidereal_day_s, abs=1.0)
    # Asked at the transit itself, the transit is now.
    assert abs((next_transit(M42, SITE, first) - first).total_seconds()) < 0.1


def brute_force_crossing(start: datetime, hours: float, altitude: float, rising: bool) -> float:
    """First crossing of the Sun through `altitude` by astropy: a 60 s scan, then a 1 s scan."""
    coarse = start.timestamp() + np.arange(0.0, hours * 3600.0, 60.0)
    above = astropy_sun_altitude(coarse) >= altitude
    change = np.flatnonzero(above[1:] & ~above[:-1] if rising else above[:-1] & ~above[1:])
    fine = coarse[change[0]] + np.arange(0.0, 61.0)
    above = astropy_sun_altitude(fine) >= altitude
    return float(fine[np.flatnonzero(above != above[0])[0]])


@pytest.mark.parametrize(
    "twilight_deg", [CIVIL_TWILIGHT_DEG, NAUTICAL_TWILIGHT_DEG, ASTRONOMICAL_TWILIGHT_DEG]
)
def test_dusk_and_dawn_match_a_brute_force_astropy_scan(twilight_deg: float) -> None:
    dusk = next_dusk(SITE, NIGHT, twilight_deg)
    dawn = next_dawn(SITE, NIGHT, twilight_deg)
    assert dusk is not None
    assert dawn is not None
    assert NIGHT < dusk < dawn < NIGHT + timedelta(days=1)
    # The scan resolves 1 s; the Sun moves ~0.003 deg/s here, so our 1" is 0.1 s of time.
    assert dusk.timestamp() == pytest.approx(
        brute_force_crossing(NIGHT, 12, twilight_deg, rising=False), abs=2.0
    )
    assert dawn.timestamp() == pytest.approx(
        brute_force_crossing(NIGHT, 24, twilight_deg, rising=True), abs=2.0
    )
    assert sun_altitude_deg(SITE, dusk) == pytest.approx(twilight_deg, abs=0.01)


def test_darker_twilights_come_later_in_the_evening_and_earlier_in_the_morning() -> None:
    sunset = next_dusk(SITE, NIGHT, SUNRISE_SUNSET_DEG)
    civil, nautical, astronomical = (
        next_dusk(SITE, NIGHT, deg)
        for deg in (CIVIL_TWILIGHT_DEG, NAUTICAL_TWILIGHT_DEG, ASTRONOMICAL_TWILIGHT_DEG)
    )
    assert sunset is not None
    assert civil is not None
    assert nautical is not None
    assert astronomical is not None
    assert sunset < civil < nautical < astronomical
    # Mid-November at 47 N the Sun sets in the 16th hour UTC (about 16:40 local time).
    assert sunset.hour == 15


def test_a_summer_night_far_north_never_gets_astronomically_dark() -> None:
    june = datetime(2027, 6, 21, 12, 0, tzinfo=UTC)
    north = Site(55.0, 8.0)  # the Sun stays above -11.6 deg at midnight
    assert next_dusk(north, june, ASTRONOMICAL_TWILIGHT_DEG, search_h=24) is None
    assert night_window(north, june, ASTRONOMICAL_TWILIGHT_DEG, search_h=24) is None
    # At the simulator's 47 N it gets just past -18 deg (minimum -19.6) for about two hours.
    window = night_window(SITE, june, ASTRONOMICAL_TWILIGHT_DEG)
    assert window is not None
    assert 3600 < window.duration_s < 3 * 3600
    assert sun_altitude_deg(SITE, window.start) == pytest.approx(-18.0, abs=0.01)
    assert sun_altitude_deg(SITE, window.end) == pytest.approx(-18.0, abs=0.01)


def test_the_night_window_starts_now_when_it_is_already_dark() -> None:
    midnight = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    window = night_window(SITE, midnight)
    assert window is not None
    assert window.start == midnight
    assert window.end == next_dawn(SITE, midnight)


def test_a_circumpolar_target_never_sets_and_a_deep_southern_one_never_rises() -> None:
    assert next_set(POLARIS, SITE, NIGHT) is None
    assert next_rise(POLARIS, SITE, NIGHT) is None
    assert next_rise(DEEP_SOUTH, SITE, NIGHT) is None
    assert observable_windows(DEEP_SOUTH, SITE, NIGHT) == []
    window = night_window(SITE, NIGHT)
    assert window is not None
    assert observable_windows(POLARIS, SITE, NIGHT) == [window]


def test_rise_and_set_above_a_custom_horizon() -> None:
    horizon = Horizon.from_points([(0, 10), (90, 30), (180, 5), (270, 20)])
    rise = next_rise(M42, SITE, NIGHT, horizon)
    setting = next_set(M42, SITE, NIGHT, horizon)
    assert rise is not None
    assert setting is not None
    assert rise < next_transit(M42, SITE, NIGHT) < setting
    # At the crossing the target is on the horizon; a minute either side below/above it.
    # M42 climbs ~0.15 deg/min, so the 0.5 s search tolerance is ~0.001 deg.
    assert clearance_deg(M42, SITE, rise, horizon) == pytest.approx(0.0, abs=0.01)
    assert clearance_deg(M42, SITE, rise - timedelta(minutes=1), horizon) < 0
    assert clearance_deg(M42, SITE, rise + timedelta(minutes=1), horizon) > 0
    assert clearance_deg(M42, SITE, setting, horizon) == pytest.approx(0.0, abs=0.01)
    _, azimuth = alt_az_deg(M42, SITE, rise)
    assert altitude_deg(M42, SITE, rise) == pytest.approx(horizon.altitude_at(azimuth), abs=0.01)
    # A flat horizon is the same as a plain altitude limit.
    assert next_rise(M42, SITE, NIGHT, Horizon.flat(20.0)) == next_rise(M42, SITE, NIGHT, 20.0)


def test_tonight_s_observable_windows_lie_in_the_dark_above_the_limit() -> None:
    windows = observable_windows(M42, SITE, NIGHT, 30.0)
    dark = night_window(SITE, NIGHT)
    assert dark is not None
    assert len(windows) == 1
    (window,) = windows
    # M42 culminates at 37.6 deg at 47 N: above 30 deg it rises and sets inside the night.
    assert dark.start < window.start < window.end < dark.end
    assert altitude_deg(M42, SITE, window.start) == pytest.approx(30.0, abs=0.01)
    assert altitude_deg(M42, SITE, window.end) == pytest.approx(30.0, abs=0.01)
    assert observable_windows(M42, SITE, NIGHT, 38.0) == []
    parts = intervals_above(M42, SITE, NIGHT, NIGHT + timedelta(days=2), 30.0)
    assert len(parts) == 2
    assert all(w.duration_s == pytest.approx(parts[0].duration_s, abs=120) for w in parts)


def test_horizon_interpolates_linearly_and_wraps_around_north() -> None:
    horizon = Horizon.from_points([(270, 20), (90, 30), (0, 10), (180, 5)])
    assert horizon.azimuths_deg == (0.0, 90.0, 180.0, 270.0)
    assert horizon.altitude_at(45) == pytest.approx(20.0)
    assert horizon.altitude_at(135) == pytest.approx(17.5)
    assert horizon.altitude_at(315) == pytest.approx(15.0)  # between 270 (20) and 360 (10)
    assert horizon.altitude_at(359) == pytest.approx(10 + 10 / 90)
    assert horizon.altitude_at(360) == pytest.approx(10.0)
    np.testing.assert_allclose(horizon.altitudes_at([0, 90, 450, -90]), [10, 30, 30, 20])
    assert Horizon.flat(15).altitude_at(123) == 15.0
    # North may be given as 360 instead of 0.
    assert Horizon.from_points([(90, 30), (360, 10)]).altitude_at(0) == 10.0


def test_a_horizon_file_in_nina_s_two_column_layout() -> None:
    text = "# my backyard\n0 10\n\n90 30.5\n180, 5\n270\t20  # the roof\n"
    horizon = Horizon.from_text(text)
    assert horizon.altitudes_deg == (10.0, 30.5, 5.0, 20.0)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0 10\n90 30 4\n", "horizon line 2: expected two numbers"),
        ("0 10\nnorth 30\n", "horizon line 2: expected two numbers"),
        ("0 10\n400 30\n", "horizon line 2: azimuth 400.0 is outside"),
        ("0 10\n90 95\n", "horizon line 2: altitude 95.0 is outside"),
        ("0 10\n360 12\n", "horizon line 2: azimuth 360.0 already has altitude 10.0 .*north"),
        ("# nothing\n\n", "at least one"),
    ],
)
def test_a_bad_horizon_file_names_the_line_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Horizon.from_text(text)


def test_bad_horizon_points_and_sites_are_named() -> None:
    with pytest.raises(ValueError, match="horizon point 2: expected"):
        Horizon.from_points([(0.0, 10.0), (1.0,)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="horizon point 1: altitude nan"):
        Horizon.from_points([(0.0, float("nan"))])
    with pytest.raises(ValueError, match="strictly increasing"):
        Horizon((90.0, 0.0), (1.0, 2.0))
    with pytest.raises(ValueError, match="latitude_deg"):
        Site(91.0, 8.0)


def test_the_site_comes_from_the_mount() -> None:
    info = MountInfo(
        name="sim", alignment_mode=2, equatorial_system=2, can_park=True,
        can_pulse_guide=True, can_sync=True, can_set_tracking=True,
        site_latitude_deg=47.0, site_longitude_deg=8.0, site_elevation_m=450.0,
        focal_length_m=0.6, aperture_m=0.1,
    )  # fmt: skip
    assert Site.from_mount_info(info) == SITE
    with pytest.raises(ValueError, match="no site"):
        Site.from_mount_info(dataclasses.replace(info, site_latitude_deg=None))


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        sun_altitude_deg(SITE, datetime(2026, 11, 22, 20, 0))


def test_evaluations_take_microseconds_and_searches_about_a_millisecond() -> None:
    next_dusk(SITE, NIGHT)  # builds and caches the day tables
    started = time.perf_counter()
    for _ in range(200):
        sun_altitude_deg(SITE, NIGHT)
        altitude_deg(M42, SITE, NIGHT)
    per_call_s = (time.perf_counter() - started) / 400
    started = time.perf_counter()
    for _ in range(20):
        next_dusk(SITE, NIGHT)
    per_search_s = (time.perf_counter() - started) / 20
    # Measured ~50 us and ~1 ms; the bounds leave a slow CI machine 10-20x.
    assert per_call_s < 1e-3
    assert per_search_s < 20e-3
