"""What a run learned before an interruption still holds after it is resumed.

Each test stops a run the way a daemon shutdown does (`RunManager.shutdown`: no end area,
resumable) while it waits in `wait_until_safe` with the safety monitor reporting unsafe, so the
stop always falls at the same point; the run then resumes from the state journaled in its
database row (JSON), as a restarted daemon resumes it. The mount is unparked beforehand, since
an `unpark` instruction refuses an unsafe sky. The first tests check the journal itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Focuser, FocuserInfo, FocuserStatus
from drivers.equipment import Equipment
from sequences.clock import SimulatedClock
from sequences.context import RunContext
from sequences.document import parse_document
from sequences.facts import AutofocusFact, LightSpec, RunFacts
from sequences.frames import ExposureSpec, FrameType
from sequences.runner import SequenceRunner
from sequences.state import RunState, RunStatus
from tests.sequences.conftest import M31_TARGET, NIGHT_START, Harness, open_harness

AUTOFOCUS_SETTINGS = {"exposure_s": 1.0, "steps_out": 3}
WAIT = {"kind": "wait_until_safe"}


def journaled(state: RunState) -> RunState:
    """The state as the daemon stores it in the run row and reads it back."""
    return RunState.from_json(json.loads(json.dumps(state.to_json())))


def learned() -> RunFacts:
    facts = RunFacts(
        last_autofocus=AutofocusFact(
            time=datetime(2026, 11, 22, 21, 15, tzinfo=UTC),
            temperature_c=7.5,
            filter_name="Ha",
            position=10_040,
            hfr_px=2.25,
        ),
        guiding=True,
        next_exposure_s=300.0,
        centered_error_arcsec=14.0,
    )
    for exposure_s, binning in ((300.0, 1), (60.0, 2), (300.0, 1)):
        facts.remember_light(ExposureSpec(FrameType.LIGHT, exposure_s, "Ha", 100, 10, binning))
    return facts


def test_the_facts_survive_the_journal() -> None:
    state = RunState(facts=learned())
    assert state.facts.light_specs == [LightSpec(300.0, 100, 10, 1), LightSpec(60.0, 100, 10, 2)]
    assert journaled(state).facts == state.facts


def test_a_journal_from_before_the_facts_loads_with_none_learned() -> None:
    old = {"status": "interrupted", "nodes": {}, "triggers": {}, "area": "targets"}
    assert RunState.from_json(old).facts == RunFacts()


def test_a_resumed_run_keeps_its_facts_but_is_not_guiding() -> None:
    """After a restart nothing guides; the redone `start_guiding` sets it again."""
    state = journaled(RunState(status=RunStatus.INTERRUPTED, area="targets", facts=learned()))
    state.prepare_resume()
    assert state.facts == dataclasses.replace(learned(), guiding=False)


class _Journal:
    def __init__(self) -> None:
        self.saved: list[dict[str, Any]] = []

    async def save(self, state: RunState) -> None:
        self.saved.append(json.loads(json.dumps(state.to_json())))


class _Events:
    async def emit(self, level: str, message: str, **_: object) -> None:
        pass


async def test_the_runner_s_context_works_on_the_facts_it_journals() -> None:
    state = journaled(RunState(status=RunStatus.INTERRUPTED, area="targets", facts=learned()))
    state.prepare_resume()
    ctx = RunContext(
        equipment=Equipment("none"),
        clock=SimulatedClock(NIGHT_START),
        frames=None,  # type: ignore[arg-type]  # the empty document takes no frames
        events=_Events(),
    )
    journal = _Journal()
    runner = SequenceRunner(parse_document({"name": "empty"}), ctx, journal, state)
    assert ctx.facts is runner.state.facts
    ctx.facts.next_exposure_s = 5.0
    assert await runner.run() is RunStatus.COMPLETED
    assert RunFacts.from_json(journal.saved[-1]["facts"]) == dataclasses.replace(
        learned(), guiding=False, next_exposure_s=5.0
    )


def refocusing(trigger: dict[str, Any]) -> dict[str, Any]:
    """Point at M31, then a target whose first item is an autofocus: the trigger's first
    look (at the checkpoint after it) already sees that autofocus, as it would later."""
    return {
        "name": f"refocus with {trigger['kind']}",
        "start": {"items": [{"kind": "slew", "coordinates": M31_TARGET["coordinates"]}]},
        "targets": [
            {
                **M31_TARGET,
                "items": [
                    {"kind": "autofocus", "settings": AUTOFOCUS_SETTINGS},
                    WAIT,
                    lights(1, 0.5),
                ],
                "triggers": [{**trigger, "settings": AUTOFOCUS_SETTINGS}],
            }
        ],
    }


def lights(count: int, exposure_s: float, **extra: Any) -> dict[str, Any]:
    return {"kind": "take_exposures", "count": count, "exposure_s": exposure_s, **extra}


async def interrupt_while_unsafe(
    harness: Harness, equipment: Equipment, document: dict[str, Any]
) -> int:
    """Start `document` with the sky unsafe and stop the run once it waits for safety (the
    sky is safe again afterwards); returns the run id."""
    assert equipment.mount is not None
    await equipment.mount.unpark()
    harness.set_safe(False)
    run_id = await harness.runs.start(parse_document(document))
    await harness.until(lambda: "unsafe: waiting" in harness.events(run_id), timeout_s=180)
    await harness.runs.shutdown()
    harness.set_safe(True)
    assert harness.state(run_id).status is RunStatus.INTERRUPTED
    return run_id


async def resume_to_the_end(harness: Harness, run_id: int) -> list[str]:
    """Resume the run and wait for it; returns the events of the resumed part."""
    before = len(harness.events(run_id))
    await harness.runs.resume(run_id)
    assert await asyncio.wait_for(harness.runs.wait(run_id), 300) is RunStatus.COMPLETED
    return harness.events(run_id)[before:]


async def test_darks_after_a_resume_match_the_lights_taken_before_it(
    harness: Harness, equipment: Equipment
) -> None:
    run_id = await interrupt_while_unsafe(
        harness,
        equipment,
        {
            "name": "lights, then matching darks",
            "targets": [
                {
                    **M31_TARGET,
                    "items": [
                        {"kind": "slew"},
                        lights(1, 0.6),
                        lights(1, 0.9, binning=2),
                        WAIT,
                        {"kind": "take_darks", "count": 2},
                    ],
                }
            ],
        },
    )
    events = await resume_to_the_end(harness, run_id)

    assert not any("no lights were taken" in e for e in events), events
    frames = harness.frames(run_id)
    darks = sorted((f.exposure_s, f.bin_x) for f in frames if f.frame_type is FrameType.DARK)
    assert darks == [(0.6, 1), (0.6, 1), (0.9, 2), (0.9, 2)]
    assert sum(f.frame_type is FrameType.LIGHT for f in frames) == 2


@pytest.mark.parametrize(("down_min", "refocuses"), [(10, False), (40, True)])
async def test_autofocus_after_time_counts_from_the_autofocus_before_the_interruption(
    harness: Harness, equipment: Equipment, down_min: float, refocuses: bool
) -> None:
    run_id = await interrupt_while_unsafe(
        harness,
        equipment,
        refocusing({"kind": "autofocus_after_time", "minutes": 30}),
    )
    # The daemon is down for a while (simulated: nothing else waits on this clock now).
    await harness.clock.sleep(down_min * 60)

    events = await resume_to_the_end(harness, run_id)

    fired = events.count("trigger autofocus_after_time")
    assert fired == (1 if refocuses else 0), events


class _Thermometer:
    """The simulator's focuser with a temperature the test sets (the simulator's stays put)."""

    def __init__(self, focuser: Focuser, temperature_c: float) -> None:
        self._focuser = focuser
        self.temperature_c = temperature_c

    @property
    def role(self) -> str:
        return self._focuser.role

    @property
    def location(self) -> str:
        return self._focuser.location

    @property
    def connected(self) -> bool:
        return self._focuser.connected

    @property
    def info(self) -> FocuserInfo:
        return self._focuser.info

    async def connect(self) -> FocuserInfo:
        await self._focuser.connect()
        return self._focuser.info

    async def disconnect(self) -> None:
        await self._focuser.disconnect()

    async def status(self) -> FocuserStatus:
        status = await self._focuser.status()
        return dataclasses.replace(status, temperature_c=self.temperature_c)

    async def move_to(self, position: int) -> None:
        await self._focuser.move_to(position)

    async def halt(self) -> None:
        await self._focuser.halt()


@pytest.fixture
async def thermometer(equipment: Equipment) -> _Thermometer:
    assert equipment.focuser is not None
    return _Thermometer(equipment.focuser, temperature_c=8.0)


@pytest.fixture
async def warming_harness(
    tmp_path: Path,
    equipment: Equipment,
    thermometer: _Thermometer,
    simulator_url: str,
    catalog_cache: Path,
    night_start: datetime,
) -> AsyncIterator[Harness]:
    rig = dataclasses.replace(equipment, focuser=thermometer)
    async with open_harness(tmp_path, rig, simulator_url, catalog_cache, night_start) as h:
        yield h
        h.set_safe(True)


@pytest.mark.parametrize(("warmed_c", "refocuses"), [(0.5, False), (1.5, True)])
async def test_autofocus_after_a_temperature_change_compares_with_the_last_autofocus_before(
    warming_harness: Harness,
    equipment: Equipment,
    thermometer: _Thermometer,
    warmed_c: float,
    refocuses: bool,
) -> None:
    run_id = await interrupt_while_unsafe(
        warming_harness,
        equipment,
        refocusing({"kind": "autofocus_after_temperature_change", "delta_c": 1.0}),
    )
    thermometer.temperature_c += warmed_c  # while the daemon is down

    events = await resume_to_the_end(warming_harness, run_id)

    fired = events.count("trigger autofocus_after_temperature_change")
    assert fired == (1 if refocuses else 0), events
