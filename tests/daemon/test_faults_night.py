"""Nights through a faulty network: the fault proxy between the daemon and the simulators.

A truncated image is never saved as a frame; a night run through a seeded fault rate on the
camera and the mount completes with every light on disk and in the database, and each fault
the proxy injected shows up in the event log (retried by a driver, or failed and reported).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.capture import CaptureConfig, CaptureRequest, CaptureService
from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event, Frame
from daemon.device_faults import DeviceFaultLog
from daemon.naming import DEFAULT_PATTERN
from daemon.simulator.rig import simulator_profile
from daemon.store import FrameStore
from drivers.alpaca import build_equipment
from drivers.alpaca._call import RETRY_DELAYS_S
from drivers.errors import OperationFailed
from sequences.frames import ExposureSpec, FrameType
from tests.daemon.conftest import running_daemon, wait_for
from tests.faultproxy import Fault, FaultProxy, FaultRule, Injected, running_proxy

M31 = {"ra_hours": 0.712306, "dec_deg": 41.2692}
IMAGE = "camera/0/imagearray"
SHAPE = (1536, 2048)


@pytest.fixture
def proxy(simulator_url: str) -> Iterator[FaultProxy]:
    with running_proxy(simulator_url, seed=5) as p:
        yield p


@pytest.fixture
async def capture(tmp_path: Path, proxy: FaultProxy) -> AsyncIterator[CaptureService]:
    """The capture service on the simulators through the proxy, faults into the event log."""
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    faults = DeviceFaultLog(engine)
    faults.start()
    equipment = build_equipment(simulator_profile(proxy.url), faults.heard)
    assert not any((await equipment.connect_all()).values())
    yield CaptureService(
        engine,
        equipment,
        FrameStore(tmp_path / "frames"),
        CaptureConfig("simulators", DEFAULT_PATTERN, UTC),
    )
    proxy.rules = []
    await equipment.disconnect_all()
    await faults.stop()
    engine.dispose()


def rows(service: CaptureService, model: type[Frame] | type[Event]) -> list[Any]:
    with Session(service._engine) as db:
        return list(db.scalars(select(model).order_by(model.id)))


async def test_an_image_cut_short_once_is_saved_whole_and_the_fault_is_an_event(
    capture: CaptureService, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.rules = [FaultRule(Fault.TRUNCATE, path=IMAGE, limit=1)]
    saved = await capture.capture(CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0), count=2))
    assert len(saved) == 2
    assert proxy.injected_count(Fault.TRUNCATE) == 1
    for frame in rows(capture, Frame):
        content = (tmp_path / "frames" / frame.path).read_bytes()
        assert hashlib.sha256(content).hexdigest() == frame.sha256
        with fits.open(tmp_path / "frames" / frame.path) as hdul:
            assert hdul[0].data.shape == SHAPE
    (fault,) = await device_events(capture, 1)
    assert fault.level == "warning"
    assert fault.data["device"] == "camera"
    assert fault.data["operation"] == "download image"
    assert "cut short" in fault.message


async def test_an_image_always_cut_short_is_never_saved(
    capture: CaptureService, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.rules = [FaultRule(Fault.TRUNCATE, path=IMAGE, keep_length=False)]
    with pytest.raises(OperationFailed, match="download image"):
        await capture.capture(CaptureRequest(ExposureSpec(FrameType.LIGHT, 1.0), count=2))
    assert proxy.injected_count(Fault.TRUNCATE) == len(RETRY_DELAYS_S) + 1
    assert rows(capture, Frame) == []
    frames_root = tmp_path / "frames"
    assert not frames_root.exists() or not any(p.is_file() for p in frames_root.rglob("*"))
    retried = await device_events(capture, len(RETRY_DELAYS_S))
    assert len(retried) == len(RETRY_DELAYS_S)


async def device_events(capture: CaptureService, count: int) -> list[Event]:
    """The fault log's events, once its writer has written `count` of them (or after 5 s)."""
    for _ in range(50):
        events = [e for e in rows(capture, Event) if e.source == "device"]
        if len(events) >= count:
            break
        await asyncio.sleep(0.1)
    return events


# -- a night through the proxy -------------------------------------------------------------------

CAMERA_AND_MOUNT = r"/(camera|telescope)/0/"
NIGHT_PLAN = [
    # Each kind once for certain, spread so that no retry meets two of them in a row...
    FaultRule(Fault.SILENCE, path="camera/0/imageready", limit=1, hold_s=30.0),
    FaultRule(Fault.TRUNCATE, path=IMAGE, limit=1, after=1),
    FaultRule(Fault.HTTP_500, path=CAMERA_AND_MOUNT, limit=1, after=5),
    FaultRule(Fault.RESET, path=CAMERA_AND_MOUNT, limit=1, after=15),
    FaultRule(Fault.ALPACA_ERROR, path=CAMERA_AND_MOUNT, limit=1, after=25, error_number=0x500),
    # ... and then at random, seeded.
    FaultRule(Fault.TRUNCATE, path=IMAGE, rate=0.3),
    FaultRule(Fault.HTTP_500, path=CAMERA_AND_MOUNT, rate=0.02),
    FaultRule(Fault.RESET, path=CAMERA_AND_MOUNT, rate=0.015),
    FaultRule(Fault.ALPACA_ERROR, path=CAMERA_AND_MOUNT, rate=0.015, error_number=0x500),
    FaultRule(Fault.LATENCY, path=CAMERA_AND_MOUNT, rate=0.05, latency_s=0.3),
]
"""About one fault in twelve camera and mount requests, each kind at least once a night (a night
makes hundreds of camera and mount requests and six image downloads)."""

