"""Rotate the camera to a sky position angle, verified by plate solves (`sequences.rotation`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.model import Issue
from sequences.rotation import RotationConfig, rotate_to_angle


class RotateTo(Instruction):
    """Rotate until a plate solve puts the frame's +y axis at `position_angle_deg` east of north
    (within `tolerance_deg`); without an angle, the target's `rotation_deg`."""

    kind: Literal["rotate_to"] = "rotate_to"
    redo_on_resume: ClassVar[bool] = True
    position_angle_deg: float | None = Field(
        default=None, ge=0, lt=360, description="sky angle; None: the target's rotation_deg"
    )
    tolerance_deg: float = Field(default=1.0, gt=0, le=30)
    max_attempts: int = Field(default=3, ge=1, le=10)
    exposure_s: float = Field(default=2.0, gt=0, le=120)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        angle = self.position_angle_deg
        if angle is None:
            target = step.scope.target
            angle = target.rotation_deg if target is not None else None
        if angle is None:
            raise InstructionError(
                "no position angle: give position_angle_deg or set the target's rotation_deg"
            )
        config = RotationConfig(self.tolerance_deg, self.max_attempts, self.exposure_s)
        await rotate_to_angle(ctx, angle, config, step.path)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "rotator" in env.roles:
            return []
        return [Issue(path, "no rotator in the equipment profile", "add one or remove this")]

    def estimate_s(self, env: ValidationEnv) -> float:
        return 2 * (self.exposure_s + 5.0)
