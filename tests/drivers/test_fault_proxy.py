"""Faults between the drivers and a real simulator, injected by the fault proxy.

Each fault kind gives the `DeviceError` kind a caller can act on, within the call's deadline;
a transient fault on a request that changes nothing (a read, an image download) is retried and
reported to the fault listener; a request that starts something is never repeated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from drivers.alpaca import AlpacaCamera
from drivers.alpaca._call import CALL_TIMEOUT_S, RETRY_DELAYS_S
from drivers.errors import (
    DeviceBusy,
    DeviceError,
    DeviceFault,
    DeviceTimeout,
    NotConnected,
    NotSupported,
    OperationFailed,
)
from drivers.profile import CameraAddress
from tests.faultproxy import Fault, FaultProxy, FaultRule, running_proxy

ATTEMPTS = len(RETRY_DELAYS_S) + 1
# A fault that answers at once costs each attempt milliseconds: the retries' pauses bound it.
FAST_FAULT_BOUND_S = sum(RETRY_DELAYS_S) + 3.0
STATE = "camera/0/camerastate"


@pytest.fixture
def proxy(simulator_url: str) -> Iterator[FaultProxy]:
    with running_proxy(simulator_url, seed=1) as p:
        yield p


@pytest.fixture
def heard() -> list[DeviceFault]:
    return []


@pytest.fixture
async def camera(proxy: FaultProxy, heard: list[DeviceFault]) -> AsyncIterator[AlpacaCamera]:
    """The simulator's main camera through the proxy, connected while no rule is set."""
    cam = AlpacaCamera("camera", CameraAddress(url=proxy.url), heard.append)
    await cam.connect()
    yield cam
    proxy.rules = []
    await cam.disconnect()


@pytest.mark.parametrize(
    ("rule", "error", "injected"),
    [
        (FaultRule(Fault.HTTP_500, path=STATE), OperationFailed, ATTEMPTS),
        (FaultRule(Fault.ALPACA_ERROR, path=STATE, error_number=0x500), OperationFailed, ATTEMPTS),
        (FaultRule(Fault.RESET, path=STATE), NotConnected, ATTEMPTS),
        (FaultRule(Fault.TRUNCATE, path=STATE), OperationFailed, ATTEMPTS),
        (FaultRule(Fault.TRUNCATE, path=STATE, keep_length=False), OperationFailed, ATTEMPTS),
        # ASCOM errors with a meaning are the device's answer: raised at once, as their kind.
        (FaultRule(Fault.ALPACA_ERROR, path=STATE, error_number=0x40C), DeviceBusy, 1),
        (FaultRule(Fault.ALPACA_ERROR, path=STATE, error_number=0x400), NotSupported, 1),
    ],
    ids=["500", "driver-error", "reset", "cut-short", "cut-short-json", "busy", "not-impl"],
)
async def test_a_fault_that_lasts_gives_its_error_kind_promptly(
    camera: AlpacaCamera,
    proxy: FaultProxy,
    heard: list[DeviceFault],
    rule: FaultRule,
    error: type[DeviceError],
    injected: int,
) -> None:
    proxy.rules = [rule]
    started = time.monotonic()
    with pytest.raises(error) as caught:
        async with asyncio.timeout(FAST_FAULT_BOUND_S):
            await camera.status()
    assert time.monotonic() - started < FAST_FAULT_BOUND_S
    assert type(caught.value) is error
    assert caught.value.operation == "read CameraState"
    assert proxy.injected_count(rule.kind, STATE) == injected
    # Every retried fault was reported; the last one is the caller's to report.
    assert [(f.operation, f.attempt) for f in heard] == [
        ("read CameraState", n) for n in range(1, injected)
    ]


async def test_a_silent_server_times_out_once_without_a_retry(
    camera: AlpacaCamera, proxy: FaultProxy, heard: list[DeviceFault]
) -> None:
    proxy.rules = [FaultRule(Fault.SILENCE, path=STATE)]
    with pytest.raises(DeviceTimeout, match="read CameraState"):
        async with asyncio.timeout(CALL_TIMEOUT_S + 2.0):
            await camera.status()
    assert proxy.injected_count(Fault.SILENCE) == 1
    assert heard == []


async def test_latency_below_the_timeout_is_only_slower(
    camera: AlpacaCamera, proxy: FaultProxy
) -> None:
    proxy.rules = [FaultRule(Fault.LATENCY, path=STATE, latency_s=0.5)]
    started = time.monotonic()
    status = await camera.status()
    assert time.monotonic() - started >= 0.5
    assert status.bin_x >= 1
    assert proxy.injected_count(Fault.LATENCY) == 1


@pytest.mark.parametrize("kind", [Fault.HTTP_500, Fault.RESET, Fault.TRUNCATE])
async def test_a_transient_fault_on_a_read_is_retried_and_reported(
    camera: AlpacaCamera, proxy: FaultProxy, heard: list[DeviceFault], kind: Fault
) -> None:
    proxy.rules = [FaultRule(kind, path=STATE, limit=ATTEMPTS - 1)]
    status = await camera.status()
    assert status.bin_x >= 1
    assert proxy.injected_count(kind) == ATTEMPTS - 1
    assert [(f.device, f.operation, f.attempt) for f in heard] == [
        ("camera", "read CameraState", n) for n in range(1, ATTEMPTS)
    ]
    assert [f.retry_in_s for f in heard] == list(RETRY_DELAYS_S)


async def test_a_start_exposure_that_failed_is_not_repeated(
    camera: AlpacaCamera, proxy: FaultProxy, heard: list[DeviceFault]
) -> None:
    """Repeating StartExposure could start a second exposure: the caller decides."""
    proxy.rules = [FaultRule(Fault.HTTP_500, path="camera/0/startexposure", limit=1)]
    with pytest.raises(OperationFailed, match="start exposure"):
        await camera.expose(0.1, light=False)
    assert proxy.requests.count(("PUT", "/api/v1/camera/0/startexposure")) == 1
    assert heard == []
    frame = await camera.expose(0.1, light=False)  # the camera was left ready
    assert frame.data.shape == (1536, 2048)


@pytest.mark.parametrize("keep_length", [True, False], ids=["length-claims-more", "short-body"])
async def test_an_image_cut_short_is_downloaded_again_whole(
    camera: AlpacaCamera, proxy: FaultProxy, heard: list[DeviceFault], keep_length: bool
) -> None:
    proxy.rules = [
        FaultRule(Fault.TRUNCATE, path="camera/0/imagearray", limit=1, keep_length=keep_length)
    ]
    frame = await camera.expose(0.1, light=False)
    assert frame.data.shape == (1536, 2048)
    assert proxy.injected_count(Fault.TRUNCATE) == 1
    assert proxy.requests.count(("GET", "/api/v1/camera/0/imagearray")) == 2
    assert [f.operation for f in heard] == ["download image"]


@pytest.mark.parametrize("keep_length", [True, False], ids=["length-claims-more", "short-body"])
async def test_an_image_always_cut_short_fails_the_exposure_never_a_short_image(
    camera: AlpacaCamera, proxy: FaultProxy, keep_length: bool
) -> None:
    proxy.rules = [FaultRule(Fault.TRUNCATE, path="camera/0/imagearray", keep_length=keep_length)]
    with pytest.raises(OperationFailed, match="download image") as caught:
        async with asyncio.timeout(CALL_TIMEOUT_S + FAST_FAULT_BOUND_S):
            await camera.expose(0.1, light=False)
    assert "cut short" in str(caught.value) or "header promises" in str(caught.value)
    assert proxy.injected_count(Fault.TRUNCATE) == ATTEMPTS
