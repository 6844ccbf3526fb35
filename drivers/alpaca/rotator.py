"""Alpaca rotator driver: synced (sky) and mechanical moves with a deadline from the travel."""

from __future__ import annotations

import math
from collections.abc import Callable

from drivers.alpaca._alpyca import Rotator as AlpycaRotator
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import RotatorInfo, RotatorStatus
from drivers.errors import FaultListener
from drivers.profile import RotatorAddress


def _angle(position_deg: float) -> float:
    """`position_deg` in [0, 360); `ValueError` for a value that is not a finite number."""
    if not math.isfinite(position_deg):
        raise ValueError(f"position_deg must be a finite angle in degrees, got {position_deg}")
    return float(position_deg) % 360.0


class AlpacaRotator(AlpacaDevice[RotatorInfo]):
    def __init__(
        self, role: str, address: RotatorAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaRotator(host, address.device_number, protocol), on_fault
        )
        self._rotator_address = address

    async def _read_info(self) -> RotatorInfo:
        step_size = await self._get_optional("StepSize")
        return RotatorInfo(
            name=str(await self._get("Name")),
            can_reverse=bool(await self._get("CanReverse")),
            step_size_deg=float(step_size) if step_size is not None else None,
        )

    async def status(self) -> RotatorStatus:
        return RotatorStatus(
            position_deg=float(await self._get("Position")),
            mechanical_position_deg=float(await self._get("MechanicalPosition")),
            is_moving=bool(await self._get("IsMoving")),
        )

    async def move_to(self, position_deg: float) -> None:
        """Move to a synced position (taken modulo 360) and wait until the rotator stops.

        `DeviceTimeout` after the travel at the profile's slowest speed plus its margin;
        the rotator is then halted, as after a cancel or a failure.
        """
        target = _angle(position_deg)
        await self._turn(
            f"move to {target:.2f} deg", self._device.MoveAbsolute, target, synced=True
        )

    async def move_mechanical(self, position_deg: float) -> None:
        """Move to a mechanical position (taken modulo 360), as `move_to` does."""
        target = _angle(position_deg)
        await self._turn(
            f"move to mechanical {target:.2f} deg",
            self._device.MoveMechanical,
            target,
            synced=False,
        )

    async def sync(self, position_deg: float) -> None:
        target = _angle(position_deg)
        await self._invoke(f"sync to {target:.2f} deg", self._device.Sync, target)

    async def halt(self) -> None:
        await self._invoke("halt", self._device.Halt, retry=True)

    async def _turn(
        self, operation: str, command: Callable[[float], None], target: float, *, synced: bool
    ) -> None:
        mechanical = float(await self._get("MechanicalPosition")) % 360.0
        offset = float(await self._get("Position")) - mechanical if synced else 0.0
        # A rotator with a cable stop turns through the mechanical angles in between, never
        # across 0/360: the longest way any rotator takes.
        travel_deg = abs((target - offset) % 360.0 - mechanical)
        await self._move(
            operation,
            lambda: self._invoke(operation, command, target),
            self._stopped,
            travel_deg / self._rotator_address.deg_per_s + self._rotator_address.move_timeout_s,
            self.halt,
        )

    async def _stopped(self) -> bool:
        return not await self._get("IsMoving")
