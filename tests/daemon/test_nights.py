"""A night plan runs a whole night unattended on the simulators, from dusk to dawn, through
an unsafe spell.

The simulated clock starts 20 minutes before nautical dusk; the plan waits for dusk. Target A
(priority 1) is low in the west and sinks below its limit 50 s after dusk: it is imaged until
it sets. Nothing is up then, so the plan waits (the clock jumps) until B (priority 2) rises
above its limit 12 minutes before dawn. Mid-exposure on B the safety monitor turns unsafe:
the exposure and run are aborted and the mount parks. When it is safe again the supervisor
waits the safe delay (the clock jumps through it, to 40 s before dawn); the plan unparks and
images B until dawn ends the night with a park.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.db.models import Event, Frame, PlanNight, PlanNightState, PlanRun, SequenceRun
from daemon.nights import NightDirector
from daemon.plans import plan_progress, save_plan
from daemon.safety import SafetyConfig, SafetyState, SafetySupervisor
from daemon.templates import save_template
from drivers.equipment import Equipment
from sequences.astro import altitude_deg, local_sidereal_time_hours, next_dawn, next_dusk
from sequences.document import parse_document
from sequences.instructions.mount import Coordinates
from sequences.instructions.waits import AltitudeLimit
from sequences.plan import Goal, NightPlan, PlanTarget
from sequences.state import RunStatus
from sequences.validation import site_of
from tests.drivers.test_alpaca_camera import M31
from tests.helpers import eventually
from tests.sequences.conftest import NIGHT_START, open_harness

TEMPLATE = {
    "name": "plan template",
    "start": {"kind": "sequential", "items": [{"kind": "unpark"}]},
    "targets": [
        {
            "kind": "target",
            "target_name": "placeholder",
            "coordinates": {"ra_hours": 0.0, "dec_deg": 0.0},
            "items": [
                {"kind": "slew"},
                {"kind": "take_exposures", "count": 1, "exposure_s": 1.0},
            ],
        }
    ],
    "end": {"kind": "sequential", "items": [{"kind": "park"}]},
}


def m31_plan(name: str, template_id: int, count: int) -> NightPlan:
    """A plan of M31 alone: `count` 1 s lights."""
    return NightPlan(
        name=name,
        template_id=template_id,
        targets=[
            PlanTarget(
                name="M31",
                coordinates=Coordinates(ra_hours=M31.ra_hours, dec_deg=M31.dec_deg),
                goals=[Goal(exposure_s=1.0, count=count)],
            )
        ],
    )


async def test_a_plan_runs_a_night_from_dusk_to_dawn_through_an_unsafe_spell(
    tmp_path: Path, equipment: Equipment, simulator_url: str, catalog_cache: Path
) -> None:
    site = site_of(equipment)
    assert site is not None
    dusk = next_dusk(site, datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
    assert dusk is not None
    dawn = next_dawn(site, dusk)
    assert dawn is not None
    a = Coordinates(ra_hours=(local_sidereal_time_hours(site, dusk) - 3.0) % 24, dec_deg=20.0)
    b = Coordinates(ra_hours=(local_sidereal_time_hours(site, dawn) + 3.0) % 24, dec_deg=20.0)
    a_sets = dusk + timedelta(seconds=50)  # west, sinking
    b_rises = dawn - timedelta(minutes=12)  # east, climbing
    plan_start = dusk - timedelta(minutes=20)

    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, plan_start) as h:
        template = save_template(h.engine, parse_document(TEMPLATE))
        plan = NightPlan(
            name="two targets",
            template_id=template.id,
            min_slot_min=0.5,
            targets=[
                PlanTarget(
                    name="A",
                    coordinates=a,
                    priority=1,
                    above=AltitudeLimit(altitude_deg=altitude_deg(a.radec(), site, a_sets)),
                    goals=[Goal(filter_name="L", exposure_s=4.0, count=40)],
                ),
                PlanTarget(
                    name="B",
                    coordinates=b,
                    priority=2,
                    above=AltitudeLimit(altitude_deg=altitude_deg(b.radec(), site, b_rises)),
                    goals=[Goal(filter_name="R", exposure_s=6.0, count=50)],
                ),
            ],
        )
        plan_id = save_plan(h.engine, plan, True).id
        safety = SafetySupervisor(
            h.engine, equipment, h.clock, h.runs, None, SafetyConfig(poll_s=0.5)
        )
        handed: list[list[int]] = []

        async def hand_off(run_ids: list[int]) -> None:
            handed.append(run_ids)

        director = NightDirector(h.engine, equipment, h.clock, h.runs, safety, hand_off)
        safety.start()

        def frames(target: str) -> list[Frame]:
            with Session(h.engine) as db:
                query = (
                    select(Frame)
                    .join(PlanRun, PlanRun.run_id == Frame.run_id)
                    .where(PlanRun.target_name == target)
                    .order_by(Frame.id)
                )
                return list(db.scalars(query))

        try:
            night_id = await director.start(plan_id)
            await eventually(lambda: len(frames("B")) >= 1, 240, "a frame of B")
            b_run = h.runs.active_run_id
            assert b_run is not None
            await asyncio.sleep(1.0)  # into the next 6 s exposure
            h.set_safe(False)
            flipped = time.monotonic()
            await eventually(lambda: h.runs.active_run_id is None, 30, "the run to stop")
            stopped_after_s = time.monotonic() - flipped
            assert equipment.mount is not None
            await eventually(lambda: safety.report().state is SafetyState.UNSAFE, 10, "unsafe")
            deadline = time.monotonic() + 60
            while not (await equipment.mount.status()).at_park:
                assert time.monotonic() < deadline, "the mount did not park"
                await asyncio.sleep(0.5)
            b_frames_before = len(frames("B"))
            await asyncio.sleep(2.0)  # unsafe: nothing starts
            assert h.runs.active_run_id is None
            # The night goes on 40 s (simulated) before dawn.
            delay_s = (dawn - h.clock.now()).total_seconds() - 40.0
            safety.config = dataclasses.replace(safety.config, safe_delay_s=delay_s)
            h.set_safe(True)
            await asyncio.wait_for(director.wait(), 240)
        finally:
            await director.shutdown()
            await safety.stop()

        with Session(h.engine) as db:
            night = db.get(PlanNight, night_id)
            assert night is not None
            assert (night.state, night.reason) == (PlanNightState.FINISHED, "dawn")
            run_rows = db.execute(
                select(PlanRun.target_name, SequenceRun.status, SequenceRun.id)
                .join(SequenceRun, SequenceRun.id == PlanRun.run_id)
                .order_by(SequenceRun.id)
            ).all()
            events = [(e.source, e.message) for e in db.scalars(select(Event).order_by(Event.id))]

    # The exposure was aborted: the run ended well before the 6 s exposure could finish.
    assert stopped_after_s < 5.0
    assert [(t, s) for t, s, _ in run_rows] == [
        ("A", RunStatus.COMPLETED),  # until A set
        ("B", RunStatus.ABORTED),  # the unsafe spell
        ("B", RunStatus.COMPLETED),  # until dawn
        (None, RunStatus.COMPLETED),  # the end area: park
    ]
    assert run_rows[1][2] == b_run
    a_frames, b_frames = frames("A"), frames("B")
    assert len(a_frames) >= 2
    assert len(b_frames) > b_frames_before, "B imaged again after the unsafe spell"
    assert all((f.filter_name, f.exposure_s) == ("L", 4.0) for f in a_frames)
    assert all((f.filter_name, f.exposure_s) == ("R", 6.0) for f in b_frames)
    progress = plan_progress(h.engine, plan_id, plan)
    assert progress == {
        "A": [sum(f.accepted for f in a_frames)],
        "B": [sum(f.accepted for f in b_frames)],
    }
    assert progress["A"][0] >= 1
    assert progress["B"][0] >= 1
    assert (await equipment.mount.status()).at_park
    assert handed == [[row[2] for row in run_rows]]

    messages = [m for _, m in events]

    def index(prefix: str, after: int = -1) -> int:
        return next(i for i, m in enumerate(messages) if i > after and m.startswith(prefix))

    unsafe = index("unsafe: the safety monitor reports unsafe")
    assert (
        index("two targets: waiting for dusk")
        < index("two targets: night started")
        < index("two targets: imaging A")
        < index("condition while_above_altitude ended target 'A'")
        < index("two targets: nothing observable; waiting until")
        < index("two targets: imaging B")
        < unsafe
        < index("mount parked (unsafe)")
        < index("safe again")
        < index("safe for")
        < index("two targets: going on after the unsafe spell")
        < index("two targets: imaging B", unsafe)
        < index("condition while_sun_below ended target 'B'")
        < index("two targets: night ends (dawn)")
    )
    assert sum(m.startswith("two targets: imaging A") for m in messages) == 1
    assert h.clock.now() >= dawn


async def test_a_target_whose_runs_take_nothing_is_left_out_for_the_night(
    tmp_path: Path, equipment: Equipment, simulator_url: str, catalog_cache: Path
) -> None:
    broken = json.loads(json.dumps(TEMPLATE))
    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, NIGHT_START) as h:
        fail = {"kind": "run_command", "argv": [h.script("fail", "exit 1")]}
        broken["targets"][0]["items"].insert(0, fail)
        template = save_template(h.engine, parse_document(broken))
        plan = m31_plan("broken", template.id, 5)
        plan_id = save_plan(h.engine, plan, True).id
        safety = SafetySupervisor(h.engine, equipment, h.clock, h.runs, None)

        async def hand_off(run_ids: list[int]) -> None:
            pass

        director = NightDirector(h.engine, equipment, h.clock, h.runs, safety, hand_off)
        night_id = await director.start(plan_id)
        await asyncio.wait_for(director.wait(), 120)
        with Session(h.engine) as db:
            night = db.get(PlanNight, night_id)
            assert night is not None
            statuses = db.scalars(
                select(SequenceRun.status)
                .join(PlanRun, PlanRun.run_id == SequenceRun.id)
                .order_by(SequenceRun.id)
            ).all()
            messages = db.scalars(select(Event.message)).all()
    assert (night.state, night.reason) == (PlanNightState.FINISHED, "every target failed tonight")
    assert "fail exited with 1" in messages  # the script ran and failed, it was not refused
    # Two runs that took nothing (the failure skips the target container), then the end area.
    assert statuses == [RunStatus.COMPLETED] * 3
    assert plan_progress(h.engine, plan_id, plan) == {"M31": [0]}
