"""astropy runs offline: Earth-orientation data come from the installed astropy-iers-data."""

from __future__ import annotations

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time
from astropy.utils import iers
from astropy.utils.data import conf as data_conf

from sequences.astro import airmass, configure_astropy_offline


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
