"""Center after drift: every N lights, a short solve; recenter when off by more than a bound.

A dedicated short exposure is solved rather than the last light, so the check costs the same
few seconds whatever the light's length and needs no file read back from storage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from sequences.base import Trigger
from sequences.centering import CenteringConfig, center_target
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.errors import InstructionError
from sequences.frames import FrameType
from sequences.model import Issue


class CenterAfterDrift(Trigger):
    kind: Literal["center_after_drift"] = "center_after_drift"
    after_exposures: int = Field(default=5, ge=1, le=1000)
    threshold_arcmin: float = Field(default=1.0, gt=0, le=60)
    exposure_s: float = Field(default=2.0, gt=0, le=120)

    def exposure_done(self, state: dict[str, Any], frame_type: FrameType) -> None:
        if frame_type is FrameType.LIGHT:
            state["since"] = int(state.get("since", 0)) + 1

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        if int(state.get("since", 0)) < self.after_exposures:
            return False
        state["since"] = 0
        if ctx.solve is None or scope.target is None or scope.target.position is None:
            return False
        mount = ctx.mount()
        frame = await ctx.camera().expose(self.exposure_s, light=True)
        solved = (await ctx.solve(frame, (await mount.status()).position)).center
        drift = solved.separation_deg(scope.target.position) * 60.0
        state["last_drift_arcmin"] = drift
        return drift > self.threshold_arcmin

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        if ctx.solve is None or scope.target is None or scope.target.position is None:
            return
        guiding = ctx.guider is not None and ctx.facts.guiding
        if guiding:
            await ctx.need_guider().stop()
        report = await center_target(
            ctx.mount(),
            ctx.camera(),
            scope.target.position,
            ctx.solve,
            CenteringConfig(tolerance_arcmin=self.threshold_arcmin, exposure_s=self.exposure_s),
        )
        if guiding:
            guider = ctx.need_guider()
            await guider.start()
            await guider.settle(1.5, 10.0, 60.0)
        if not report.success:
            raise InstructionError(f"recentering failed: {report.reason}")

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return [
            Issue(path, f"center after drift needs a {role}", f"add a {role}")
            for role in ("camera", "mount")
            if role not in env.roles
        ]
