"""Shared plumbing of the Alpaca drivers: the alpyca object, connect/disconnect, safe calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from alpaca import exceptions as ascom
from alpaca.device import Device as AlpycaDevice

from drivers.alpaca._call import CALL_TIMEOUT_S, call
from drivers.errors import DeviceError, FaultListener, NotConnected, NotSupported
from drivers.profile import DeviceAddress

log = logging.getLogger(__name__)

InfoT = TypeVar("InfoT")
T = TypeVar("T")


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
        self, command: asyncio.Future[None], undo: Callable[[], Awaitable[None]], what: str
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
