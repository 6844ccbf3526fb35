"""Pulse-guide calibration: how a West or North pulse moves the guide stars on the sensor.

A calibration is two vectors in image px per second of pulse, (dy, dx): the star motion for a
West pulse (the RA axis) and for a North pulse (the Dec axis). They need not be orthogonal or
equal in length; corrections solve the 2 x 2 system. A West pulse moves the stars by
``guide rate x cos(dec)``, so the RA vector is rescaled when guiding at another declination.
After a meridian flip the camera is turned 180 degrees against the sky while North/West
pulses keep their sky meaning (the ASCOM convention), so both vectors change sign.

Pure functions; the measuring (pulses and frames) is in `drivers.guider.calibrator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from drivers.base import GuideCalibrated, GuideDirection, PierSide
from drivers.guider.errors import CalibrationFailed

# Below cos(85 deg) the RA axis barely moves the stars; rescaling past it would blow up pulses.
_MIN_COS_DEC = math.cos(math.radians(85.0))


@dataclass(frozen=True)
class Calibration:
    """Star motion per second of West (`ra_px_s`) and North (`dec_px_s`) pulse, (dy, dx) px/s,
    measured at `declination_deg` on `pier_side`."""

    ra_px_s: tuple[float, float]
    dec_px_s: tuple[float, float]
    declination_deg: float
    pier_side: PierSide
    measured: bool = True

    def __post_init__(self) -> None:
        """Raise ValueError for axes too short or too nearly parallel to invert."""
        matrix = self._matrix()
        lengths = np.hypot(matrix[0], matrix[1])
        if not np.all(np.isfinite(matrix)) or lengths.min() <= 0:
            raise ValueError(f"calibration axes must be finite and non-zero, got {self}")
        sine = abs(np.linalg.det(matrix)) / (lengths[0] * lengths[1])
        if sine < math.sin(math.radians(10.0)):
            raise ValueError("calibration axes are within 10 degrees of parallel")

    @property
    def ra_rate_px_s(self) -> float:
        return math.hypot(*self.ra_px_s)

    @property
    def dec_rate_px_s(self) -> float:
        return math.hypot(*self.dec_px_s)

    @property
    def ra_angle_deg(self) -> float:
        """Image angle of the West-pulse motion, from +x towards +y, degrees in (-180, 180]."""
        return math.degrees(math.atan2(self.ra_px_s[0], self.ra_px_s[1]))

    @property
    def dec_angle_deg(self) -> float:
        return math.degrees(math.atan2(self.dec_px_s[0], self.dec_px_s[1]))

    @property
    def orthogonality_error_deg(self) -> float:
        """How far the two axes are from perpendicular (0 for a well-behaved mount)."""
        between = abs((self.dec_angle_deg - self.ra_angle_deg + 180.0) % 360.0 - 180.0)
        return abs(between - 90.0)

    def for_declination(self, declination_deg: float) -> Calibration:
        """The same calibration at another declination: the RA vector scales with cos(dec)."""
        if declination_deg == self.declination_deg:
            return self
        factor = _cos_dec(declination_deg) / _cos_dec(self.declination_deg)
        ra = (self.ra_px_s[0] * factor, self.ra_px_s[1] * factor)
        return replace(self, ra_px_s=ra, declination_deg=declination_deg, measured=False)

    def for_pier_side(self, pier_side: PierSide) -> Calibration:
        """The calibration after a meridian flip: both axes reversed on the sensor."""
        if pier_side is self.pier_side or PierSide.UNKNOWN in (pier_side, self.pier_side):
            return self
        ra = (-self.ra_px_s[0], -self.ra_px_s[1])
        dec = (-self.dec_px_s[0], -self.dec_px_s[1])
        return replace(self, ra_px_s=ra, dec_px_s=dec, pier_side=pier_side, measured=False)

    def axis_components(self, dy: float, dx: float) -> tuple[float, float]:
        """Split an image displacement into px along the RA and Dec axes (each axis' own
        direction as the unit), so that RA and Dec errors can be reported separately."""
        matrix = self._matrix()
        units = matrix / np.hypot(matrix[0], matrix[1])
        ra, dec = np.linalg.solve(units, np.array([dy, dx]))
        return float(ra), float(dec)

    def pulses_ms(self, ra_px: float, dec_px: float) -> tuple[float, float]:
        """Signed pulse lengths (West/North positive, ms) that move the stars by `ra_px`,
        `dec_px` along the axes."""
        return 1000.0 * ra_px / self.ra_rate_px_s, 1000.0 * dec_px / self.dec_rate_px_s

    def motion_px(self, west_ms: float, north_ms: float) -> tuple[float, float]:
        """The (dy, dx) star motion that signed West/North pulses of these lengths cause."""
        dy = (west_ms * self.ra_px_s[0] + north_ms * self.dec_px_s[0]) / 1000.0
        dx = (west_ms * self.ra_px_s[1] + north_ms * self.dec_px_s[1]) / 1000.0
        return dy, dx

    def summary(self) -> GuideCalibrated:
        return GuideCalibrated(
            pier_side=self.pier_side,
            declination_deg=self.declination_deg,
            ra_angle_deg=self.ra_angle_deg,
            dec_angle_deg=self.dec_angle_deg,
            ra_rate_px_s=self.ra_rate_px_s,
            dec_rate_px_s=self.dec_rate_px_s,
            measured=self.measured,
        )

    def _matrix(self) -> np.ndarray:
        """Columns: the RA and Dec vectors; rows: dy, dx."""
        return np.array([[self.ra_px_s[0], self.dec_px_s[0]], [self.ra_px_s[1], self.dec_px_s[1]]])


def fit_axis(
    pulse_ms: Sequence[float], positions: Sequence[tuple[float, float]]
) -> tuple[float, float]:
    """Least-squares star velocity (dy, dx) px/s from positions after cumulative pulse times.

    A straight-line fit through all steps (intercept free) averages the centroid noise of the
    single frames instead of trusting the last one. Raises `CalibrationFailed` on fewer than
    two points or no pulse time.
    """
    t = np.asarray(pulse_ms, dtype=np.float64) / 1000.0
    p = np.asarray(positions, dtype=np.float64)
    if len(t) < 2 or len(t) != len(p) or np.ptp(t) <= 0:
        raise CalibrationFailed("calibrate", "need at least two positions at different pulses")
    tc = t - t.mean()
    slope = (tc[:, None] * (p - p.mean(axis=0))).sum(axis=0) / (tc**2).sum()
    return float(slope[0]), float(slope[1])


def calibration_from_guide_rates(
    *,
    north_angle_deg: float,
    east_angle_deg: float,
    guide_rate_ra_deg_s: float,
    guide_rate_dec_deg_s: float,
    pixel_scale_arcsec_px: float,
    declination_deg: float,
    pier_side: PierSide,
) -> Calibration:
    """A calibration without pulses: from the mount's guide rates and the sky's orientation on
    the guide sensor (e.g. from a plate solve: the image angles, from +x towards +y, in which
    north and east lie).

    A North pulse points the telescope north, so the stars move south on the sensor; a West
    pulse moves them east.
    """
    if pixel_scale_arcsec_px <= 0 or guide_rate_ra_deg_s <= 0 or guide_rate_dec_deg_s <= 0:
        raise ValueError("guide rates and pixel scale must be positive")
    dec_rate = guide_rate_dec_deg_s * 3600.0 / pixel_scale_arcsec_px
    ra_rate = guide_rate_ra_deg_s * 3600.0 * _cos_dec(declination_deg) / pixel_scale_arcsec_px
    north, east = math.radians(north_angle_deg), math.radians(east_angle_deg)
    return Calibration(
        ra_px_s=(ra_rate * math.sin(east), ra_rate * math.cos(east)),
        dec_px_s=(-dec_rate * math.sin(north), -dec_rate * math.cos(north)),
        declination_deg=declination_deg,
        pier_side=pier_side,
        measured=False,
    )


def pulse_direction(signed_ms: float, *, ra: bool) -> GuideDirection:
    """West/North for a positive length, East/South for a negative one."""
    if ra:
        return GuideDirection.WEST if signed_ms > 0 else GuideDirection.EAST
    return GuideDirection.NORTH if signed_ms > 0 else GuideDirection.SOUTH


def _cos_dec(declination_deg: float) -> float:
    return max(math.cos(math.radians(declination_deg)), _MIN_COS_DEC)
