"""Night plans: targets with goals and constraints, tonight's prediction, nights, start/stop."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.api.deps import EngineDep, RuntimeDep
from daemon.api.schemas.plans import (
    GoalProgress,
    NightRead,
    NightStarted,
    PlanRead,
    PlanWrite,
    SafetyRead,
    SlotRead,
    TargetProgress,
    TonightRead,
)
from daemon.db.models import NightPlanRow, PlanNight, PlanRun
from daemon.nights import NightError
from daemon.plans import (
    PlanNotFound,
    delete_plan,
    get_plan,
    list_plans,
    load_plan,
    plan_progress,
    save_plan,
)
from daemon.templates import list_templates
from sequences.document import SequenceDocument
from sequences.errors import DocumentError
from sequences.model import Issue
from sequences.plan import NightPlan, predict_night
from sequences.triggers.meridian import MeridianFlip
from sequences.validation import site_of

router = APIRouter(prefix="/api/plans", tags=["plans"])
safety_router = APIRouter(prefix="/api/safety", tags=["plans"])


def _not_found(plan_id: int) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no plan {plan_id}")


def _read(row: NightPlanRow, runtime: RuntimeDep) -> PlanRead:
    return PlanRead(
        id=row.id,
        name=row.name,
        enabled=row.enabled,
        plan=row.document,
        next_start=runtime.scheduler.next_start(row.id),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _check_templates(engine: Engine, plan: NightPlan) -> None:
    """Every template the plan names must exist (422 naming the field)."""
    known = {row.id for row in list_templates(engine)}
    issues = []
    if plan.template_id not in known:
        issues.append(Issue("template_id", f"no template {plan.template_id}", "save it first"))
    for i, target in enumerate(plan.targets):
        if target.template_id is not None and target.template_id not in known:
            issues.append(
                Issue(
                    f"targets[{i}].template_id",
                    f"no template {target.template_id}",
                    "use an existing template's id or leave it out",
                )
            )
    if issues:
        raise DocumentError(issues, field="plan")


async def _load(engine: Engine, plan_id: int) -> tuple[NightPlanRow, NightPlan]:
    try:
        row = await asyncio.to_thread(get_plan, engine, plan_id)
    except PlanNotFound as e:
        raise _not_found(plan_id) from e
    return row, load_plan(row.document)


@router.get("")
async def plans(runtime: RuntimeDep) -> list[PlanRead]:
    return [_read(row, runtime) for row in await asyncio.to_thread(list_plans, runtime.engine)]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create(body: PlanWrite, runtime: RuntimeDep) -> PlanRead:
    """Save a plan; the scheduler arms it at its next dusk when enabled."""
    plan = load_plan(body.plan)
    await asyncio.to_thread(_check_templates, runtime.engine, plan)
    row = await asyncio.to_thread(save_plan, runtime.engine, plan, body.enabled)
    await runtime.scheduler.arm(row.id)
    return _read(row, runtime)


@router.get("/{plan_id}")
async def read(plan_id: int, runtime: RuntimeDep) -> PlanRead:
    row, _ = await _load(runtime.engine, plan_id)
    return _read(row, runtime)


@router.put("/{plan_id}")
async def replace(plan_id: int, body: PlanWrite, runtime: RuntimeDep) -> PlanRead:
    plan = load_plan(body.plan)
    await asyncio.to_thread(_check_templates, runtime.engine, plan)
    try:
        row = await asyncio.to_thread(save_plan, runtime.engine, plan, body.enabled, plan_id)
    except PlanNotFound as e:
        raise _not_found(plan_id) from e
    await runtime.scheduler.arm(row.id)
    return _read(row, runtime)


@router.delete("/{plan_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(plan_id: int, runtime: RuntimeDep) -> None:
    try:
        await asyncio.to_thread(delete_plan, runtime.engine, plan_id)
    except PlanNotFound as e:
        raise _not_found(plan_id) from e
    runtime.scheduler.disarm(plan_id)


@router.get("/{plan_id}/progress")
async def progress(plan_id: int, engine: EngineDep) -> list[TargetProgress]:
    """Accepted lights per target and goal, over all the plan's nights."""
    _, plan = await _load(engine, plan_id)
    done = await asyncio.to_thread(plan_progress, engine, plan_id, plan)
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


