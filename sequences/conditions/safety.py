"""While safe: watched continuously; unsafe interrupts the container (the exposure is aborted)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from sequences.base import Condition
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.model import Issue


class WhileSafe(Condition):
    kind: Literal["while_safe"] = "while_safe"
    watched: ClassVar[bool] = True

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        return (await ctx.safety_monitor().status()).is_safe

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "safety_monitor" in env.roles:
            return []
        return [Issue(path, "no safety monitor in the profile", "add one or remove this")]
