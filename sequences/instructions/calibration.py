"""Calibration frames: darks matching the night's lights, bias, flats at an automatic exposure
from the sky or a flat panel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from drivers.base import Camera, CoverCalibrator, CoverState
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
    test frames, not saved), as NINA's flat wizard does.

    `source: panel` closes the dust cover, lights the flat panel and finds the brightness too:
    the exposure first, at `panel_brightness`; the brightness when the exposure would leave
    [min_exposure_s, max_exposure_s]. The panel is turned off afterwards, also after a failure
    or a cancel, and the cover reopened if it was open before, but not after a cancel (an
    abort may be the safety supervisor closing the observatory). `source: sky` needs the
    cover open.
    """

    kind: Literal["take_flats"] = "take_flats"
    count: int = Field(default=25, ge=1, le=1000)
    filters: list[str] = Field(default_factory=list, description="empty: the current filter")
    source: Literal["sky", "panel"] = "sky"
    target_adu: float = Field(default=30_000, gt=0)
    tolerance: float = Field(default=0.1, gt=0, lt=1, description="fraction of target_adu")
    min_exposure_s: float = Field(default=0.01, gt=0)
    max_exposure_s: float = Field(default=30.0, gt=0)
    panel_brightness: int | None = Field(
        default=None, ge=1, description="the panel's first brightness; None: half its maximum"
    )
    max_tries: int = Field(default=8, ge=1, le=30)
    binning: int = Field(default=1, ge=1, le=8)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        if self.source == "sky":
            await self._sky_is_visible(ctx)
            await self._flats(ctx, step, None)
            return
        panel = ctx.cover_calibrator()
        if panel.info.max_brightness <= 0:
            raise InstructionError(f"{panel.info.name!r} has no flat panel: use source sky")
        cover = (await panel.status()).cover
        if cover not in (CoverState.CLOSED, CoverState.NOT_PRESENT):
            await panel.close_cover()
        reopen = cover is CoverState.OPEN
        try:
            await self._flats(ctx, step, panel)
        except asyncio.CancelledError:
            reopen = False
            raise
        finally:
            await asyncio.shield(_put_panel_away(panel, reopen))

    async def _flats(self, ctx: RunContext, step: Step, panel: CoverCalibrator | None) -> None:
        setting = FlatSetting(
            min(max(1.0, self.min_exposure_s), self.max_exposure_s),
            None
            if panel is None
            else min(
                self.panel_brightness or max(1, panel.info.max_brightness // 2),
                panel.info.max_brightness,
            ),
        )
        for i, filter_name in enumerate(self.filters or [None]):
            if filter_name is not None:
                await ctx.filter_wheel().select(filter_name)
            setting = await self.find_setting(ctx, setting, panel)
            lit = f" at brightness {setting.brightness}" if setting.brightness is not None else ""
            await ctx.events.emit(
                "info",
                f"flats{' ' + filter_name if filter_name else ''}: {setting.exposure_s:.3f} s{lit}",
                path=step.path,
                data={"exposure_s": setting.exposure_s, "brightness": setting.brightness},
            )
            spec = ExposureSpec(
                FrameType.FLAT, setting.exposure_s, filter_name, binning=self.binning
            )
            await _take(ctx, step, spec, self.count, f"{step.path}#{i}")

    async def find_setting(
        self, ctx: RunContext, start: FlatSetting, panel: CoverCalibrator | None
    ) -> FlatSetting:
        """Test frames from `start` until the median is within tolerance of `target_adu`."""
        found = await search_flat_setting(
            ctx.camera(),
            panel,
            start,
            target_adu=self.target_adu,
            tolerance=self.tolerance,
            exposure_bounds_s=(self.min_exposure_s, self.max_exposure_s),
            max_tries=self.max_tries,
        )
        if found is not None:
            return found
        reach = "brightness and exposure" if panel is not None else "exposure"
        raise InstructionError(
            f"no {reach} between {self.min_exposure_s} and {self.max_exposure_s} s "
            f"reaches {self.target_adu:.0f} ADU"
            + (" (is the panel lit?)" if panel is not None else " (is the sky bright enough?)")
        )

    async def _sky_is_visible(self, ctx: RunContext) -> None:
        cover = ctx.equipment.cover_calibrator
        if (
            cover is not None
            and cover.connected
            and (await cover.status()).cover is CoverState.CLOSED
        ):
            raise InstructionError(
                "the dust cover is closed: open_cover before sky flats, or use source panel"
            )

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        issues = []
        if self.min_exposure_s > self.max_exposure_s:
            issues.append(
                Issue(f"{path}.min_exposure_s", "larger than max_exposure_s", "swap them")
            )
        if self.source == "panel" and "cover_calibrator" not in env.roles:
            issues.append(
                Issue(
                    f"{path}.source",
                    "panel flats need a flat panel and the profile has no cover_calibrator",
                    "add a cover_calibrator to the profile or use source sky",
                )
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


async def search_flat_setting(
    camera: Camera,
    panel: CoverCalibrator | None,
    start: FlatSetting,
    *,
    target_adu: float,
    tolerance: float,
    exposure_bounds_s: tuple[float, float],
    max_tries: int,
    on_trial: Callable[[FlatSetting, float], None] | None = None,
) -> FlatSetting | None:
    """Trial exposures (not saved) from `start`, as NINA's flat wizard: the first setting whose
    median lies within `tolerance` of `target_adu`, or None when `max_tries` or the bounds
    run out. `on_trial` hears each trial's setting and median."""
    setting = start
    lit: int | None = None
    for _ in range(max_tries):
        if panel is not None and setting.brightness not in (None, lit):
            await panel.calibrator_on(setting.brightness)
            lit = setting.brightness
        frame = await camera.expose(setting.exposure_s, light=True)
        median = float(await asyncio.to_thread(np.median, frame.data))
        if on_trial is not None:
            on_trial(setting, median)
        if abs(median - target_adu) <= tolerance * target_adu:
            return setting
        following = next_flat_setting(
            setting,
            median,
            frame.info.max_adu,
            target_adu,
            exposure_bounds_s,
            panel.info.max_brightness if panel is not None else None,
        )
        if following == setting:
            return None  # at the limits: more tries cannot get closer
        setting = following
    return None


@dataclass(frozen=True)
class FlatSetting:
    exposure_s: float
    brightness: int | None
    """The panel's brightness; None for sky flats."""


def next_flat_setting(
    setting: FlatSetting,
    median_adu: float,
    max_adu: int,
    target_adu: float,
    exposure_range_s: tuple[float, float],
    max_brightness: int | None,
) -> FlatSetting:
    """The next try of the flat wizard. The signal is taken as linear in exposure and in
    brightness; a saturated frame quarters the light. The exposure changes first; when it
    would leave its range (and there is a panel) the brightness takes up the rest."""
    low, high = exposure_range_s
    ratio = target_adu / max(median_adu, 1.0) if median_adu < 0.95 * max_adu else 0.25
    wanted_s = setting.exposure_s * ratio
    exposure_s = min(max(wanted_s, low), high)
    if setting.brightness is None or max_brightness is None or exposure_s == wanted_s:
        return FlatSetting(exposure_s, setting.brightness)
    light = setting.brightness * wanted_s  # brightness x seconds the target needs
    brightness = min(max(round(light / exposure_s), 1), max_brightness)
    return FlatSetting(min(max(light / brightness, low), high), brightness)


async def _put_panel_away(panel: CoverCalibrator, reopen: bool) -> None:
    await panel.calibrator_off()
    if reopen:
        await panel.open_cover()


async def _take(ctx: RunContext, step: Step, spec: ExposureSpec, count: int, key: str) -> None:
    """Take what is missing of `count` frames under the counter `key` (resumable)."""
    tag = RunTag(ctx.run_id, key) if ctx.run_id is not None else None
    done = await ctx.frames.count_taken(tag) if tag is not None else 0
    if count - done <= 0:
        return

    async def between(_: int) -> None:
        await step.between_units()

    await ctx.frames.capture(spec, count - done, tag=tag, between=between)
