"""While the weather is ok: the weather station's readings within limits, watched like safety.

Watched continuously (every 2 s) and before every exposure; a broken limit interrupts the
container at once (the exposure is aborted) and a warning event names the limit. A station
that does not answer counts as not ok. The default limits are rain only (any rain).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from drivers.profile import WeatherLimits
from sequences.base import Condition
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.model import Issue


class WhileWeatherOk(Condition):
    kind: Literal["while_weather_ok"] = "while_weather_ok"
    watched: ClassVar[bool] = True
    limits: WeatherLimits = Field(
        default_factory=WeatherLimits, description="readings that end the container"
    )

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        broken = self.limits.violations(await ctx.weather().status())
        if not broken:
            state.pop("reason", None)
            return True
        reason = "; ".join(broken)
        if state.get("reason") != reason:  # once per reason, not on every poll
            state["reason"] = reason
            await ctx.events.emit("warning", f"weather not ok: {reason}")
        return False

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "weather" in env.roles:
            return []
        return [Issue(path, "no weather station in the profile", "add one or remove this")]
