"""The observatory around the telescope: roof or dome, dust cover and flat panel, switches.

The roof opens and closes through `drivers.observatory`, which refuses to move a roll-off roof
over a mount that does not report parked: put a `park` before `open_roof` and `close_roof`.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from drivers.base import CoverState, SwitchChannel
from drivers.observatory import close_roof, is_roll_off_roof, open_roof
from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.dome.geometry import GeometryError
from sequences.dome.slaving import DomeSlaving
from sequences.errors import InstructionError
from sequences.model import Issue


class OpenRoof(Instruction):
    """Open the shutter or roll-off roof; returns once it reports open."""

    kind: Literal["open_roof"] = "open_roof"
    redo_on_resume: ClassVar[bool] = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await open_roof(ctx.dome(), ctx.equipment.mount)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "dome", "a dome or roll-off roof")

    def estimate_s(self, env: ValidationEnv) -> float:
        return 60.0


class CloseRoof(Instruction):
    """Close the shutter or roll-off roof; returns once it reports closed."""

    kind: Literal["close_roof"] = "close_roof"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await close_roof(ctx.dome(), ctx.equipment.mount)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "dome", "a dome or roll-off roof")

    def estimate_s(self, env: ValidationEnv) -> float:
        return 60.0


class ParkDome(Instruction):
    """Stop slaving and park the dome."""

    kind: Literal["park_dome"] = "park_dome"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        dome = ctx.dome()
        if not dome.info.can_park:
            raise InstructionError(f"the dome {dome.info.name!r} cannot park")
        await stop_slaving(ctx)
        await dome.park()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "dome", "a dome")


class SlaveDome(Instruction):
    """Turn dome slaving on (the dome follows the mount, see `sequences.dome.slaving`) or off.
    On returns once the dome is aimed; slaving stops at `slave_dome` off, `park_dome` or the
    end of the run."""

    kind: Literal["slave_dome"] = "slave_dome"
    redo_on_resume: ClassVar[bool] = True
    on: bool = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        dome = ctx.dome()
        if not self.on:
            await stop_slaving(ctx)
            return
        if is_roll_off_roof(dome):
            raise InstructionError(
                f"{dome.info.name!r} is a roll-off roof: it has no azimuth to follow the mount"
            )
        if ctx.dome_slaving is None:
            ctx.dome_slaving = DomeSlaving(
                dome, ctx.mount(), ctx.need_site(), ctx.clock, ctx.events
            )
        try:
            aligned = await ctx.dome_slaving.align()
        except GeometryError as e:
            raise InstructionError(str(e)) from e
        ctx.dome_slaving.start()
        await ctx.events.emit(
            "info", f"dome slaving on (dome at {aligned.dome_azimuth_deg:.1f} deg)", path=step.path
        )

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "dome", "a dome") + need_role(env, path, "mount", "a mount")


async def stop_slaving(ctx: RunContext) -> None:
    if ctx.dome_slaving is not None:
        await ctx.dome_slaving.stop()
        ctx.dome_slaving = None
        await ctx.events.emit("info", "dome slaving off")


class OpenCover(Instruction):
    """Open the dust cover (nothing to do for a flat panel without one)."""

    kind: Literal["open_cover"] = "open_cover"
    redo_on_resume: ClassVar[bool] = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        device = ctx.cover_calibrator()
        if (await device.status()).cover is CoverState.NOT_PRESENT:
            await ctx.events.emit("info", "no dust cover to open", path=step.path)
            return
        await device.open_cover()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "cover_calibrator", "a dust cover")


class CloseCover(Instruction):
    """Close the dust cover (nothing to do for a flat panel without one)."""

    kind: Literal["close_cover"] = "close_cover"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        device = ctx.cover_calibrator()
        if (await device.status()).cover is CoverState.NOT_PRESENT:
            await ctx.events.emit("info", "no dust cover to close", path=step.path)
            return
        await device.close_cover()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "cover_calibrator", "a dust cover")


class CalibratorOn(Instruction):
    """Light the flat panel at `brightness` (None: its maximum)."""

    kind: Literal["calibrator_on"] = "calibrator_on"
    brightness: int | None = Field(default=None, ge=1, description="None: the panel's maximum")

    async def execute(self, ctx: RunContext, step: Step) -> None:
        device = ctx.cover_calibrator()
        maximum = device.info.max_brightness
        if maximum <= 0:
            raise InstructionError(f"{device.info.name!r} has no flat panel")
        if self.brightness is not None and self.brightness > maximum:
            raise InstructionError(
                f"brightness {self.brightness} is above the panel's maximum {maximum}: "
                f"use 1..{maximum}"
            )
        await device.calibrator_on(self.brightness if self.brightness is not None else maximum)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "cover_calibrator", "a flat panel")


class CalibratorOff(Instruction):
    kind: Literal["calibrator_off"] = "calibrator_off"

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await ctx.cover_calibrator().calibrator_off()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "cover_calibrator", "a flat panel")


class SetSwitch(Instruction):
    """Set one channel of the switch (a power outlet, a dew heater): by its number or its name
    (case does not matter); a boolean channel takes true/false or 1/0. The channel and the
    value are checked against the device when the instruction runs."""

    kind: Literal["set_switch"] = "set_switch"
    channel: int | str = Field(description="the channel's number (from 0) or its name")
    value: float = Field(description="true/false (1/0) for a boolean channel")

    @field_validator("channel", mode="before")
    @classmethod
    def _channel(cls, value: object) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000:
            return value
        if isinstance(value, str) and 0 < len(value.strip()) <= 100:
            return value
        raise ValueError("must be a channel number (0 or more) or a channel name")

    async def execute(self, ctx: RunContext, step: Step) -> None:
        switch = ctx.switch()
        channel = find_channel(switch.info.channels, self.channel)
        value = self.value
        check_value(channel, value)
        await switch.set_switch(channel.id, value)
        await ctx.events.emit("info", f"switch {channel.name!r} set to {value:g}", path=step.path)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_role(env, path, "switch", "a switch")


def find_channel(channels: tuple[SwitchChannel, ...], ref: int | str) -> SwitchChannel:
    """The channel `ref` names (its number, or its name in any case); `InstructionError` naming
    the channels there are."""
    for channel in channels:
        if (isinstance(ref, int) and channel.id == ref) or (
            isinstance(ref, str) and channel.name.casefold() == ref.strip().casefold()
        ):
            return channel
    known = ", ".join(f"{c.id} {c.name!r}" for c in channels)
    raise InstructionError(f"the switch has no channel {ref!r}: use one of {known}")


def check_value(channel: SwitchChannel, value: float) -> None:
    """`InstructionError` when `channel` cannot take `value` (read-only, out of range, off its
    steps)."""
    if not channel.can_write:
        raise InstructionError(f"switch channel {channel.name!r} is read-only")
    if not channel.minimum <= value <= channel.maximum:
        raise InstructionError(
            f"value {value:g} is outside switch channel {channel.name!r}'s range "
            f"{channel.minimum:g}..{channel.maximum:g}"
        )
    if channel.step > 0:
        steps = (value - channel.minimum) / channel.step
        if not math.isclose(steps, round(steps), abs_tol=1e-6):
            raise InstructionError(
                f"value {value:g} is not a step of switch channel {channel.name!r} "
                f"({channel.minimum:g} + n x {channel.step:g})"
            )


def need_role(env: ValidationEnv, path: str, role: str, what: str) -> list[Issue]:
    if role in env.roles:
        return []
    return [Issue(path, f"the equipment profile has no {what}", f"add a {role} or remove this")]
