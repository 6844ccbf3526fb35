"""The observatory's buttons: the roof or dome, the dust cover and flat panel, the switches.

The API moves them through here, outside any sequence. The roof opens and closes through
`drivers.observatory` like everyone's (a roll-off roof never moves over an unparked mount:
409 with the reason), and does not open while the safety supervisor holds the night (unsafe,
or safe for less than the safe delay). Each command returns once the device reports its end
state, with the device read again, and leaves an event (source ``observatory``) in the log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy import Engine

from daemon.equipment_state import DeviceReading, EquipmentState
from daemon.errors import Conflict, NotFound, Refused
from daemon.events import record_event
from daemon.safety import SafetyState, SafetySupervisor
from drivers import observatory
from drivers.base import CoverCalibrator, Device, Dome
from drivers.equipment import Equipment

D = TypeVar("D", bound=Device)

_HOLDING = (SafetyState.UNSAFE, SafetyState.SETTLING)


class ObservatoryControl:
    """Commands for the devices of `equipment`; `state` reads a device again after each."""

    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        state: EquipmentState,
        safety: SafetySupervisor,
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._state = state
        self._safety = safety

    async def open_roof(self) -> DeviceReading:
        """`Conflict` while safety holds the night or when the roof may not move over the
        mount (`RoofRefused`); device errors as raised."""
        dome = self._dome()
        report = self._safety.report()
        if report.state in _HOLDING:
            raise Conflict(
                f"the roof stays closed: safety is {report.state.value} "
                f"({report.reason or 'no reason given'}); it opens once it has been safe "
                f"for the safe delay ({self._safety.config.safe_delay_s / 60:g} min)"
            )
        await _roof(observatory.open_roof(dome, self._equipment.mount))
        return await self._done(dome, "roof opened")

    async def close_roof(self) -> DeviceReading:
        """`Conflict` when a roll-off roof may not move over the mount (`RoofRefused`)."""
        dome = self._dome()
        await _roof(observatory.close_roof(dome, self._equipment.mount))
        return await self._done(dome, "roof closed")

    async def park_dome(self) -> DeviceReading:
        dome = self._dome()
        await dome.park()
        return await self._done(dome, "dome parked")

    async def open_cover(self) -> DeviceReading:
        device = self._cover_calibrator()
        await device.open_cover()
        return await self._done(device, "cover opened")

    async def close_cover(self) -> DeviceReading:
        device = self._cover_calibrator()
        await device.close_cover()
        return await self._done(device, "cover closed")

    async def calibrator_on(self, brightness: int) -> DeviceReading:
        """`Refused` (field ``brightness``) outside the panel's 0..max brightness."""
        device = self._cover_calibrator()
        try:
            await device.calibrator_on(brightness)
        except ValueError as e:
            raise Refused("brightness", f"{e}: pick a brightness the panel takes") from e
        return await self._done(device, f"flat panel on at brightness {brightness}")

    async def calibrator_off(self) -> DeviceReading:
        device = self._cover_calibrator()
        await device.calibrator_off()
        return await self._done(device, "flat panel off")

    async def set_switch(self, channel: int, value: float) -> DeviceReading:
        """`Refused` naming ``channel`` (unknown or read-only) or ``value`` (out of range)."""
        switch = _need(self._equipment.switch, "switch")
        channels = switch.info.channels
        if not 0 <= channel < len(channels):
            names = ", ".join(f"{c.id}: {c.name}" for c in channels)
            raise Refused("channel", f"no channel {channel}: the switch has {names}")
        if not channels[channel].can_write:
            raise Refused("channel", f"channel {channel} ({channels[channel].name}) is read-only")
        try:
            await switch.set_switch(channel, value)
        except ValueError as e:
            raise Refused("value", str(e)) from e
        name = channels[channel].name
        return await self._done(switch, f"switch {channel} ({name}) set to {value:g}")

    def _dome(self) -> Dome:
        return _need(self._equipment.dome, "dome")

    def _cover_calibrator(self) -> CoverCalibrator:
        return _need(self._equipment.cover_calibrator, "cover_calibrator")

    async def _done(self, device: Device, what: str) -> DeviceReading:
        """Log the command and read the device again, for the answer and the dashboards."""
        await asyncio.to_thread(
            record_event,
            self._engine,
            "info",
            "observatory",
            f"{what} over the API",
            {"role": device.role},
        )
        return await self._state.read(device)


def _need(device: D | None, role: str) -> D:
    if device is None:
        raise NotFound(f"the equipment profile has no {role}: add a `{role}:` entry to the profile")
    return device


async def _roof(motion: Awaitable[None]) -> None:
    try:
        await motion
    except observatory.RoofRefused as e:
        raise Conflict(str(e)) from e
