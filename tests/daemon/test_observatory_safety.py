"""The observatory secured in the right order when the sky turns, on the simulator's own roll-off
roof, dust cover, mount, safety monitor and weather station: park, then close the roof, then
the cover; reopen after the safe delay. A roof that cannot close is an alert and a webhook call.

The roof and the mount are reached through a fault proxy (forwarding unless a test gives it
rules): a stuck roof motor is the proxy acknowledging CloseShutter without passing it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event
from daemon.notifications import Notifier, NotifierConfig
from daemon.runs import RunManager
from daemon.safety import SafetyConfig, SafetyState, SafetySupervisor
from daemon.simulator.rig import SimulatorRig, simulator_profile
from drivers.alpaca import build_equipment
from drivers.base import CoverCalibrator, CoverState, Dome, Mount, ShutterState
from drivers.equipment import Equipment
from drivers.observatory import open_roof
from drivers.profile import EquipmentProfile
from sequences.clock import SystemClock
from tests.daemon.test_notifications import webhook_receiver
from tests.daemon.test_safety import _no_runs, set_safe
from tests.faultproxy import Fault, FaultProxy, FaultRule, running_proxy
from tests.helpers import eventually

SHUTTER_TIMEOUT_S = 1.5
"""The roof's timeout in the profile: three times the simulated roof's travel."""
PHYSICS = {"shutter_time_s": 0.5, "cover_time_s": 0.3}
HUMIDITY_LIMIT_PCT = 80.0


@dataclass
class Observatory:
    rig: SimulatorRig
    proxy: FaultProxy
    profile: EquipmentProfile
    equipment: Equipment

    def put(self, device: str, field: str, value: float) -> None:
        httpx.put(
            f"{self.rig.url}/api/v1/{device}/{field.lower()}",
            data={field: str(value), "ClientTransactionID": "1", "ClientID": "1"},
        ).raise_for_status()

    @property
    def mount(self) -> Mount:
        assert self.equipment.mount is not None
        return self.equipment.mount

    @property
    def dome(self) -> Dome:
        assert self.equipment.dome is not None
        return self.equipment.dome

    @property
    def cover(self) -> CoverCalibrator:
        assert self.equipment.cover_calibrator is not None
        return self.equipment.cover_calibrator

    async def ready_for_the_night(self) -> None:
        """Safe sky, roof and cover open, mount unparked: as an unsafe spell finds them."""
        self.proxy.rules = []
        set_safe(self.rig, True)
        self.put("observingconditions/0", "Humidity", 55.0)
        if not (await self.mount.status()).at_park:
            await self.mount.park()
        await open_roof(self.dome, self.mount)
        if (await self.cover.status()).cover is not CoverState.OPEN:
            await self.cover.open_cover()
        await self.mount.unpark()

    async def states(self) -> tuple[bool, ShutterState | None, CoverState]:
        """(mount parked, roof, cover), the roof read first (see `watch_the_roof`)."""
        shutter = (await self.dome.status()).shutter
        return (await self.mount.status()).at_park, shutter, (await self.cover.status()).cover


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, catalog_cache: Path) -> Iterator[SimulatorRig]:
    with SimulatorRig(
        run_dir=tmp_path_factory.mktemp("observatory"), cache_dir=catalog_cache, overrides=PHYSICS
    ) as rig:
        yield rig


@pytest.fixture(scope="module")
async def observatory(rig: SimulatorRig) -> AsyncIterator[Observatory]:
    with running_proxy(rig.url) as proxy:
        profile = simulator_profile(rig.url)
        assert profile.dome is not None
        assert profile.mount is not None
        assert profile.weather is not None
        unsafe = profile.weather.unsafe.model_copy(update={"humidity_pct": HUMIDITY_LIMIT_PCT})
        proxied = {"url": proxy.url}
        profile = profile.model_copy(
            update={
                "dome": profile.dome.model_copy(
                    update={**proxied, "shutter_timeout_s": SHUTTER_TIMEOUT_S}
                ),
                "mount": profile.mount.model_copy(update=proxied),
                "weather": profile.weather.model_copy(update={"unsafe": unsafe}),
            }
        )
        equipment = build_equipment(profile)
        failures = {r: e for r, e in (await equipment.connect_all()).items() if e is not None}
        assert not failures, failures
        assert equipment.dome is not None
        assert not equipment.dome.info.can_set_azimuth  # the roll-off roof
        try:
            yield Observatory(rig, proxy, profile, equipment)
        finally:
            await equipment.disconnect_all()


@contextlib.asynccontextmanager
async def supervising(
    folder: Path, observatory: Observatory, safe_delay_s: float = 60.0
) -> AsyncIterator[tuple[Engine, SafetySupervisor]]:
    await observatory.ready_for_the_night()
    engine = make_engine(f"sqlite:///{folder / 'nightowl.db'}")
    upgrade(engine)
    clock = SystemClock()
    weather = observatory.profile.weather
    assert weather is not None
    config = SafetyConfig(poll_s=0.2, safe_delay_s=safe_delay_s, weather_limits=weather.unsafe)
    safety = SafetySupervisor(
        engine, observatory.equipment, clock, RunManager(engine, _no_runs, clock), None, config
    )
    safety.start()
    try:
        yield engine, safety
    finally:
        await safety.stop()
        set_safe(observatory.rig, True)
        observatory.put("observingconditions/0", "Humidity", 55.0)
        engine.dispose()


@dataclass(frozen=True)
class Logged:
    id: int
    time: float
    level: str
    message: str
    data: dict[str, Any]


def safety_log(engine: Engine) -> list[Logged]:
    with Session(engine) as db:
        rows = db.scalars(select(Event).where(Event.source == "safety").order_by(Event.id))
        return [Logged(e.id, e.time.timestamp(), e.level, e.message, e.data) for e in rows]


def steps(engine: Engine) -> list[tuple[str, str]]:
    """(step, message) of the securing and reopening steps, in the order they were logged."""
    return [(e.data["step"], e.message) for e in safety_log(engine) if "step" in e.data]


def logged(engine: Engine, start: str) -> bool:
    return any(e.message.startswith(start) for e in safety_log(engine))


@contextlib.asynccontextmanager
async def watch_the_roof(
    observatory: Observatory,
) -> AsyncIterator[list[tuple[bool, ShutterState | None, CoverState]]]:
    """Sample (mount parked, roof, cover) every 0.1 s (the roof travels for 0.5 s). The roof is
    read before the mount: a roof seen moving is paired with a later reading of the mount, which
    a parked mount that stays parked passes and a mount still on its way to park fails."""
    samples: list[tuple[bool, ShutterState | None, CoverState]] = []

    async def sample() -> None:
        while True:
            samples.append(await observatory.states())
            await asyncio.sleep(0.1)

    task = asyncio.create_task(sample())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_unsafe_spell_parks_then_closes_the_roof_then_the_cover_and_reopens_them(
    tmp_path: Path, observatory: Observatory
) -> None:
    async with (
        supervising(tmp_path, observatory, safe_delay_s=0.5) as (engine, safety),
        watch_the_roof(observatory) as samples,
    ):
        set_safe(observatory.rig, False)
        await eventually(lambda: logged(engine, "dust cover closed"), 20, "the cover closed")
        closed_states = await observatory.states()
        report = safety.report()
        set_safe(observatory.rig, True)
        await eventually(safety.is_ready, 20, "the plan released")
        open_states = await observatory.states()
    log = safety_log(engine)
    closing, opening = ["park", "roof", "cover"], ["roof", "cover", "release"]
    assert [step for step, _ in steps(engine)] == closing + opening
    assert [message for _, message in steps(engine)][:5] == [
        "mount parked (unsafe)",
        "roof closed (unsafe)",
        "dust cover closed (unsafe)",
        "roof opened (safe again)",
        "dust cover opened (safe again)",
    ]
    assert closed_states == (True, ShutterState.CLOSED, CoverState.CLOSED)
    assert (report.reason, report.closed) == (
        "the safety monitor reports unsafe",
        ("roof", "cover"),
    )
    # The mount stays parked: the plan's start area unparks it, once released.
    assert open_states == (True, ShutterState.OPEN, CoverState.OPEN)
    assert safety.report().closed == ()
    # The roof never moved, nor stood closed, over a mount that was not parked.
    moving = [s for s in samples if s[1] is not ShutterState.OPEN]
    assert any(s[1] is ShutterState.CLOSING for s in moving), samples
    assert any(s[1] is ShutterState.OPENING for s in moving), samples
    assert all(parked for parked, _, _ in moving), samples
    # Reopened only after the safe delay of continuous safe readings.
    safe_again = next(e for e in log if e.message.startswith("safe again"))
    reopened = next(e for e in log if e.message.startswith("roof opened"))
    assert reopened.time - safe_again.time >= 0.5


async def test_a_stuck_roof_is_an_alert_and_a_webhook_call_within_its_timeout(
    tmp_path: Path, observatory: Observatory
) -> None:
    """The roof's motor acknowledges the close and never turns: the driver gives up after
    the profile's timeout, and the alert reaches the webhook; the cover still closes."""
    config = NotifierConfig(poll_s=0.2)
    async with supervising(tmp_path, observatory) as (engine, safety):
        observatory.proxy.rules = [
            FaultRule(Fault.STUCK_MOTOR, path=r"dome/1/closeshutter$", method="PUT")
        ]
        with webhook_receiver() as receiver:
            notifier = Notifier(engine, [receiver.url], observatory.profile.name, config)
            await notifier.start()
            try:
                turned = time.monotonic()
                set_safe(observatory.rig, False)
                await eventually(lambda: bool(receiver.posts), 20, "the webhook call")
                called_after_s = receiver.posts[0][0] - turned
                await eventually(lambda: logged(engine, "dust cover closed"), 10, "the cover")
            finally:
                await notifier.stop()
        states = await observatory.states()
        report = safety.report()
    assert observatory.proxy.injected_count(Fault.STUCK_MOTOR) == 1
    (alert,) = [e for e in safety_log(engine) if e.level == "alert"]
    assert alert.message.startswith("roof not closed: it did not get there in time"), alert
    assert alert.data["step"] == "roof"
    (body,) = receiver.bodies()
    assert (body["id"], body["message"], body["profile"]) == (alert.id, alert.message, "simulators")
    # The timeout (1.5 s) after the first poll (0.2 s) and the park, then the notifier's poll
    # (0.2 s): 4 s leaves a busy machine room without letting a much later call pass.
    assert SHUTTER_TIMEOUT_S <= called_after_s < SHUTTER_TIMEOUT_S + 4.0
    assert [step for step, _ in steps(engine)] == ["park", "roof", "cover"]
    assert states == (True, ShutterState.OPEN, CoverState.CLOSED)
    assert report.closed == ("cover",)


