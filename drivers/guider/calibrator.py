"""Measuring a pulse-guide calibration: pulse the mount, follow the guide stars, fit.

The math (the calibration, the straight-line fit) is in `drivers.guider.calibration`; this is
the procedure with the mount and the guide camera, and the calibrations kept by pier side.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from drivers.base import GuideDirection, Mount, MountStatus, PierSide
from drivers.guider.calibration import Calibration, fit_axis
from drivers.guider.config import GuiderConfig
from drivers.guider.errors import CalibrationFailed
from drivers.guider.frames import GuideCamera
from drivers.guider.stars import GuideStars, Matcher

log = logging.getLogger(__name__)

# Calibration pulses are kept within these bounds whatever the rates suggest.
_MIN_STEP_MS, _MAX_STEP_MS = 50, 4000
# Calibration step length when neither the guide rate nor the pixel scale is known.
_DEFAULT_STEP_MS = 1000


class Calibrator:
    """Measures calibrations with `mount` and `frames` and keeps them by pier side (starting
    from `known`, e.g. an earlier session's)."""

    def __init__(
        self,
        mount: Mount,
        frames: GuideCamera,
        matcher: Matcher,
        config: GuiderConfig,
        known: Mapping[PierSide, Calibration] | None = None,
    ) -> None:
        self._mount = mount
        self._frames = frames
        self._matcher = matcher
        self._config = config
        self._by_side: dict[PierSide, Calibration] = dict(known or {})

    @property
    def calibrations(self) -> dict[PierSide, Calibration]:
        """Calibrations by pier side, a copy."""
        return dict(self._by_side)

    def stored(self, side: PierSide) -> Calibration | None:
        """The calibration kept for `side`, else any kept one (it can be flipped), else None."""
        return self._by_side.get(side) or next(iter(self._by_side.values()), None)

    async def measure(
        self, status: MountStatus, stars: GuideStars, scale_arcsec_px: float | None
    ) -> Calibration:
        """Measure the star motion per second of West and North pulse, and keep it for the
        pier side in `status`.

        Each axis: pulses in one direction until the stars moved `calibration_distance_px`
        (a straight-line fit through every step), then one pulse of the same total back, so
        the stars end near where they began. Raises `CalibrationFailed`.
        """
        dec = status.position.dec_deg
        ra_step_ms, dec_step_ms = self._step_lengths_ms(status, scale_arcsec_px)
        log.info("guider: calibrating, steps %d ms (RA) / %d ms (Dec)", ra_step_ms, dec_step_ms)
        shift = (0.0, 0.0)
        ra_px_s, shift = await self._leg(stars, shift, GuideDirection.WEST, ra_step_ms)
        dec_px_s, shift = await self._leg(stars, shift, GuideDirection.NORTH, dec_step_ms)
        try:
            calibration = Calibration(ra_px_s, dec_px_s, dec, status.side_of_pier)
        except ValueError as e:
            raise CalibrationFailed("calibrate", str(e)) from e
        error = calibration.orthogonality_error_deg
        if error > self._config.max_orthogonality_error_deg:
            raise CalibrationFailed(
                "calibrate", f"RA and Dec axes are {error:.0f} degrees from perpendicular"
            )
        log.info(
            "guider: calibrated: RA %.1f deg %.3f px/s, Dec %.1f deg %.3f px/s, "
            "orthogonality error %.1f deg",
            calibration.ra_angle_deg,
            calibration.ra_rate_px_s,
            calibration.dec_angle_deg,
            calibration.dec_rate_px_s,
            error,
        )
        self._by_side[status.side_of_pier] = calibration
        return calibration

    async def _leg(
        self,
        stars: GuideStars,
        shift: tuple[float, float],
        direction: GuideDirection,
        step_ms: int,
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """One axis: returns its velocity (dy, dx) px/s and where the stars are after the
        pulse back."""
        cfg = self._config
        axis = "RA" if direction is GuideDirection.WEST else "Dec"
        times, positions = [0.0], [shift]
        step = (0.0, 0.0)
        while True:
            await self._mount.pulse_guide(direction, step_ms)
            self._frames.note_pulse()
            predicted = (positions[-1][0] + step[0], positions[-1][1] + step[1])
            frame = await self._frames.take()
            fix = self._matcher.track(stars, frame.detections, predicted)
            if fix is None:
                raise CalibrationFailed("calibrate", f"lost the guide stars during the {axis} leg")
            here = (fix.dy, fix.dx)
            step = (here[0] - positions[-1][0], here[1] - positions[-1][1])
            times.append(times[-1] + step_ms)
            positions.append(here)
            moved = math.hypot(here[0] - shift[0], here[1] - shift[1])
            if moved >= cfg.calibration_distance_px:
                break
            if len(times) - 1 >= cfg.calibration_max_steps:
                if moved < max(2.0, 0.25 * cfg.calibration_distance_px):
                    raise CalibrationFailed(
                        "calibrate",
                        f"the stars moved only {moved:.1f} px in {len(times) - 1} {axis} "
                        f"pulses of {step_ms} ms: is the mount guiding?",
                    )
                break
        velocity = fit_axis(times, positions)
        back = _opposite(direction)
        total_ms = int(times[-1])
        await self._mount.pulse_guide(back, total_ms)
        self._frames.note_pulse()
        expected = (
            positions[-1][0] - velocity[0] * total_ms / 1000.0,
            positions[-1][1] - velocity[1] * total_ms / 1000.0,
        )
        frame = await self._frames.take()
        fix = self._matcher.track(stars, frame.detections, expected)
        if fix is None:
            raise CalibrationFailed("calibrate", f"lost the guide stars returning on {axis}")
        miss = math.hypot(fix.dy - expected[0], fix.dx - expected[1])
        log.info(
            "guider: %s leg %.1f px in %d pulses; %s return missed by %.2f px",
            axis,
            math.hypot(positions[-1][0] - shift[0], positions[-1][1] - shift[1]),
            len(times) - 1,
            back.name,
            miss,
        )
        return velocity, (fix.dy, fix.dx)

    def _step_lengths_ms(
        self, status: MountStatus, scale_arcsec_px: float | None
    ) -> tuple[int, int]:
        """Pulse lengths (RA, Dec) that move the stars distance/steps px each."""
        cfg = self._config
        if cfg.calibration_step_ms is not None:
            return cfg.calibration_step_ms, cfg.calibration_step_ms
        ra_rate, dec_rate = status.guide_rate_ra_deg_s, status.guide_rate_dec_deg_s
        if scale_arcsec_px is None or not ra_rate or not dec_rate:
            return _DEFAULT_STEP_MS, _DEFAULT_STEP_MS
        step_arcsec = cfg.calibration_distance_px / cfg.calibration_steps * scale_arcsec_px
        cos_dec = max(math.cos(math.radians(status.position.dec_deg)), 0.1)
        ra_ms = 1000.0 * step_arcsec / (ra_rate * 3600.0 * cos_dec)
        dec_ms = 1000.0 * step_arcsec / (dec_rate * 3600.0)
        return _clamp_step(ra_ms), _clamp_step(dec_ms)


def _opposite(direction: GuideDirection) -> GuideDirection:
    return {
        GuideDirection.NORTH: GuideDirection.SOUTH,
        GuideDirection.SOUTH: GuideDirection.NORTH,
        GuideDirection.EAST: GuideDirection.WEST,
        GuideDirection.WEST: GuideDirection.EAST,
    }[direction]


def _clamp_step(ms: float) -> int:
    return round(min(_MAX_STEP_MS, max(_MIN_STEP_MS, ms)))
