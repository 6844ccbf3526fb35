"""Shared plumbing of the Alpaca drivers: the alpyca object, connect/disconnect, safe calls."""

from __future__ import annotations

import asyncio
import enum
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from alpaca import exceptions as ascom
from alpaca.device import Device as AlpycaDevice

from drivers.alpaca._call import CALL_TIMEOUT_S, call, wait_until
from drivers.errors import (
    DeviceError,
    DeviceTimeout,
    FaultListener,
    NotConnected,
    NotSupported,
    OperationFailed,
)
from drivers.profile import DeviceAddress

log = logging.getLogger(__name__)

InfoT = TypeVar("InfoT")
T = TypeVar("T")
StateT = TypeVar("StateT", bound=enum.Enum)


def alpyca_args(address: DeviceAddress) -> tuple[str, str]:
    """alpyca wants ``host:port`` and the protocol separately."""
    parts = urlsplit(address.url)
    return parts.netloc, parts.scheme


class AlpacaDevice(Generic[InfoT]):
    """Base of every Alpaca driver: owns the alpyca object and the connected flag.

    Subclasses read their static facts in `_read_info` and expose async methods built on
    `_get` / `_set` / `_invoke`, which all go through `drivers.alpaca._call.call`; reads and
    property sets are retried after a transient fault, which `on_fault` hears of.
    """

    def __init__(
        self,
        role: str,
        address: DeviceAddress,
        device: AlpycaDevice,
        on_fault: FaultListener | None = None,
    ) -> None:
        self._role = role
        self.address = address
        self._device = device
        self._on_fault = on_fault
        self._info: InfoT | None = None

    @property
    def role(self) -> str:
        return self._role

    @property
    def location(self) -> str:
        return f"{self.address.url} #{self.address.device_number}"

    @property
    def connected(self) -> bool:
        return self._info is not None

    @property
    def info(self) -> InfoT:
        if self._info is None:
            raise NotConnected(self._role, "info", "device is not connected; call connect()")
        return self._info

    async def connect(self) -> InfoT:
        """Connect and read the device's static facts; returns them (also in `info`)."""
        await self._set("Connected", True)
        self._info = await self._read_info()
        log.info("%s connected: %s #%d", self._role, self.address.url, self.address.device_number)
        return self._info

    async def disconnect(self) -> None:
        self._info = None
        await self._set("Connected", False)
        log.info("%s disconnected", self._role)

    async def _read_info(self) -> InfoT:
        raise NotImplementedError

    async def _call(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: object,
        timeout_s: float,
        retry: bool = False,
    ) -> T:
        """`call`, reconnecting once when the server answers that the device is not connected
        although we connected it: the device or its server restarted (a power cut, a crash).
        `retry` only for a request that changes nothing when repeated."""
        try:
            return await self._attempt(operation, fn, args, timeout_s, retry)
        except NotConnected as e:
            if self._info is None or not isinstance(e.__cause__, ascom.NotConnectedException):
                raise
            log.warning("%s: the device lost its connection; reconnecting", self._role)
            await self._attempt(
                "reconnect", setattr, (self._device, "Connected", True), timeout_s, True
            )
            return await self._attempt(operation, fn, args, timeout_s, retry)

    async def _attempt(
        self,
        operation: str,
        fn: Callable[..., T],
        args: tuple[object, ...],
        timeout_s: float,
        retry: bool,
    ) -> T:
        return await call(
            self._role,
            operation,
            fn,
            *args,
            timeout_s=timeout_s,
            retry=retry,
            on_fault=self._on_fault,
        )

    async def _get(self, name: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        return await self._call(
            f"read {name}", getattr, self._device, name, timeout_s=timeout_s, retry=True
        )

    async def _get_optional(self, name: str) -> Any:
        """Read a property that a device may legitimately not implement (None if so)."""
        try:
            return await self._get(name)
        except NotSupported:
            return None

    async def _set(self, name: str, value: object, timeout_s: float = CALL_TIMEOUT_S) -> None:
        await self._call(
            f"set {name}={value!r}",
            setattr,
            self._device,
            name,
            value,
            timeout_s=timeout_s,
            retry=True,
        )

    async def _invoke(
        self,
        operation: str,
        fn: Callable[..., T],
        *args: object,
        timeout_s: float = CALL_TIMEOUT_S,
        retry: bool = False,
    ) -> T:
        """Call a device method; `retry` only for one that changes nothing when repeated
        (an abort, a halt), never for one that starts something."""
        return await self._call(operation, fn, *args, timeout_s=timeout_s, retry=retry)

    async def _undo_after(
        self, command: asyncio.Future[Any], undo: Callable[[], Awaitable[None]], what: str
    ) -> None:
        """Run `undo` (abort the exposure, the slew) once `command` has answered, so that the
        undo cannot overtake a command still on the wire; nothing to undo when it failed.
        Used when the caller was cancelled or failed while the device was still at work."""
        try:
            await command
        except (asyncio.CancelledError, DeviceError):
            return
        try:
            await undo()
        except DeviceError as e:  # the failure that brought us here is what the caller sees
            log.warning("%s: %s after a failed or cancelled command failed: %s", self.role, what, e)

    async def _until_state(
        self,
        operation: str,
        command: Callable[[], Awaitable[object]],
        read: Callable[[], Awaitable[StateT]],
        wanted: StateT,
        error: StateT,
        timeout_s: float,
    ) -> None:
        """Send `command`, then poll `read` until it reports `wanted`; command and wait share
        one deadline, so a silent device fails within `timeout_s` too.

        Raises `OperationFailed` when the device reports `error`, `DeviceTimeout` (naming the
        last state seen) when `wanted` does not come within `timeout_s`. Nothing is stopped
        on failure: a roof or cover halted midway is neither open nor closed, the caller
        decides what to do next.
        """
        seen: list[StateT] = []

        async def reached() -> bool:
            state = await read()
            seen.append(state)
            if state is error:
                raise OperationFailed(self._role, operation, f"the device reports {state.name}")
            return state is wanted

        try:
            async with asyncio.timeout(timeout_s):
                await command()
                await wait_until(self._role, operation, reached, math.inf)
        except TimeoutError as e:
            last = f"; it still reports {seen[-1].name}" if seen else ""
            raise DeviceTimeout(
                self._role, operation, f"no {wanted.name} within {timeout_s:.1f} s{last}"
            ) from e

    async def _move(
        self,
        operation: str,
        command: Callable[[], Awaitable[None]],
        stopped: Callable[[], Awaitable[bool]],
        timeout_s: float,
        stop: Callable[[], Awaitable[None]],
    ) -> None:
        """Start a motion with `command` and wait until `stopped`, both within `timeout_s`.

        A cancel, a failure or an overrun deadline stops the device with `stop` (once the
        command has answered): nothing keeps moving towards a target nobody waits for.
        Raises `DeviceTimeout` after `timeout_s`.
        """
        start = asyncio.ensure_future(command())
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(start)  # a cancel must not let `stop` overtake the command
                await wait_until(self._role, operation, stopped, math.inf)
        except TimeoutError as e:
            await asyncio.shield(self._undo_after(start, stop, "stop"))
            raise DeviceTimeout(
                self._role, operation, f"not finished within {timeout_s:.1f} s"
            ) from e
        except (asyncio.CancelledError, DeviceError):
            await asyncio.shield(self._undo_after(start, stop, "stop"))
            raise
