"""Night plans in the database: saved after validation, and their progress from the frames.

Progress counts accepted lights only, taken by the plan's own runs, matched to a goal by
target, filter, exposure (within 0.01 s) and binning: a rejected frame (clouds, focus,
trailing) is made up on a later night.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.db.models import Frame, NightPlanRow, PlanNight, PlanRun
from sequences.document import error_issues
from sequences.errors import DocumentError
from sequences.frames import FrameType
from sequences.model import Issue
from sequences.plan import NightPlan

_EXPOSURE_TOLERANCE_S = 0.01


class PlanNotFound(KeyError):
    pass


def load_plan(data: dict[str, Any]) -> NightPlan:
    """Parse a plan; `DocumentError` lists every problem with its path."""
    try:
        return NightPlan.model_validate(data)
    except ValidationError as e:
        raise DocumentError(error_issues(e), field="plan") from e


def list_plans(engine: Engine) -> list[NightPlanRow]:
    with Session(engine) as db:
        return list(db.scalars(select(NightPlanRow).order_by(NightPlanRow.name)))


def get_plan(engine: Engine, plan_id: int) -> NightPlanRow:
    with Session(engine) as db:
        row = db.get(NightPlanRow, plan_id)
        if row is None:
            raise PlanNotFound(plan_id)
        return row


def save_plan(
    engine: Engine, plan: NightPlan, enabled: bool, plan_id: int | None = None
) -> NightPlanRow:
    """Create (no id) or replace a plan; its name must be unique (`DocumentError`)."""
    data = plan.model_dump(mode="json")
    try:
        with Session(engine, expire_on_commit=False) as db, db.begin():
            if plan_id is None:
                row = NightPlanRow(name=plan.name, document=data, enabled=enabled)
                db.add(row)
            else:
                found = db.get(NightPlanRow, plan_id)
                if found is None:
                    raise PlanNotFound(plan_id)
                row = found
                row.name, row.document, row.enabled = plan.name, data, enabled
            db.flush()
            return row
    except IntegrityError as e:
        raise DocumentError(
            [Issue("name", f"a plan named {plan.name!r} exists", "choose another name")],
            field="plan",
        ) from e


def delete_plan(engine: Engine, plan_id: int) -> None:
    with Session(engine) as db, db.begin():
        row = db.get(NightPlanRow, plan_id)
        if row is None:
            raise PlanNotFound(plan_id)
        db.delete(row)


def plan_run_ids(engine: Engine, run_ids: list[int]) -> set[int]:
    """Those of `run_ids` that a night plan started."""
    with Session(engine) as db:
        query = select(PlanRun.run_id).where(PlanRun.run_id.in_(run_ids))
        return set(db.scalars(query))


def plan_progress(engine: Engine, plan_id: int, plan: NightPlan) -> dict[str, list[int]]:
    """Accepted lights per target and goal, over every night of the plan."""
    with Session(engine) as db:
        rows = db.execute(
            select(
                PlanRun.target_name,
                Frame.filter_name,
                Frame.exposure_s,
                Frame.bin_x,
                func.count(Frame.id),
            )
            .join(PlanRun, PlanRun.run_id == Frame.run_id)
            .join(PlanNight, PlanNight.id == PlanRun.night_id)
            .where(
                PlanNight.plan_id == plan_id,
                Frame.frame_type == FrameType.LIGHT,
                Frame.accepted.is_(True),
            )
            .group_by(PlanRun.target_name, Frame.filter_name, Frame.exposure_s, Frame.bin_x)
        ).all()
    progress = {target.name: [0] * len(target.goals) for target in plan.targets}
    for target_name, filter_name, exposure_s, binning, count in rows:
        target = next((t for t in plan.targets if t.name == target_name), None)
        if target is None:
            continue
        for i, goal in enumerate(target.goals):
            if (
                goal.filter_name == filter_name
                and abs(goal.exposure_s - exposure_s) <= _EXPOSURE_TOLERANCE_S
                and goal.binning == binning
            ):
                progress[target.name][i] += int(count)
                break
    return progress