@router.get("/{plan_id}/tonight")
async def tonight(plan_id: int, runtime: RuntimeDep) -> TonightRead:
    """Predict tonight (from now on the daemon's clock): which target when, meridian flips,
    dusk and dawn. No device is touched."""
    _, plan = await _load(runtime.engine, plan_id)
    site = site_of(runtime.equipment)
    if site is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "the site is unknown: connect the mount (it reports it)"
        )
    done = await asyncio.to_thread(plan_progress, runtime.engine, plan_id, plan)
    flip = await asyncio.to_thread(_flip_minutes, runtime.engine, plan)
    preview = await asyncio.to_thread(
        predict_night,
        plan,
        done,
        site,
        runtime.horizon,
        runtime.clock.now(),
        flip_minutes_after_meridian=flip,
    )
    if preview is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "it does not get dark enough tonight")
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
    )


def _flip_minutes(engine: Engine, plan: NightPlan) -> float | None:
    """Minutes after the meridian at which the plan's template flips (None: it has no flip)."""
    row = next((r for r in list_templates(engine) if r.id == plan.template_id), None)
    if row is None:
        return None
    document = SequenceDocument.model_validate(row.document)
    for _, node in document.walk():
        for trigger in getattr(node, "triggers", []):
            if isinstance(trigger, MeridianFlip):
                return trigger.minutes_after_meridian
    return None


@router.post("/{plan_id}/start", status_code=status.HTTP_202_ACCEPTED)
async def start(plan_id: int, runtime: RuntimeDep) -> NightStarted:
    """Start tonight's night now: it waits for dusk (on the daemon's clock), then runs
    unattended until dawn. 409 when another night runs or it does not get dark."""
    try:
        return NightStarted(night_id=await runtime.nights.start(plan_id))
    except PlanNotFound as e:
        raise _not_found(plan_id) from e
    except NightError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e


@router.post("/{plan_id}/stop", status_code=status.HTTP_202_ACCEPTED)
async def stop(plan_id: int, runtime: RuntimeDep) -> NightStarted:
    """End the plan's running night now: its run is aborted, then the end area parks."""
    night_id = runtime.nights.active_night_id
    nights = await asyncio.to_thread(_nights, runtime.engine, plan_id)
    if night_id is None or night_id not in {n.id for n in nights}:
        raise HTTPException(status.HTTP_409_CONFLICT, f"plan {plan_id} has no running night")
    await runtime.nights.stop("stopped over the API")
    return NightStarted(night_id=night_id)


@router.get("/{plan_id}/nights")
async def nights(plan_id: int, engine: EngineDep) -> list[NightRead]:
    await _load(engine, plan_id)
    return await asyncio.to_thread(_nights, engine, plan_id)


def _nights(engine: Engine, plan_id: int) -> list[NightRead]:
    with Session(engine) as db:
        rows = db.scalars(
            select(PlanNight).where(PlanNight.plan_id == plan_id).order_by(PlanNight.id.desc())
        ).all()
        runs = db.execute(
            select(PlanRun.night_id, PlanRun.run_id)
            .join(PlanNight, PlanNight.id == PlanRun.night_id)
            .where(PlanNight.plan_id == plan_id)
            .order_by(PlanRun.run_id)
        ).all()
    return [
        NightRead(
            id=r.id,
            plan_id=r.plan_id,
            state=r.state.value,
            dusk=r.dusk,
            dawn=r.dawn,
            current_target=r.current_target,
            reason=r.reason,
            started_at=r.started_at,
            ended_at=r.ended_at,
            run_ids=[run_id for night_id, run_id in runs if night_id == r.id],
        )
        for r in rows
    ]


@safety_router.get("")
async def safety(runtime: RuntimeDep) -> SafetyRead:
    """The safety supervisor: safe, unsafe, settling (waiting the safe delay) or unwatched."""
    report = runtime.safety.report()
    return SafetyRead(
        state=report.state.value,
        reason=report.reason,
        since=report.since,
        lost_devices=list(report.lost_devices),
        safe_delay_s=runtime.safety.config.safe_delay_s,
        active_night_id=runtime.nights.active_night_id,
    )
