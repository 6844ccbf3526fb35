"""Rotate the camera to a sky position angle, verified by plate solves.

The position angle is the plate solution's rotation: the angle of the frame's +y axis from
north through east. Sky angle = mechanical angle + offset; the offset is measured by a solve,
remembered in the run's facts (`RotatorOffset`) with the pier side it belongs to, and the
rotator is synced to the solved angle. Moves are mechanical, aimed with the remembered offset,
because a rotator may ignore its own sync offset on moves (the simulator's does). The first
rotation of a run starts from the rotator's own offset (position - mechanical position), then
solves, corrects and solves again until within tolerance; later ones go straight to their
angle and only confirm it. After a meridian flip the sky turns by 180 deg on the sensor
(`flipped`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from drivers.base import PierSide
from processing.solve import SolveError
from sequences.context import RunContext
from sequences.errors import InstructionError
from sequences.facts import RotatorOffset
from sequences.frames import TargetRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationConfig:
    tolerance_deg: float = 1.0
    max_attempts: int = 3
    exposure_s: float = 2.0


def angle_difference_deg(a_deg: float, b_deg: float) -> float:
    """a - b wrapped to [-180, 180)."""
    return (a_deg - b_deg + 180.0) % 360.0 - 180.0


def offset_on(fact: RotatorOffset, pier_side: PierSide) -> float:
    """The remembered offset as it is on `pier_side`: 180 deg more on the other side."""
    sides = {fact.pier_side, pier_side.name}
    if len(sides) == 2 and PierSide.UNKNOWN.name not in sides:
        return (fact.offset_deg + 180.0) % 360.0
    return fact.offset_deg


def flipped(fact: RotatorOffset, before: PierSide, after: PierSide) -> RotatorOffset:
    """The offset after a meridian flip from `before` to `after`. Known pier sides carry the
    180 deg themselves (`offset_on`); when the mount cannot tell, the flip adds it here."""
    if PierSide.UNKNOWN in (before, after):
        return RotatorOffset((fact.offset_deg + 180.0) % 360.0, fact.pier_side)
    return fact


async def rotate_to_angle(
    ctx: RunContext, position_angle_deg: float, config: RotationConfig, path: str | None = None
) -> float | None:
    """Rotate to `position_angle_deg` (sky); return the solved error (deg), or None when no
    plate solver is configured (the move is then not verified, and an event says so).

    Raises `InstructionError` when the angle is not reached within `config.max_attempts`.
    """
    rotator = ctx.rotator()
    pier = await _pier_side(ctx)
    if ctx.facts.rotator_offset is not None:
        offset = offset_on(ctx.facts.rotator_offset, pier)
    else:
        status = await rotator.status()
        offset = status.position_deg - status.mechanical_position_deg
    if ctx.solve is None:
        mechanical = (position_angle_deg - offset) % 360.0
        await rotator.move_mechanical(mechanical)
        await ctx.events.emit(
            "warning",
            f"rotated to mechanical {mechanical:.1f} deg for position angle "
            f"{position_angle_deg:.1f} deg; not verified (no plate solver)",
            path=path,
        )
        return None
    previous: tuple[float, float] | None = None  # (mechanical, solved) of the last attempt
    error: float | None = None
    for attempt in range(1, config.max_attempts + 1):
        await rotator.move_mechanical((position_angle_deg - offset) % 360.0)
        mechanical = (await rotator.status()).mechanical_position_deg
        try:
            solved = await measure_angle(ctx, config.exposure_s)
        except SolveError as e:
            await ctx.events.emit("warning", f"rotation attempt {attempt}: {e}", path=path)
            continue
        offset = (solved - mechanical) % 360.0
        ctx.facts.rotator_offset = RotatorOffset(offset, pier.name)
        await rotator.sync(solved)
        error = angle_difference_deg(solved, position_angle_deg)
        await ctx.events.emit(
            "info",
            f"rotation attempt {attempt}: position angle {solved:.2f} deg, {error:+.2f} deg off "
            f"(mechanical {mechanical:.2f} deg)",
            path=path,
            data={"attempt": attempt, "position_angle_deg": solved, "error_deg": error},
        )
        if abs(error) <= config.tolerance_deg:
            return error
        if previous is not None and _turns_backwards(previous, (mechanical, solved)):
            raise InstructionError(
                "the sky turns against the rotator's mechanical angle: set the rotator's "
                "Reverse so its angle grows from north through east"
            )
        previous = (mechanical, solved)
    raise InstructionError(
        f"position angle {position_angle_deg:.1f} deg not reached in {config.max_attempts} "
        + ("attempts (no solve succeeded)" if error is None else f"attempts ({error:+.1f} deg off)")
    )


async def measure_angle(ctx: RunContext, exposure_s: float) -> float:
    """The frame's position angle now, by a plate solve of a short exposure (hinted with the
    mount's position). Raises `SolveError` when the solve fails."""
    if ctx.solve is None:
        raise InstructionError("no plate solver is configured")
    hint = (await ctx.mount().status()).position
    frame = await ctx.camera().expose(exposure_s, light=True)
    return (await ctx.solve(frame, hint)).rotation_deg


async def remeasure_offset(ctx: RunContext, exposure_s: float) -> float:
    """Solve once where the rotator stands and remember the offset found; returns it."""
    rotator = ctx.rotator()
    pier = await _pier_side(ctx)
    solved = await measure_angle(ctx, exposure_s)
    mechanical = (await rotator.status()).mechanical_position_deg
    offset = (solved - mechanical) % 360.0
    ctx.facts.rotator_offset = RotatorOffset(offset, pier.name)
    await rotator.sync(solved)
    return offset


async def _pier_side(ctx: RunContext) -> PierSide:
    mount = ctx.equipment.mount
    if mount is None or not mount.connected:
        return PierSide.UNKNOWN
    return (await mount.status()).side_of_pier


def _turns_backwards(before: tuple[float, float], after: tuple[float, float]) -> bool:
    """Whether the solved angle moved opposite to a mechanical move of more than 5 deg."""
    turned = angle_difference_deg(after[0], before[0])
    seen = angle_difference_deg(after[1], before[1])
    return abs(turned) > 5.0 and turned * seen < 0


async def rotate_for_target(ctx: RunContext, target: TargetRef | None, path: str) -> None:
    """Reach the target's `rotation_deg` (after centering) when the profile has a rotator;
    a warning event when it has none."""
    if target is None or target.rotation_deg is None:
        return
    if ctx.equipment.rotator is None:
        await ctx.events.emit(
            "warning",
            f"{target.name}: no rotator to turn the camera to {target.rotation_deg:g} deg",
            path=path,
        )
        return
    await rotate_to_angle(ctx, target.rotation_deg, RotationConfig(), path)
