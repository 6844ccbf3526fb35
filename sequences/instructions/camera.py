"""Camera temperature: cool to a set point (ramped), warm gradually before switching off.

Device waits run on wall time (the sensor cools at its own pace, whatever the run's clock).
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, Literal

from pydantic import Field

from drivers.base import Camera
from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.model import Issue

log = logging.getLogger(__name__)

POLL_S = 1.0


class CoolCamera(Instruction):
    """Ramp the set point over `duration_s`, then wait until the sensor is within tolerance
    of it, from above or below (a sensor colder than asked is not "done" either)."""

    kind: Literal["cool_camera"] = "cool_camera"
    redo_on_resume: ClassVar[bool] = True
    set_point_c: float = Field(ge=-60, le=30)
    duration_s: float = Field(default=0.0, ge=0, le=3600, description="ramp time")
    tolerance_c: float = Field(default=1.0, gt=0, le=10)
    timeout_s: float = Field(default=1200.0, gt=0, le=7200)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        camera = ctx.camera()
        start = (await camera.status()).sensor_temperature_c
        await _ramp(camera, start, self.set_point_c, self.duration_s, cooler_on=True)
        await _wait_within(camera, self.set_point_c, self.tolerance_c, self.timeout_s)
        await ctx.events.emit("info", f"camera at {self.set_point_c:+.1f} C", path=step.path)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "camera" in env.roles:
            return []
        return [Issue(path, "no camera in the equipment profile", "add a camera")]

    def estimate_s(self, env: ValidationEnv) -> float:
        return self.duration_s + 60.0


class WarmCamera(Instruction):
    """Raise the set point to `target_c` over `duration_s` (no thermal shock), then cooler off."""

    kind: Literal["warm_camera"] = "warm_camera"
    target_c: float = Field(default=10.0, ge=-20, le=40)
    duration_s: float = Field(default=300.0, ge=0, le=3600)
    switch_off: bool = True

    async def execute(self, ctx: RunContext, step: Step) -> None:
        camera = ctx.camera()
        status = await camera.status()
        if status.cooler_on is False:
            return
        start = (
            status.set_point_c if status.set_point_c is not None else status.sensor_temperature_c
        )
        await _ramp(camera, start, self.target_c, self.duration_s, cooler_on=True)
        if self.switch_off:
            await camera.set_cooler(False)

    def estimate_s(self, env: ValidationEnv) -> float:
        return self.duration_s


async def _ramp(
    camera: Camera, start_c: float | None, end_c: float, duration_s: float, *, cooler_on: bool
) -> None:
    """Step the set point linearly from `start_c` to `end_c` (1 C or 10 s steps)."""
    if start_c is None or duration_s <= 0 or abs(end_c - start_c) < 1.0:
        await camera.set_cooler(cooler_on, end_c)
        return
    steps = max(1, min(int(abs(end_c - start_c)), int(duration_s / 10.0) or 1))
    for k in range(1, steps + 1):
        await camera.set_cooler(cooler_on, start_c + (end_c - start_c) * k / steps)
        if k < steps:
            await asyncio.sleep(duration_s / steps)


async def _wait_within(
    camera: Camera, set_point_c: float, tolerance_c: float, timeout_s: float
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        temperature = (await camera.status()).sensor_temperature_c
        if temperature is None:
            raise InstructionError("the camera does not report its sensor temperature")
        if abs(temperature - set_point_c) <= tolerance_c:
            return
        if loop.time() > deadline:
            raise InstructionError(
                f"sensor at {temperature:+.1f} C, not within {tolerance_c} C of "
                f"{set_point_c:+.1f} C after {timeout_s:.0f} s"
            )
        await asyncio.sleep(POLL_S)
