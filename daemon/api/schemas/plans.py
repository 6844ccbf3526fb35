"""Request and response bodies for night plans, their nights and the safety supervisor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from daemon.api.schemas.common import JsonDocument, RequestBody
from daemon.api.schemas.sequences import IssueRead


class PlanWrite(RequestBody):
    """The plan is checked against `sequences.plan.NightPlan` (422 naming each field)."""

    plan: JsonDocument
    enabled: bool = True


class PlanRead(BaseModel):
    id: int
    name: str
    enabled: bool
    plan: dict[str, Any]
    next_start: datetime | None
    """When the scheduler starts its next night (None: not armed)."""
    created_at: datetime
    updated_at: datetime
    owner: str | None = Field(
        description="the observatory profile of the daemon it was saved on, the only one "
        "that arms and starts it (several daemons may share one database); null: made "
        "without one"
    )


class GoalProgress(BaseModel):
    label: str
    done: int
    count: int


class TargetProgress(BaseModel):
    target: str
    goals: list[GoalProgress]


class SlotRead(BaseModel):
    target: str
    start: datetime
    end: datetime
    ends_by: str
    frames: dict[str, int]
    meridian_flip: datetime | None


class TonightRead(BaseModel):
    """A prediction: no device is touched."""

    dusk: datetime
    dawn: datetime
    slots: list[SlotRead]
    left_over: dict[str, int]
    issues: list[IssueRead] = Field(
        default_factory=list,
        description="what would go wrong tonight: a goal's filter not in the wheel (left out of "
        "the prediction), a target not above its limit in the dark hours",
    )


class NightRead(BaseModel):
    id: int
    plan_id: int
    state: str
    dusk: datetime
    dawn: datetime
    current_target: str | None
    reason: str | None
    started_at: datetime
    ended_at: datetime | None
    run_ids: list[int]


class NightStarted(BaseModel):
    night_id: int


class SafetyRead(BaseModel):
    state: str
    reason: str | None
    since: datetime | None
    lost_devices: list[str]
    safe_delay_s: float
    active_night_id: int | None
    weather_violations: list[str] = Field(
        description="the weather limits the last reading broke, e.g. 'humidity 95 % above 90 %'"
    )
    closed: list[str] = Field(
        description="what the supervisor closed (roof, cover) and opens again once safe"
    )


class SkyBandRead(BaseModel):
    kind: str = Field(description="day, civil, nautical, astronomical (twilight) or night")
    start: datetime
    end: datetime


class AltitudeCurveRead(BaseModel):
    target: str
    priority: int
    altitude_deg: list[float] = Field(description="the target's altitude at each of `times`")
    limit_deg: list[float] = Field(
        description="its altitude limit at each of `times` (the custom horizon at its azimuth)"
    )


class AltitudesRead(BaseModel):
    """Tonight's sky for the plan's chart, from an hour before dusk to an hour after dawn."""

    dusk: datetime
    dawn: datetime
    step_min: int
    times: list[datetime]
    sun_altitude_deg: list[float]
    bands: list[SkyBandRead]
    targets: list[AltitudeCurveRead]
    timezone: str = Field(description="the site's time zone (NIGHTOWL_TIMEZONE or the system's)")
    utc_offset_min: float = Field(description="its offset from UTC at dusk, in minutes")
