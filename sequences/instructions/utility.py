"""Utility instructions: annotations, waiting for a time, running an external command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from pydantic import Field, field_validator

from sequences.base import Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.model import Issue


class Annotation(Instruction):
    """A note in the run's event log (e.g. "flats start here")."""

    kind: Literal["annotation"] = "annotation"
    text: str = Field(min_length=1, max_length=2000)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await ctx.events.emit("info", self.text, path=step.path)


class WaitForTime(Instruction):
    """Wait until a UTC time of day (the next occurrence) or an absolute UTC instant."""

    kind: Literal["wait_for_time"] = "wait_for_time"
    at: datetime | time = Field(description="UTC: an ISO instant, or HH:MM[:SS] for the next one")

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime | time) -> datetime | time:
        if isinstance(value, datetime) and value.tzinfo is None:
            raise ValueError("give a timezone (e.g. 2026-11-22T22:00:00Z)")
        return value

    def deadline(self, now: datetime) -> datetime:
        if isinstance(self.at, datetime):
            return self.at.astimezone(UTC)
        today = datetime.combine(now.date(), self.at.replace(tzinfo=None), tzinfo=UTC)
        return today if today > now else today + timedelta(days=1)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        deadline = self.deadline(ctx.clock.now())
        if deadline > ctx.clock.now():
            await ctx.events.emit("info", f"waiting until {deadline:%Y-%m-%d %H:%M:%S} UTC")
            await ctx.clock.sleep_until(deadline)


class RunCommand(Instruction):
    """Run a program with arguments (no shell); fail on a non-zero exit or the timeout."""

    kind: Literal["run_command"] = "run_command"
    argv: list[str] = Field(min_length=1, max_length=100)
    timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                output, _ = await process.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
        text = output.decode(errors="replace").strip()
        if text:
            await ctx.events.emit("info", f"{self.argv[0]}: {text[-2000:]}", path=step.path)
        if process.returncode != 0:
            raise InstructionError(f"{self.argv[0]} exited with {process.returncode}")

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if shutil.which(self.argv[0]) is None:
            return [
                Issue(
                    f"{path}.argv",
                    f"{self.argv[0]!r} is not an executable on this machine",
                    "give the full path of an installed program",
                )
            ]
        return []
