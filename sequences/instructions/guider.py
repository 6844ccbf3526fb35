"""Guiding: start (and wait until settled), stop, dither now."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.model import Issue


def _need_guider(env: ValidationEnv, path: str) -> list[Issue]:
    if "guide_camera" in env.roles:
        return []
    return [Issue(path, "guiding needs a guide camera in the profile", "add a guide_camera")]


class StartGuiding(Instruction):
    kind: Literal["start_guiding"] = "start_guiding"
    redo_on_resume: ClassVar[bool] = True
    settle_px: float = Field(default=1.5, gt=0, le=20)
    settle_time_s: float = Field(default=10.0, ge=0, le=600)
    settle_timeout_s: float = Field(default=60.0, gt=0, le=1800)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        guider = ctx.need_guider()
        await guider.start()
        await guider.settle(self.settle_px, self.settle_time_s, self.settle_timeout_s)
        ctx.facts.guiding = True

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_guider(env, path)

    def estimate_s(self, env: ValidationEnv) -> float:
        return 30.0 + self.settle_time_s


class StopGuiding(Instruction):
    kind: Literal["stop_guiding"] = "stop_guiding"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        if ctx.guider is not None:
            await ctx.guider.stop()
        ctx.facts.guiding = False


class Dither(Instruction):
    kind: Literal["dither"] = "dither"
    pixels: float = Field(default=5.0, gt=0, le=100)
    ra_only: bool = False
    settle_px: float = Field(default=1.5, gt=0, le=20)
    settle_time_s: float = Field(default=10.0, ge=0, le=600)
    settle_timeout_s: float = Field(default=40.0, gt=0, le=1800)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        guider = ctx.need_guider()
        await guider.dither(self.pixels, ra_only=self.ra_only)
        await guider.settle(self.settle_px, self.settle_time_s, self.settle_timeout_s)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_guider(env, path)
