"""Calibration frames: darks matching the night's lights, bias, flats at an automatic exposure."""

from __future__ import annotations

import asyncio
from typing import Literal

import numpy as np
from pydantic import Field

from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.frames import ExposureSpec, FrameType, RunTag
from sequences.model import Issue


class TakeDarks(Instruction):
    """`count` darks for every light setting of this run (or the given exposures)."""

    kind: Literal["take_darks"] = "take_darks"
    count: int = Field(default=20, ge=1, le=1000)
    exposures_s: list[float] = Field(
        default_factory=list, description="empty: match the lights taken in this run"
    )
    gain: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    binning: int = Field(default=1, ge=1, le=8)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        ctx.camera()
        if self.exposures_s:
            specs = [
                ExposureSpec(FrameType.DARK, t, None, self.gain, self.offset, self.binning)
                for t in self.exposures_s
            ]
        else:
            specs = [
                ExposureSpec(FrameType.DARK, s.exposure_s, None, s.gain, s.offset, s.binning)
                for s in ctx.facts.light_specs
            ]
            if not specs:
                raise InstructionError("no lights were taken in this run: give exposures_s")
        for i, spec in enumerate(specs):
            await _take(ctx, step, spec, self.count, f"{step.path}#{i}")


class TakeBias(Instruction):
    kind: Literal["take_bias"] = "take_bias"
    count: int = Field(default=50, ge=1, le=1000)
    gain: int | None = Field(default=None, ge=0)
    offset: int | None = Field(default=None, ge=0)
    binning: int = Field(default=1, ge=1, le=8)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        exposure_s = ctx.camera().info.exposure_min_s
        spec = ExposureSpec(FrameType.BIAS, exposure_s, None, self.gain, self.offset, self.binning)
        await _take(ctx, step, spec, self.count, step.path)


class TakeFlats(Instruction):
    """Flats per filter at the exposure that puts the median at `target_adu` (found by a few
    test frames, not saved), as NINA's flat wizard does."""

    kind: Literal["take_flats"] = "take_flats"
    count: int = Field(default=25, ge=1, le=1000)
    filters: list[str] = Field(default_factory=list, description="empty: the current filter")
    target_adu: float = Field(default=30_000, gt=0)
    tolerance: float = Field(default=0.1, gt=0, lt=1, description="fraction of target_adu")
    min_exposure_s: float = Field(default=0.01, gt=0)
    max_exposure_s: float = Field(default=30.0, gt=0)
    max_tries: int = Field(default=8, ge=1, le=30)
    binning: int = Field(default=1, ge=1, le=8)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        for i, filter_name in enumerate(self.filters or [None]):
            if filter_name is not None:
                await ctx.filter_wheel().select(filter_name)
            exposure_s = await self.find_exposure(ctx)
            await ctx.events.emit(
                "info",
                f"flats{' ' + filter_name if filter_name else ''}: {exposure_s:.3f} s",
                path=step.path,
            )
            spec = ExposureSpec(FrameType.FLAT, exposure_s, filter_name, binning=self.binning)
            await _take(ctx, step, spec, self.count, f"{step.path}#{i}")

    async def find_exposure(self, ctx: RunContext) -> float:
        camera = ctx.camera()
        exposure_s = min(max(1.0, self.min_exposure_s), self.max_exposure_s)
        for _ in range(self.max_tries):
            frame = await camera.expose(exposure_s, light=True)
            median = float(await asyncio.to_thread(np.median, frame.data))
            if abs(median - self.target_adu) <= self.tolerance * self.target_adu:
                return exposure_s
            # The signal is linear in time above the bias; saturated frames halve the time.
            ratio = self.target_adu / median if median < 0.95 * frame.info.max_adu else 0.25
            exposure_s = min(max(exposure_s * ratio, self.min_exposure_s), self.max_exposure_s)
        raise InstructionError(
            f"no flat exposure between {self.min_exposure_s} and {self.max_exposure_s} s "
            f"reaches {self.target_adu:.0f} ADU (is the panel on, the sky bright enough?)"
        )

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        issues = []
        if self.min_exposure_s > self.max_exposure_s:
            issues.append(
                Issue(f"{path}.min_exposure_s", "larger than max_exposure_s", "swap them")
            )
        for name in self.filters:
            if env.filter_names is not None and name not in env.filter_names:
                issues.append(
                    Issue(
                        f"{path}.filters",
                        f"filter {name!r} is not in the wheel",
                        f"use {', '.join(env.filter_names)}",
                    )
                )
        return issues


async def _take(ctx: RunContext, step: Step, spec: ExposureSpec, count: int, key: str) -> None:
    """Take what is missing of `count` frames under the counter `key` (resumable)."""
    tag = RunTag(ctx.run_id, key) if ctx.run_id is not None else None
    done = await ctx.frames.count_taken(tag) if tag is not None else 0
    if count - done <= 0:
        return

    async def between(_: int) -> None:
        await step.between_units()

    await ctx.frames.capture(spec, count - done, tag=tag, between=between)
