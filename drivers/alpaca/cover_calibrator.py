"""Alpaca cover calibrator driver: a dust cover (flip-flat) and/or a flat panel."""

from __future__ import annotations

from collections.abc import Callable

from drivers.alpaca._alpyca import CoverCalibrator as AlpycaCoverCalibrator
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import (
    CalibratorState,
    CoverCalibratorInfo,
    CoverCalibratorStatus,
    CoverState,
)
from drivers.errors import FaultListener, NotSupported
from drivers.profile import CoverCalibratorAddress


class AlpacaCoverCalibrator(AlpacaDevice[CoverCalibratorInfo]):
    def __init__(
        self, role: str, address: CoverCalibratorAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaCoverCalibrator(host, address.device_number, protocol), on_fault
        )
        self._cc_address = address

    async def _read_info(self) -> CoverCalibratorInfo:
        # ASCOM: MaxBrightness is not implemented when there is no calibrator.
        max_brightness = await self._get_optional("MaxBrightness")
        return CoverCalibratorInfo(
            name=str(await self._get("Name")),
            max_brightness=int(max_brightness) if max_brightness is not None else 0,
        )

    async def status(self) -> CoverCalibratorStatus:
        has_calibrator = self.info.max_brightness > 0
        brightness = await self._get_optional("Brightness") if has_calibrator else None
        return CoverCalibratorStatus(
            cover=await self._cover(),
            calibrator=await self._calibrator(),
            brightness=int(brightness) if brightness is not None else None,
        )

    async def open_cover(self) -> None:
        """Open the cover; return once it reports OPEN (see `_cover_to`)."""
        await self._cover_to(CoverState.OPEN, "open cover", self._device.OpenCover)

    async def close_cover(self) -> None:
        """Close the cover; return once it reports CLOSED (see `_cover_to`)."""
        await self._cover_to(CoverState.CLOSED, "close cover", self._device.CloseCover)

    async def calibrator_on(self, brightness: int) -> None:
        """Light the panel at `brightness` (0..MaxBrightness) and return once it is READY.

        `ValueError` outside the range, `NotSupported` without a panel, `OperationFailed`
        when the panel reports ERROR, `DeviceTimeout` when it is not READY within the
        profile's calibrator timeout (its warm-up).
        """
        max_brightness = self.info.max_brightness
        if max_brightness == 0:
            raise NotSupported(self.role, "calibrator on", "the device has no flat panel")
        if not 0 <= brightness <= max_brightness:
            raise ValueError(f"brightness must be within 0..{max_brightness}, got {brightness}")
        operation = f"calibrator on at {brightness}"
        await self._until_state(
            operation,
            lambda: self._invoke(operation, self._device.CalibratorOn, int(brightness)),
            self._calibrator,
            CalibratorState.READY,
            CalibratorState.ERROR,
            self._cc_address.calibrator_timeout_s,
        )

    async def calibrator_off(self) -> None:
        """Switch the panel off and return once it reports OFF."""
        if self.info.max_brightness == 0:
            raise NotSupported(self.role, "calibrator off", "the device has no flat panel")
        await self._until_state(
            "calibrator off",
            lambda: self._invoke("calibrator off", self._device.CalibratorOff, retry=True),
            self._calibrator,
            CalibratorState.OFF,
            CalibratorState.ERROR,
            self._cc_address.calibrator_timeout_s,
        )

    async def _cover_to(
        self, wanted: CoverState, operation: str, command: Callable[[], None]
    ) -> None:
        """`NotSupported` without a cover, `OperationFailed` when the cover reports ERROR,
        `DeviceTimeout` when it does not report `wanted` within the profile's cover timeout."""
        if await self._cover() is CoverState.NOT_PRESENT:
            raise NotSupported(self.role, operation, "the device has no cover")
        await self._until_state(
            operation,
            lambda: self._invoke(operation, command),
            self._cover,
            wanted,
            CoverState.ERROR,
            self._cc_address.cover_timeout_s,
        )

    async def _cover(self) -> CoverState:
        return CoverState(int(await self._get("CoverState")))

    async def _calibrator(self) -> CalibratorState:
        return CalibratorState(int(await self._get("CalibratorState")))
