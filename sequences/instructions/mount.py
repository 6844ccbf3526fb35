"""Mount instructions: unpark, park, tracking, slew and center on the current target."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from drivers.base import RaDec
from sequences.base import DOCUMENT_CONFIG, Instruction, Step
from sequences.centering import CenteringConfig, center_target
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.coordinates import DecDeg, RaHours
from sequences.errors import InstructionError
from sequences.model import Issue
from sequences.rotation import rotate_for_target


class Coordinates(BaseModel):
    model_config = DOCUMENT_CONFIG

    # Documents may give either as text (sexagesimal); the schema says so, for forms and clients.
    ra_hours: RaHours
    dec_deg: DecDeg

    def radec(self) -> RaDec:
        return RaDec(self.ra_hours, self.dec_deg)


def target_position(explicit: Coordinates | None, scope: Scope) -> RaDec:
    """Explicit coordinates, else the enclosing target container's."""
    if explicit is not None:
        return explicit.radec()
    if scope.target is None or scope.target.position is None:
        raise InstructionError("no coordinates: give them or put this inside a target container")
    return scope.target.position


class Unpark(Instruction):
    """Unpark, never while the safety monitor (when there is one) reports unsafe."""

    kind: Literal["unpark"] = "unpark"
    redo_on_resume: ClassVar[bool] = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        mount = ctx.mount()
        monitor = ctx.equipment.safety_monitor
        if monitor is not None and monitor.connected and not (await monitor.status()).is_safe:
            raise InstructionError("not unparking: the safety monitor reports unsafe")
        await mount.unpark()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_mount(env, path)


class Park(Instruction):
    kind: Literal["park"] = "park"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await ctx.mount().park()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_mount(env, path)


class SetTracking(Instruction):
    kind: Literal["set_tracking"] = "set_tracking"
    redo_on_resume: ClassVar[bool] = True
    on: bool = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await ctx.mount().set_tracking(self.on)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_mount(env, path)


class SlewToTarget(Instruction):
    kind: Literal["slew"] = "slew"
    redo_on_resume: ClassVar[bool] = True
    coordinates: Coordinates | None = None

    async def execute(self, ctx: RunContext, step: Step) -> None:
        mount = ctx.mount()
        await mount.set_tracking(True)
        await mount.slew(target_position(self.coordinates, step.scope))
        if ctx.dome_slaving is not None:
            await ctx.dome_slaving.align()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return _need_mount(env, path)

    def estimate_s(self, env: ValidationEnv) -> float:
        return 30.0


class CenterTarget(Instruction):
    """Slew, solve and correct until within `tolerance_arcmin` (see `sequences.centering`);
    then turn the camera to the target's `rotation_deg`, if it has one (`sequences.rotation`).
    With dome slaving on, the dome reaches the target before the first frame."""

    kind: Literal["center"] = "center"
    redo_on_resume: ClassVar[bool] = True
    coordinates: Coordinates | None = None
    tolerance_arcmin: float = Field(default=1.0, gt=0, le=60)
    max_attempts: int = Field(default=5, ge=1, le=20)
    exposure_s: float = Field(default=2.0, gt=0, le=120)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        if ctx.solve is None:
            raise InstructionError("no plate solver is configured")
        mount, camera = ctx.mount(), ctx.camera()
        await mount.set_tracking(True)
        target = target_position(self.coordinates, step.scope)
        if ctx.dome_slaving is not None:
            await mount.slew(target)
            await ctx.dome_slaving.align()
        report = await center_target(
            mount,
            camera,
            target,
            ctx.solve,
            CenteringConfig(
                tolerance_arcmin=self.tolerance_arcmin,
                max_attempts=self.max_attempts,
                exposure_s=self.exposure_s,
            ),
        )
        for attempt in report.attempts:
            await ctx.events.emit(
                "info",
                attempt.describe(report.tolerance_arcsec),
                path=step.path,
                data={"attempt": attempt.attempt, "error_arcsec": attempt.error_arcsec},
            )
        if not report.success:
            raise InstructionError(f"centering failed: {report.reason}")
        ctx.facts.centered_error_arcsec = report.final_error_arcsec
        await rotate_for_target(ctx, step.scope.target, step.path)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        issues = _need_mount(env, path)
        if "camera" not in env.roles:
            issues.append(Issue(path, "centering needs a camera", "add a camera"))
        return issues

    def estimate_s(self, env: ValidationEnv) -> float:
        return 30.0 + 3 * (self.exposure_s + 5.0)


def _need_mount(env: ValidationEnv, path: str) -> list[Issue]:
    if "mount" in env.roles:
        return []
    return [Issue(path, "no mount in the equipment profile", "add a mount or remove this")]
