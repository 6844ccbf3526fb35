"""Night plans in the database: saved after validation, and their progress from the frames.

Progress counts accepted lights only, taken by the plan's own runs, matched to a goal by
target, filter, exposure (within 0.01 s) and binning: a rejected frame (clouds, focus,
trailing) is made up on a later night.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from daemon.db.models import Frame, NightPlanRow, PlanNight, PlanRun
from daemon.documents import NamedDocuments
from daemon.errors import Conflict, NotFound
from daemon.recipes import get_recipe, list_recipes, load_recipe
from daemon.templates import flip_minutes, list_templates
from drivers.equipment import Equipment
from processing.recipe import Recipe
from sequences.astro import (
    ASTRONOMICAL_TWILIGHT_DEG,
    CIVIL_TWILIGHT_DEG,
    NAUTICAL_TWILIGHT_DEG,
    SUNRISE_SUNSET_DEG,
    Horizon,
    Site,
    alt_az_many,
    from_unix_s,
    next_rise,
    next_sun_crossing,
    sun_alt_az_many,
    unix_s,
)
from sequences.clock import Clock
from sequences.errors import DocumentError
from sequences.frames import FrameType
from sequences.model import Issue
from sequences.plan import NightPlan, NightPreview, predict_night, tonight
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


@dataclass(frozen=True)
class TonightForecast:
    preview: NightPreview
    issues: list[Issue]
    """What would go wrong tonight: filters the wheel lacks (those goals are left out of the
    prediction), targets not above their limit in the dark hours."""


async def predict_tonight(
    engine: Engine,
    equipment: Equipment,
    horizon: Horizon | None,
    clock: Clock,
    plan_id: int,
) -> TonightForecast:
    """Tonight from now on `clock`: which target when, meridian flips, dusk and dawn, and the
    issues; no device is touched. `NotFound`, or `Conflict` when the site is unknown or it
    does not get dark."""
    plan = await asyncio.to_thread(plan_of, engine, plan_id)
    site = site_of(equipment)
    if site is None:
        raise Conflict("the site is unknown: connect the mount (it reports it)")
    done = await asyncio.to_thread(plan_progress, engine, plan_id, plan)
    flip = await asyncio.to_thread(flip_minutes, engine, plan.template_id)
    wheel = equipment.filter_wheel
    filters = tuple(wheel.info.names) if wheel is not None and wheel.connected else None
    forecast = await asyncio.to_thread(
        forecast_night, plan, done, site, horizon, clock.now(), filters, flip
    )
    if forecast is None:
        raise Conflict("it does not get dark enough tonight")
    return forecast


def forecast_night(
    plan: NightPlan,
    done: dict[str, list[int]],
    site: Site,
    horizon: Horizon | None,
    now: datetime,
    filter_names: tuple[str, ...] | None,
    flip_minutes_after_meridian: float | None,
) -> TonightForecast | None:
    """`predict_night` without the goals whose filter the wheel lacks (no frame of theirs
    can be taken, so they are never "met"; they stay in `left_over`), with the issues."""
    missing = _missing_filters(plan, filter_names)
    issues = [issue for _, _, issue in missing]
    kept = {(i, j) for i, j, _ in missing}
    targets = []
    progress: dict[str, list[int]] = {}
    for i, target in enumerate(plan.targets):
        goals = [(j, g) for j, g in enumerate(target.goals) if (i, j) not in kept]
        if not goals:
            continue
        counts = done.get(target.name, [0] * len(target.goals))
        targets.append(target.model_copy(update={"goals": [g for _, g in goals]}))
        progress[target.name] = [counts[j] for j, _ in goals]
    preview = predict_night(
        plan.model_copy(update={"targets": targets}),
        progress,
        site,
        horizon,
        now,
        flip_minutes_after_meridian=flip_minutes_after_meridian,
    )
    if preview is None:
        return None
    short: set[str] = set()
    for i, j, _ in missing:
        target = plan.targets[i]
        counts = done.get(target.name, [0] * len(target.goals))
        left = max(0, target.goals[j].count - counts[j])
        if left:
            preview.left_over[target.name] = preview.left_over.get(target.name, 0) + left
            short.add(target.name)
    preview = replace(
        preview,
        slots=[
            replace(s, ends_by="filter missing")
            if s.ends_by == "goals met" and s.target in short
            else s
            for s in preview.slots
        ],
    )
    issues += _targets_not_up(plan, site, horizon, now, preview.dusk, preview.dawn)
    return TonightForecast(preview, issues)


def _missing_filters(
    plan: NightPlan, filter_names: tuple[str, ...] | None
) -> list[tuple[int, int, Issue]]:
    if filter_names is None:  # no wheel connected: nothing to check against
        return []
    found = []
    for i, target in enumerate(plan.targets):
        for j, goal in enumerate(target.goals):
            if goal.filter_name is not None and goal.filter_name not in filter_names:
                issue = Issue(
                    f"targets[{i}].goals[{j}].filter_name",
                    f"{target.name}: filter {goal.filter_name!r} is not in the wheel "
                    f"({', '.join(filter_names)}); no frames of this goal can be taken",
                    f"use one of {', '.join(filter_names)}",
                )
                found.append((i, j, issue))
    return found


def _targets_not_up(
    plan: NightPlan,
    site: Site,
    horizon: Horizon | None,
    now: datetime,
    dusk: datetime,
    dawn: datetime,
) -> list[Issue]:
    """Targets never above their limit between dusk and dawn, with when they rise above it."""
    step_s = CHART_STEP_MIN * 60.0
    t = np.arange(unix_s(dusk), unix_s(dawn) + step_s / 2, step_s)
    issues = []
    for i, target in enumerate(plan.targets):
        above = target.above or plan.above
        limit = above.limit(horizon)
        altitude, azimuth = alt_az_many(target.coordinates.radec(), site, t)
        limits = (
            limit.altitudes_at(azimuth)
            if isinstance(limit, Horizon)
            else np.full_like(altitude, float(limit))
        )
        if bool(np.any(altitude >= limits)):
            continue
        what = "the horizon" if isinstance(limit, Horizon) else f"its limit ({float(limit):g} deg)"
        rise = next_rise(target.coordinates.radec(), site, now, limit)
        when = (
            f"it rises above it in {(rise - now).total_seconds() / 3600.0:.1f} h "
            f"({rise.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
            if rise is not None
            else "it does not rise above it in the next 36 h"
        )
        issues.append(
            Issue(
                f"targets[{i}].coordinates",
                f"{target.name} is not above {what} in tonight's dark hours; {when}",
                "lower its limit, or leave it for another night",
            )
        )
    return issues


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


CHART_STEP_MIN = 10
"""Altitude curves are sampled this often."""
CHART_MARGIN = timedelta(hours=1)
"""The chart starts this long before dusk and ends this long after dawn."""

SkyKind = Literal["day", "civil", "nautical", "astronomical", "night"]
_SKY_LIMITS: tuple[tuple[float, SkyKind], ...] = (
    (SUNRISE_SUNSET_DEG, "day"),
    (CIVIL_TWILIGHT_DEG, "civil"),
    (NAUTICAL_TWILIGHT_DEG, "nautical"),
    (ASTRONOMICAL_TWILIGHT_DEG, "astronomical"),
)


@dataclass(frozen=True)
class SkyBand:
    """A stretch of the chart under one sky: day, civil/nautical/astronomical twilight, night."""

    kind: SkyKind
    start: datetime
    end: datetime


@dataclass(frozen=True)
class AltitudeCurve:
    """A target's altitude at each of the chart's times, and its limit there (the plan's or
    its own altitude, or the custom horizon at the target's azimuth)."""

    target: str
    priority: int
    altitude_deg: list[float]
    limit_deg: list[float]


@dataclass(frozen=True)
class NightChart:
    dusk: datetime
    dawn: datetime
    times: list[datetime]
    sun_altitude_deg: list[float]
    bands: list[SkyBand]
    curves: list[AltitudeCurve]
    timezone: str
    """The site's time zone (the daemon's NIGHTOWL_TIMEZONE or the system's)."""
    utc_offset_min: float
    """Its offset from UTC at dusk."""


async def chart_tonight(
    engine: Engine,
    equipment: Equipment,
    horizon: Horizon | None,
    clock: Clock,
    timezone: tzinfo,
    plan_id: int,
) -> NightChart:
    """Tonight's sky for the plan's chart, from an hour before dusk to an hour after dawn:
    every target's altitude and the sun's every `CHART_STEP_MIN`, and the twilight bands.
    `NotFound`, or `Conflict` when the site is unknown or it does not get dark."""
    plan = await asyncio.to_thread(plan_of, engine, plan_id)
    site = site_of(equipment)
    if site is None:
        raise Conflict("the site is unknown: connect the mount (it reports it)")
    chart = await asyncio.to_thread(night_chart, plan, site, horizon, clock.now(), timezone)
    if chart is None:
        raise Conflict("it does not get dark enough tonight")
    return chart


def night_chart(
    plan: NightPlan, site: Site, horizon: Horizon | None, now: datetime, timezone: tzinfo
) -> NightChart | None:
    """The chart's data for the plan's night from `now` (None: it does not get dark)."""
    night = tonight(plan, site, now)
    if night is None:
        return None
    start, end = night.start - CHART_MARGIN, night.end + CHART_MARGIN
    step_s = CHART_STEP_MIN * 60.0
    t = np.arange(unix_s(start), unix_s(end) + step_s / 2, step_s)
    sun = sun_alt_az_many(site, t)[0]
    curves = []
    for target in plan.targets:
        altitude, azimuth = alt_az_many(target.coordinates.radec(), site, t)
        limit = (target.above or plan.above).limit(horizon)
        limits = (
            limit.altitudes_at(azimuth)
            if isinstance(limit, Horizon)
            else np.full_like(altitude, float(limit))
        )
        curves.append(
            AltitudeCurve(target.name, target.priority, _rounded(altitude), _rounded(limits))
        )
    offset = night.start.astimezone(timezone).utcoffset()
    return NightChart(
        dusk=night.start,
        dawn=night.end,
        times=[from_unix_s(float(s)) for s in t],
        sun_altitude_deg=_rounded(sun),
        bands=sky_bands(site, start, end),
        curves=curves,
        timezone=_zone_name(timezone, night.start),
        utc_offset_min=offset.total_seconds() / 60.0 if offset is not None else 0.0,
    )


def sky_bands(site: Site, start: datetime, end: datetime) -> list[SkyBand]:
    """Day, the three twilights and night between `start` and `end`, from the times the sun
    crosses -0.833, -6, -12 and -18 degrees."""
    span_h = (end - start).total_seconds() / 3600.0
    edges = {start, end}
    for altitude, _ in _SKY_LIMITS:
        for rising in (False, True):
            after = start
            while (
                found := next_sun_crossing(site, after, altitude, rising=rising, search_h=span_h)
            ) is not None and found < end:
                edges.add(found)
                after = found + timedelta(seconds=1)
    ordered = sorted(edges)
    bands: list[SkyBand] = []
    for a, b in itertools.pairwise(ordered):
        kind = _sky_kind(float(sun_alt_az_many(site, unix_s(a + (b - a) / 2))[0][0]))
        if bands and bands[-1].kind == kind:
            bands[-1] = SkyBand(kind, bands[-1].start, b)
        else:
            bands.append(SkyBand(kind, a, b))
    return bands


def _sky_kind(sun_altitude_deg: float) -> SkyKind:
    for limit, kind in _SKY_LIMITS:
        if sun_altitude_deg >= limit:
            return kind
    return "night"


def _rounded(values: np.ndarray[Any, Any]) -> list[float]:
    return [round(float(v), 2) for v in values]


def _zone_name(timezone: tzinfo, when: datetime) -> str:
    if isinstance(timezone, ZoneInfo):
        return timezone.key
    return timezone.tzname(when) or "local"
