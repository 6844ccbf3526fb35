"""Alpaca focuser driver: absolute moves with a deadline sized from the travel."""

from __future__ import annotations

from drivers.alpaca._alpyca import Focuser as AlpycaFocuser
from drivers.alpaca._call import wait_until
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import FocuserInfo, FocuserStatus
from drivers.errors import FaultListener, NotSupported
from drivers.profile import FocuserAddress


class AlpacaFocuser(AlpacaDevice[FocuserInfo]):
    def __init__(
        self, role: str, address: FocuserAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaFocuser(host, address.device_number, protocol), on_fault
        )
        self._focuser_address = address

    async def _read_info(self) -> FocuserInfo:
        step_size = await self._get_optional("StepSize")
        return FocuserInfo(
            name=str(await self._get("Name")),
            absolute=bool(await self._get("Absolute")),
            max_step=int(await self._get("MaxStep")),
            max_increment=int(await self._get("MaxIncrement")),
            step_size_um=float(step_size) if step_size is not None else None,
        )

    async def status(self) -> FocuserStatus:
        temperature = await self._get_optional("Temperature")
        return FocuserStatus(
            position=int(await self._get("Position")),
            is_moving=bool(await self._get("IsMoving")),
            temperature_c=float(temperature) if temperature is not None else None,
        )

    async def move_to(self, position: int) -> None:
        """Move to an absolute `position` (steps) and wait until the focuser stops there."""
        info = self.info
        if not info.absolute:
            raise NotSupported(self.role, "move", "relative focusers are not supported")
        if not 0 <= position <= info.max_step:
            raise ValueError(f"position must be within 0..{info.max_step} steps, got {position}")
        here = int(await self._get("Position"))
        if abs(position - here) > info.max_increment:
            raise ValueError(
                f"position {position} is {abs(position - here)} steps away; this focuser moves "
                f"at most {info.max_increment} steps at once"
            )
        travel_s = abs(position - here) / self._focuser_address.steps_per_s
        await self._invoke(f"move to {position}", self._device.Move, int(position))
        await wait_until(
            self.role,
            f"move to {position}",
            self._stopped,
            travel_s + self._focuser_address.move_timeout_s,
        )

    async def halt(self) -> None:
        await self._invoke("halt", self._device.Halt, retry=True)

    async def _stopped(self) -> bool:
        return not await self._get("IsMoving")
