"""The nightly scheduler: an enabled plan is armed at its next dusk in APScheduler's job store
(in the daemon's database, so it survives a restart); firing starts the night and arms the
next one; a disabled plan is disarmed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from daemon.nights import NightDirector
from daemon.plans import save_plan
from daemon.safety import SafetySupervisor
from daemon.scheduler import NightScheduler
from daemon.templates import save_template
from drivers.equipment import Equipment
from sequences.clock import SystemClock
from sequences.document import parse_document
from sequences.instructions.mount import Coordinates
from sequences.plan import Goal, NightPlan, PlanTarget, tonight
from sequences.validation import site_of
from tests.daemon.test_nights import TEMPLATE
from tests.sequences.conftest import NIGHT_START, open_harness


async def test_plans_are_armed_at_dusk_persisted_fired_and_disarmed(
    tmp_path: Path, equipment: Equipment, simulator_url: str, catalog_cache: Path
) -> None:
    site = site_of(equipment)
    assert site is not None
    async with open_harness(tmp_path, equipment, simulator_url, catalog_cache, NIGHT_START) as h:
        template = save_template(h.engine, parse_document(TEMPLATE))
        plan = NightPlan(
            name="armed",
            template_id=template.id,
            dusk_sun_altitude_deg=-15.0,
            targets=[
                PlanTarget(
                    name="M31",
                    coordinates=Coordinates(ra_hours=0.712306, dec_deg=41.2692),
                    goals=[Goal(exposure_s=60.0, count=10)],
                )
            ],
        )
        plan_id = save_plan(h.engine, plan, True).id
        clock = SystemClock()
        safety = SafetySupervisor(h.engine, equipment, clock, h.runs, None)

        async def hand_off(run_ids: list[int]) -> None:
            pass

        director = NightDirector(h.engine, equipment, clock, h.runs, safety, hand_off)

        first = NightScheduler(h.engine, equipment, director)
        first.start()
        # Armed from a daytime instant, so the dusk lies ahead whatever the time of day the
        # test runs at: an armed dusk already past would fire at once and start a night.
        noon = datetime.now(UTC).replace(hour=11, minute=30, second=0, microsecond=0)
        if noon < datetime.now(UTC):
            noon += timedelta(days=1)
        armed = await first.arm(plan_id, after=noon)
        window = tonight(plan, site, noon)
        assert window is not None
        assert armed is not None
        assert noon < window.start
        # The plan's own dusk altitude (-15 deg); crossings are found to 0.5 s.
        assert abs((armed - window.start).total_seconds()) < 1.0
        first.shutdown()

        second = NightScheduler(h.engine, equipment, director)  # a restarted daemon
        second.start()
        try:
            assert second.next_start(plan_id) == armed
            with h.engine.connect() as db:
                stored = db.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all()
            assert stored == [f"plan-{plan_id}"]

            real_night = tonight(plan, site, datetime.now(UTC))
            assert real_night is not None
            await second.fire(plan_id)  # as APScheduler does at dusk
            assert director.active_night_id is not None
            following = second.next_start(plan_id)
            assert following is not None
            # Re-armed for the night after the one it started.
            assert real_night.end < following < real_night.end + timedelta(days=1)
            await director.stop("test over")
            await director.wait()

            save_plan(h.engine, plan, False, plan_id)
            assert await second.arm(plan_id) is None
            assert second.next_start(plan_id) is None
        finally:
            second.shutdown()
            await director.shutdown()
