"""Night plans: which target to image when, from priorities, goals and the sky.

A plan is data: targets with a priority (1 is imaged first), goals (frames per filter,
exposure and binning, counted over several nights) and constraints (an altitude limit or the
custom horizon, the sun, the moon's distance, a time window). The planner here is pure: it
picks the target to image now, finds when one becomes observable, builds the sequence run for
a target from its template, and predicts a whole night without touching hardware. The
daemon's night director (`daemon.nights`) runs it against the equipment.

Choice rule (as ACP's and NINA's target schedulers do it, simplified): among the targets with
frames still to take that are above their limit now, inside their window, far enough from the
moon and observable for at least `min_slot_min` more minutes, take the lowest priority number,
then the highest altitude. A target is kept until it sets, its goals are met or dawn comes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from sequences.astro import (
    NAUTICAL_TWILIGHT_DEG,
    Horizon,
    Site,
    Window,
    clearance_deg,
    moon_separation_deg,
    next_dawn,
    next_set,
    next_transit,
    night_window,
)
from sequences.base import DOCUMENT_CONFIG, TargetName
from sequences.conditions.loop import LoopCount, LoopUntilTime
from sequences.conditions.safety import WhileSafe
from sequences.conditions.sky import WhileAboveAltitude, WhileSunBelow
from sequences.conditions.weather import WhileWeatherOk
from sequences.document import (
    AnyCondition,
    AnyItem,
    SequenceDocument,
    SequentialContainer,
    TargetContainer,
)
from sequences.frames import FrameType
from sequences.instantiate import TargetSpec, aimed_target
from sequences.instructions.imaging import TakeExposures
from sequences.instructions.mount import CenterTarget, Coordinates, SlewToTarget
from sequences.instructions.waits import AltitudeLimit

SCAN_STEP_S = 300.0
"""How finely `next_start` looks ahead for the next observable target."""
EXPOSURE_OVERHEAD_S = 8.0
"""Prediction: download, save and the share of a dither + settle per frame."""
SETUP_S = 180.0
"""Prediction: slew, centering, autofocus and guiding start when a target begins."""

Progress = Mapping[str, Sequence[int]]
"""Accepted frames so far per target name, one count per goal (in the goal's order)."""


class Goal(BaseModel):
    """Frames to collect for a target: `count` accepted lights of this filter and exposure."""

    model_config = DOCUMENT_CONFIG

    filter_name: str | None = Field(default=None, max_length=50)
    exposure_s: float = Field(gt=0, le=36_000)
    count: int = Field(ge=1, le=100_000)
    binning: int = Field(default=1, ge=1, le=8)
    gain: int | None = Field(default=None, ge=0)

    @property
    def label(self) -> str:
        return f"{self.filter_name or 'no filter'} {self.exposure_s:g} s bin {self.binning}"


class TimeWindow(BaseModel):
    """Times of day (UTC) between which a target may be imaged; may span midnight."""

    model_config = DOCUMENT_CONFIG

    start: time
    end: time

    def contains(self, when: datetime) -> bool:
        t = when.astimezone(UTC).time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end

    def end_after(self, when: datetime) -> datetime:
        """The next time the window closes after `when`."""
        utc = when.astimezone(UTC)
        closing = datetime.combine(utc.date(), self.end, tzinfo=UTC)
        return closing if closing > utc else closing + timedelta(days=1)


class PlanTarget(BaseModel):
    model_config = DOCUMENT_CONFIG

    name: TargetName
    coordinates: Coordinates
    priority: int = Field(default=5, ge=1, le=10, description="1 is imaged first")
    goals: list[Goal] = Field(min_length=1, max_length=50)
    template_id: int | None = Field(
        default=None, description="the sequence template for this target; default: the plan's"
    )
    above: AltitudeLimit | None = Field(
        default=None, description="altitude limit or custom horizon; default: the plan's"
    )
    moon_separation_deg: float | None = Field(
        default=None, ge=0, le=180, description="minimum distance to the moon; default: plan's"
    )
    window: TimeWindow | None = None
    rotation_deg: float | None = Field(default=None, ge=0, lt=360)


class NightPlan(BaseModel):
    model_config = DOCUMENT_CONFIG

    name: str = Field(min_length=1, max_length=200)
    template_id: int = Field(description="the sequence template run for each target")
    recipe_id: int | None = Field(
        default=None,
        description="the saved processing recipe each night's pictures are finished with "
        "(default: the default recipe)",
    )
    targets: list[PlanTarget] = Field(min_length=1, max_length=200)
    dusk_sun_altitude_deg: float = Field(
        default=NAUTICAL_TWILIGHT_DEG, ge=-18, le=0, description="the night starts below this"
    )
    dawn_sun_altitude_deg: float = Field(
        default=NAUTICAL_TWILIGHT_DEG, ge=-18, le=0, description="the night ends above this"
    )
    above: AltitudeLimit = Field(default_factory=lambda: AltitudeLimit(altitude_deg=30.0))
    moon_separation_deg: float = Field(default=0.0, ge=0, le=180)
    min_slot_min: float = Field(
        default=10.0, ge=0, le=600, description="a target must stay observable this long"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> NightPlan:
        seen: set[str] = set()
        for target in self.targets:
            if target.name in seen:
                raise ValueError(f"target name {target.name!r} is used twice; names must differ")
            seen.add(target.name)
        return self


def remaining(target: PlanTarget, progress: Progress) -> list[int]:
    """Frames still to take per goal."""
    done = list(progress.get(target.name, ()))
    done += [0] * (len(target.goals) - len(done))
    return [max(0, goal.count - n) for goal, n in zip(target.goals, done, strict=False)]


@dataclass(frozen=True)
class Candidate:
    """A target that may be imaged now, and until when (the first of set, window end, dawn)."""

    target: PlanTarget
    altitude_clearance_deg: float
    until: datetime
    ends_by: Literal["set", "window", "dawn"]


@dataclass(frozen=True)
class Sky:
    """Where and when: the site, its custom horizon and the end of the night."""

    site: Site
    horizon: Horizon | None
    dawn: datetime


def candidate(plan: NightPlan, target: PlanTarget, sky: Sky, now: datetime) -> Candidate | None:
    """`target` if it may be imaged at `now`, else None."""
    if now >= sky.dawn:
        return None
    radec = target.coordinates.radec()
    limit = (target.above or plan.above).limit(sky.horizon)
    clearance = clearance_deg(radec, sky.site, now, limit)
    if clearance < 0:
        return None
    if target.window is not None and not target.window.contains(now):
        return None
    min_moon = (
        target.moon_separation_deg
        if target.moon_separation_deg is not None
        else plan.moon_separation_deg
    )
    if min_moon > 0 and moon_separation_deg(radec, sky.site, now) < min_moon:
        return None
    ends: list[tuple[datetime, Literal["set", "window", "dawn"]]] = [(sky.dawn, "dawn")]
    setting = next_set(radec, sky.site, now, limit, search_h=24.0)
    if setting is not None:
        ends.append((setting, "set"))
    if target.window is not None:
        ends.append((target.window.end_after(now), "window"))
    until, ends_by = min(ends, key=lambda end: end[0])
    if (until - now).total_seconds() < plan.min_slot_min * 60.0:
        return None
    return Candidate(target, clearance, until, ends_by)


def choose(plan: NightPlan, progress: Progress, sky: Sky, now: datetime) -> Candidate | None:
    """The target to image now: lowest priority number, then highest above its limit."""
    found = [
        c
        for target in plan.targets
        if sum(remaining(target, progress)) > 0
        and (c := candidate(plan, target, sky, now)) is not None
    ]
    if not found:
        return None
    return min(found, key=lambda c: (c.target.priority, -c.altitude_clearance_deg))


def next_start(plan: NightPlan, progress: Progress, sky: Sky, now: datetime) -> datetime | None:
    """The first time (on a `SCAN_STEP_S` grid) before dawn when a target may be imaged."""
    t = now
    while t < sky.dawn:
        if choose(plan, progress, sky, t) is not None:
            return t
        t += timedelta(seconds=SCAN_STEP_S)
    return None


def tonight(plan: NightPlan, site: Site, now: datetime) -> Window | None:
    """The plan's night from `now`: from dusk (or now, if dark) to dawn at its sun altitudes."""
    window = night_window(site, now, plan.dusk_sun_altitude_deg)
    if window is None:
        return None
    dawn = next_dawn(site, window.start, plan.dawn_sun_altitude_deg)
    return Window(window.start, dawn if dawn is not None else window.end)


def target_document(
    template: SequenceDocument,
    plan: NightPlan,
    target: PlanTarget,
    to_take: Sequence[int],
    *,
    with_start: bool,
) -> SequenceDocument:
    """The run for one target: the template's first target container pointed at `target`,
    its light exposures replaced by the goals' remaining frames, looping once while the
    target is above its limit and the sun below the dawn altitude (and inside its window).

    Light `take_exposures` directly inside that container are replaced; other items (slew,
    center, autofocus, guiding), triggers (dither, meridian flip) and the `while_safe` and
    `while_weather_ok` conditions are kept. `with_start` adds the template's start area
    (connect, open the roof, unpark, cool): the first run of a night and the first after an
    unsafe spell. The end area (park, close the roof, warm) runs once, when the night ends.
    """
    spec = TargetSpec(
        target.name, target.coordinates.ra_hours, target.coordinates.dec_deg, target.rotation_deg
    )
    bare = TargetContainer(
        target_name=target.name,
        coordinates=target.coordinates,
        items=[SlewToTarget(), CenterTarget()],
    )
    base = aimed_target(template, spec, fallback=bare)
    exposures: list[AnyItem] = [
        TakeExposures(
            count=n,
            exposure_s=goal.exposure_s,
            filter_name=goal.filter_name,
            binning=goal.binning,
            gain=goal.gain,
        )
        for goal, n in zip(target.goals, to_take, strict=True)
        if n > 0
    ]
    items: list[AnyItem] = []
    for item in base.items:
        if isinstance(item, TakeExposures) and item.frame_type is FrameType.LIGHT:
            items += exposures
            exposures = []
        else:
            items.append(item)
    items += exposures
    conditions: list[AnyCondition] = [
        LoopCount(count=1),
        WhileAboveAltitude(above=target.above or plan.above),
        WhileSunBelow(altitude_deg=plan.dawn_sun_altitude_deg),
    ]
    if target.window is not None:
        conditions.append(LoopUntilTime(until=target.window.end))
    conditions += [c for c in base.conditions if isinstance(c, WhileSafe | WhileWeatherOk)]
    container = base.model_copy(update={"items": items, "conditions": conditions})
    return SequenceDocument(
        name=f"{plan.name}: {target.name}",
        description=f"night plan {plan.name!r}, target {target.name}",
        start=template.start if with_start else SequentialContainer(),
        targets=[container],
    )


def end_document(template: SequenceDocument, plan: NightPlan) -> SequenceDocument:
    """The night's close: the template's end area alone (stop guiding, park, warm)."""
    return SequenceDocument(name=f"{plan.name}: end of night", end=template.end)


@dataclass(frozen=True)
class Slot:
    """A predicted stretch of the night on one target."""

    target: str
    start: datetime
    end: datetime
    ends_by: Literal["set", "window", "dawn", "goals met", "filter missing"]
    """"filter missing": the goals it can take are met, not those needing a filter the wheel
    lacks."""
    frames: dict[str, int]
    """Frames expected per goal label."""
    meridian_flip: datetime | None


@dataclass(frozen=True)
class NightPreview:
    dusk: datetime
    dawn: datetime
    slots: list[Slot] = field(default_factory=list)
    left_over: dict[str, int] = field(default_factory=dict)
    """Frames that will still be missing after tonight, per target."""


def predict_night(
    plan: NightPlan,
    progress: Progress,
    site: Site,
    horizon: Horizon | None,
    now: datetime,
    *,
    flip_minutes_after_meridian: float | None = 5.0,
) -> NightPreview | None:
    """Tonight's timeline as the director would run it, with `SETUP_S` per target and
    `EXPOSURE_OVERHEAD_S` per frame; None when it does not get dark enough.

    A meridian flip is predicted where a slot spans the target's transit plus
    `flip_minutes_after_meridian` (None: the template has no meridian flip trigger).
    """
    night = tonight(plan, site, now)
    if night is None:
        return None
    sky = Sky(site, horizon, night.end)
    done = {t.name: list(progress.get(t.name, [0] * len(t.goals))) for t in plan.targets}
    slots: list[Slot] = []
    t = night.start
    while t < night.end:
        chosen = choose(plan, done, sky, t)
        if chosen is None:
            later = next_start(plan, done, sky, t + timedelta(seconds=SCAN_STEP_S))
            if later is None:
                break
            t = later
            continue
        target = chosen.target
        cursor = t + timedelta(seconds=SETUP_S)
        frames: dict[str, int] = {}
        counts = done[target.name]
        for i, (goal, left) in enumerate(zip(target.goals, remaining(target, done), strict=True)):
            if left == 0:
                continue
            per_frame_s = goal.exposure_s + EXPOSURE_OVERHEAD_S
            room = (chosen.until - cursor).total_seconds()
            n = min(left, max(0, math.floor(room / per_frame_s)))
            if n == 0:
                break
            frames[goal.label] = n
            counts[i] += n
            cursor += timedelta(seconds=n * per_frame_s)
        met = sum(remaining(target, done)) == 0
        end = cursor if met else chosen.until
        slots.append(
            Slot(
                target.name,
                t,
                end,
                "goals met" if met else chosen.ends_by,
                frames,
                _flip_time(target, site, t, end, flip_minutes_after_meridian),
            )
        )
        if not frames:  # too short for a single frame: move on rather than pick it again
            end = max(end, t + timedelta(seconds=SCAN_STEP_S))
        t = end
    left_over = {
        target.name: sum(remaining(target, done))
        for target in plan.targets
        if sum(remaining(target, done)) > 0
    }
    return NightPreview(night.start, night.end, slots, left_over)


def _flip_time(
    target: PlanTarget, site: Site, start: datetime, end: datetime, minutes_after: float | None
) -> datetime | None:
    if minutes_after is None:
        return None
    transit = next_transit(
        target.coordinates.radec(), site, start - timedelta(minutes=minutes_after)
    )
    flip = transit + timedelta(minutes=minutes_after)
    return flip if start <= flip < end else None
