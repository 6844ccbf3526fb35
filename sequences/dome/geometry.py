"""Where a dome's slit must point so the telescope of a German equatorial mount looks through it.

Pure vector geometry in the observatory's local frame (x east, y north, z up, metres, origin at
the dome's centre). The optical axis starts at the intersection of the mount's axes (the
`DomeGeometry` mount offsets) moved along the declination axis by the GEM axis offset, to the
side of the pier the telescope is on, and runs along the pointing direction; the slit must be
at the azimuth where that ray meets the dome's sphere. With the mount at the centre and no
offsets that is the telescope's own azimuth; a mount off centre in a small dome can need tens
of degrees more or less.

Pier side as ASCOM reports it: EAST is the telescope on the east side of the pier looking west
(hour angle > 0 with the counterweight down), WEST the opposite. An unknown pier side is taken
to be the counterweight-down one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from drivers.base import PierSide
from drivers.profile import DomeGeometry

Vector = npt.NDArray[np.float64]


class GeometryError(ValueError):
    """The geometry puts the mount outside the dome: fix the profile's dome geometry."""


@dataclass(frozen=True)
class SlitAim:
    """Where the optical axis leaves the dome, and how far the slit may be off it."""

    azimuth_deg: float
    """From north through east, [0, 360)."""
    altitude_deg: float
    """Of the point on the dome's sphere (not the telescope's altitude when off centre)."""
    half_width_deg: float
    """Half the slit's width as an azimuth angle at that altitude; 180 when the slit spans every
    azimuth there (at the zenith)."""


def pointing_vector(latitude_deg: float, hour_angle_h: float, dec_deg: float) -> Vector:
    """Unit vector (east, north, up) towards hour angle / declination at `latitude_deg`."""
    meridian, west, pole = _equatorial_axes(latitude_deg)
    h, d = math.radians(hour_angle_h * 15.0), math.radians(dec_deg)
    vector: Vector = math.cos(d) * (math.cos(h) * meridian + math.sin(h) * west)
    return vector + math.sin(d) * pole


def optical_origin(
    latitude_deg: float, hour_angle_h: float, pier_side: PierSide, geometry: DomeGeometry
) -> Vector:
    """Where the optical axis starts: the axes' intersection plus the GEM axis offset along the
    declination axis, towards the telescope's side."""
    meridian, west, _ = _equatorial_axes(latitude_deg)
    h = math.radians(hour_angle_h * 15.0)
    side = pier_side
    if side is PierSide.UNKNOWN:
        side = PierSide.EAST if _wrap_hours(hour_angle_h) >= 0 else PierSide.WEST
    sign = 1.0 if side is PierSide.EAST else -1.0
    dec_axis = sign * (math.sin(h) * meridian - math.cos(h) * west)
    centre = np.array(
        [geometry.mount_offset_east_m, geometry.mount_offset_north_m, geometry.mount_offset_up_m]
    )
    origin: Vector = centre + geometry.gem_axis_offset_m * dec_axis
    return origin


def slit_aim(
    latitude_deg: float,
    hour_angle_h: float,
    dec_deg: float,
    pier_side: PierSide,
    geometry: DomeGeometry,
) -> SlitAim:
    """The dome azimuth that centres the slit on the telescope's line of sight.

    Raises `GeometryError` when the optical axis starts outside the dome's sphere.
    """
    origin = optical_origin(latitude_deg, hour_angle_h, pier_side, geometry)
    direction = pointing_vector(latitude_deg, hour_angle_h, dec_deg)
    radius = geometry.radius_m
    b = float(origin @ direction)
    c = float(origin @ origin) - radius**2
    if c >= 0:
        raise GeometryError(
            f"the telescope's axis starts {math.sqrt(c + radius**2):.2f} m from the dome's "
            f"centre, outside its {radius:g} m radius: check the dome geometry's offsets"
        )
    distance = -b + math.sqrt(b * b - c)  # the positive root: the origin is inside the sphere
    east, north, up = origin + distance * direction
    altitude_deg = math.degrees(math.asin(max(-1.0, min(1.0, up / radius))))
    return SlitAim(
        azimuth_deg=math.degrees(math.atan2(east, north)) % 360.0,
        altitude_deg=altitude_deg,
        half_width_deg=slit_half_width_deg(geometry, altitude_deg),
    )


def slit_half_width_deg(geometry: DomeGeometry, altitude_deg: float, beam_m: float = 0.0) -> float:
    """Half the slit's width seen from the dome's axis at `altitude_deg`, less half a beam of
    `beam_m`: a chord on the dome's horizontal circle there (radius R cos(altitude))."""
    circle_m = geometry.radius_m * math.cos(math.radians(altitude_deg))
    half_m = max(0.0, geometry.slit_width_m - beam_m) / 2.0
    if half_m >= circle_m:
        return 180.0
    return math.degrees(math.asin(half_m / circle_m))


def azimuth_difference_deg(a_deg: float, b_deg: float) -> float:
    """a - b wrapped to [-180, 180)."""
    return (a_deg - b_deg + 180.0) % 360.0 - 180.0


def resync_tolerance_deg(aim: SlitAim, geometry: DomeGeometry, aperture_m: float = 0.0) -> float:
    """How far the dome may be from `aim` before it must move: the profile's
    `resync_tolerance_deg`, or (0) where the slit's edge starts to cut a beam of `aperture_m`
    (half the slit's width less half the beam's)."""
    if geometry.resync_tolerance_deg > 0:
        return geometry.resync_tolerance_deg
    return slit_half_width_deg(geometry, aim.altitude_deg, aperture_m)


def _equatorial_axes(latitude_deg: float) -> tuple[Vector, Vector, Vector]:
    """(east, north, up) unit vectors of the equator on the meridian, the equator's west point
    and the north celestial pole."""
    phi = math.radians(latitude_deg)
    meridian = np.array([0.0, -math.sin(phi), math.cos(phi)])
    west = np.array([-1.0, 0.0, 0.0])
    pole = np.array([0.0, math.cos(phi), math.sin(phi)])
    return meridian, west, pole


def _wrap_hours(hours: float) -> float:
    return (hours + 12.0) % 24.0 - 12.0
