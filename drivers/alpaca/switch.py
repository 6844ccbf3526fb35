"""Alpaca switch driver: named boolean and analogue channels (power outlets, dew heaters)."""

from __future__ import annotations

import math
from typing import Any

from drivers.alpaca._alpyca import Switch as AlpycaSwitch
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import SwitchChannel, SwitchInfo, SwitchStatus
from drivers.errors import FaultListener
from drivers.profile import DeviceAddress


class AlpacaSwitch(AlpacaDevice[SwitchInfo]):
    def __init__(
        self, role: str, address: DeviceAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaSwitch(host, address.device_number, protocol), on_fault
        )

    async def _read_info(self) -> SwitchInfo:
        """The device's name and every channel's facts (seven requests per channel)."""
        name = str(await self._get("Name"))
        count = int(await self._get("MaxSwitch"))
        channels = []
        for id_ in range(count):
            channels.append(
                SwitchChannel(
                    id=id_,
                    name=str(await self._read("GetSwitchName", id_)),
                    description=str(await self._read("GetSwitchDescription", id_)),
                    can_write=bool(await self._read("CanWrite", id_)),
                    minimum=float(await self._read("MinSwitchValue", id_)),
                    maximum=float(await self._read("MaxSwitchValue", id_)),
                    step=float(await self._read("SwitchStep", id_)),
                )
            )
        return SwitchInfo(name=name, channels=tuple(channels))

    async def status(self) -> SwitchStatus:
        return SwitchStatus(
            values=tuple(
                [float(await self._read("GetSwitchValue", c.id)) for c in self.info.channels]
            )
        )

    async def set_switch(self, channel: int, value: float) -> None:
        """Set `channel`: SetSwitch for a boolean channel (0 or 1), SetSwitchValue otherwise.

        `ValueError` (naming the channel and what it takes) for an unknown or read-only
        channel and for a value outside the channel's range.
        """
        channels = self.info.channels
        if not 0 <= channel < len(channels):
            raise ValueError(
                f"channel must be within 0..{len(channels) - 1} "
                f"({', '.join(f'{c.id}: {c.name}' for c in channels)}), got {channel}"
            )
        c = channels[channel]
        if not c.can_write:
            raise ValueError(f"channel {c.id} ({c.name}) is read-only")
        operation = f"set channel {c.id} ({c.name}) to {value:g}"
        if c.boolean:
            if value not in (0.0, 1.0):
                raise ValueError(
                    f"channel {c.id} ({c.name}) is on/off: value must be 0 or 1, got {value:g}"
                )
            await self._invoke(operation, self._device.SetSwitch, c.id, value == 1.0, retry=True)
            return
        if not (math.isfinite(value) and c.minimum <= value <= c.maximum):
            raise ValueError(
                f"channel {c.id} ({c.name}) takes values within {c.minimum:g}..{c.maximum:g}, "
                f"got {value:g}"
            )
        await self._invoke(operation, self._device.SetSwitchValue, c.id, float(value), retry=True)

    async def _read(self, method: str, id_: int) -> Any:
        """A per-channel read (a GET, retried after a transient fault as every read is)."""
        return await self._invoke(
            f"read {method}({id_})", getattr(self._device, method), id_, retry=True
        )
