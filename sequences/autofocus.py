"""NINA-style autofocus: sample HFR around the current position, fit, move to the minimum, check.

The focuser visits ``2 * steps_out + 1`` positions ``step_size`` apart, centred on where it is,
always arriving from below (with `backlash_overshoot_steps` past the target first when it has
to move down), so mechanical backlash is taken out the same way at every point. Points on the
defocus plateau are dropped (`processing.focus.trim_plateau`), the curve is fitted (leaving
out one sample spoilt on its own, far off the curve the others make:
`processing.focus.fit_focus_robust`), and:

- a minimum at the edge of the usable points means focus lies outside the sampled range: the
  run re-centres on the best sample once and starts over;
- a poor fit (R^2 below `min_r_squared`), too few stars, or a confirmation frame much worse
  than the fit predicts fails the run and puts the focuser back where it started.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from drivers.base import Camera, Focuser
from processing.focus import FocusFit, FocusFitError, FocusModel, fit_focus_robust, trim_plateau
from processing.stars import measure_frame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AutofocusConfig:
    step_size: int = 100
    """Focuser steps between samples; pick it so that +-steps_out steps roughly double HFR."""
    steps_out: int = 4
    """Samples on each side of the centre: 4 gives NINA's 9 points."""
    exposure_s: float = 2.0
    backlash_overshoot_steps: int = 0
    model: FocusModel = FocusModel.HYPERBOLA
    min_r_squared: float = 0.7
    min_stars: int = 5
    confirm_tolerance: float = 0.25
    """The confirmation frame may be this fraction worse than the fitted HFR at the minimum."""

    def __post_init__(self) -> None:
        if self.step_size < 1 or self.steps_out < 2:
            raise ValueError("step_size must be >= 1 and steps_out >= 2 (at least 5 samples)")
        if self.exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")


@dataclass(frozen=True)
class FocusPoint:
    position: int
    hfr_px: float | None
    star_count: int


@dataclass
class AutofocusReport:
    start_position: int
    points: list[FocusPoint] = field(default_factory=list)
    fit: FocusFit | None = None
    left_out_position: int | None = None
    """The focuser position of a sample the fit left out as far off the curve."""
    final_position: int | None = None
    confirmation_hfr_px: float | None = None
    success: bool = False
    reason: str = ""

    @property
    def exposures(self) -> int:
        return len(self.points) + (self.confirmation_hfr_px is not None)


class AutofocusRunner(Protocol):
    """Runs an autofocus for a sequence the way the daemon runs one on request: holding the
    camera, and keeping the report."""

    async def autofocus(self, config: AutofocusConfig) -> AutofocusReport: ...


class _FocusFailed(Exception):
    pass


PointHeard = Callable[["FocusPoint"], Awaitable[None]]
"""Hears of each sample as it is measured (a page drawing the V-curve live)."""


async def run_autofocus(
    camera: Camera,
    focuser: Focuser,
    config: AutofocusConfig = AutofocusConfig(),
    on_point: PointHeard | None = None,
) -> AutofocusReport:
    """Run one autofocus; device errors propagate (after the focuser returns to its start)."""
    start = (await focuser.status()).position
    report = AutofocusReport(start_position=start)
    try:
        centre = start
        for attempt in (1, 2):
            points = await _sample(camera, focuser, config, centre, on_point)
            report.points += points
            usable = [
                p for p in points if p.hfr_px is not None and p.star_count >= config.min_stars
            ]
            x, y = trim_plateau(
                [p.position for p in usable], [p.hfr_px for p in usable if p.hfr_px is not None]
            )
            best_sample = min(zip(y, x, strict=True))[1] if x else centre
            if x and best_sample in (x[0], x[-1]) and attempt == 1:
                log.info("autofocus: minimum at the edge (%d); re-centring once", best_sample)
                centre = int(best_sample)
                continue
            try:
                robust = fit_focus_robust(x, y, config.model)
            except FocusFitError as e:
                raise _FocusFailed(f"no focus curve: {e}") from e
            fit = report.fit = robust.fit
            if robust.left_out is not None:
                report.left_out_position = int(x[robust.left_out])
                log.info(
                    "autofocus: the sample at %d (HFR %.2f px) is far off the curve: left out",
                    x[robust.left_out],
                    y[robust.left_out],
                )
            if fit.r_squared < config.min_r_squared:
                raise _FocusFailed(f"poor fit: R^2 {fit.r_squared:.2f} < {config.min_r_squared}")
            if not x[0] <= fit.best_position <= x[-1]:
                raise _FocusFailed(
                    f"fitted minimum {fit.best_position:.0f} outside the samples {x[0]}..{x[-1]}"
                )
            break
        assert report.fit is not None
        target = round(report.fit.best_position)
        await _move(focuser, target, config)
        confirmation = await _measure(camera, config)
        report.confirmation_hfr_px = confirmation.hfr_px
        limit = report.fit.best_hfr_px * (1 + config.confirm_tolerance)
        if confirmation.hfr_px is None or confirmation.hfr_px > limit:
            raise _FocusFailed(
                f"confirmation HFR {confirmation.hfr_px} is worse than {limit:.2f} px"
            )
        report.final_position = target
        report.success = True
        log.info("autofocus: %d -> %d (HFR %.2f px)", start, target, confirmation.hfr_px)
    except _FocusFailed as e:
        report.reason = str(e)
        log.warning("autofocus failed: %s; back to %d", e, start)
        await _move(focuser, start, config)
        report.final_position = start
    except BaseException:
        await asyncio.shield(_move(focuser, start, config))
        raise
    return report


async def _sample(
    camera: Camera,
    focuser: Focuser,
    config: AutofocusConfig,
    centre: int,
    on_point: PointHeard | None,
) -> list[FocusPoint]:
    points = []
    for k in range(-config.steps_out, config.steps_out + 1):
        position = min(max(0, centre + k * config.step_size), focuser.info.max_step)
        await _move(focuser, position, config)
        quality = await _measure(camera, config)
        points.append(FocusPoint(position, quality.hfr_px, quality.star_count))
        if on_point is not None:
            await on_point(points[-1])
    return points


async def _measure(camera: Camera, config: AutofocusConfig) -> _Measured:
    frame = await camera.expose(config.exposure_s, light=True)
    quality = await asyncio.to_thread(
        measure_frame, frame.data, saturation_adu=float(frame.info.max_adu)
    )
    return _Measured(quality.hfr_px, quality.star_count)


@dataclass(frozen=True)
class _Measured:
    hfr_px: float | None
    star_count: int


async def _move(focuser: Focuser, position: int, config: AutofocusConfig) -> None:
    """Arrive at `position` moving outwards, overshooting below it first when moving down."""
    here = (await focuser.status()).position
    if position < here and config.backlash_overshoot_steps > 0:
        await focuser.move_to(max(0, position - config.backlash_overshoot_steps))
    await focuser.move_to(position)
