"""Connect the equipment at the start of a night."""

from __future__ import annotations

from typing import ClassVar, Literal

from sequences.base import Instruction, Step
from sequences.context import RunContext
from sequences.errors import InstructionError


class ConnectEquipment(Instruction):
    """Connect every device of the profile; fails naming the devices that did not connect."""

    kind: Literal["connect_equipment"] = "connect_equipment"
    redo_on_resume: ClassVar[bool] = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        failures = {
            role: error
            for role, error in (await ctx.equipment.connect_all()).items()
            if error is not None
        }
        if failures:
            raise InstructionError(
                "not connected: " + "; ".join(f"{role}: {e}" for role, e in failures.items())
            )