async def test_a_roof_over_a_mount_that_does_not_park_is_refused_with_an_alert(
    tmp_path: Path, observatory: Observatory
) -> None:
    async with supervising(tmp_path, observatory) as (engine, _):
        observatory.proxy.rules = [
            FaultRule(Fault.ALPACA_ERROR, path=r"telescope/0/park$", method="PUT")
        ]
        set_safe(observatory.rig, False)
        await eventually(lambda: logged(engine, "dust cover closed"), 20, "the cover closed")
        states = await observatory.states()
    assert [step for step, _ in steps(engine)] == ["park", "roof", "cover"]
    park, roof = (e for e in safety_log(engine) if e.data.get("step") in ("park", "roof"))
    assert park.level == "error"
    assert park.message.startswith("could not park the mount")
    assert roof.level == "alert"
    assert roof.message == (
        "roof not closed: refused: the mount does not report parked; park it before moving the roof"
    )
    assert states == (False, ShutterState.OPEN, CoverState.CLOSED)


async def test_a_broken_humidity_limit_secures_the_observatory_and_a_stuck_roof_holds_the_plan(
    tmp_path: Path, observatory: Observatory
) -> None:
    """The weather rule secures as the safety monitor does; once the humidity is back under
    its limit for the safe delay, a roof that does not open keeps the plan held, with an alert."""
    async with supervising(tmp_path, observatory, safe_delay_s=0.3) as (engine, safety):
        observatory.put("observingconditions/0", "Humidity", 95.0)
        await eventually(lambda: logged(engine, "dust cover closed"), 20, "the cover closed")
        states = await observatory.states()
        report = safety.report()
        observatory.proxy.rules = [
            FaultRule(Fault.STUCK_MOTOR, path=r"dome/1/openshutter$", method="PUT")
        ]
        observatory.put("observingconditions/0", "Humidity", 60.0)
        await eventually(lambda: logged(engine, "roof not opened"), 20, "the roof's alert")
        held = safety.report()
        await asyncio.sleep(0.5)  # polls go on: still held
        ready = safety.is_ready()
    assert [step for step, _ in steps(engine)] == ["park", "roof", "cover", "roof"]
    assert states == (True, ShutterState.CLOSED, CoverState.CLOSED)
    assert report.weather_violations == ("humidity 95 % above 80 %",)
    (unsafe,) = [e for e in safety_log(engine) if e.message.startswith("unsafe:")]
    assert unsafe.message == (
        "unsafe: weather: humidity 95 % above 80 %; aborting the exposure and parking"
    )
    (alert,) = [e for e in safety_log(engine) if e.level == "alert"]
    assert alert.message.startswith("roof not opened: it did not get there in time")
    assert alert.message.endswith("; the plan stays held")
    assert (held.state, held.reason, held.closed) == (
        SafetyState.UNSAFE,
        alert.message,
        ("roof", "cover"),
    )
    assert held.weather_violations == ()
    assert not ready
