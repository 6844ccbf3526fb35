"""Waits on the sky and the weather: a target's altitude, the custom horizon, the sun, safety.

Sky waits sleep on the run's clock (a simulated night jumps ahead); the safety wait polls the
device on wall time, as the weather does not follow a simulated clock.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from sequences.astro import (
    Horizon,
    Limit,
    clearance_deg,
    next_rise,
    next_sun_crossing,
    sun_altitude_deg,
)
from sequences.base import DOCUMENT_CONFIG, Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.instructions.mount import Coordinates, target_position
from sequences.model import Issue

SAFETY_POLL_S = 5.0


class AltitudeLimit(BaseModel):
    """A fixed altitude, or (when `altitude_deg` is absent) the site's custom horizon (flat 0
    without one), raised by `offset_deg`."""

    model_config = DOCUMENT_CONFIG

    altitude_deg: float | None = Field(default=None, ge=-10, le=90)
    offset_deg: float = Field(default=0.0, ge=-30, le=60)

    def limit(self, horizon: Horizon | None) -> Limit:
        """The limit at a site with this custom `horizon` (None: flat)."""
        if self.altitude_deg is not None:
            return self.altitude_deg + self.offset_deg
        if horizon is None:
            return self.offset_deg
        return horizon.raised(self.offset_deg) if self.offset_deg else horizon


class WaitForAltitude(Instruction):
    """Wait until the target is above the limit (at once when it already is)."""

    kind: Literal["wait_for_altitude"] = "wait_for_altitude"
    pausable: ClassVar[bool] = True
    coordinates: Coordinates | None = None
    above: AltitudeLimit = Field(default_factory=AltitudeLimit)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        site = ctx.need_site()
        target = target_position(self.coordinates, step.scope)
        limit = self.above.limit(ctx.horizon)
        while clearance_deg(target, site, ctx.clock.now(), limit) < 0:
            rise = next_rise(target, site, ctx.clock.now(), limit)
            if rise is None:
                raise InstructionError("the target does not rise above the limit in 36 h")
            await ctx.events.emit(
                "info", f"waiting for the target to rise ({rise:%H:%M} UTC)", path=step.path
            )
            await ctx.clock.sleep_until(rise)


class WaitForSunAltitude(Instruction):
    """Wait until the sun is below (`setting`) or above (`rising`) an altitude: dusk, dawn."""

    kind: Literal["wait_for_sun_altitude"] = "wait_for_sun_altitude"
    pausable: ClassVar[bool] = True
    altitude_deg: float = Field(default=-12.0, ge=-30, le=30)
    direction: Literal["setting", "rising"] = "setting"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        site = ctx.need_site()
        rising = self.direction == "rising"
        while True:
            sun = sun_altitude_deg(site, ctx.clock.now())
            if (sun >= self.altitude_deg) if rising else (sun <= self.altitude_deg):
                return
            when = next_sun_crossing(site, ctx.clock.now(), self.altitude_deg, rising=rising)
            if when is None:
                raise InstructionError(f"the sun does not cross {self.altitude_deg} deg in 36 h")
            await ctx.events.emit("info", f"waiting for the sun ({when:%H:%M} UTC)", path=step.path)
            await ctx.clock.sleep_until(when)


class WaitUntilSafe(Instruction):
    kind: Literal["wait_until_safe"] = "wait_until_safe"
    pausable: ClassVar[bool] = True
    timeout_s: float | None = Field(
        default=None, gt=0, description="None: wait as long as it takes"
    )

    async def execute(self, ctx: RunContext, step: Step) -> None:
        monitor = ctx.safety_monitor()
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        announced = False
        while not (await monitor.status()).is_safe:
            if deadline is not None and loop.time() > deadline:
                raise InstructionError(f"still unsafe after {self.timeout_s:.0f} s")
            if not announced:
                await ctx.events.emit("warning", "unsafe: waiting", path=step.path)
                announced = True
            await asyncio.sleep(SAFETY_POLL_S)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "safety_monitor" in env.roles:
            return []
        return [Issue(path, "no safety monitor in the profile", "add one or remove this")]
