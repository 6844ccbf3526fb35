"""The safety supervisor and lost devices: a simulator of the test's own is killed (the real
fault) and started again; a device that comes back is reconnected, one that stays lost ends
the night with an alert."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.db.models import Event, PlanNight, PlanNightState
from daemon.nights import NightDirector
from daemon.plans import save_plan
from daemon.runs import RunEvents, RunManager
from daemon.safety import SafetyConfig, SafetyState, SafetySupervisor
from daemon.simulator.rig import SimulatorRig, simulator_profile
from daemon.templates import save_template
from drivers.alpaca import build_equipment
from drivers.equipment import Equipment
from sequences.clock import Clock, SimulatedClock, SystemClock
from sequences.context import RunContext
from sequences.document import parse_document
from tests.daemon.test_nights import TEMPLATE, m31_plan
from tests.helpers import eventually
from tests.sequences.conftest import NIGHT_START, open_harness

RECONNECT = SafetyConfig(poll_s=0.3, reconnect_delays_s=(0.5, 0.5, 0.5))


@pytest.fixture
def own_rig(tmp_path: Path, catalog_cache: Path) -> Iterator[SimulatorRig]:
    with SimulatorRig(run_dir=tmp_path / "rig", cache_dir=catalog_cache) as rig:
        yield rig


def _no_runs(run_id: int, events: RunEvents) -> RunContext:
    raise AssertionError("this test starts no run")


async def _supervised(
    tmp_path: Path, rig: SimulatorRig, clock: Clock | None = None
) -> tuple[Engine, Equipment, SafetySupervisor]:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    equipment = build_equipment(simulator_profile(rig.url))
    assert not any((await equipment.connect_all()).values())
    clock = clock or SimulatedClock(datetime(2026, 11, 22, 20, 0, tzinfo=UTC))
    runs = RunManager(engine, _no_runs, clock)
    return engine, equipment, SafetySupervisor(engine, equipment, clock, runs, None, RECONNECT)


def set_safe(rig: SimulatorRig, safe: bool) -> None:
    httpx.put(
        f"{rig.url}/api/v1/safetymonitor/0/issafe",
        data={"IsSafe": str(safe), "ClientTransactionID": "1", "ClientID": "1"},
    ).raise_for_status()


def safety_events(engine: Engine, level: str | None = None) -> list[str]:
    with Session(engine) as db:
        query = select(Event.message).where(Event.source == "safety").order_by(Event.id)
        if level is not None:
            query = query.where(Event.level == level)
        return list(db.scalars(query))


async def test_a_lost_device_that_comes_back_is_reconnected(
    tmp_path: Path, own_rig: SimulatorRig
) -> None:
    engine, equipment, safety = await _supervised(tmp_path, own_rig)
    lost: list[str] = []

    async def on_lost(role: str, error: str) -> None:
        lost.append(role)

    safety.on_device_lost = on_lost
    safety.start()
    try:
        assert own_rig.pid is not None
        os.killpg(own_rig.pid, signal.SIGKILL)
        own_rig.stop()
        await eventually(lambda: "focuser" in safety.report().lost_devices, 30, "the focuser lost")
        own_rig.start()  # the same port: the server came back
        await eventually(
            lambda: any(m.startswith("focuser reconnected") for m in safety_events(engine)),
            30,
            "the focuser back",
        )
        await eventually(lambda: not safety.report().lost_devices, 30, "every device back")
    finally:
        await safety.stop()
        await equipment.disconnect_all()
    messages = safety_events(engine)
    assert any(m.startswith("focuser lost") for m in messages)
    # The unanswered safety monitor counted as unsafe: the night is held meanwhile.
    assert any(m.startswith("unsafe: the safety monitor does not answer") for m in messages)
    assert lost == []


def night_state(engine: Engine, night_id: int) -> PlanNightState | None:
    with Session(engine) as db:
        night = db.get(PlanNight, night_id)
        return None if night is None else night.state


async def test_a_device_that_stays_lost_raises_an_alert_and_ends_the_night(
    tmp_path: Path, own_rig: SimulatorRig, catalog_cache: Path
) -> None:
    equipment = build_equipment(simulator_profile(own_rig.url))
    assert not any((await equipment.connect_all()).values())
    async with open_harness(tmp_path, equipment, own_rig.url, catalog_cache, NIGHT_START) as h:
        template = save_template(h.engine, parse_document(TEMPLATE))
        plan_id = save_plan(h.engine, m31_plan("lost", template.id, 100), True).id
        safety = SafetySupervisor(h.engine, equipment, h.clock, h.runs, None, RECONNECT)

        async def hand_off(run_ids: list[int]) -> None:
            pass

        director = NightDirector(h.engine, equipment, h.clock, h.runs, safety, hand_off)
        safety.start()
        try:
            night_id = await director.start(plan_id)
            await eventually(lambda: bool(h.frames(1)), 60, "a frame")
            # Held while unsafe first: runs that fail at once on a dead server could otherwise
            # leave the target out and end the night on their own before any device is given up.
            h.set_safe(False)
            await eventually(lambda: not safety.is_ready(), 30, "the night held")
            await eventually(
                lambda: night_state(h.engine, night_id) is PlanNightState.PAUSED, 60, "paused"
            )
            assert own_rig.pid is not None
            os.killpg(own_rig.pid, signal.SIGKILL)
            await asyncio.wait_for(director.wait(), 90)
            roles = {d.role for d in equipment.devices()}
            await eventually(lambda: set(safety.report().lost_devices) == roles, 30, "all given up")
            await asyncio.sleep(1.0)  # given up: no second alert
        finally:
            await director.shutdown()
            await safety.stop()
        with Session(h.engine) as db:
            night = db.get(PlanNight, night_id)
            assert night is not None
            state, reason = night.state, night.reason or ""
        alerts = safety_events(h.engine, "alert")
        with Session(h.engine) as db:
            query = select(Event.message).where(Event.source == "plan", Event.level == "alert")
            night_alerts = list(db.scalars(query))
    assert state is PlanNightState.STOPPED
    assert [m.split(": ", 1)[1][:15] for m in night_alerts] == ["night stopped ("]
    assert reason.split(" ")[1:2] == ["lost:"], reason
    lost = [m for m in alerts if " stayed lost " in m]
    assert sorted(m.split(" ")[0] for m in lost) == sorted(roles)
    assert not safety.is_ready()  # the silent safety monitor counts as unsafe


async def test_the_safe_declaration_is_in_the_log_before_a_waiting_plan_goes_on(
    tmp_path: Path, own_rig: SimulatorRig
) -> None:
    """Whoever waits for safety acts on the supervisor's word, so the log must hold the word
    first: a night's "going on" event never precedes the "safe for" that released it."""
    engine, equipment, safety = await _supervised(tmp_path, own_rig)
    safety.config = SafetyConfig(poll_s=0.3, safe_delay_s=60.0)
    seen_when_released: list[list[str]] = []

    async def plan_waiting() -> None:
        await safety.wait_ready()
        seen_when_released.append(safety_events(engine))  # no await: what the log holds now

    safety.start()
    try:
        set_safe(own_rig, False)
        await eventually(lambda: not safety.is_ready(), 30, "unsafe")
        waiter = asyncio.create_task(plan_waiting())
        set_safe(own_rig, True)
        await asyncio.wait_for(waiter, 60)
    finally:
        set_safe(own_rig, True)
        await safety.stop()
        await equipment.disconnect_all()
    assert any(m.startswith("safe for 1.0 min") for m in seen_when_released[0])


