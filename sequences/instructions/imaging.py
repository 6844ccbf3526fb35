"""Take exposures: the unit of a night. Counted through the frame sink, so a resume never
re-takes or loses a frame; each pass of a loop takes its own `count`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.frames import ExposureSpec, FrameType, RunTag, SavedFrame
from sequences.model import Issue


class TakeExposures(Instruction):
    kind: Literal["take_exposures"] = "take_exposures"
    count: int = Field(ge=1, le=10_000)
    exposure_s: float = Field(gt=0, le=36_000)
    frame_type: FrameType = FrameType.LIGHT
    filter_name: str | None = Field(default=None, max_length=50)
    gain: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    binning: int = Field(default=1, ge=1, le=8)

    async def prepare(self, ctx: RunContext, step: Step) -> None:
        """At the start of a pass, the frames this node took in earlier passes of a loop
        (`before`): they do not count for this pass. Saved before the first frame, so a
        resumed pass counts on from its own frames."""
        if ctx.run_id is not None and "before" not in step.counters:
            done = int(step.counters.get("done", 0))
            taken = await ctx.frames.count_taken(RunTag(ctx.run_id, step.path))
            step.counters["before"] = 0 if done else taken

    async def execute(self, ctx: RunContext, step: Step) -> None:
        ctx.camera()
        tag = RunTag(ctx.run_id, step.path) if ctx.run_id is not None else None
        done = int(step.counters.get("done", 0))
        if tag is not None:
            done = await ctx.frames.count_taken(tag) - int(step.counters.get("before", 0))
        step.counters["done"] = done
        remaining = self.count - done
        if remaining <= 0:
            return

        async def dome_ready() -> None:
            # Slaving: no exposure that sees the sky starts while the dome moves.
            if ctx.dome_slaving is not None and self.frame_type.shutter_open:
                await ctx.dome_slaving.align()

        async def between(_: int) -> None:
            step.exposure_done(self.frame_type)
            await step.between_units()
            await dome_ready()

        async def saved(frame: SavedFrame) -> None:
            step.counters["done"] = step.counters.get("done", 0) + 1
            if step.on_frame is not None:
                await step.on_frame(frame)

        spec = ExposureSpec(
            frame_type=self.frame_type,
            exposure_s=self.exposure_s,
            filter_name=self.filter_name,
            gain=self.gain,
            offset=self.offset,
            binning=self.binning,
        )
        if self.frame_type is FrameType.LIGHT:
            ctx.facts.remember_light(spec)
        ctx.facts.next_exposure_s = self.exposure_s
        if self.filter_name is not None:
            # Before the checkpoint, so a filter-change trigger acts before the first frame.
            await ctx.filter_wheel().select(self.filter_name)
        # Every checkpoint of this instruction comes before one of its frames.
        ctx.facts.light_next = self.frame_type is FrameType.LIGHT
        try:
            await step.between_units()
            await dome_ready()
            await ctx.frames.capture(
                spec,
                remaining,
                target=step.scope.target if self.frame_type is FrameType.LIGHT else None,
                tag=tag,
                between=between,
                on_saved=saved,
            )
        finally:
            ctx.facts.light_next = False
        step.exposure_done(self.frame_type)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        issues = []
        if "camera" not in env.roles:
            issues.append(Issue(path, "no camera in the equipment profile", "add a camera"))
        if env.exposure_max_s is not None and self.exposure_s > env.exposure_max_s:
            issues.append(
                Issue(
                    f"{path}.exposure_s",
                    f"{self.exposure_s} s is longer than the camera allows "
                    f"({env.exposure_max_s} s)",
                    f"use at most {env.exposure_max_s} s",
                )
            )
        if self.filter_name is not None:
            if env.filter_names is None:
                issues.append(Issue(f"{path}.filter_name", "no filter wheel", "remove filter_name"))
            elif self.filter_name not in env.filter_names:
                issues.append(
                    Issue(
                        f"{path}.filter_name",
                        f"filter {self.filter_name!r} is not in the wheel",
                        f"use one of {', '.join(env.filter_names)}",
                    )
                )
        return issues

    def estimate_s(self, env: ValidationEnv) -> float:
        return self.count * (self.exposure_s + 1.0)
