"""Night plans: targets with goals and constraints, tonight's prediction, nights, start/stop."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, status

from daemon import plans as service
from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.responses import responses
from daemon.api.schemas.common import RecordId
from daemon.api.schemas.plans import (
    AltitudeCurveRead,
    AltitudesRead,
    GoalProgress,
    NightRead,
    NightStarted,
    PlanRead,
    PlanWrite,
    SafetyRead,
    SkyBandRead,
    SlotRead,
    TargetProgress,
    TonightRead,
)
from daemon.api.schemas.sequences import IssueRead

router = APIRouter(prefix="/api/plans", tags=["plans"])
safety_router = APIRouter(prefix="/api/safety", tags=["plans"])


def _read(row: service.PlanRow, runtime: RuntimeDep) -> PlanRead:
    return PlanRead(
        id=row.id,
        name=row.name,
        enabled=row.enabled,
        plan=row.document,
        next_start=runtime.scheduler.next_start(row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
        owner=row.owner,
    )


@router.get("")
async def plans(runtime: RuntimeDep) -> list[PlanRead]:
    rows = await asyncio.to_thread(service.list_plans, runtime.engine)
    return [_read(row, runtime) for row in rows]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: PlanWrite, runtime: RuntimeDep) -> PlanRead:
    """Save a plan; the scheduler arms it at its next dusk when enabled."""
    plan = service.load_plan(body.plan)
    row = await asyncio.to_thread(service.save_plan, runtime.engine, plan, body.enabled)
    await runtime.scheduler.arm(row.id)
    return _read(row, runtime)


@router.get("/{plan_id}", responses=responses(404))
async def read(plan_id: RecordId, runtime: RuntimeDep) -> PlanRead:
    return _read(await asyncio.to_thread(service.get_plan, runtime.engine, plan_id), runtime)


@router.put("/{plan_id}", responses=responses(404))
async def replace(plan_id: RecordId, body: PlanWrite, runtime: RuntimeDep) -> PlanRead:
    plan = service.load_plan(body.plan)
    row = await asyncio.to_thread(service.save_plan, runtime.engine, plan, body.enabled, plan_id)
    await runtime.scheduler.arm(row.id)
    return _read(row, runtime)


@router.delete("/{plan_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
async def delete(plan_id: RecordId, runtime: RuntimeDep) -> None:
    await asyncio.to_thread(service.delete_plan, runtime.engine, plan_id)
    runtime.scheduler.disarm(plan_id)


@router.get("/{plan_id}/progress", responses=responses(404))
async def progress(plan_id: RecordId, engine: EngineDep) -> list[TargetProgress]:
    """Accepted lights per target and goal, over all the plan's nights."""
    plan = await asyncio.to_thread(service.plan_of, engine, plan_id)
    done = await asyncio.to_thread(service.plan_progress, engine, plan_id, plan)
    return [
        TargetProgress(
            target=t.name,
            goals=[
                GoalProgress(label=g.label, done=n, count=g.count)
                for g, n in zip(t.goals, done[t.name], strict=True)
            ],
        )
        for t in plan.targets
    ]


@router.get("/{plan_id}/tonight", responses=responses(404, 409))
async def tonight(plan_id: RecordId, runtime: RuntimeDep) -> TonightRead:
    """Predict tonight (from now on the daemon's clock): which target when, meridian flips,
    dusk and dawn. No device is touched."""
    forecast = await service.predict_tonight(
        runtime.engine, runtime.equipment, runtime.horizon, runtime.clock, plan_id
    )
    preview = forecast.preview
    return TonightRead(
        dusk=preview.dusk,
        dawn=preview.dawn,
        slots=[
            SlotRead(
                target=s.target,
                start=s.start,
                end=s.end,
                ends_by=s.ends_by,
                frames=s.frames,
                meridian_flip=s.meridian_flip,
            )
            for s in preview.slots
        ],
        left_over=preview.left_over,
        issues=[IssueRead(path=i.path, message=i.message, fix=i.fix) for i in forecast.issues],
    )


@router.get("/{plan_id}/altitudes", responses=responses(404, 409))
async def altitudes(plan_id: RecordId, runtime: RuntimeDep) -> AltitudesRead:
    """Tonight's sky for a chart, from an hour before dusk to an hour after dawn: each
    target's altitude and limit and the sun's every 10 min, and the twilight bands. 409 when
    the site is unknown or it does not get dark."""
    chart = await service.chart_tonight(
        runtime.engine,
        runtime.equipment,
        runtime.horizon,
        runtime.clock,
        runtime.settings.resolved_timezone,
        plan_id,
    )
    return AltitudesRead(
        dusk=chart.dusk,
        dawn=chart.dawn,
        step_min=service.CHART_STEP_MIN,
        times=chart.times,
        sun_altitude_deg=chart.sun_altitude_deg,
        bands=[SkyBandRead(kind=b.kind, start=b.start, end=b.end) for b in chart.bands],
        targets=[
            AltitudeCurveRead(
                target=c.target,
                priority=c.priority,
                altitude_deg=c.altitude_deg,
                limit_deg=c.limit_deg,
            )
            for c in chart.curves
        ],
        timezone=chart.timezone,
        utc_offset_min=chart.utc_offset_min,
    )


@router.post(
    "/{plan_id}/start", status_code=status.HTTP_202_ACCEPTED, responses=responses(404, 409)
)
async def start(plan_id: RecordId, runtime: RuntimeDep) -> NightStarted:
    """Start tonight's night now: it waits for dusk (on the daemon's clock), then runs
    unattended until dawn. 409 when another night runs or it does not get dark."""
    return NightStarted(night_id=await runtime.nights.start(plan_id))


@router.post("/{plan_id}/stop", status_code=status.HTTP_202_ACCEPTED, responses=responses(404, 409))
async def stop(plan_id: RecordId, runtime: RuntimeDep) -> NightStarted:
    """End the plan's running night now: its run is aborted, then the end area parks. 409
    when the plan has no running night."""
    await asyncio.to_thread(service.get_plan, runtime.engine, plan_id)
    return NightStarted(night_id=await runtime.nights.stop_plan(plan_id, "stopped over the API"))


@router.get("/{plan_id}/nights", responses=responses(404))
async def nights(plan_id: RecordId, engine: EngineDep) -> list[NightRead]:
    return [
        NightRead(
            id=n.night.id,
            plan_id=n.night.plan_id,
            state=n.night.state.value,
            dusk=n.night.dusk,
            dawn=n.night.dawn,
            current_target=n.night.current_target,
            reason=n.night.reason,
            started_at=n.night.started_at,
            ended_at=n.night.ended_at,
            run_ids=n.run_ids,
        )
        for n in await asyncio.to_thread(service.plan_nights, engine, plan_id)
    ]


@safety_router.get("")
async def safety(runtime: RuntimeDep) -> SafetyRead:
    """The safety supervisor: safe, unsafe, settling (waiting the safe delay) or unwatched,
    with the broken weather limits and what it closed."""
    report = runtime.safety.report()
    return SafetyRead(
        state=report.state.value,
        reason=report.reason,
        since=report.since,
        lost_devices=list(report.lost_devices),
        safe_delay_s=runtime.safety.config.safe_delay_s,
        active_night_id=runtime.nights.active_night_id,
        weather_violations=list(report.weather_violations),
        closed=list(report.closed),
    )
