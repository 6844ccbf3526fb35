"""Night plans in the database: saved after validation, and their progress from the frames.

Progress counts accepted lights only, taken by the plan's own runs, matched to a goal by
target, filter, exposure (within 0.01 s) and binning: a rejected frame (clouds, focus,
trailing) is made up on a later night.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from daemon.db.models import Frame, NightPlanRow, PlanNight, PlanRun
from daemon.documents import NamedDocuments
from daemon.errors import Conflict, NotFound
from daemon.recipes import get_recipe, list_recipes, load_recipe
from daemon.templates import flip_minutes, list_templates
from drivers.equipment import Equipment
from processing.recipe import Recipe
from sequences.astro import Horizon
from sequences.clock import Clock
from sequences.errors import DocumentError
from sequences.frames import FrameType
from sequences.model import Issue
from sequences.plan import NightPlan, NightPreview, predict_night
from sequences.validation import site_of

log = logging.getLogger(__name__)

_EXPOSURE_TOLERANCE_S = 0.01

PLANS = NamedDocuments(NightPlanRow, "plan", "plan")

PlanRow = NightPlanRow
"""A plan as stored: its document, whether it is armed, and times."""


def load_plan(data: dict[str, Any]) -> NightPlan:
    """Parse a plan; `DocumentError` lists every problem with its path."""
    return PLANS.parse(NightPlan, data)


def list_plans(engine: Engine) -> list[NightPlanRow]:
    return PLANS.list(engine)


def get_plan(engine: Engine, plan_id: int) -> NightPlanRow:
    """`NotFound` for an unknown id."""
    return PLANS.get(engine, plan_id)


def plan_of(engine: Engine, plan_id: int) -> NightPlan:
    """A saved plan, parsed; `NotFound` for an unknown id."""
    return load_plan(get_plan(engine, plan_id).document)


def save_plan(
    engine: Engine, plan: NightPlan, enabled: bool, plan_id: int | None = None
) -> NightPlanRow:
    """Create (no id) or replace a plan; its name must be unique and every template it names
    must exist (`DocumentError`); `NotFound` for an unknown id."""
    _check_templates(engine, plan)
    return PLANS.save(engine, plan.name, plan.model_dump(mode="json"), plan_id, enabled=enabled)


def delete_plan(engine: Engine, plan_id: int) -> None:
    PLANS.delete(engine, plan_id)


def _check_templates(engine: Engine, plan: NightPlan) -> None:
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
    if plan.recipe_id is not None and plan.recipe_id not in {r.id for r in list_recipes(engine)}:
        issues.append(
            Issue(
                "recipe_id", f"no recipe {plan.recipe_id}", "save the recipe first or leave it out"
            )
        )
    if issues:
        raise DocumentError(issues, field="plan")


def recipe_of_runs(engine: Engine, run_ids: Sequence[int]) -> Recipe | None:
    """The saved recipe of the plan whose night made these runs, for the nights' processing
    job; None when the runs belong to no plan or the plan names no recipe. A recipe deleted
    since is None too (the job then uses the default), with a warning in the log."""
    with Session(engine) as db:
        plan_ids = db.scalars(
            select(PlanNight.plan_id)
            .join(PlanRun, PlanRun.night_id == PlanNight.id)
            .where(PlanRun.run_id.in_(run_ids))
            .distinct()
        ).all()
    for plan_id in plan_ids:
        try:
            recipe_id = plan_of(engine, plan_id).recipe_id
        except NotFound:
            continue
        if recipe_id is None:
            continue
        try:
            return load_recipe(get_recipe(engine, recipe_id).document)
        except (NotFound, DocumentError):
            log.warning(
                "plan %d: recipe %d is gone or invalid; the default is used", plan_id, recipe_id
            )
    return None


@dataclass(frozen=True)
class NightRecord:
    """One of a plan's nights with the runs it started."""

    night: PlanNight
    run_ids: list[int]


def plan_nights(engine: Engine, plan_id: int) -> list[NightRecord]:
    """The plan's nights, newest first; `NotFound` for an unknown plan."""
    get_plan(engine, plan_id)
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
    return [NightRecord(r, [run_id for night_id, run_id in runs if night_id == r.id]) for r in rows]


async def predict_tonight(
    engine: Engine,
    equipment: Equipment,
    horizon: Horizon | None,
    clock: Clock,
    plan_id: int,
) -> NightPreview:
    """Tonight from now on `clock`: which target when, meridian flips, dusk and dawn; no
    device is touched. `NotFound`, or `Conflict` when the site is unknown or it does not get
    dark."""
    plan = await asyncio.to_thread(plan_of, engine, plan_id)
    site = site_of(equipment)
    if site is None:
        raise Conflict("the site is unknown: connect the mount (it reports it)")
    done = await asyncio.to_thread(plan_progress, engine, plan_id, plan)
    flip = await asyncio.to_thread(flip_minutes, engine, plan.template_id)
    preview = await asyncio.to_thread(
        predict_night, plan, done, site, horizon, clock.now(), flip_minutes_after_meridian=flip
    )
    if preview is None:
        raise Conflict("it does not get dark enough tonight")
    return preview


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
