"""The one way Nightowl calls alpyca: off the event loop, with a deadline, errors translated.

alpyca's calls block on HTTP (up to `HTTP_TIMEOUT_S` per request), so each runs in a
worker thread under `asyncio.timeout`. Not `asyncio.wait_for`: on Python 3.11 it can swallow a
cancellation that arrives as the call answers, and a cancelled run would carry on. alpyca's
ASCOM exceptions and `requests` errors become `drivers.errors.DeviceError` subclasses naming
the device and the operation.

A request that changes nothing when repeated (a read, a property set, an image download) is
retried after a transient fault (`transient`: an HTTP 5xx, a connection reset once made, a
reply cut short, an unspecific driver error); every retried fault goes to the device's
`FaultListener` and the log. A refused connection, a timeout and an ASCOM error with a meaning
(not implemented, invalid value, busy, parked) are raised at once: repeating would not help,
or would only double the wait for a device that does not answer.

The threads come from a pool of Nightowl's own, sized so that calls hanging on a silent server
(each up to alpyca's HTTP timeout) cannot starve the calls to healthy devices; alpyca's lock
that serialised all devices is lifted in `_alpyca.py`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests
import urllib3
from alpaca import exceptions as ascom

from drivers.alpaca._alpyca import HTTP_TIMEOUT_S
from drivers.alpaca.imagebytes import ImageBytesError
from drivers.errors import (
    DeviceBusy,
    DeviceError,
    DeviceFault,
    DeviceTimeout,
    FaultListener,
    InvalidValue,
    NotConnected,
    NotSupported,
    OperationFailed,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Our deadline for a plain property or method call adds a margin to the HTTP timeout, so that
# the HTTP timeout (the clearer error) normally fires first.
CALL_TIMEOUT_S = HTTP_TIMEOUT_S + 1.0
POLL_INTERVAL_S = 0.1
RETRY_DELAYS_S = (0.2, 1.0)
"""Pauses before the retries of a request that changes nothing, after a transient fault."""
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="alpaca")


# A reply that ended before its body did, or whose body cannot be read.
_CUT_SHORT = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.JSONDecodeError,
)


def translate(device: str, operation: str, error: Exception) -> DeviceError:
    """Map an alpyca / requests exception to our hierarchy (the caller chains it)."""
    message = str(error) or type(error).__name__
    if isinstance(error, DeviceError):
        return error
    if isinstance(error, ascom.NotConnectedException):
        return NotConnected(device, operation, message)
    if isinstance(error, ascom.NotImplementedException):
        return NotSupported(device, operation, message)
    if isinstance(error, ascom.InvalidValueException):
        return InvalidValue(device, operation, message)
    if isinstance(error, ascom.ActionNotImplementedException):
        # 0x40C is "action not implemented" for Action(); Nightowl never calls Action(), and
        # devices (the simulator among them) use 0x40C for "busy" on ordinary methods.
        return DeviceBusy(device, operation, message)
    if isinstance(error, requests.Timeout):
        return DeviceTimeout(device, operation, f"no HTTP reply in time ({message})")
    if isinstance(error, requests.ConnectionError):
        return NotConnected(device, operation, f"cannot reach the Alpaca server ({message})")
    if isinstance(error, _CUT_SHORT):
        return OperationFailed(device, operation, f"the reply was cut short ({message})")
    return OperationFailed(device, operation, message)


def transient(error: BaseException) -> bool:
    """Whether `error` is a fault of one exchange rather than the device's answer or absence:
    an HTTP 5xx, a connection reset after it was made, a reply cut short or unreadable, an
    unspecific driver error (0x500 and up)."""
    if isinstance(error, requests.Timeout):
        return False
    if isinstance(error, requests.ConnectionError):
        # A refused connection (nothing listens) comes wrapped as the reason of a MaxRetryError.
        reason = getattr(error.args[0], "reason", None) if error.args else None
        return not isinstance(reason, urllib3.exceptions.NewConnectionError)
    if isinstance(error, _CUT_SHORT):
        return True
    if isinstance(error, ascom.AlpacaRequestException):
        return int(error.number) >= 500
    if isinstance(error, ascom.DriverException):
        return int(error.number) >= 0x500
    if isinstance(error, ImageBytesError):
        return error.transient
    return False


async def call(
    device: str,
    operation: str,
    fn: Callable[..., T],
    *args: object,
    timeout_s: float = CALL_TIMEOUT_S,
    retry: bool = False,
    on_fault: FaultListener | None = None,
) -> T:
    """Run the blocking `fn(*args)` in a thread; raise a `DeviceError` on failure or timeout.

    With `retry` (only for a request that changes nothing when repeated), a `transient` fault
    is retried after each pause of `RETRY_DELAYS_S`, each attempt with its own `timeout_s`;
    `on_fault` hears of every fault so retried. The fault of the last attempt is raised.
    """
    for attempt, delay_s in enumerate(RETRY_DELAYS_S if retry else (), start=1):
        try:
            return await _once(device, operation, fn, args, timeout_s)
        except DeviceError as e:
            if e.__cause__ is None or not transient(e.__cause__):
                raise
            log.warning("%s; retrying in %.1f s (attempt %d)", e, delay_s, attempt)
            if on_fault is not None:
                on_fault(DeviceFault(device, operation, e.message, attempt, delay_s))
        await asyncio.sleep(delay_s)
    return await _once(device, operation, fn, args, timeout_s)


async def _once(
    device: str,
    operation: str,
    fn: Callable[..., T],
    args: tuple[object, ...],
    timeout_s: float,
) -> T:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            return await loop.run_in_executor(_executor, functools.partial(fn, *args))
    except TimeoutError as e:
        raise DeviceTimeout(device, operation, f"no answer within {timeout_s:.1f} s") from e
    except Exception as e:
        raise translate(device, operation, e) from e


async def wait_until(
    device: str,
    operation: str,
    done: Callable[[], Awaitable[bool]],
    timeout_s: float,
    interval_s: float = POLL_INTERVAL_S,
) -> None:
    """Poll `done()` every `interval_s` until it is true; `DeviceTimeout` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await done():
        if time.monotonic() >= deadline:
            raise DeviceTimeout(device, operation, f"not finished within {timeout_s:.1f} s")
        await asyncio.sleep(interval_s)
