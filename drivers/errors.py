"""Device errors: one hierarchy for every driver, whatever the protocol underneath.

Each error names the device (its role, e.g. ``camera``) and the operation that failed, and
chains the protocol's own exception as ``__cause__``. How a caller should react:

- `NotConnected`: the device or its server cannot be reached or is not connected. Reconnect
  (with backoff) or end the night safely; retrying the same call at once will not help.
- `DeviceTimeout`: no answer within the call's deadline. The device state is unknown: query
  its status before deciding; abort a running operation if possible.
- `DeviceBusy`: the device refused because it is doing something else. Wait and retry, or
  abort the other operation first.
- `NotSupported`: the device lacks the capability. Do not retry; skip the step or pick
  another device.
- `OperationFailed`: the device answered with an error (parked, driver fault). Retry
  according to the step's policy; the message says what the device reported.
- `InvalidValue` (an `OperationFailed`): the device refused a value out of its range. Tell
  whoever gave the value; do not retry.

A fault of one exchange (an HTTP 5xx, a reset connection, a reply cut short) on a request that
changes nothing when repeated (a read, a property set, an image download) is retried by the
driver itself; each retried fault is reported as a `DeviceFault` to the driver's listener, and
only a fault that outlasts the retries is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias


class DeviceError(Exception):
    """A device operation failed; `device` and `operation` say which."""

    def __init__(self, device: str, operation: str, message: str) -> None:
        super().__init__(f"{device}: {operation} failed: {message}")
        self.device = device
        self.operation = operation
        self.message = message


class NotConnected(DeviceError):
    """The device (or its server) is unreachable or not connected."""


class DeviceTimeout(DeviceError):
    """The device gave no answer within the operation's deadline."""


class DeviceBusy(DeviceError):
    """The device refused because it is busy with another operation."""


class NotSupported(DeviceError):
    """The device does not implement the requested capability."""


class OperationFailed(DeviceError):
    """The device answered with an error."""


class InvalidValue(OperationFailed):
    """The device refused a value it cannot take (a gain, offset or position out of its
    range): the caller's input is wrong, retrying will not help."""


@dataclass(frozen=True)
class DeviceFault:
    """A fault a driver met and retried (reported to a `FaultListener`, never raised): an
    exchange that failed in a way worth repeating, see `drivers.alpaca._call.transient`.

    `attempt` is the number of the attempt that failed; the next one follows `retry_in_s` later.
    """

    device: str
    operation: str
    message: str
    attempt: int
    retry_in_s: float


FaultListener: TypeAlias = Callable[[DeviceFault], None]
"""Hears every retried fault, on the event loop; it must return at once (queue, don't wait)."""
