"""The guide controller (one proportional controller per mount axis) and the RMS window.

Each axis turns its error (px along the axis) into a correction (px to move the stars back):

- below `min_move_px` nothing is sent: the error is centroid noise or seeing, and chasing it
  only adds the noise to the mount;
- otherwise ``aggressiveness x ((1 - hysteresis) x error + hysteresis x previous correction)``:
  aggressiveness under 1 damps overshoot on noisy centroids; hysteresis (RA only by default)
  keeps some memory of the previous correction for slow periodic error, as PHD2's RA
  "hysteresis" algorithm does;
- the pulse is limited to `max_pulse_ms`, so one bad centroid cannot throw the mount far.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from drivers.base import GuideRms


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
