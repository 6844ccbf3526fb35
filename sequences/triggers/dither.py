"""Dither after every N light frames (NINA's default is after each frame; the mission's is 3).

As NINA's trigger, it dithers only where a light exposure comes next: not before the
instruction that follows a target's last light (`stop_guiding`, a slew), where the offset
would be wasted; the count carries over to the next light instead."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sequences.base import Trigger
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.frames import FrameType
from sequences.model import Issue


class DitherAfterExposures(Trigger):
    kind: Literal["dither_after_exposures"] = "dither_after_exposures"
    after_exposures: int = Field(default=3, ge=1, le=1000)
    pixels: float = Field(default=5.0, gt=0, le=100, description="largest offset, guide px")
    ra_only: bool = False
    settle_px: float = Field(default=1.5, gt=0, le=20)
    settle_time_s: float = Field(default=10.0, ge=0, le=600)
    settle_timeout_s: float = Field(default=40.0, gt=0, le=1800)

    def exposure_done(self, state: dict[str, Any], frame_type: FrameType) -> None:
        if frame_type is FrameType.LIGHT:
            state["since"] = int(state.get("since", 0)) + 1

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        return ctx.facts.light_next and int(state.get("since", 0)) >= self.after_exposures

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        state["since"] = 0
        guider = ctx.need_guider()
        await guider.dither(self.pixels, ra_only=self.ra_only)
        await guider.settle(self.settle_px, self.settle_time_s, self.settle_timeout_s)
        state["dithers"] = int(state.get("dithers", 0)) + 1

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "guide_camera" in env.roles:
            return []
        return [Issue(path, "dithering needs a guider (a guide camera)", "add a guide camera")]
