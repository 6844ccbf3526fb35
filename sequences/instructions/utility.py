"""Utility instructions: annotations, waiting for a time, running a program of the scripts
folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import ClassVar, Literal

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
    pausable: ClassVar[bool] = True
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
        # Kept: after a pause the wait goes on to the same instant, not to the next day's.
        if "until" not in step.counters:
            step.counters["until"] = self.deadline(ctx.clock.now()).isoformat()
        deadline = datetime.fromisoformat(str(step.counters["until"]))
        if deadline > ctx.clock.now():
            await ctx.events.emit(
                "info", f"waiting until {deadline:%Y-%m-%d %H:%M:%S} UTC", path=step.path
            )
            await ctx.clock.sleep_until(deadline)


class ProgramRefused(InstructionError):
    """run_command may not start this program; `fix` says what the operator can change."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}: {fix}")
        self.message = message
        self.fix = fix


def allowed_program(argv0: str, scripts_dir: Path | None) -> Path:
    """The program run_command starts for `argv0`: a name (or relative path) is looked up in
    `scripts_dir`, an absolute path must lie in it. Symlinks are followed first, so a link
    leading out of the folder is refused. Raises `ProgramRefused` (one message whether the
    program is absent, outside the folder or not executable)."""
    if scripts_dir is None:
        raise ProgramRefused(
            "run_command is off", "set NIGHTOWL_SCRIPTS_DIR to a folder of allowed scripts"
        )
    try:
        folder = scripts_dir.resolve(strict=True)
        program = (folder / argv0).resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        program = None
    if (
        program is None
        or not program.is_relative_to(folder)
        or not program.is_file()
        or not os.access(program, os.X_OK)
    ):
        raise ProgramRefused(
            f"{argv0!r} is not an executable file in the scripts folder {scripts_dir}",
            "put the program, or a script that starts it, in NIGHTOWL_SCRIPTS_DIR",
        )
    return program


def script_environment() -> dict[str, str]:
    """The daemon's environment without its secrets: a script needs no API token, and one
    that logs its environment must not leak it."""
    return {k: v for k, v in os.environ.items() if not (k.endswith("TOKEN") and "NIGHTOWL" in k)}


class RunCommand(Instruction):
    """Run a program of the scripts folder (NIGHTOWL_SCRIPTS_DIR) with arguments, no shell;
    fail on a non-zero exit or the timeout. Its start and exit status are run events."""

    kind: Literal["run_command"] = "run_command"
    argv: list[str] = Field(min_length=1, max_length=100)
    timeout_s: float = Field(default=300.0, gt=0, le=86_400)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        # Checked again here: validation may have been skipped, or the setting changed
        # before a journaled run resumed.
        argv = [str(allowed_program(self.argv[0], ctx.scripts_dir)), *self.argv[1:]]
        name = self.argv[0]
        await ctx.events.emit(
            "info", f"starting {shlex.join(argv)}", path=step.path, data={"argv": argv}
        )
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            env=script_environment(),
        )
        try:
            async with asyncio.timeout(self.timeout_s):
                output, _ = await process.communicate()
        except BaseException as e:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            if not isinstance(e, TimeoutError):
                raise
            await ctx.events.emit(
                "error",
                f"{name} still running after {self.timeout_s:g} s: killed",
                path=step.path,
                data={"argv": argv, "timeout_s": self.timeout_s},
            )
            raise InstructionError(f"{name} did not finish within {self.timeout_s:g} s") from e
        text = output.decode(errors="replace").strip()
        if text:
            await ctx.events.emit("info", f"{name}: {text[-2000:]}", path=step.path)
        status = process.returncode
        await ctx.events.emit(
            "info" if status == 0 else "warning",
            f"{name} exited with {status}",
            path=step.path,
            data={"argv": argv, "exit_status": status},
        )
        if status != 0:
            raise InstructionError(f"{name} exited with {status}")

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        try:
            allowed_program(self.argv[0], env.scripts_dir)
        except ProgramRefused as e:
            return [Issue(f"{path}.argv", e.message, e.fix, forbidden=True)]
        return []
