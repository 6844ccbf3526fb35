"""Alpaca safety monitor driver."""

from __future__ import annotations

from drivers.alpaca._alpyca import SafetyMonitor as AlpycaSafetyMonitor
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import SafetyInfo, SafetyStatus
from drivers.errors import FaultListener
from drivers.profile import DeviceAddress


class AlpacaSafetyMonitor(AlpacaDevice[SafetyInfo]):
    def __init__(
        self, role: str, address: DeviceAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaSafetyMonitor(host, address.device_number, protocol), on_fault
        )

    async def _read_info(self) -> SafetyInfo:
        return SafetyInfo(name=str(await self._get("Name")))

    async def status(self) -> SafetyStatus:
        return SafetyStatus(is_safe=bool(await self._get("IsSafe")))
