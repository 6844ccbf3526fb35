"""The PHD2 client against a fake PHD2 server written from PHD2's protocol document.

Every test's fake is checked at the end against the document (events, attribute types,
methods), and the document's own example exchanges are replayed against it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest

from daemon.app import build_guider
from drivers.alpaca import build_equipment
from drivers.base import (
    Dithered,
    GuideDirection,
    GuideEvent,
    GuiderFault,
    GuiderState,
    GuideStep,
    GuidingStopped,
    SettleDone,
    StarLost,
)
from drivers.guider import CalibrationFailed, NativeGuider, NoGuideStar, NotGuiding, SettleTimeout
from drivers.guider.errors import GuiderTimeout, GuiderUnreachable
from drivers.guider.phd2 import Phd2Guider
from drivers.profile import EquipmentProfile, Phd2GuiderChoice, ProfileError, load_profile
from sequences.clock import SimulatedClock
from sequences.instructions.guider import StartGuiding
from sequences.validation import validation_env
from tests.drivers.phd2_fake import DOCUMENT, FakePhd2, checked_fake, protocol

E = TypeVar("E")

needs_document = pytest.mark.skipif(
    not DOCUMENT.exists(), reason=f"PHD2's protocol document is not at {DOCUMENT}"
)


@pytest.fixture
async def fake() -> AsyncIterator[FakePhd2]:
    async with checked_fake() as server:
        yield server


def choice(fake: FakePhd2, **overrides: Any) -> Phd2GuiderChoice:
    """Settle in 2 s of PHD2 time (a few fake frames), time out after 10."""
    values: dict[str, Any] = {
        "kind": "phd2",
        "host": "127.0.0.1",
        "port": fake.port,
        "settle": {"pixels": 1.5, "time_s": 2, "timeout_s": 10},
        "call_timeout_s": 2.0,
        "start_timeout_s": 10.0,
        "reconnect_max_s": 0.3,
    }
    return Phd2GuiderChoice.model_validate(values | overrides)


@pytest.fixture
async def guider(fake: FakePhd2) -> AsyncIterator[Phd2Guider]:
    client = Phd2Guider(choice(fake))
    yield client
    await client.close()


async def next_event(queue: asyncio.Queue[GuideEvent], kind: type[E], timeout_s: float = 5.0) -> E:
    """The next event of `kind` from `queue`, skipping others."""
    async with asyncio.timeout(timeout_s):
        while not isinstance(event := await queue.get(), kind):
            pass
    return event


def state(guider: Phd2Guider) -> GuiderState:
    return guider.state


def drain(queue: asyncio.Queue[GuideEvent]) -> list[GuideEvent]:
    events = []
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_connect_reads_version_and_app_state(fake: FakePhd2, guider: Phd2Guider) -> None:
    await guider.connect()
    assert guider.connected
    assert guider.version == "2.6.13"
    assert guider.app_state == "Stopped"
    assert state(guider) is GuiderState.STOPPED
    assert guider.pixel_scale_arcsec_px == 1.6
    assert [r["method"] for r in fake.requests] == ["get_pixel_scale"]


async def test_start_connects_gear_loops_calibrates_guides_and_settles(
    fake: FakePhd2, guider: Phd2Guider
) -> None:
    queue = guider.subscribe()
    await guider.start()
    assert state(guider) is GuiderState.GUIDING
    await guider.settle()
    assert [r["method"] for r in fake.requests] == [
        "get_pixel_scale",  # on connecting
        "get_pixel_scale",  # on each start: PHD2's profile may have changed
        "get_connected",
        "set_connected",
        "get_app_state",
        "loop",
        "find_star",
        "guide",
    ]
    guide = next(r for r in fake.requests if r["method"] == "guide")
    assert guide["params"] == {
        "settle": {"pixels": 1.5, "time": 2, "timeout": 10},
        "recalibrate": False,
    }
    sent = [m.get("Event") for m in fake.sent]
    assert sent.index("StartCalibration") < sent.index("CalibrationComplete")
    done = [e for e in drain(queue) if isinstance(e, SettleDone)]
    assert [(d.success, d.message) for d in done] == [(True, "settled")]
    assert guider.lock_position is not None
    await guider.stop()
    assert state(guider) is GuiderState.STOPPED
    assert fake.app_state == "Stopped"


async def test_guide_steps_become_events_and_rms_in_arcsec(
    fake: FakePhd2, guider: Phd2Guider
) -> None:
    await guider.start()
    await guider.settle()
    queue = guider.subscribe()
    guider.reset_rms()
    steps = [await next_event(queue, GuideStep) for _ in range(8)]
    rms = guider.rms()
    assert rms is not None
    assert rms.steps >= 8
    sent = [m for m in fake.sent if m.get("Event") == "GuideStep"]
    by_frame = {m["Frame"]: m for m in sent}
    first = steps[0]
    window = [m for m in sent if m["Frame"] >= first.frame][: rms.steps]
    ra = np.array([m["RADistanceRaw"] for m in window]) * 1.6
    dec = np.array([m["DECDistanceRaw"] for m in window]) * 1.6
    ra_rms, dec_rms = math.sqrt(np.mean(ra**2)), math.sqrt(np.mean(dec**2))
    # The same numbers through the same formula: only float rounding may differ.
    np.testing.assert_allclose(
        [rms.ra_arcsec, rms.dec_arcsec, rms.total_arcsec],
        [ra_rms, dec_rms, math.hypot(ra_rms, dec_rms)],
        rtol=1e-12,
    )
    raw = by_frame[first.frame]
    assert (first.dx_px, first.dy_px) == (raw["dx"], raw["dy"])
    assert first.ra_arcsec == pytest.approx(raw["RADistanceRaw"] * 1.6)
    direction = GuideDirection.WEST if raw["RADirection"] == "West" else GuideDirection.EAST
    if raw["RADuration"] > 0:
        assert first.ra_pulse is not None
        assert (first.ra_pulse.direction, first.ra_pulse.duration_ms) == (
            direction,
            raw["RADuration"],
        )


async def test_without_phd2s_pixel_scale_the_profiles_gives_the_rms() -> None:
    async with checked_fake(pixel_scale_arcsec=None) as fake:
        for scale, expected in ((None, None), (2.0, 2.0)):
            client = Phd2Guider(choice(fake, pixel_scale_arcsec=scale))
            try:
                queue = client.subscribe()
                await client.start()
                client.reset_rms()
                step = await next_event(queue, GuideStep)
                assert client.pixel_scale_arcsec_px == expected
                rms = client.rms()
                if expected is None:
                    assert math.isnan(step.ra_arcsec)
                    assert rms is None
                else:
                    assert rms is not None
                    assert step.ra_arcsec == pytest.approx(step.dx_px * expected)
            finally:
                await client.stop()
                await client.close()


async def test_dither_returns_phd2s_offset_then_settles(fake: FakePhd2, guider: Phd2Guider) -> None:
    await guider.start()
    await guider.settle()
    queue = guider.subscribe()
    dy, dx = await guider.dither(3.0, ra_only=False)
    reported = [m for m in fake.sent if m.get("Event") == "GuidingDithered"][-1]
    assert (dy, dx) == (reported["dy"], reported["dx"])
    assert abs(dx) <= 3.0
    assert abs(dy) <= 3.0
    await guider.settle(1.5, 2, 10)
    events = drain(queue)
    dithered = next(e for e in events if isinstance(e, Dithered))
    assert (dithered.dy_px, dithered.dx_px) == (dy, dx)
    assert [e.success for e in events if isinstance(e, SettleDone)] == [True]
    request = [r for r in fake.requests if r["method"] == "dither"][-1]
    assert request["params"] == {
        "amount": 3.0,
        "raOnly": False,
        "settle": {"pixels": 1.5, "time": 2, "timeout": 10},
    }
    with pytest.raises(ValueError, match="offset_px"):
        await guider.dither(0)


async def test_settle_timeout_raises_settle_timeout(fake: FakePhd2, guider: Phd2Guider) -> None:
    fake.faults.never_settle = True
    await guider.start()
    with pytest.raises(SettleTimeout, match="timed-out waiting for guider to settle"):
        await guider.settle()
    fake.faults.never_settle = False
    await guider.dither(1.0)
    await guider.settle()


async def test_lost_star_is_reported_and_guiding_goes_on(
    fake: FakePhd2, guider: Phd2Guider
) -> None:
    await guider.start()
    await guider.settle()
    queue = guider.subscribe()
    fake.faults.lose_star_frames = 3
    lost = [await next_event(queue, StarLost) for _ in range(3)]
    assert [e.consecutive_frames for e in lost] == [1, 2, 3]
    assert all(e.reason == "Star lost - low SNR" for e in lost)
    await next_event(queue, GuideStep)
    assert state(guider) is GuiderState.GUIDING


async def test_failed_calibration_fails_start_with_phd2s_reason(
    fake: FakePhd2, guider: Phd2Guider
) -> None:
    fake.faults.calibration_failure = "star did not move enough"
    queue = guider.subscribe()
    with pytest.raises(CalibrationFailed, match=r"star did not move enough.*guide output"):
        await guider.start()
    faults = [e.message for e in drain(queue) if isinstance(e, GuiderFault)]
    assert "PHD2 calibration failed: star did not move enough" in faults
    assert "PHD2 error: Calibration failed: star did not move enough" in faults


async def test_no_star_fails_start(fake: FakePhd2, guider: Phd2Guider) -> None:
    fake.faults.no_star = True
    with pytest.raises(NoGuideStar, match=r"could not find star.*focus"):
        await guider.start()


async def test_pause_and_resume(fake: FakePhd2, guider: Phd2Guider) -> None:
    await guider.start()
    await guider.settle()
    await guider.pause()
    await until(lambda: guider.app_state == "Paused")
    assert state(guider) is GuiderState.ACQUIRING
    await guider.resume()
    await until(lambda: state(guider) is GuiderState.GUIDING)


async def test_dropped_connection_stops_guiding_with_error_then_reconnects(
    fake: FakePhd2, guider: Phd2Guider
) -> None:
    await guider.start()
    await guider.settle()
    queue = guider.subscribe()
    await guider.dither(2.0)
    await fake.restart(down_s=0.3)
    stopped = await next_event(queue, GuidingStopped)
    assert stopped.error
    assert "closed the connection" in stopped.reason
    assert state(guider) is GuiderState.STOPPED
    with pytest.raises(NotGuiding):
        await guider.settle()
    await until(lambda: guider.connected)
    await guider.start()  # the restarted PHD2 is idle with its gear disconnected
    await guider.settle()
    assert state(guider) is GuiderState.GUIDING
    await next_event(queue, GuideStep)


async def test_calls_have_deadlines_and_a_missing_server_is_named(fake: FakePhd2) -> None:
    client = Phd2Guider(choice(fake, call_timeout_s=0.3))
    try:
        await client.connect()
        fake.faults.mute = True
        began = time.monotonic()
        with pytest.raises(GuiderTimeout, match=r"did not answer within 0\.3 s"):
            await client.call("get_app_state")
        assert time.monotonic() - began < 2.0
    finally:
        await client.close()
    await fake.stop()
    with pytest.raises(GuiderUnreachable, match="Enable Server"):
        await Phd2Guider(choice(fake)).start()


@needs_document
async def test_documented_exchanges_replay_against_the_fake(fake: FakePhd2) -> None:
    document = protocol()
    assert document is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)

    async def read(accepts: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        async with asyncio.timeout(5):
            while True:
                message: dict[str, Any] = json.loads(await reader.readline())
                if accepts(message):
                    return message

    version = await read(lambda m: m.get("Event") == "Version")
    example = document.version_example
    assert {k: type(v) for k, v in version.items() if k in example} == {
        k: type(v) for k, v in example.items()
    }
    await read(lambda m: m.get("Event") == "AppState")
    assert len(document.exchanges) == 3
    for request, reply in document.exchanges:
        writer.write(json.dumps(request).encode() + b"\r\n")
        assert await read(lambda m: "id" in m) == reply
    writer.write(b'{"method": "set_connected", "params": [true], "id": 7}\r\n')
    assert (await read(lambda m: m.get("id") == 7))["result"] == 0
    assert [r["method"] for r in document.requests] == ["guide", "guide", "dither"]
    for request in document.requests:
        writer.write(json.dumps(request).encode() + b"\r\n")
        assert await read(lambda m: "id" in m) == {"jsonrpc": "2.0", "result": 0, "id": 42}
        done = await read(lambda m: m.get("Event") == "SettleDone")
        assert done["Status"] == 0
    writer.close()


async def test_the_profile_chooses_phd2_and_names_bad_fields(tmp_path: Path) -> None:
    path = tmp_path / "profile.yaml"
    path.write_text(
        "name: roof\nguider: {kind: phd2, instance: 2, settle: {pixels: 2, time_s: 8}}\n"
    )
    profile = load_profile(path)
    assert isinstance(profile.guider, Phd2GuiderChoice)
    assert (profile.guider.host, profile.guider.tcp_port) == ("localhost", 4401)
    assert profile.guider.settle.timeout_s == 60
    equipment = build_equipment(profile)
    assert isinstance(build_guider(profile, equipment), Phd2Guider)
    assert equipment.external_guider == "phd2"
    env = await validation_env(equipment, SimulatedClock(datetime(2026, 11, 22, 20, tzinfo=UTC)))
    assert StartGuiding().check(env, "start") == []  # PHD2 runs the guide camera
    native = EquipmentProfile.model_validate(
        {
            "name": "n",
            "guide_camera": {"url": "http://127.0.0.1:1"},
            "mount": {"url": "http://127.0.0.1:1"},
        }
    )
    assert isinstance(build_guider(native, build_equipment(native)), NativeGuider)
    for text, field in (
        ("guider: {kind: phd3}", r"guider: .*'native', 'phd2'"),
        ("guider: {kind: phd2, settle: {time_s: 2.5}}", r"guider\.phd2\.settle\.time_s"),
        ("guider: {kind: phd2, port: 0}", r"guider\.phd2\.port"),
    ):
        path.write_text(f"name: roof\n{text}\n")
        with pytest.raises(ProfileError, match=field):
            load_profile(path)
