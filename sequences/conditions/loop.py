"""Loop conditions: a number of passes, or until a time."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Literal

from pydantic import Field

from sequences.astro import NAUTICAL_TWILIGHT_DEG, next_dawn, next_dusk
from sequences.base import Condition
from sequences.context import RunContext, Scope
from sequences.errors import InstructionError
from sequences.instructions.utility import WaitForTime


class LoopCount(Condition):
    """Run the container's items `count` times."""

    kind: Literal["loop_count"] = "loop_count"
    count: int = Field(ge=1, le=100_000)

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        return int(state.get("passes", 0)) < self.count

    def iteration_done(self, state: dict[str, Any]) -> None:
        state["passes"] = int(state.get("passes", 0)) + 1


class LoopUntilTime(Condition):
    """Go on until a UTC time (the next occurrence of a time of day, or an instant), or until
    dusk or dawn (sun at `twilight_deg`) plus `offset_min`. The deadline is fixed when the
    loop starts, so it does not roll over to the next day."""

    kind: Literal["loop_until_time"] = "loop_until_time"
    until: datetime | time | Literal["dusk", "dawn"] = Field(
        description="UTC instant, HH:MM[:SS] (next occurrence), or dusk / dawn"
    )
    twilight_deg: float = Field(default=NAUTICAL_TWILIGHT_DEG, ge=-18, le=0)
    offset_min: float = Field(default=0.0, ge=-600, le=600, description="minutes added")

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        now = ctx.clock.now()
        if "deadline" not in state:
            state["deadline"] = self.deadline(ctx, now).isoformat()
        return now < datetime.fromisoformat(state["deadline"])

    def deadline(self, ctx: RunContext, now: datetime) -> datetime:
        if self.until == "dusk" or self.until == "dawn":
            find = next_dusk if self.until == "dusk" else next_dawn
            when = find(ctx.need_site(), now, self.twilight_deg)
            if when is None:
                raise InstructionError(f"no {self.until} at this site in the next 36 h")
        else:
            when = WaitForTime(at=self.until).deadline(now)
        return when + timedelta(minutes=self.offset_min)
