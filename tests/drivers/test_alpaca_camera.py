"""The Alpaca camera driver against the real simulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import pytest

from drivers.base import CameraState, RaDec
from drivers.equipment import Equipment
from drivers.errors import DeviceBusy
from tests.helpers import count_stars

M31 = RaDec(0.712306, 41.2692)
SET_POINT_C = -10.0


async def point_at(equipment: Equipment, target: RaDec) -> None:
    assert equipment.mount is not None
    status = await equipment.mount.status()
    if status.at_park:
        await equipment.mount.unpark()
    await equipment.mount.set_tracking(True)
    await equipment.mount.slew(target)


async def start_exposure_directly(url: str, duration_s: float, light: bool) -> dict[str, Any]:
    """What another Alpaca client does to camera 0, bypassing our driver."""
    async with httpx.AsyncClient(timeout=5) as client:
        reply = await client.put(
            f"{url}/api/v1/camera/0/startexposure",
            data={"Duration": duration_s, "Light": str(light).lower(), "ClientTransactionID": 1},
        )
    body: dict[str, Any] = reply.json()
    return body


async def test_cooled_light_has_sensor_size_and_dozens_of_stars(equipment: Equipment) -> None:
    camera = equipment.camera
    assert camera is not None
    await point_at(equipment, M31)
    await camera.set_cooler(True, SET_POINT_C)
    deadline = time.monotonic() + 60
    while True:
        status = await camera.status()
        assert status.sensor_temperature_c is not None
        if abs(status.sensor_temperature_c - SET_POINT_C) < 0.5:
            break
        assert time.monotonic() < deadline, f"not cooled: {status}"
        await asyncio.sleep(0.5)

    frame = await camera.expose(2.0, light=True)

    assert frame.data.shape == (camera.info.height_px, camera.info.width_px) == (1536, 2048)
    assert frame.data.dtype == np.uint16
    assert frame.light
    assert frame.exposure_s == 2.0
    assert frame.exposure_start_utc.tzinfo is not None
    assert frame.status.cooler_on is True
    assert frame.status.set_point_c == SET_POINT_C
    # ~35-90 catalog stars fall in this 1.96 x 1.47 deg field; the sky renders most of them.
    assert count_stars(frame.data) >= 24


async def test_dark_differs_from_light(equipment: Equipment) -> None:
    camera = equipment.camera
    assert camera is not None
    await point_at(equipment, M31)
    light = await camera.expose(1.0, light=True)
    dark = await camera.expose(1.0, light=False)
    assert not dark.light
    assert count_stars(light.data) >= 10
    # A cooled 1 s dark is bias + read noise (~6 e-): even its brightest pixel stays within
    # ~6 sigma (< 100 ADU) of the median, while the light's stars peak thousands above it.
    assert int(dark.data.max()) - np.median(dark.data) < 100
    assert int(light.data.max()) - np.median(light.data) > 1000


async def test_light_of_zero_seconds_is_refused_before_reaching_the_camera(
    equipment: Equipment,
) -> None:
    camera = equipment.camera
    assert camera is not None
    with pytest.raises(ValueError, match="exposure_s must be > 0 for a light"):
        await camera.expose(0.0, light=True)
    assert (await camera.status()).state is CameraState.IDLE


async def test_camera_left_in_error_state_is_cleared_before_the_next_exposure(
    equipment: Equipment, simulator_url: str
) -> None:
    """Another client's 0 s light crashes the simulated camera into a sticky Error state."""
    camera = equipment.camera
    assert camera is not None
    await point_at(equipment, M31)
    reply = await start_exposure_directly(simulator_url, duration_s=0, light=True)
    assert reply["ErrorNumber"] == 0
    deadline = time.monotonic() + 20
    while (await camera.status()).state is not CameraState.ERROR:
        assert time.monotonic() < deadline, "the simulator no longer crashes on a 0 s light"
        await asyncio.sleep(0.1)

    frame = await camera.expose(0.5, light=True)
    assert frame.data.shape == (1536, 2048)


async def test_busy_camera_gives_device_busy(equipment: Equipment, simulator_url: str) -> None:
    camera = equipment.camera
    assert camera is not None
    reply = await start_exposure_directly(simulator_url, duration_s=2.0, light=False)
    assert reply["ErrorNumber"] == 0
    with pytest.raises(DeviceBusy, match="camera"):
        await camera.expose(1.0, light=False)
    await wait_until_idle(equipment)


async def test_cancelling_an_exposure_aborts_it_on_the_camera(equipment: Equipment) -> None:
    camera = equipment.camera
    assert camera is not None
    exposure_s = 4.0
    task = asyncio.create_task(camera.expose(exposure_s, light=False))
    await asyncio.sleep(1.0)
    assert (await camera.status()).state is CameraState.EXPOSING
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await camera.status()).state is CameraState.IDLE
    # The simulator's render task outlives AbortExposure and would later mark a stale image
    # ready in the middle of another test's exposure: let it finish here.
    await asyncio.sleep(exposure_s)
    await wait_until_idle(equipment)


async def test_an_exposure_cancelled_while_starting_is_aborted_on_the_camera(
    equipment: Equipment,
) -> None:
    """A run interrupted just as it asks for the next frame: the StartExposure request is on
    the wire when the task is cancelled. The request must land and then be aborted, or the
    camera goes on exposing a frame nobody waits for and the next exposure finds it busy.
    The cancel moment sweeps the request's round trip."""
    camera = equipment.camera
    assert camera is not None
    exposure_s = 1.0
    for delay_ms in range(0, 24, 4):
        task = asyncio.create_task(camera.expose(exposure_s, light=False))
        await asyncio.sleep(delay_ms / 1000)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state = (await camera.status()).state
        assert state is CameraState.IDLE, f"cancelled after {delay_ms} ms: {state.name}"
        # The simulator's render of an aborted frame runs on and marks a stale image ready.
        await asyncio.sleep(exposure_s)
        await wait_until_idle(equipment)
    frame = await camera.expose(0.1, light=False)
    assert frame.data.shape == (1536, 2048)


async def wait_until_idle(equipment: Equipment, timeout_s: float = 30.0) -> None:
    """Wait for the camera to finish whatever it is doing (another client's exposure)."""
    camera = equipment.camera
    assert camera is not None
    deadline = time.monotonic() + timeout_s
    while (await camera.status()).state is not CameraState.IDLE:
        assert time.monotonic() < deadline, "camera did not return to idle"
        await asyncio.sleep(0.1)


async def test_started_is_set_while_the_shutter_is_open(equipment: Equipment) -> None:
    camera = equipment.camera
    assert camera is not None
    started = asyncio.Event()
    exposure = asyncio.create_task(camera.expose(2.0, light=False, started=started))
    await asyncio.wait_for(started.wait(), 5.0)
    assert not exposure.done()
    assert (await camera.status()).state is CameraState.EXPOSING
    frame = await exposure
    assert frame.data.shape == (1536, 2048)
