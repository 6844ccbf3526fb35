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
- `GuiderUnreachable` (a `NotConnected`): PHD2 cannot be reached or the connection dropped.
  Check that PHD2 runs with its server enabled; the client reconnects by itself.
- `GuiderTimeout` (a `DeviceTimeout`): PHD2 did not answer a call in time. Its state is
  unknown: the next start or stop finds out.
- `GuiderRefused` (an `OperationFailed`): PHD2 answered a call with an error; the message
  is PHD2's own and says what to fix there.
"""

from __future__ import annotations

from drivers.errors import DeviceError, DeviceTimeout, NotConnected, OperationFailed


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


class GuiderUnreachable(GuiderError, NotConnected):
    """PHD2 cannot be reached, or the connection to it dropped."""


class GuiderTimeout(GuiderError, DeviceTimeout):
    """PHD2 gave no answer within the call's deadline."""


class GuiderRefused(GuiderError, OperationFailed):
    """PHD2 answered a call with an error."""
