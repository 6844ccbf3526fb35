"""The guide controller (one proportional controller per mount axis) and the RMS window.

Each axis turns its error (px along the axis) into a correction (px to move the stars back):

- below `min_move_px` nothing is sent: the error is centroid noise or seeing, and chasing it
  only adds the noise to the mount;
- otherwise ``aggressiveness x ((1 - hysteresis) x error + hysteresis x previous correction)``:
  aggressiveness under 1 damps overshoot on noisy centroids; hysteresis (RA only by default)
  keeps some memory of the previous correction for slow periodic error, as PHD2's RA
  "hysteresis" algorithm does;
- the pulse is limited to `max_pulse_ms`, so one bad centroid cannot throw the mount far.

`GuideController` pairs the two axes and turns their corrections into pulses through the
calibration.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from drivers.base import GuidePulse, GuideRms
from drivers.guider.calibration import Calibration, pulse_direction


@dataclass(frozen=True)
class AxisSettings:
    """Controller settings of one axis; the defaults are PHD2's RA defaults."""

    aggressiveness: float = 0.7
    min_move_px: float = 0.15
    hysteresis: float = 0.1
    max_pulse_ms: int = 2500

    def __post_init__(self) -> None:
        if not 0 < self.aggressiveness <= 2:
            raise ValueError(f"aggressiveness must be within (0, 2], got {self.aggressiveness}")
        if self.min_move_px < 0 or not 0 <= self.hysteresis < 1 or self.max_pulse_ms < 1:
            raise ValueError("need min_move_px >= 0, hysteresis within [0, 1), max_pulse_ms >= 1")


class AxisController:
    """Proportional controller of one axis with min-move and optional hysteresis."""

    def __init__(self, settings: AxisSettings) -> None:
        self.settings = settings
        self._previous_px = 0.0

    def reset(self) -> None:
        """Forget the previous correction (after a dither, reacquire or restart)."""
        self._previous_px = 0.0

    def correction_px(self, error_px: float) -> float:
        """Pixels (along the axis, same sign as the error) to move the stars back."""
        s = self.settings
        if abs(error_px) < s.min_move_px:
            self._previous_px = 0.0
            return 0.0
        blended = (1.0 - s.hysteresis) * error_px + s.hysteresis * self._previous_px
        correction = s.aggressiveness * blended
        self._previous_px = correction
        return correction

    def limit_ms(self, pulse_ms: float) -> int:
        """Round a signed pulse length to whole ms, limited to +-max_pulse_ms."""
        limited = max(-self.settings.max_pulse_ms, min(self.settings.max_pulse_ms, pulse_ms))
        return round(limited)


class GuideController:
    """The RA and Dec controllers together, and whether their pulses are sent at all."""

    def __init__(self, ra: AxisSettings, dec: AxisSettings) -> None:
        self._ra = AxisController(ra)
        self._dec = AxisController(dec)
        self._output_enabled = True

    @property
    def output_enabled(self) -> bool:
        """Whether corrections are sent; when off the loop only measures (for comparisons)."""
        return self._output_enabled

    @output_enabled.setter
    def output_enabled(self, enabled: bool) -> None:
        if enabled != self._output_enabled:
            self.reset()  # no hysteresis memory of corrections never sent
        self._output_enabled = enabled

    def reset(self) -> None:
        """Forget the previous corrections (after a dither, reacquire or new lock)."""
        self._ra.reset()
        self._dec.reset()

    def pulses(
        self, calibration: Calibration, ra_px: float, dec_px: float
    ) -> tuple[GuidePulse | None, GuidePulse | None]:
        """The (RA, Dec) pulses that move the stars back from an error of `ra_px`, `dec_px`
        along the axes; None for an axis without a correction, both None while output is off."""
        west_ms, north_ms = calibration.pulses_ms(
            -self._ra.correction_px(ra_px), -self._dec.correction_px(dec_px)
        )
        ra_pulse = _pulse(self._ra.limit_ms(west_ms), ra=True)
        dec_pulse = _pulse(self._dec.limit_ms(north_ms), ra=False)
        if not self._output_enabled:
            return None, None
        return ra_pulse, dec_pulse


class RmsWindow:
    """RA/Dec errors (arcsec) of the guide steps since the last reset, at most `size` of them."""

    def __init__(self, size: int = 1000) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._steps: deque[tuple[float, float]] = deque(maxlen=size)

    def reset(self) -> None:
        self._steps.clear()

    def add(self, ra_arcsec: float, dec_arcsec: float) -> None:
        self._steps.append((ra_arcsec, dec_arcsec))

    def value(self) -> GuideRms | None:
        """RMS from the lock position (None without steps)."""
        n = len(self._steps)
        if n == 0:
            return None
        ra = math.sqrt(sum(r * r for r, _ in self._steps) / n)
        dec = math.sqrt(sum(d * d for _, d in self._steps) / n)
        return GuideRms(ra_arcsec=ra, dec_arcsec=dec, total_arcsec=math.hypot(ra, dec), steps=n)


def _pulse(signed_ms: int, *, ra: bool) -> GuidePulse | None:
    if signed_ms == 0:
        return None
    return GuidePulse(pulse_direction(signed_ms, ra=ra), abs(signed_ms))
