"""The night director: runs one night of a plan, unattended, from dusk to dawn.

It waits for dusk on the daemon's clock, then repeatedly asks the planner
(`sequences.plan.choose`) for the best target and runs a sequence for it (the target's
template with the goals' remaining frames; the template's start area on the first run of the
night and after an unsafe spell). A target's run ends when it sets, its goals are met or dawn
comes; then the next target is chosen. When nothing is observable it waits for the next
target to rise; when nothing more will be tonight, or at dawn, it runs the template's end area
(park, warm) once and hands the night's frames to the processing worker.

The safety supervisor holds the plan (state `paused`) while it is unsafe or waiting for the
safe delay. One night runs at a time. The night's state is kept in its `plan_night` row, so a
daemon restarted in the middle of the night joins it again (`join_unfinished`), and one that
comes back after dawn closes it and parks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from daemon.db.engine import owned_by_engine, owner_of
from daemon.db.models import NightPlanRow, PlanNight, PlanNightState, PlanRun
from daemon.errors import Conflict
from daemon.events import record_event
from daemon.plans import get_plan, plan_of, plan_progress
from daemon.runs import RunConflict, RunManager
from daemon.safety import SafetySupervisor
from daemon.templates import template_document
from drivers.equipment import Equipment
from sequences.astro import Horizon, Site
from sequences.clock import Clock
from sequences.document import SequenceDocument
from sequences.plan import (
    NightPlan,
    Sky,
    choose,
    end_document,
    next_start,
    remaining,
    target_document,
    tonight,
)
from sequences.state import RunStatus
from sequences.validation import site_of

log = logging.getLogger(__name__)

FAILED_RUNS_BEFORE_SKIP = 2
"""A target whose runs fail (or take no frame) this often is left out for the rest of the night."""


class NightError(Conflict):
    """A night cannot start or stop: the reason says why (busy, no site, no darkness, none
    running)."""


HandOff = Callable[[list[int]], Awaitable[None]]
"""Called with the night's run ids when it ends: close the nights, queue processing."""


@dataclass
class _Night:
    night_id: int
    plan_id: int
    plan: NightPlan
    site: Site
    dusk: datetime
    dawn: datetime
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    run_ids: list[int] = field(default_factory=list)
    current_run: int | None = None
    ended_by_safety: bool = False
    """A device stayed lost: the night's end is an alert."""


