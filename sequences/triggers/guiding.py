"""Restart guiding when the guider lost its star (clouds, a bump)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from drivers.base import GuiderState
from sequences.base import Trigger
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.model import Issue


class RestartGuidingWhenLost(Trigger):
    kind: Literal["restart_guiding_when_lost"] = "restart_guiding_when_lost"
    settle_px: float = Field(default=1.5, gt=0, le=20)
    settle_time_s: float = Field(default=10.0, ge=0, le=600)
    settle_timeout_s: float = Field(default=60.0, gt=0, le=1800)

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        guider = ctx.guider
        if guider is None or not ctx.facts.guiding:
            return False
        return guider.state in (GuiderState.LOST, GuiderState.STOPPED)

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        guider = ctx.need_guider()
        await guider.stop()
        await guider.start()
        await guider.settle(self.settle_px, self.settle_time_s, self.settle_timeout_s)
        state["restarts"] = int(state.get("restarts", 0)) + 1

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "guide_camera" in env.roles:
            return []
        return [Issue(path, "needs a guider (a guide camera)", "add a guide_camera")]
