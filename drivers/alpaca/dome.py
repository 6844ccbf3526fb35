"""Alpaca dome driver: shutter or roll-off roof, azimuth slews, park and home.

A roll-off roof is an Alpaca dome that cannot set its azimuth: it reports no azimuth and
refuses slews, whatever the device serves for Azimuth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from drivers.alpaca._alpyca import Dome as AlpycaDome
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import DomeInfo, DomeStatus, ShutterState
from drivers.errors import FaultListener, NotSupported
from drivers.profile import DomeAddress, DomeGeometry

log = logging.getLogger(__name__)
_SHUTTER_MOVING = (ShutterState.OPENING, ShutterState.CLOSING)


class AlpacaDome(AlpacaDevice[DomeInfo]):
    def __init__(
        self, role: str, address: DomeAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(role, address, AlpycaDome(host, address.device_number, protocol), on_fault)
        self._dome_address = address

    @property
    def geometry(self) -> DomeGeometry:
        return self._dome_address.geometry

    async def _read_info(self) -> DomeInfo:
        g = self._get
        return DomeInfo(
            name=str(await g("Name")),
            can_set_azimuth=bool(await g("CanSetAzimuth")),
            can_set_shutter=bool(await g("CanSetShutter")),
            can_park=bool(await g("CanPark")),
            can_find_home=bool(await g("CanFindHome")),
            can_slave=bool(await g("CanSlave")),
        )

    async def status(self) -> DomeStatus:
        info, opt = self.info, self._get_optional
        shutter = await opt("ShutterStatus")
        return DomeStatus(
            shutter=ShutterState(int(shutter)) if shutter is not None else None,
            azimuth_deg=float(await self._get("Azimuth")) if info.can_set_azimuth else None,
            slewing=bool(await self._get("Slewing")),
            at_park=await opt("AtPark"),
            at_home=await opt("AtHome"),
        )

    async def open_shutter(self) -> None:
        """Open the shutter or roof; return once it reports OPEN (see `_shutter_to`)."""
        await self._shutter_to(ShutterState.OPEN, "open shutter", self._device.OpenShutter)

    async def close_shutter(self) -> None:
        """Close the shutter or roof; return once it reports CLOSED (see `_shutter_to`)."""
        await self._shutter_to(ShutterState.CLOSED, "close shutter", self._device.CloseShutter)

    async def slew_to_azimuth(self, azimuth_deg: float) -> None:
        """Slew to `azimuth_deg` (any value: taken modulo 360) and wait until the dome stops.

        `NotSupported` for a roll-off roof; `DeviceTimeout` after the profile's slew timeout
        (the dome is then stopped, as after a cancel or a failure: see `_stop_motion`).
        """
        if not self.info.can_set_azimuth:
            raise NotSupported(self.role, "slew", "a roll-off roof has no azimuth to slew to")
        target = float(azimuth_deg) % 360.0
        operation = f"slew to azimuth {target:.1f}"
        await self._move(
            operation,
            lambda: self._invoke(operation, self._device.SlewToAzimuth, target),
            self._not_slewing,
            self._dome_address.slew_timeout_s,
            self._stop_motion,
        )

    async def abort_slew(self) -> None:
        await self._invoke("abort slew", self._device.AbortSlew, retry=True)

    async def park(self) -> None:
        """Park and wait until the dome reports AtPark, within the profile's slew timeout."""
        if not self.info.can_park:
            raise NotSupported(self.role, "park", "the dome cannot park")
        await self._move(
            "park",
            lambda: self._invoke("park", self._device.Park),
            self._at_park,
            self._dome_address.slew_timeout_s,
            self._stop_motion,
        )

    async def find_home(self) -> None:
        """Find home and wait until the dome reports AtHome, within the profile's slew timeout."""
        if not self.info.can_find_home:
            raise NotSupported(self.role, "find home", "the dome cannot find its home")
        await self._move(
            "find home",
            lambda: self._invoke("find home", self._device.FindHome),
            self._at_home,
            self._dome_address.slew_timeout_s,
            self._stop_motion,
        )

    async def _stop_motion(self) -> None:
        """AbortSlew after a slew, park or homing that failed or was cancelled, unless the
        shutter moves: AbortSlew stops a moving shutter too, and a shutter or roof stopped
        midway (in ERROR) is worse than a dome left to finish its turn."""
        shutter = await self._get_optional("ShutterStatus")
        if shutter is not None and ShutterState(int(shutter)) in _SHUTTER_MOVING:
            log.warning(
                "%s: the shutter is moving; the dome is left to finish its motion", self.role
            )
            return
        await self.abort_slew()

    async def _shutter_to(
        self, wanted: ShutterState, operation: str, command: Callable[[], None]
    ) -> None:
        """`OperationFailed` when the shutter reports ERROR; `DeviceTimeout` when it does not
        report `wanted` within the profile's shutter timeout."""
        if not self.info.can_set_shutter:
            raise NotSupported(self.role, operation, "the dome cannot move its shutter")
        await self._until_state(
            operation,
            lambda: self._invoke(operation, command),
            self._shutter,
            wanted,
            ShutterState.ERROR,
            self._dome_address.shutter_timeout_s,
        )

    async def _shutter(self) -> ShutterState:
        return ShutterState(int(await self._get("ShutterStatus")))

    async def _not_slewing(self) -> bool:
        return not await self._get("Slewing")

    async def _at_park(self) -> bool:
        return bool(await self._get("AtPark"))

    async def _at_home(self) -> bool:
        return bool(await self._get("AtHome"))