class NightDirector:
    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        clock: Clock,
        runs: RunManager,
        safety: SafetySupervisor,
        hand_off: HandOff,
        horizon: Horizon | None = None,
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._clock = clock
        self._runs = runs
        self._safety = safety
        self._hand_off = hand_off
        self._horizon = horizon
        self._night: _Night | None = None
        self._shutting_down = False
        safety.on_device_lost = self._device_lost

    @property
    def active_night_id(self) -> int | None:
        night = self._night
        if night is None or night.task is None or night.task.done():
            return None
        return night.night_id

    async def start(self, plan_id: int, *, night_id: int | None = None) -> int:
        """Arm tonight's night of the plan (it waits for dusk); returns the night's id.

        `NightError` when the plan belongs to another daemon sharing the database (its owner,
        another profile), another night is running, the site is unknown or it does not get
        dark enough; `NotFound` for an unknown plan.
        """
        owner = (await asyncio.to_thread(get_plan, self._engine, plan_id)).owner
        if owner != owner_of(self._engine):
            raise NightError(
                f"plan {plan_id} belongs to the daemon of profile {owner!r}: "
                "start it on that daemon (it drives that profile's telescope)"
            )
        if self.active_night_id is not None:
            raise NightError(f"night {self.active_night_id} is running; nights never overlap")
        plan = await asyncio.to_thread(plan_of, self._engine, plan_id)
        site = site_of(self._equipment)
        if site is None:
            raise NightError("the site is unknown: connect the mount (it reports the site)")
        if night_id is None:
            window = tonight(plan, site, self._clock.now())
            if window is None:
                raise NightError(
                    f"the sun does not sink below {plan.dusk_sun_altitude_deg} deg tonight"
                )
            night_id = await asyncio.to_thread(self._create_night, plan_id, *window)
            dusk, dawn = window
        else:
            dusk, dawn = await asyncio.to_thread(self._night_window, night_id)
        night = _Night(night_id, plan_id, plan, site, dusk, dawn)
        night.task = asyncio.create_task(self._run_night(night), name=f"night {night_id}")
        self._night = night
        return night_id

    async def stop(self, reason: str) -> None:
        """End the running night now: abort its run, then park and warm (the end area)."""
        night = self._night
        if night is None or night.task is None or night.task.done():
            raise NightError("no night is running")
        night.stop_reason = reason
        night.stopping.set()
        if night.current_run is not None:
            with contextlib.suppress(RunConflict):
                self._runs.control(night.current_run, "abort")

    async def stop_plan(self, plan_id: int, reason: str) -> int:
        """End `plan_id`'s running night (see `stop`); returns its id. `NightError` when the
        plan has no running night."""
        night = self._night
        if night is None or night.plan_id != plan_id or self.active_night_id is None:
            raise NightError(f"plan {plan_id} has no running night")
        await self.stop(reason)
        return night.night_id

    async def wait(self) -> None:
        """Until the running night has ended (tests, the CLI)."""
        if self._night is not None and self._night.task is not None:
            await asyncio.shield(self._night.task)

    async def shutdown(self) -> None:
        """The daemon stops: leave the night as it is, so the next start joins it."""
        self._shutting_down = True
        night = self._night
        if night is not None and night.task is not None and not night.task.done():
            night.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await night.task

    async def join_unfinished(self) -> list[int]:
        """At startup: go on with a night a stop or crash left unfinished, or close it (with
        the end area: the mount may be unparked) when its dawn has passed."""
        rows = await asyncio.to_thread(self._unfinished)
        joined = []
        for night_id, plan_id, dawn in rows:
            if self._clock.now() < dawn and self.active_night_id is None:
                await self._event("warning", f"night {night_id}: joining it after a restart")
                await self.start(plan_id, night_id=night_id)
                joined.append(night_id)
            else:
                await self._close_late(night_id, plan_id)
        return joined

    # -- the night -------------------------------------------------------------------------------

    async def _run_night(self, night: _Night) -> None:
        reason = "dawn"
        state = PlanNightState.FINISHED
        try:
            reason = await self._observe(night)
            if night.stop_reason is not None:
                reason, state = night.stop_reason, PlanNightState.STOPPED
        except asyncio.CancelledError:
            if self._shutting_down:
                raise
            reason, state = "cancelled", PlanNightState.STOPPED
        except Exception as e:  # the director supervises the night: end it safely, visibly
            log.exception("night %d failed", night.night_id)
            reason, state = f"failed: {e}", PlanNightState.STOPPED
        await asyncio.shield(self._end_night(night, state, reason))

    async def _observe(self, night: _Night) -> str:
        """Image targets until dawn, a stop, or nothing more to do; returns why it ended."""
        plan = night.plan
        if self._clock.now() < night.dusk:
            await self._set(night, PlanNightState.WAITING)
            await self._event(
                "info", f"{plan.name}: waiting for dusk at {night.dusk:%H:%M} UTC", night
            )
            if not await self._until(night, self._clock.sleep_until(night.dusk)):
                return "stopped"
        await self._set(night, PlanNightState.RUNNING)
        await self._event(
            "info", f"{plan.name}: night started (dawn {night.dawn:%H:%M} UTC)", night
        )
        sky = Sky(night.site, self._horizon, night.dawn)
        with_start = True
        failures: dict[str, int] = {}
        while not night.stopping.is_set():
            if not self._safety.is_ready():
                await self._set(night, PlanNightState.PAUSED)
                await self._event("warning", f"{plan.name}: held while unsafe", night)
                if not await self._until(night, self._safety.wait_ready()):
                    break
                await self._set(night, PlanNightState.RUNNING)
                await self._event("info", f"{plan.name}: going on after the unsafe spell", night)
                with_start = True
                continue
            now = self._clock.now()
            if now >= night.dawn:
                return "dawn"
            progress = await asyncio.to_thread(plan_progress, self._engine, night.plan_id, plan)
            skipped = {name for name, n in failures.items() if n >= FAILED_RUNS_BEFORE_SKIP}
            eligible = plan.model_copy(
                update={"targets": [t for t in plan.targets if t.name not in skipped]}
            )
            if not eligible.targets:
                return "every target failed tonight"
            chosen = choose(eligible, progress, sky, now)
            if chosen is None:
                if all(sum(remaining(t, progress)) == 0 for t in plan.targets):
                    return "all goals met"
                later = next_start(eligible, progress, sky, now)
                if later is None:
                    return "nothing more is observable tonight"
                await self._set(night, PlanNightState.RUNNING, current_target=None)
                await self._event(
                    "info",
                    f"{plan.name}: nothing observable; waiting until {later:%H:%M} UTC",
                    night,
                )
                if not await self._until(night, self._clock.sleep_until(later)):
                    break
                continue
            target = chosen.target
            to_take = remaining(target, progress)
            template_id = target.template_id or plan.template_id
            template = await self._template(template_id)
            document = target_document(template, plan, target, to_take, with_start=with_start)
            await self._set(night, PlanNightState.RUNNING, current_target=target.name)
            await self._event(
                "info",
                f"{plan.name}: imaging {target.name} ({sum(to_take)} frames to take) until "
                f"{chosen.until:%H:%M} UTC ({chosen.ends_by})",
                night,
            )
            status = await self._run(night, document, template_id, target.name)
            if status is None:
                continue
            with_start = False
            after = await asyncio.to_thread(plan_progress, self._engine, night.plan_id, plan)
            took = sum(after.get(target.name, [])) - sum(progress.get(target.name, []))
            if not self._safety.is_ready():
                continue
            if status is not RunStatus.COMPLETED or took == 0:
                failures[target.name] = failures.get(target.name, 0) + 1
                if failures[target.name] >= FAILED_RUNS_BEFORE_SKIP:
                    await self._event(
                        "warning",
                        f"{plan.name}: leaving {target.name} out tonight after "
                        f"{FAILED_RUNS_BEFORE_SKIP} runs without progress",
                        night,
                    )
        return night.stop_reason or "stopped"

    async def _run(
        self, night: _Night, document: SequenceDocument, template_id: int | None, target: str | None
    ) -> RunStatus | None:
        """Run `document` as one of the night's runs; None when another run holds the
        equipment (it is waited for, then the plan chooses again). A target's run (`target`
        set) that a stop overtook while it was starting is aborted at once; the end area's
        run (no target) is what a stop asks for."""
        try:
            run_id = await self._runs.start(document, template_id, hand_off=False)
        except RunConflict as e:
            await self._event("warning", f"{night.plan.name}: waiting for another run: {e}", night)
            active = self._runs.active_run_id
            if active is not None:
                with contextlib.suppress(RunConflict):
                    await self._runs.wait(active)
            return None
        night.current_run = run_id
        if target is not None and night.stopping.is_set():
            with contextlib.suppress(RunConflict):
                self._runs.control(run_id, "abort")
        night.run_ids.append(run_id)
        await asyncio.to_thread(self._record_run, night.night_id, run_id, target)
        try:
            return await self._runs.wait(run_id)
        finally:
            night.current_run = None

    async def _end_night(self, night: _Night, state: PlanNightState, reason: str) -> None:
        plan = night.plan
        await self._event("info", f"{plan.name}: night ends ({reason}); parking", night)
        try:
            template = await self._template(plan.template_id)
            await self._run(night, end_document(template, plan), plan.template_id, None)
        except Exception:  # parking is best effort here; the failure is in the run's events
            log.exception("night %d: end area failed", night.night_id)
        await self._set(
            night, state, current_target=None, reason=reason, ended_at=datetime.now(UTC)
        )
        level = "alert" if night.ended_by_safety else "info"
        await self._event(level, f"{plan.name}: night {state} ({reason})", night)
        try:
            await self._hand_off(night.run_ids)
        except Exception:  # a failed hand-off must not hide the night's end
            log.exception("night %d: hand-off failed", night.night_id)

    async def _close_late(self, night_id: int, plan_id: int) -> None:
        await self._event("warning", f"night {night_id}: the daemon came back after its dawn")
        plan = await asyncio.to_thread(plan_of, self._engine, plan_id)
        now = self._clock.now()
        night = _Night(night_id, plan_id, plan, Site(0.0, 0.0), now, now)
        await self._end_night(night, PlanNightState.STOPPED, "the daemon was not running at dawn")

    async def _device_lost(self, role: str, error: str) -> None:
        night = self._night
        if night is not None and self.active_night_id is not None:
            night.ended_by_safety = True
            await self.stop(f"{role} lost: {error}")

    async def _until(self, night: _Night, waiting: Coroutine[Any, Any, None]) -> bool:
        """Wait for `waiting` unless the night is stopped first (False then)."""
        wait = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(night.stopping.wait())
        try:
            await asyncio.wait({wait, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (wait, stop):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return not night.stopping.is_set()

    # -- the database ----------------------------------------------------------------------------

    async def _template(self, template_id: int) -> SequenceDocument:
        return await asyncio.to_thread(template_document, self._engine, template_id)

    def _create_night(self, plan_id: int, dusk: datetime, dawn: datetime) -> int:
        with Session(self._engine) as db, db.begin():
            row = PlanNight(plan_id=plan_id, dusk=dusk, dawn=dawn)
            db.add(row)
            db.flush()
            return row.id

    def _night_window(self, night_id: int) -> tuple[datetime, datetime]:
        with Session(self._engine) as db:
            row = db.get(PlanNight, night_id)
            if row is None:
                raise NightError(f"no night {night_id}")
            return row.dusk, row.dawn

    def _unfinished(self) -> list[tuple[int, int, datetime]]:
        """This daemon's unfinished nights (of its own plans: another daemon sharing the
        database joins or closes its own)."""
        with Session(self._engine) as db:
            rows = db.scalars(
                select(PlanNight)
                .join(NightPlanRow, NightPlanRow.id == PlanNight.plan_id)
                .where(
                    PlanNight.state.in_(
                        [PlanNightState.WAITING, PlanNightState.RUNNING, PlanNightState.PAUSED]
                    ),
                    owned_by_engine(NightPlanRow.owner, self._engine),
                )
            ).all()
            return [(r.id, r.plan_id, r.dawn) for r in rows]

    def _record_run(self, night_id: int, run_id: int, target: str | None) -> None:
        with Session(self._engine) as db, db.begin():
            db.add(PlanRun(run_id=run_id, night_id=night_id, target_name=target))

    async def _set(self, night: _Night, state: PlanNightState, **columns: Any) -> None:
        """Store the night's state and any other `plan_night` columns given."""
        values = {"state": state, **columns}

        def write() -> None:
            with Session(self._engine) as db, db.begin():
                db.execute(update(PlanNight).where(PlanNight.id == night.night_id).values(values))

        await asyncio.to_thread(write)

    async def _event(self, level: str, message: str, night: _Night | None = None) -> None:
        data = {"night_id": night.night_id, "plan_id": night.plan_id} if night else {}
        await asyncio.to_thread(record_event, self._engine, level, "plan", message, data)
