"""Devices fail: a dead or silent server gives a `DeviceError` within the deadline, never a hang.

A killed simulator is the real fault. A server that accepts connections but never answers is
one the simulator cannot produce, so a bare listening socket stands in for it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.simulator.rig import SimulatorRig, free_port, simulator_profile
from drivers.alpaca import AlpacaCamera, AlpacaSafetyMonitor, build_equipment
from drivers.alpaca._call import CALL_TIMEOUT_S
from drivers.errors import DeviceError, DeviceTimeout, NotConnected
from drivers.profile import CameraAddress, DeviceAddress


@pytest.fixture
def own_rig(tmp_path: Path, catalog_cache: Path) -> Iterator[SimulatorRig]:
    """A simulator of this test's own, since the test kills it."""
    with SimulatorRig(run_dir=tmp_path, cache_dir=catalog_cache) as rig:
        yield rig


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog) but never sends a byte."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_killing_the_simulator_mid_exposure_gives_a_device_error(
    own_rig: SimulatorRig,
) -> None:
    equipment = build_equipment(simulator_profile(own_rig.url))
    assert not any((await equipment.connect_all()).values())
    camera = equipment.camera
    assert camera is not None
    readout_timeout_s = CameraAddress(url=own_rig.url).readout_timeout_s
    exposure_s = 10.0
    exposure = asyncio.create_task(camera.expose(exposure_s, light=False))
    await asyncio.sleep(1.0)
    assert own_rig.pid is not None
    os.killpg(own_rig.pid, signal.SIGKILL)

    # The driver's own deadline for this exposure bounds the wait: a hang fails the test.
    with pytest.raises(DeviceError) as caught:
        await asyncio.wait_for(exposure, exposure_s + readout_timeout_s)
    assert isinstance(caught.value, NotConnected)
    assert caught.value.device == "camera"
    assert "cannot reach the Alpaca server" in caught.value.message

    # The status snapshot shows the loss instead of raising.
    reports = {r.role: r for r in await equipment.snapshot()}
    assert not reports["camera"].connected
    assert reports["camera"].error is not None


async def test_nothing_listening_gives_not_connected() -> None:
    monitor = AlpacaSafetyMonitor(
        "safety_monitor", DeviceAddress(url=f"http://127.0.0.1:{free_port()}")
    )
    with pytest.raises(NotConnected, match="safety_monitor: set Connected=True failed"):
        await asyncio.wait_for(monitor.connect(), CALL_TIMEOUT_S)


async def test_silent_server_gives_device_timeout(silent_server: str) -> None:
    camera = AlpacaCamera("camera", CameraAddress(url=silent_server))
    with pytest.raises(DeviceTimeout, match="camera: set Connected=True failed"):
        await asyncio.wait_for(camera.connect(), CALL_TIMEOUT_S + 2.0)


async def test_a_silent_device_does_not_stall_the_others(
    silent_server: str, simulator_url: str
) -> None:
    """A hung server must cost only its own device: the camera keeps answering meanwhile."""
    camera = AlpacaCamera("camera", CameraAddress(url=simulator_url))
    hung = AlpacaSafetyMonitor("safety_monitor", DeviceAddress(url=silent_server))
    hung_connects = [asyncio.create_task(hung.connect()) for _ in range(8)]
    await asyncio.sleep(0.2)  # the hung calls are in flight, each waiting on its HTTP timeout

    info = await asyncio.wait_for(camera.connect(), CALL_TIMEOUT_S)
    status = await asyncio.wait_for(camera.status(), CALL_TIMEOUT_S)

    assert info.width_px == 2048
    assert status.bin_x == 1
    results = await asyncio.gather(*hung_connects, return_exceptions=True)
    assert all(isinstance(r, DeviceTimeout) for r in results), results
