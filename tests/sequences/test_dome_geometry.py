"""Dome slit geometry against cases whose answer is known in closed form.

Tolerances: 1e-9 deg where the answer is exact arithmetic (the formula and the truth differ only
by rounding); 1e-4 deg for the large-dome limit, where the offsets' angular size (1 m at 10000 km
is 6e-6 deg, an azimuth 1/cos(altitude) times that) bounds the difference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.base import PierSide
from drivers.profile import DomeGeometry
from sequences.dome.geometry import (
    GeometryError,
    azimuth_difference_deg,
    resync_tolerance_deg,
    slit_aim,
    slit_half_width_deg,
)

LAT = 47.0
R = 1.5


def meeus_azimuth_deg(latitude_deg: float, hour_angle_h: float, dec_deg: float) -> float:
    """Azimuth from north through east by Meeus' (13.5): tan A = sin H / (cos H sin phi -
    tan delta cos phi), A from the south towards the west."""
    phi, h, d = map(math.radians, (latitude_deg, hour_angle_h * 15.0, dec_deg))
    a_south = math.atan2(math.sin(h), math.cos(h) * math.sin(phi) - math.tan(d) * math.cos(phi))
    return (math.degrees(a_south) + 180.0) % 360.0


def close(actual: float, expected: float, tol: float = 1e-9) -> None:
    assert abs(azimuth_difference_deg(actual, expected)) < tol, (actual, expected)


def test_a_mount_at_the_centre_points_the_slit_at_its_own_azimuth() -> None:
    rng = np.random.default_rng(7)
    centre = DomeGeometry(radius_m=R)
    for _ in range(200):
        lat = float(rng.uniform(-80, 80))
        ha = float(rng.uniform(-12, 12))
        dec = float(rng.uniform(-85, 85))
        for side in (PierSide.EAST, PierSide.WEST, PierSide.UNKNOWN):
            close(slit_aim(lat, ha, dec, side, centre).azimuth_deg, meeus_azimuth_deg(lat, ha, dec))
    # The cardinal points.
    close(slit_aim(LAT, 0.0, 20.0, PierSide.EAST, centre).azimuth_deg, 180.0)
    close(slit_aim(LAT, 0.0, 70.0, PierSide.EAST, centre).azimuth_deg, 0.0)
    close(slit_aim(LAT, 6.0, 0.0, PierSide.EAST, centre).azimuth_deg, 270.0)
    close(slit_aim(LAT, -6.0, 0.0, PierSide.WEST, centre).azimuth_deg, 90.0)


def test_a_mount_off_centre_looks_through_where_its_axis_meets_the_dome() -> None:
    e, n = 0.5, 0.4
    east = DomeGeometry(radius_m=R, mount_offset_east_m=e)
    zenith = slit_aim(LAT, 0.0, LAT, PierSide.EAST, east)  # straight up from (e, 0, 0)
    close(zenith.azimuth_deg, 90.0)
    assert zenith.altitude_deg == pytest.approx(math.degrees(math.acos(e / R)), abs=1e-9)
    south = slit_aim(LAT, 0.0, LAT - 90.0, PierSide.EAST, east)  # the south horizon
    close(south.azimuth_deg, 180.0 - math.degrees(math.asin(e / R)))
    assert south.altitude_deg == pytest.approx(0.0, abs=1e-9)
    north = DomeGeometry(radius_m=R, mount_offset_north_m=n)
    rising = slit_aim(LAT, -6.0, 0.0, PierSide.WEST, north)  # the east point of the horizon
    close(rising.azimuth_deg, 90.0 - math.degrees(math.asin(n / R)))


def test_the_gem_offset_moves_the_axis_to_the_telescopes_side_of_the_pier() -> None:
    d = 0.4
    gem = DomeGeometry(radius_m=R, gem_axis_offset_m=d)
    t = math.sqrt(R**2 - d**2)
    phi = math.radians(LAT)
    # At the pole on the meridian the telescope is d east (pier EAST) of the polar axis.
    pole_east = slit_aim(LAT, 0.0, 90.0, PierSide.EAST, gem).azimuth_deg
    close(pole_east, math.degrees(math.atan2(d, t * math.cos(phi))))
    close(slit_aim(LAT, 0.0, 90.0, PierSide.WEST, gem).azimuth_deg, 360.0 - pole_east)
    # Due west on the equator, counterweight down: the telescope sits d above the axes, on the
    # meridian's equator direction (up and south), looking west.
    west = slit_aim(LAT, 6.0, 0.0, PierSide.EAST, gem)
    close(west.azimuth_deg, math.degrees(math.atan2(-t, -d * math.sin(phi))))
    assert west.altitude_deg == pytest.approx(math.degrees(math.asin(d * math.cos(phi) / R)))
    # An unknown pier side is the counterweight-down one.
    for ha, side in ((2.0, PierSide.EAST), (-2.0, PierSide.WEST)):
        assert slit_aim(LAT, ha, 30.0, PierSide.UNKNOWN, gem) == slit_aim(LAT, ha, 30.0, side, gem)
    # A flip changes the slit azimuth by tens of degrees in a small dome.
    east_side = slit_aim(LAT, 0.1, 10.0, PierSide.EAST, gem).azimuth_deg
    west_side = slit_aim(LAT, 0.1, 10.0, PierSide.WEST, gem).azimuth_deg
    assert abs(azimuth_difference_deg(east_side, west_side)) > 20.0


def test_in_a_huge_dome_the_offsets_vanish() -> None:
    huge = DomeGeometry(
        radius_m=1e7,
        mount_offset_east_m=0.5,
        mount_offset_north_m=-0.3,
        mount_offset_up_m=0.2,
        gem_axis_offset_m=0.4,
    )
    for ha, dec in ((-3.0, 10.0), (1.0, 60.0), (5.0, -20.0)):
        aim = slit_aim(LAT, ha, dec, PierSide.UNKNOWN, huge).azimuth_deg
        close(aim, meeus_azimuth_deg(LAT, ha, dec), tol=1e-4)


def test_a_mount_outside_the_dome_is_a_geometry_error() -> None:
    with pytest.raises(GeometryError, match=r"outside its 1\.5 m radius"):
        slit_aim(LAT, 0.0, 30.0, PierSide.EAST, DomeGeometry(radius_m=R, mount_offset_east_m=2))


def test_the_slit_half_width_sets_when_the_dome_must_move() -> None:
    geometry = DomeGeometry(radius_m=R, slit_width_m=0.8)
    assert slit_half_width_deg(geometry, 0.0) == pytest.approx(math.degrees(math.asin(0.4 / R)))
    at_60 = math.degrees(math.asin(0.4 / (R * math.cos(math.radians(60)))))
    assert slit_half_width_deg(geometry, 60.0) == pytest.approx(at_60)
    assert slit_half_width_deg(geometry, 80.0) == 180.0  # the slit spans every azimuth there
    aim = slit_aim(LAT, 0.0, 20.0, PierSide.EAST, geometry)
    beam = math.degrees(math.asin(0.35 / (R * math.cos(math.radians(aim.altitude_deg)))))
    assert resync_tolerance_deg(aim, geometry, aperture_m=0.1) == pytest.approx(beam)
    fixed = geometry.model_copy(update={"resync_tolerance_deg": 2.0})
    assert resync_tolerance_deg(aim, fixed, aperture_m=0.1) == 2.0
    assert azimuth_difference_deg(359.0, 1.0) == pytest.approx(-2.0)
    assert azimuth_difference_deg(1.0, 359.0) == pytest.approx(2.0)
