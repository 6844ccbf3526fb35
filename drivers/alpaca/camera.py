"""Alpaca camera driver: cooling, gain/offset/binning, exposures downloaded as ImageBytes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests

from drivers.alpaca import imagebytes
from drivers.alpaca._alpyca import Camera as AlpycaCamera
from drivers.alpaca._call import POLL_INTERVAL_S, wait_until
from drivers.alpaca.device import AlpacaDevice, alpyca_args
from drivers.base import CameraInfo, CameraState, CameraStatus, RawFrame, SensorType
from drivers.errors import DeviceBusy, DeviceError, DeviceTimeout, FaultListener, OperationFailed
from drivers.profile import CameraAddress

log = logging.getLogger(__name__)

# Transfer-rate floor used to size the download deadline (bytes/s), plus a fixed margin.
_MIN_DOWNLOAD_RATE_B_S = 5e6
_DOWNLOAD_MARGIN_S = 10.0
# How often the camera state is checked while waiting for an image.
_STATE_POLL_S = 1.0
# First ImageReady poll interval after the exposure ends; it grows to POLL_INTERVAL_S.
_FIRST_READY_POLL_S = 0.01
# How long an accepted exposure may stay Waiting before an abort is sent anyway.
_WAITING_LIMIT_S = 2.0
# How long a StartExposure refused as busy (just after an abort) is tried again.
_BUSY_START_S = 3.0


class AlpacaCamera(AlpacaDevice[CameraInfo]):
    def __init__(
        self, role: str, address: CameraAddress, on_fault: FaultListener | None = None
    ) -> None:
        host, protocol = alpyca_args(address)
        super().__init__(
            role, address, AlpycaCamera(host, address.device_number, protocol), on_fault
        )
        self._camera_address = address
        self._http = requests.Session()
        # The abort that follows a failed or cancelled exposure, until the next one awaits it.
        self._cleanup: asyncio.Future[None] | None = None

    async def _read_info(self) -> CameraInfo:
        g, opt = self._get, self._get_optional
        gains = await opt("Gains")
        offsets = await opt("Offsets")
        electrons = await opt("ElectronsPerADU")
        full_well = await opt("FullWellCapacity")
        sensor_type = SensorType(int(await g("SensorType")))
        bayer = sensor_type is not SensorType.MONOCHROME
        return CameraInfo(
            name=str(await g("Name")),
            sensor_name=str(await opt("SensorName") or ""),
            width_px=int(await g("CameraXSize")),
            height_px=int(await g("CameraYSize")),
            pixel_size_x_um=float(await g("PixelSizeX")),
            pixel_size_y_um=float(await g("PixelSizeY")),
            max_bin_x=int(await g("MaxBinX")),
            max_bin_y=int(await g("MaxBinY")),
            sensor_type=sensor_type,
            bayer_offset_x=int(await g("BayerOffsetX")) if bayer else None,
            bayer_offset_y=int(await g("BayerOffsetY")) if bayer else None,
            gains=tuple(str(x) for x in gains) if gains is not None else None,
            offsets=tuple(str(x) for x in offsets) if offsets is not None else None,
            readout_modes=tuple(str(x) for x in (await opt("ReadoutModes") or ())),
            can_set_temperature=bool(await g("CanSetCCDTemperature")),
            can_get_cooler_power=bool(await g("CanGetCoolerPower")),
            can_abort_exposure=bool(await g("CanAbortExposure")),
            can_pulse_guide=bool(await g("CanPulseGuide")),
            has_shutter=bool(await g("HasShutter")),
            exposure_min_s=float(await g("ExposureMin")),
            exposure_max_s=float(await g("ExposureMax")),
            max_adu=int(await g("MaxADU")),
            electrons_per_adu=float(electrons) if electrons is not None else None,
            full_well_e=float(full_well) if full_well is not None else None,
        )

    async def status(self) -> CameraStatus:
        info, opt = self.info, self._get_optional
        cooling = info.can_set_temperature
        return CameraStatus(
            state=CameraState(int(await self._get("CameraState"))),
            sensor_temperature_c=_float_or_none(await opt("CCDTemperature")),
            set_point_c=_float_or_none(await opt("SetCCDTemperature")) if cooling else None,
            cooler_on=bool(await opt("CoolerOn")) if cooling else None,
            cooler_power_pct=(
                _float_or_none(await opt("CoolerPower")) if info.can_get_cooler_power else None
            ),
            gain=_int_or_none(await opt("Gain")),
            offset=_int_or_none(await opt("Offset")),
            bin_x=int(await self._get("BinX")),
            bin_y=int(await self._get("BinY")),
            readout_mode=_int_or_none(await opt("ReadoutMode")),
        )

    async def set_cooler(self, on: bool, set_point_c: float | None = None) -> None:
        """Switch the cooler and optionally change the set point (no waiting for it)."""
        if set_point_c is not None:
            if not self.info.can_set_temperature:
                raise ValueError(f"{self.role} cannot set its sensor temperature (set_point_c)")
            await self._set("SetCCDTemperature", float(set_point_c))
        await self._set("CoolerOn", bool(on))

    async def set_gain(self, gain: int) -> None:
        await self._set("Gain", int(gain))

    async def set_offset(self, offset: int) -> None:
        await self._set("Offset", int(offset))

    async def set_readout_mode(self, mode: int) -> None:
        await self._set("ReadoutMode", int(mode))

    async def set_binning(self, bin_x: int, bin_y: int) -> None:
        """Set binning and the full-frame subframe that goes with it."""
        info = self.info
        if not (1 <= bin_x <= info.max_bin_x and 1 <= bin_y <= info.max_bin_y):
            raise ValueError(
                f"binning must be within 1..{info.max_bin_x} x 1..{info.max_bin_y}, "
                f"got {bin_x} x {bin_y}"
            )
        await self._set("BinX", bin_x)
        await self._set("BinY", bin_y)
        await self._set("StartX", 0)
        await self._set("StartY", 0)
        await self._set("NumX", info.width_px // bin_x)
        await self._set("NumY", info.height_px // bin_y)

    async def abort(self) -> None:
        """Abort a running exposure (the image is discarded). Also clears an Error state."""
        await self._invoke("abort exposure", self._device.AbortExposure, retry=True)

    async def _abort_begun(self) -> None:
        """Abort an exposure the camera accepted, once it has begun: a camera still Waiting
        may begin it after an abort (the Alpaca simulators do: the exposure starts after the
        reply), which would leave it exposing behind our back and the next exposure refused."""
        with contextlib.suppress(DeviceTimeout):  # still Waiting: abort it all the same
            await wait_until(
                self.role, "begin", self._not_waiting, _WAITING_LIMIT_S, _FIRST_READY_POLL_S
            )
        await self.abort()

    async def _not_waiting(self) -> bool:
        return await self._state() is not CameraState.WAITING

    async def expose(
        self, exposure_s: float, *, light: bool, started: asyncio.Event | None = None
    ) -> RawFrame:
        """Take one exposure and download it.

        Deadlines: the image must be ready within ``exposure_s + readout_timeout_s`` (the
        profile's margin) and downloaded within a time sized from the frame's bytes.
        `started` (if given) is set once StartExposure has been accepted, so that a caller can
        schedule other work for the time the shutter is open.
        Cancelling the task, or a device error during the exposure, aborts the exposure on
        the camera (best effort), then re-raises.
        Raises `ValueError` for an exposure the camera cannot take, `DeviceBusy` when the
        camera is already exposing, and other `DeviceError`s for device faults.
        """
        info = self.info
        if not info.exposure_min_s <= exposure_s <= info.exposure_max_s:
            raise ValueError(
                f"exposure_s must be within {info.exposure_min_s}..{info.exposure_max_s} s "
                f"for {self.role}, got {exposure_s}"
            )
        if light and exposure_s <= 0:
            raise ValueError("exposure_s must be > 0 for a light frame; use a dark for bias")
        if self._cleanup is not None:
            await asyncio.shield(self._cleanup)
            self._cleanup = None
        state = await self._state()
        if state is CameraState.ERROR:
            log.warning("%s was in Error state; aborting to clear it before exposing", self.role)
            await self.abort()
            state = await self._state()
        if state in (CameraState.READING, CameraState.DOWNLOAD):
            state = await self._wait_readout_end()
        if state is not CameraState.IDLE:
            raise DeviceBusy(self.role, "start exposure", f"camera is {state.name}")
        start = asyncio.ensure_future(self._start_exposure(exposure_s, light))
        try:
            # Shielded: a task cancelled while StartExposure is on the wire must still see
            # the request land before it aborts, or the abort could overtake it.
            start_utc, exposure_end = await asyncio.shield(start)
            if started is not None:
                started.set()
            # Read while the shutter is open: the header records the state during the exposure.
            status = await self.status()
            await self._wait_image_ready(exposure_s, exposure_end)
            data = await self._download()
        except (asyncio.CancelledError, DeviceError):
            # Leave no exposure running behind a failure or a cancelled task. The next
            # exposure waits for this clean-up even if this task is cancelled again.
            self._cleanup = asyncio.ensure_future(
                self._undo_after(start, self._abort_begun, "abort exposure")
            )
            await asyncio.shield(self._cleanup)
            raise
        return RawFrame(
            data=data,
            exposure_start_utc=start_utc,
            exposure_s=float(exposure_s),
            light=light,
            info=info,
            status=status,
        )

    async def _start_exposure(self, exposure_s: float, light: bool) -> tuple[datetime, float]:
        """StartExposure; (its UTC start, its monotonic end). A camera reporting IDLE may
        still refuse as busy for a moment after an abort (the simulator's exposure task ends
        after its state says so): such a refusal is retried for `_BUSY_START_S`."""
        deadline = time.monotonic() + _BUSY_START_S
        while True:
            start_utc, started = datetime.now(UTC), time.monotonic()
            try:
                await self._invoke(
                    "start exposure", self._device.StartExposure, float(exposure_s), bool(light)
                )
            except DeviceBusy:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(POLL_INTERVAL_S)
                continue
            return start_utc, started + exposure_s

    async def _state(self) -> CameraState:
        return CameraState(int(await self._get("CameraState")))

    async def _wait_readout_end(self) -> CameraState:
        """A readout still under way (the previous frame's, or one an abort left behind) ends
        within the readout allowance: wait for it rather than fail the next exposure."""
        deadline = time.monotonic() + self._camera_address.readout_timeout_s
        state = await self._state()
        while state in (CameraState.READING, CameraState.DOWNLOAD) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_INTERVAL_S)
            state = await self._state()
        return state

    async def _wait_image_ready(self, exposure_s: float, exposure_end: float) -> None:
        """Wait for ImageReady, polling quickly at first after the exposure ends (readout of
        small frames takes milliseconds) and backing off to `POLL_INTERVAL_S`. The camera state
        is checked every `_STATE_POLL_S`, also while the shutter is open, so that a dead server
        or a camera error ends a long exposure early rather than at its end."""
        deadline = exposure_end + self._camera_address.readout_timeout_s
        next_state_check = time.monotonic() + _STATE_POLL_S
        ready_poll_s = _FIRST_READY_POLL_S
        while True:
            now = time.monotonic()
            if now < exposure_end:
                await asyncio.sleep(min(exposure_end - now, max(0.0, next_state_check - now)))
            elif await self._get("ImageReady"):
                return
            else:
                await asyncio.sleep(ready_poll_s)
                ready_poll_s = min(POLL_INTERVAL_S, ready_poll_s * 1.5)
            if time.monotonic() < next_state_check:
                continue
            next_state_check = time.monotonic() + _STATE_POLL_S
            state = await self._state()
            if state is CameraState.ERROR:
                raise OperationFailed(self.role, "exposure", "camera reported Error state")
            if time.monotonic() >= deadline:
                raise DeviceTimeout(
                    self.role,
                    "exposure",
                    f"image not ready {self._camera_address.readout_timeout_s:.0f} s after "
                    f"the {exposure_s} s exposure ended (state {state.name})",
                )

    async def _download(self) -> np.ndarray:
        """The image, whole: a reply cut short raises (and is asked for again), never a short
        image. Downloading again is harmless: the image stays ready until the next exposure."""
        info = self.info
        size_b = info.width_px * info.height_px * 4
        timeout_s = _DOWNLOAD_MARGIN_S + size_b / _MIN_DOWNLOAD_RATE_B_S
        data = await self._call(
            "download image",
            imagebytes.download,
            self._http,
            self.address.url,
            self.address.device_number,
            timeout_s,
            timeout_s=timeout_s,
            retry=True,
        )
        if data.ndim != 2:
            raise OperationFailed(self.role, "download image", f"expected 2-D, got {data.shape}")
        if data.dtype == np.uint16:
            return data
        if data.min(initial=0) < 0 or data.max(initial=0) > 65535:
            raise OperationFailed(self.role, "download image", "pixel values outside uint16")
        return data.astype(np.uint16)


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
