"""Connect the equipment at the start of a night, disconnect it at its end."""

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


class DisconnectEquipment(Instruction):
    """Disconnect the devices at the end of a night (NINA's "disconnect all"). The safety
    monitor stays connected unless `include_safety_monitor`, so the daemon's safety supervisor
    goes on watching the weather over the parked observatory."""

    kind: Literal["disconnect_equipment"] = "disconnect_equipment"
    include_safety_monitor: bool = False

    async def execute(self, ctx: RunContext, step: Step) -> None:
        keep = set() if self.include_safety_monitor else {"safety_monitor"}
        failures = {
            role: error
            for role, error in (await ctx.equipment.disconnect_all(keep=keep)).items()
            if error is not None
        }
        if failures:
            raise InstructionError(
                "not disconnected: " + "; ".join(f"{role}: {e}" for role, e in failures.items())
            )