async def test_an_unsafe_spell_that_starts_while_settling_is_noticed_within_a_poll(
    tmp_path: Path, own_rig: SimulatorRig
) -> None:
    """Settling (safe again, waiting out the safe delay) polls as often as any other state, on
    the system clock a real night runs on: weather that turns again is seen at the next poll."""
    engine, equipment, safety = await _supervised(tmp_path, own_rig, SystemClock())
    safety.config = SafetyConfig(poll_s=1.0, safe_delay_s=3600.0)

    def state_is(state: SafetyState) -> bool:
        return safety.report().state is state

    safety.start()
    try:
        set_safe(own_rig, False)
        await eventually(lambda: state_is(SafetyState.UNSAFE), 30, "unsafe")
        set_safe(own_rig, True)
        await eventually(lambda: state_is(SafetyState.SETTLING), 30, "settling")
        await asyncio.sleep(2.5 * safety.config.poll_s)  # well into the safe delay
        set_safe(own_rig, False)
        turned = time.monotonic()
        await eventually(lambda: state_is(SafetyState.UNSAFE), 60, "unsafe again")
        noticed_after_s = time.monotonic() - turned
    finally:
        set_safe(own_rig, True)
        await safety.stop()
        await equipment.disconnect_all()
    # At most one poll period plus the poll under way (loopback requests: tens of ms, a second
    # or two on a busy machine). Settling used to poll every safe_delay_s / 20, here 180 s.
    assert noticed_after_s < 3 * safety.config.poll_s + 1.0
    messages = safety_events(engine)
    assert sum(m.startswith("unsafe: the safety monitor reports unsafe") for m in messages) == 2
