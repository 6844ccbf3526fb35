"""Faults the simulator produces only by accident of timing, reproduced with fakes of the
device protocols:

- a device call that swallows a cancellation: Python 3.11's `asyncio.wait_for`, under every
  Alpaca call, returns the call's result instead of raising `CancelledError` when the cancel
  arrives just as the call completes; a guider that cancels once and waits would hang;
- a guide frame exposed while the mount jumps (the last step of a slew, a bump): its stars are
  far from where they were and will be; the guider must not send a correction for it.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import cast

import numpy as np
import pytest

from drivers.base import (
    Camera,
    CameraInfo,
    CameraState,
    CameraStatus,
    GuideDirection,
    GuideEvent,
    GuideStarsSelected,
    GuideStep,
    Mount,
    MountInfo,
    MountStatus,
    PierSide,
    RaDec,
    RawFrame,
    SensorType,
    StarLost,
)
from drivers.guider import Calibration, GuiderConfig, NativeGuider, NotGuiding


class CancelSwallowingCamera:
    """An exposure that never ends and ignores the first cancellation."""

    def __init__(self) -> None:
        self.cancels = 0

    async def expose(self, exposure_s: float, *, light: bool, started: object = None) -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancels += 1
                if self.cancels > 1:
                    raise


class StillMount:
    """A tracking mount that reports a fixed state and moves a fake sky on pulses."""

    info = MountInfo(
        name="fake",
        alignment_mode=2,
        equatorial_system=2,
        can_park=False,
        can_pulse_guide=True,
        can_sync=False,
        can_set_tracking=False,
        site_latitude_deg=None,
        site_longitude_deg=None,
        site_elevation_m=None,
        focal_length_m=0.6,
        aperture_m=None,
    )

    def __init__(self) -> None:
        self.offset = np.zeros(2)  # (dy, dx) px the pulses moved the stars
        self.pulses: list[tuple[int, GuideDirection, int]] = []  # (frame, direction, ms)
        self.frames = 0

    async def pulse_guide(self, direction: GuideDirection, duration_ms: int) -> None:
        self.pulses.append((self.frames, direction, duration_ms))
        s = duration_ms / 1000.0
        step = {
            GuideDirection.WEST: (0.0, -2.0 * s),
            GuideDirection.EAST: (0.0, 2.0 * s),
            GuideDirection.NORTH: (2.0 * s, 0.0),
            GuideDirection.SOUTH: (-2.0 * s, 0.0),
        }[direction]
        self.offset += step

    async def status(self) -> MountStatus:
        return MountStatus(
            position=RaDec(0.7, 41.3),
            altitude_deg=60.0,
            azimuth_deg=90.0,
            sidereal_time_hours=1.0,
            tracking=True,
            slewing=False,
            at_park=False,
            at_home=False,
            side_of_pier=PierSide.UNKNOWN,
            is_pulse_guiding=False,
            guide_rate_ra_deg_s=0.002089,
            guide_rate_dec_deg_s=0.002089,
        )


async def test_stop_ends_the_loop_even_when_a_device_call_swallows_the_cancel() -> None:
    camera = CancelSwallowingCamera()
    guider = NativeGuider(cast(Camera, camera), cast(Mount, StillMount()))
    starting = asyncio.create_task(guider.start())
    await asyncio.sleep(0.2)  # the first exposure is running

    began = time.monotonic()
    await guider.stop()

    assert time.monotonic() - began < 1.0
    assert camera.cancels == 2
    with pytest.raises(NotGuiding, match="stopped before guiding started"):
        await starting


# West pulses move the fake stars towards -x, North ones towards +y, both at 2 px/s.
FAKE_CALIBRATION = Calibration((0.0, -2.0), (2.0, 0.0), 41.3, PierSide.UNKNOWN)
FAKE_STARS = [(60.0, 70.0), (80.0, 230.0), (150.0, 150.0), (220.0, 60.0), (230.0, 240.0)]
CAMERA_INFO = CameraInfo(
    name="fake guide camera",
    sensor_name="",
    width_px=300,
    height_px=300,
    pixel_size_x_um=9.0,
    pixel_size_y_um=9.0,
    max_bin_x=1,
    max_bin_y=1,
    sensor_type=SensorType.MONOCHROME,
    bayer_offset_x=None,
    bayer_offset_y=None,
    gains=None,
    offsets=None,
    readout_modes=(),
    can_set_temperature=False,
    can_get_cooler_power=False,
    can_abort_exposure=True,
    can_pulse_guide=False,
    has_shutter=False,
    exposure_min_s=0.001,
    exposure_max_s=60.0,
    max_adu=65535,
    electrons_per_adu=1.0,
    full_well_e=60000.0,
)


class FakeSkyCamera:
    """Renders `FAKE_STARS` (Gaussian, sigma 1 px) moved by the mount's pulses, a slow drift,
    and once, for frame `jump_frame`, a 120 px jump as if exposed mid-slew."""

    def __init__(self, mount: StillMount, jump_frame: int) -> None:
        self.mount = mount
        self.jump_frame = jump_frame
        self.rng = np.random.default_rng(21)

    async def expose(self, exposure_s: float, *, light: bool, started: object = None) -> RawFrame:
        self.mount.frames += 1
        drift = np.array([0.0, 0.15 * self.mount.frames])
        shift = self.mount.offset + drift
        if self.mount.frames == self.jump_frame:
            shift = shift + np.array([0.0, 120.0])
        edges = np.arange(301) - 0.5
        image = np.full((300, 300), 300.0) + self.rng.normal(0.0, 3.0, (300, 300))
        for y, x in FAKE_STARS:
            rows = np.diff([0.5 * (1 + math.erf((e - y - shift[0]) / math.sqrt(2))) for e in edges])
            cols = np.diff([0.5 * (1 + math.erf((e - x - shift[1]) / math.sqrt(2))) for e in edges])
            image += 2e4 * np.outer(rows, cols)
        status = CameraStatus(CameraState.IDLE, None, None, None, None, None, None, 1, 1, None)
        return RawFrame(
            data=np.clip(image, 0, 65535).astype(np.uint16),
            exposure_start_utc=datetime.now(UTC),
            exposure_s=exposure_s,
            light=light,
            info=CAMERA_INFO,
            status=status,
        )


async def test_a_frame_caught_mid_jump_gets_no_correction() -> None:
    mount = StillMount()
    camera = FakeSkyCamera(mount, jump_frame=6)
    config = GuiderConfig(exposure_s=0.01, reselect_after_frames=5)
    guider = NativeGuider(
        cast(Camera, camera),
        cast(Mount, mount),
        config,
        calibrations={PierSide.UNKNOWN: FAKE_CALIBRATION},
    )
    events = guider.subscribe()
    await guider.start()  # frames 1 (acquire) and 2 (lock)
    seen: list[GuideEvent] = []
    try:
        while not any(isinstance(e, GuideStep) and e.frame >= 10 for e in seen):
            seen.append(await asyncio.wait_for(events.get(), 5.0))
    finally:
        await guider.stop()

    lost = [e for e in seen if isinstance(e, StarLost)]
    # Frame 6 shows the stars 120 px off; frame 7 back where they belong, but away from where
    # frame 6 said: both only move the search. Frame 8 confirms frame 7 and guiding goes on.
    assert [e.frame for e in lost] == [6, 7]
    assert all("jumped" in e.reason for e in lost)
    assert not [p for p in mount.pulses if p[0] in (6, 7)]
    found = [e for e in seen if isinstance(e, GuideStarsSelected) and e.reacquired]
    assert [e.frame for e in found] == [8]
    steps = [e for e in seen if isinstance(e, GuideStep)]
    assert [s.frame for s in steps] == [3, 4, 5, 8, 9, 10]
    # Without the jump's correction the error stays that of the drift (0.15 px per frame,
    # three frames unguided): well under a pixel.
    assert max(s.distance_px for s in steps) < 1.0
    assert max(p[2] for p in mount.pulses) < 500
