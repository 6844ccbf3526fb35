"""Alpaca filter wheel driver: select a filter by name and wait until it is in place."""

from __future__ import annotations

from drivers.alpaca._alpyca import FilterWheel as AlpycaFilterWheel
from drivers.alpaca._call import wait_until
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import FilterWheelInfo, FilterWheelStatus
from drivers.errors import FaultListener
from drivers.profile import FilterWheelAddress


class AlpacaFilterWheel(AlpacaDevice[FilterWheelInfo]):
    def __init__(
        self, role: str, address: FilterWheelAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaFilterWheel(host, address.device_number, protocol), on_fault
        )
        self._wheel_address = address

    async def _read_info(self) -> FilterWheelInfo:
        offsets = await self._get_optional("FocusOffsets")
        return FilterWheelInfo(
            name=str(await self._get("Name")),
            names=tuple(str(n) for n in await self._get("Names")),
            focus_offsets=tuple(int(o) for o in offsets or ()),
        )

    async def status(self) -> FilterWheelStatus:
        position = int(await self._get("Position"))
        names = self.info.names
        if position < 0:  # ASCOM: -1 while the wheel is moving
            return FilterWheelStatus(position=None, filter_name=None)
        return FilterWheelStatus(
            position=position, filter_name=names[position] if position < len(names) else None
        )

    async def select(self, filter_name: str) -> None:
        """Move to the slot named `filter_name` (case-insensitive) and wait until it is there."""
        names = self.info.names
        matches = [i for i, name in enumerate(names) if name.casefold() == filter_name.casefold()]
        if not matches:
            raise ValueError(f"filter_name {filter_name!r} is not in this wheel: {list(names)}")
        slot = matches[0]
        operation = f"select filter {names[slot]}"
        await self._set("Position", slot)

        async def arrived() -> bool:
            return int(await self._get("Position")) == slot

        await wait_until(self.role, operation, arrived, self._wheel_address.move_timeout_s)
