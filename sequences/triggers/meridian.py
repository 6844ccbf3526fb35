"""Meridian flip for German equatorial mounts, decided from our own hour angle.

Before each exposure: once the mount's hour angle is `minutes_after_meridian` past the
meridian, flip (slew to the target again: a GEM changes pier side doing so). When the next
exposure would run past the flip point, wait for it first (on the run's clock) instead of
starting an exposure the flip would cut. After the slew: the pier side must have changed, or
a plate solve must confirm the pointing (recentering does both); then optionally refocus,
restart guiding and settle. One flip per meridian passage.

With dome slaving on, the dome reaches the new pier side's slit azimuth before the recentering
frames. A flip turns the sky by 180 deg on the sensor: the run's remembered rotator offset
follows (`sequences.rotation.flipped`); a target with a `rotation_deg` is rotated back to it,
otherwise the offset is re-measured by a solve when a solver is configured.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import Field

from drivers.base import PierSide
from sequences.astro import hour_angle_hours
from sequences.base import Trigger
from sequences.centering import CenteringConfig, center_target
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.errors import InstructionError
from sequences.instructions.focuser import AutofocusSettings, run_autofocus_recorded
from sequences.model import Issue
from sequences.rotation import RotationConfig, flipped, remeasure_offset, rotate_to_angle

_SIDEREAL_RATE = 1.002737909  # sidereal hours per solar hour


class MeridianFlip(Trigger):
    kind: Literal["meridian_flip"] = "meridian_flip"
    minutes_after_meridian: float = Field(default=5.0, ge=0, le=60)
    max_minutes_after_meridian: float = Field(
        default=60.0, gt=0, le=180, description="past this the target is left alone"
    )
    recenter: bool = True
    refocus: bool = False
    autofocus: AutofocusSettings = Field(default_factory=AutofocusSettings)
    settle_s: float = Field(default=5.0, ge=0, le=600)
    guide_settle_time_s: float = Field(
        default=10.0,
        ge=0,
        le=600,
        description="how long guiding must hold within 1.5 px after its restart",
    )

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        if ctx.site is None or ctx.equipment.mount is None:
            return False
        status = await ctx.mount().status()
        if not status.tracking or status.at_park:
            return False
        now = ctx.clock.now()
        ha = hour_angle_hours(status.position, ctx.site, now)
        transit = _last_transit(now, ha)
        if (
            state.get("flipped_transit")
            and abs((datetime.fromisoformat(state["flipped_transit"]) - transit).total_seconds())
            < 3600
        ):
            return False
        flip_h = self.minutes_after_meridian / 60.0
        if flip_h <= ha <= self.max_minutes_after_meridian / 60.0:
            return True
        if ha < 0 and -ha > 6:
            return False  # far east of the meridian: nothing to plan yet
        wait_s = (flip_h - ha) * 3600.0 / _SIDEREAL_RATE
        next_exposure_s = ctx.facts.next_exposure_s
        if 0 < wait_s < next_exposure_s + 1.0:
            await ctx.events.emit(
                "info", f"meridian flip in {wait_s:.0f} s: waiting instead of exposing"
            )
            await ctx.clock.sleep(wait_s + 1.0)
            return True
        return False

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        mount = ctx.mount()
        site = ctx.need_site()
        before = await mount.status()
        target = (
            scope.target.position
            if scope.target is not None and scope.target.position is not None
            else before.position
        )
        now = ctx.clock.now()
        ha = hour_angle_hours(before.position, site, now)
        state["flipped_transit"] = _last_transit(now, ha).isoformat()
        await ctx.events.emit(
            "info",
            f"meridian flip at hour angle {ha * 60:+.1f} min (pier {before.side_of_pier.name})",
            data={"hour_angle_h": ha, "pier_side": before.side_of_pier.name},
        )
        guiding = ctx.guider is not None and ctx.facts.guiding
        if guiding:
            await ctx.need_guider().stop()
        await mount.slew(target)
        if ctx.dome_slaving is not None:
            await ctx.dome_slaving.align()
        after = await mount.status()
        pier_changed = (
            PierSide.UNKNOWN not in (before.side_of_pier, after.side_of_pier)
            and after.side_of_pier != before.side_of_pier
        )
        if self.recenter and ctx.solve is not None:
            report = await center_target(mount, ctx.camera(), target, ctx.solve, CenteringConfig())
            if not report.success:
                raise InstructionError(f"recentering after the flip failed: {report.reason}")
            verified = f'recentered to {report.final_error_arcsec:.0f}"'
        elif pier_changed:
            verified = f"pier side now {after.side_of_pier.name}"
        else:
            raise InstructionError(
                "cannot verify the flip: the pier side did not change and no plate solver "
                "is configured to check the pointing"
            )
        await self._turn_rotator_back(ctx, scope, before.side_of_pier, after.side_of_pier)
        if self.refocus:
            await run_autofocus_recorded(
                ctx, "meridian_flip", self.autofocus.config(), reason="after the flip"
            )
        if guiding:
            guider = ctx.need_guider()
            await guider.start()
            await guider.settle(1.5, self.guide_settle_time_s, 60.0)
            await ctx.events.emit("info", "guiding restarted")
        await asyncio.sleep(self.settle_s)
        state["flips"] = int(state.get("flips", 0)) + 1
        await ctx.events.emit("info", f"meridian flip done ({verified})")

    async def _turn_rotator_back(
        self, ctx: RunContext, scope: Scope, before: PierSide, after: PierSide
    ) -> None:
        if ctx.equipment.rotator is None or ctx.facts.rotator_offset is None:
            return
        ctx.facts.rotator_offset = flipped(ctx.facts.rotator_offset, before, after)
        angle = scope.target.rotation_deg if scope.target is not None else None
        if angle is not None:
            await rotate_to_angle(ctx, angle, RotationConfig(), "meridian_flip")
        elif ctx.solve is not None:
            offset = await remeasure_offset(ctx, RotationConfig().exposure_s)
            await ctx.events.emit("info", f"rotator offset after the flip: {offset:.1f} deg")

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "mount" not in env.roles:
            return [Issue(path, "meridian flip needs a mount", "add a mount or remove this")]
        return []


def _last_transit(now: datetime, hour_angle_h: float) -> datetime:
    return now - timedelta(hours=hour_angle_h / _SIDEREAL_RATE)
