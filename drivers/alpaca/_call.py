"""The one way Nightowl calls alpyca: off the event loop, with a deadline, errors translated.

alpyca's calls block on HTTP (up to `HTTP_TIMEOUT_S` per request), so each runs in a
worker thread under `asyncio.timeout`. Not `asyncio.wait_for`: on Python 3.11 it can swallow a
cancellation that arrives as the call answers, and a cancelled run would carry on. alpyca's
ASCOM exceptions and `requests` errors become `drivers.errors.DeviceError` subclasses naming
the device and the operation.

The threads come from a pool of Nightowl's own, sized so that calls hanging on a silent server
(each up to alpyca's HTTP timeout) cannot starve the calls to healthy devices; alpyca's lock
that serialised all devices is lifted in `_alpyca.py`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import requests
from alpaca import exceptions as ascom

from drivers.alpaca._alpyca import HTTP_TIMEOUT_S
from drivers.errors import (
    DeviceBusy,
    DeviceError,
    DeviceTimeout,
    NotConnected,
    NotSupported,
    OperationFailed,
)

T = TypeVar("T")

# Our deadline for a plain property or method call adds a margin to the HTTP timeout, so that
# the HTTP timeout (the clearer error) normally fires first.
CALL_TIMEOUT_S = HTTP_TIMEOUT_S + 1.0
POLL_INTERVAL_S = 0.1
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="alpaca")


def translate(device: str, operation: str, error: Exception) -> DeviceError:
    """Map an alpyca / requests exception to our hierarchy (the caller chains it)."""
    message = str(error) or type(error).__name__
    if isinstance(error, DeviceError):
        return error
    if isinstance(error, ascom.NotConnectedException):
        return NotConnected(device, operation, message)
    if isinstance(error, ascom.NotImplementedException):
        return NotSupported(device, operation, message)
    if isinstance(error, ascom.ActionNotImplementedException):
        # 0x40C is "action not implemented" for Action(); Nightowl never calls Action(), and
        # devices (the simulator among them) use 0x40C for "busy" on ordinary methods.
        return DeviceBusy(device, operation, message)
    if isinstance(error, requests.Timeout):
        return DeviceTimeout(device, operation, f"no HTTP reply in time ({message})")
    if isinstance(error, requests.ConnectionError):
        return NotConnected(device, operation, f"cannot reach the Alpaca server ({message})")
    return OperationFailed(device, operation, message)


async def call(
    device: str,
    operation: str,
    fn: Callable[..., T],
    *args: object,
    timeout_s: float = CALL_TIMEOUT_S,
) -> T:
    """Run the blocking `fn(*args)` in a thread; raise a `DeviceError` on failure or timeout."""
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
