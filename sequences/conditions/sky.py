"""Sky conditions: while the target is above a limit, while the sun is below an altitude."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sequences.astro import clearance_deg, sun_altitude_deg
from sequences.base import Condition
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.errors import InstructionError
from sequences.instructions.mount import Coordinates, target_position
from sequences.instructions.waits import AltitudeLimit
from sequences.model import Issue


class WhileAboveAltitude(Condition):
    """While the target is above the limit (a fixed altitude or the custom horizon)."""

    kind: Literal["while_above_altitude"] = "while_above_altitude"
    coordinates: Coordinates | None = None
    above: AltitudeLimit = Field(default_factory=AltitudeLimit)

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        try:
            target = target_position(self.coordinates, scope)
        except InstructionError:
            return True  # nothing to measure: the validation reports it
        limit = self.above.limit(ctx.horizon)
        return clearance_deg(target, ctx.need_site(), ctx.clock.now(), limit) >= 0

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if env.site is None:
            return [Issue(path, "the site is unknown", "connect the mount or set the site")]
        return []


class WhileSunBelow(Condition):
    kind: Literal["while_sun_below"] = "while_sun_below"
    altitude_deg: float = Field(default=-12.0, ge=-30, le=30)

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        return sun_altitude_deg(ctx.need_site(), ctx.clock.now()) < self.altitude_deg
