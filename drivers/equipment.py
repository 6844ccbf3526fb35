"""The equipment of one observatory profile: connect all, disconnect all, one status snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from drivers.base import (
    Camera,
    CoverCalibrator,
    Device,
    Dome,
    FilterWheel,
    Focuser,
    Mount,
    Rotator,
    SafetyMonitor,
    Switch,
    WeatherStation,
)
from drivers.errors import DeviceError, NotConnected, OperationFailed
from drivers.profile import ObservingSite

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceReport:
    """One device as it is now: where it is, whether it answers, and why not.

    `error` is the failure of this status read; for a device that is not connected, the
    failure of its last connect or disconnect (None when it was simply disconnected).
    """

    role: str
    location: str
    connected: bool
    info: object | None
    status: object | None
    error: str | None


@dataclass
class Equipment:
    """The devices of a profile by role; any role may be absent."""

    profile_name: str
    camera: Camera | None = None
    guide_camera: Camera | None = None
    mount: Mount | None = None
    focuser: Focuser | None = None
    filter_wheel: FilterWheel | None = None
    safety_monitor: SafetyMonitor | None = None
    dome: Dome | None = None
    cover_calibrator: CoverCalibrator | None = None
    rotator: Rotator | None = None
    weather: WeatherStation | None = None
    switch: Switch | None = None
    external_guider: str | None = None
    """A guiding program that runs its own guide camera (``"phd2"``): guiding needs no
    `guide_camera` here then."""
    site: ObservingSite | None = None
    """The profile's site: where the observatory stands when the mount reports no site."""

    def __post_init__(self) -> None:
        self._connect_errors: dict[str, str] = {}
        """Why a device is not connected; read only while it is not."""

    def devices(self) -> Iterator[Device]:
        for device in (
            self.camera,
            self.guide_camera,
            self.mount,
            self.focuser,
            self.filter_wheel,
            self.safety_monitor,
            self.dome,
            self.cover_calibrator,
            self.rotator,
            self.weather,
            self.switch,
        ):
            if device is not None:
                yield device

    async def connect_all(self) -> dict[str, DeviceError | None]:
        """Connect every device concurrently; a failure is recorded and returned, not raised."""
        devices = list(self.devices())
        results = await asyncio.gather(
            *(self._connect(d) for d in devices), return_exceptions=False
        )
        return {d.role: r for d, r in zip(devices, results, strict=True)}

    async def disconnect_all(self, keep: Collection[str] = ()) -> dict[str, DeviceError | None]:
        """Disconnect every device but the roles in `keep`; failures are returned."""
        devices = [d for d in self.devices() if d.role not in keep]
        results = await asyncio.gather(*(self._disconnect(d) for d in devices))
        return {d.role: r for d, r in zip(devices, results, strict=True)}

    async def snapshot(self) -> list[DeviceReport]:
        """The status of every device, read now; devices that fail to answer report their error."""
        return list(await asyncio.gather(*(self.report(d) for d in self.devices())))

    async def _connect(self, device: Device) -> DeviceError | None:
        try:
            await device.connect()
        except DeviceError as e:
            log.warning("connect failed: %s", e)
            self._connect_errors[device.role] = str(e)
            return e
        except Exception as e:  # a reply the driver cannot read: keep the others going
            log.exception("%s: connect failed on an unexpected reply", device.role)
            error = OperationFailed(device.role, "connect", f"unexpected reply: {e!r}")
            self._connect_errors[device.role] = str(error)
            return error
        self._connect_errors.pop(device.role, None)
        return None

    async def _disconnect(self, device: Device) -> DeviceError | None:
        try:
            await device.disconnect()
        except DeviceError as e:
            log.warning("disconnect failed: %s", e)
            self._connect_errors[device.role] = str(e)
            return e
        self._connect_errors.pop(device.role, None)
        return None

    async def report(self, device: Device) -> DeviceReport:
        """`device` as it is now: its status read, or why it cannot be read.

        Never raises (but for cancellation): any failure, including a reply the driver cannot
        parse, becomes the report's error. A device that answers has no error, whatever failed
        before: the report is the device's state, not a memory of past faults.
        """
        if not device.connected:
            return DeviceReport(
                device.role,
                device.location,
                False,
                None,
                None,
                self._connect_errors.get(device.role),
            )
        info = device.info
        try:
            status = await device.status()
        except DeviceError as e:
            answered = not isinstance(e, NotConnected)
            return DeviceReport(device.role, device.location, answered, info, None, str(e))
        except Exception as e:  # a reply the driver cannot read: report it, not a 500
            log.exception("%s: status failed on an unexpected reply", device.role)
            message = str(OperationFailed(device.role, "status", f"unexpected reply: {e!r}"))
            return DeviceReport(device.role, device.location, True, info, None, message)
        return DeviceReport(device.role, device.location, True, info, status, None)