LIGHTS = 6


def night_document() -> dict[str, Any]:
    return {
        "name": "a night through a faulty network",
        "start": {"items": [{"kind": "unpark", "attempts": 3}]},
        "targets": [
            {
                "kind": "target",
                "target_name": "M31",
                "coordinates": M31,
                "items": [
                    {"kind": "slew", "attempts": 3},
                    {
                        "kind": "take_exposures",
                        "count": LIGHTS,
                        "exposure_s": 1.0,
                        "attempts": 5,
                    },
                ],
            }
        ],
        "end": {"items": [{"kind": "park", "attempts": 3}]},
    }


def fault_key(injected: Injected) -> tuple[str, str]:
    """(device role, what its driver calls the operation) of the request a fault hit."""
    _, device, _, name = injected.path.rsplit("/", 3)
    role = {"camera": "camera", "telescope": "mount"}[device]
    methods = {
        "imagearray": "download image",
        "startexposure": "start exposure",
        "abortexposure": "abort exposure",
        "slewtocoordinatesasync": "slew to",
        "abortslew": "abort slew",
        "unpark": "unpark",
        "park": "park",
    }
    if name in methods:
        return role, methods[name]
    return role, ("read " if injected.method == "GET" else "set ") + name


def test_a_night_through_a_faulty_network_loses_no_frame_and_shows_each_fault(
    tmp_path: Path, catalog_cache: Path, proxy: FaultProxy, simulator_url: str
) -> None:
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "name: flaky-network\n"
        f"camera: {{url: '{proxy.url}'}}\n"
        f"mount: {{url: '{proxy.url}'}}\n"
        f"focuser: {{url: '{simulator_url}'}}\n"
        f"filter_wheel: {{url: '{simulator_url}'}}\n"
        f"safety_monitor: {{url: '{simulator_url}'}}\n"
    )
    env = {
        "NIGHTOWL_EQUIPMENT_PROFILE": str(profile),
        "NIGHTOWL_CLOCK": "simulated",
        "NIGHTOWL_CLOCK_START": "2026-11-22T20:00:00Z",
        "NIGHTOWL_PROCESS_AFTER_RUN": "false",
        # The supervisor's device polls would meet faults nobody waits for: keep them rare.
        "NIGHTOWL_SAFETY_POLL_S": "300",
    }
    data = tmp_path / "data"
    with running_daemon(data, catalog_cache, **env) as daemon:
        wait_for(
            f"{daemon.url}/api/equipment",
            lambda body: all(d["connected"] for d in body["devices"]),
        )
        reply = httpx.post(f"{daemon.url}/api/runs", json={"document": night_document()})
        assert reply.status_code == 201, reply.text
        run_id = reply.json()["id"]
        proxy.rules = list(NIGHT_PLAN)
        done = wait_for(
            f"{daemon.url}/api/runs/{run_id}",
            lambda r: r["status"] in ("completed", "failed", "aborted"),
            timeout_s=150,
        )
        proxy.rules = []
        log = daemon.log()
    assert done["status"] == "completed", log

    # Every light: a file whose checksum is its row's, a whole image.
    with sqlite3.connect(data / "nightowl.db") as db:
        frames = db.execute(
            "SELECT path, sha256 FROM frame WHERE run_id = ? AND frame_type = 'LIGHT'", (run_id,)
        ).fetchall()
        events = [
            (source, message, json_data)
            for source, message, json_data in db.execute("SELECT source, message, data FROM event")
        ]
    assert len(frames) == LIGHTS
    for path, sha256 in frames:
        file = data / "frames" / path
        assert hashlib.sha256(file.read_bytes()).hexdigest() == sha256
        with fits.open(file) as hdul:
            assert hdul[0].data.shape == SHAPE
            assert np.count_nonzero(hdul[0].data[-1]) > 0  # the last row arrived too
    assert not list((data / "frames").rglob("*.partial"))

    # Each kind was injected, and each injected fault is in the event log: retried by the
    # driver (a device warning), or failed and reported (a sequence error event, or a capture
    # warning for a frame header that went without that device's state).
    injected = [i for i in proxy.injected if i.kind is not Fault.LATENCY]
    kinds = {i.kind for i in proxy.injected}
    assert kinds == {r.kind for r in NIGHT_PLAN}, kinds
    reported = [m for _, m, _ in events]
    unseen = []
    for fault in injected:
        role, operation = fault_key(fault)
        pattern = re.compile(rf"{role}: {re.escape(operation)}\S* .*failed", re.IGNORECASE)
        match = next((m for m in reported if pattern.search(m)), None)
        if match is None:
            unseen.append(fault)
        else:
            reported.remove(match)
    assert not unseen, unseen
