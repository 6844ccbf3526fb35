"""Nightly starts: each enabled plan is armed at its next dusk with APScheduler.

Jobs live in APScheduler's SQLAlchemy job store, in the daemon's own database, so they survive
restarts. Daemons sharing a database (one per telescope) each keep their jobs in a table of
their own (``apscheduler_jobs_<profile>_<hash>``; ``apscheduler_jobs`` for a daemon without an
owner) and arm only their own plans (a plan's `owner`, the daemon it was saved on): APScheduler
runs every due job of its table, so one table would let a daemon fire another's nights.

A dusk missed while the daemon was down fires when it comes back, as long as the night is not
over (`misfire_grace_time` of 18 h, coalesced into one start); the director then starts
tonight's night at once, since it is already dark. After each start the plan's job moves on
to the following dusk.

APScheduler runs on wall time. With the simulated clock (rehearsals) plans are not armed
automatically: start them with ``POST /api/plans/{id}/start``, which waits for the simulated
dusk.

APScheduler stores a job's function by its import path, so the job calls the module-level
`_fire`, which finds the running scheduler through `_running`: one scheduler per daemon
process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from datetime import UTC, datetime, timedelta

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import Engine

from daemon.db.engine import owner_of
from daemon.errors import NotFound
from daemon.events import record_event
from daemon.nights import NightDirector, NightError
from daemon.plans import get_plan, list_plans, load_plan, plan_of
from drivers.equipment import Equipment
from sequences.plan import tonight
from sequences.validation import site_of

log = logging.getLogger(__name__)

_MISFIRE_GRACE_S = 18 * 3600
_running: NightScheduler | None = None


def job_table(owner: str | None) -> str:
    """The job store's table of the daemon `owner` (a valid SQL name of at most 63 characters,
    distinct per owner)."""
    if owner is None:
        return "apscheduler_jobs"
    slug = re.sub(r"[^a-z0-9]+", "_", owner.lower()).strip("_")[:30]
    digest = hashlib.sha256(owner.encode()).hexdigest()[:10]
    return f"apscheduler_jobs_{slug}_{digest}" if slug else f"apscheduler_jobs_{digest}"


def _job_id(plan_id: int) -> str:
    return f"plan-{plan_id}"


async def _fire(plan_id: int) -> None:
    """The job APScheduler runs at a plan's dusk."""
    if _running is not None:
        await _running.fire(plan_id)


class NightScheduler:
    def __init__(self, engine: Engine, equipment: Equipment, director: NightDirector) -> None:
        self._engine = engine
        self._equipment = equipment
        self._director = director
        self._scheduler = AsyncIOScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=engine, tablename=job_table(owner_of(engine)))
            },
            job_defaults={"coalesce": True, "misfire_grace_time": _MISFIRE_GRACE_S},
            timezone=UTC,
        )

    def start(self) -> None:
        global _running
        _running = self
        self._scheduler.start()

    def shutdown(self) -> None:
        global _running
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if _running is self:
            _running = None

    async def arm_all(self) -> None:
        """Arm every enabled plan of this daemon at its next dusk, drop jobs of disabled or
        deleted plans (and of plans another daemon owns). Enabled plans of other profiles are
        named in an info event, so a renamed profile does not leave its plans unarmed unseen."""
        owner = owner_of(self._engine)
        every = await asyncio.to_thread(list_plans, self._engine)
        rows = [r for r in every if r.owner == owner]
        if others := [f"{r.name!r} ({r.owner})" for r in every if r.enabled and r.owner != owner]:
            await asyncio.to_thread(
                record_event,
                self._engine,
                "info",
                "plan",
                f"not armed here, armed by the daemon of their profile: {', '.join(others)}",
            )
        wanted = {_job_id(r.id) for r in rows if r.enabled}
        for job in self._scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        for row in rows:
            if row.enabled:
                await self.arm(row.id)

    async def arm(self, plan_id: int, after: datetime | None = None) -> datetime | None:
        """Schedule the plan's next start at its dusk after `after` (default now); returns it.
        A disabled plan, or one another daemon owns, is disarmed. None when the site is
        unknown or it never gets dark, and while the scheduler is not running (simulated
        clock)."""
        if not self._scheduler.running:
            return None
        row = await asyncio.to_thread(get_plan, self._engine, plan_id)
        if not row.enabled or row.owner != owner_of(self._engine):
            self.disarm(plan_id)
            return None
        site = site_of(self._equipment)
        if site is None:
            log.warning("plan %d not armed: the site is unknown until the mount connects", plan_id)
            return None
        window = tonight(load_plan(row.document), site, after or datetime.now(UTC))
        if window is None:
            return None
        job = self._scheduler.get_job(_job_id(plan_id))
        pending: datetime | None = None if job is None else job.next_run_time
        if pending is not None and pending <= window.start:
            return pending  # an earlier (missed) dusk still to fire
        self._scheduler.add_job(
            "daemon.scheduler:_fire",
            DateTrigger(run_date=window.start),
            args=[plan_id],
            id=_job_id(plan_id),
            name=f"night of plan {plan_id}",
            replace_existing=True,
        )
        return window.start

    def disarm(self, plan_id: int) -> None:
        if self._scheduler.get_job(_job_id(plan_id)) is not None:
            self._scheduler.remove_job(_job_id(plan_id))

    def next_start(self, plan_id: int) -> datetime | None:
        job = self._scheduler.get_job(_job_id(plan_id))
        when: datetime | None = None if job is None else job.next_run_time
        return when

    async def fire(self, plan_id: int) -> None:
        """Start tonight's night of the plan, then arm the next one."""
        self.disarm(plan_id)  # this dusk has come (APScheduler has dropped it already)
        try:
            night_id = await self._director.start(plan_id)
            log.info("plan %d: night %d started by the scheduler", plan_id, night_id)
        except NightError as e:
            await asyncio.to_thread(
                record_event,
                self._engine,
                "warning",
                "plan",
                f"plan {plan_id} not started at dusk: {e}",
                {"plan_id": plan_id},
            )
        except NotFound:
            return  # the plan was deleted
        await self.arm(plan_id, after=await self._after_tonight(plan_id))

    async def _after_tonight(self, plan_id: int) -> datetime:
        """A minute past tonight's dawn: where the search for the next dusk starts."""
        now = datetime.now(UTC)
        plan = await asyncio.to_thread(plan_of, self._engine, plan_id)
        site = site_of(self._equipment)
        window = tonight(plan, site, now) if site is not None else None
        end = window.end if window is not None else now + timedelta(hours=12)
        return end + timedelta(minutes=1)
