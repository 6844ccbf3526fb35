"""Guider errors. Each is a `DeviceError` with device ``guider``, so code that handles device
faults generically also handles these. How a caller should react:

- `NoGuideStar`: no usable star in the guide frame (clouds, empty field, wrong exposure). Check
  the sky and the exposure, then start again; retrying at once rarely helps.
- `CalibrationFailed`: the stars did not move as the pulses asked (mount not guiding, guide
  cable, rates far off, stars lost). Fix the cause; the old calibration (if any) is kept.
- `NotGuiding`: the operation needs a running, calibrated guider (or guiding stopped while
  waiting). Start guiding first.
- `SettleTimeout`: the error did not stay under the tolerance in time. A sequence may go on
  (frames will be judged on their own) or retry the dither, per its error policy.
"""

from __future__ import annotations

from drivers.errors import DeviceError


class GuiderError(DeviceError):
    """A guiding operation failed; `operation` says which."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__("guider", operation, message)


class NoGuideStar(GuiderError):
    """No usable guide star was found."""


class CalibrationFailed(GuiderError):
    """The pulse-guide calibration could not be measured."""


class NotGuiding(GuiderError):
    """The guider is not guiding (stopped, or not yet calibrated)."""


class SettleTimeout(GuiderError):
    """Guiding did not settle within the timeout."""
