"""Focus and filters: run an autofocus, move the focuser, switch the filter."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from processing.focus import FocusModel
from sequences.autofocus import AutofocusConfig
from sequences.base import DOCUMENT_CONFIG, Instruction, Step
from sequences.context import RunContext, ValidationEnv
from sequences.errors import InstructionError
from sequences.facts import AutofocusFact
from sequences.model import Issue


class AutofocusSettings(BaseModel):
    """How an autofocus samples and fits (see `sequences.autofocus`)."""

    model_config = DOCUMENT_CONFIG

    step_size: int = Field(default=100, ge=1, le=100_000)
    steps_out: int = Field(default=4, ge=2, le=10)
    exposure_s: float = Field(default=2.0, gt=0, le=600)
    backlash_overshoot_steps: int = Field(default=0, ge=0)
    model: FocusModel = FocusModel.HYPERBOLA

    def config(self) -> AutofocusConfig:
        return AutofocusConfig(
            step_size=self.step_size,
            steps_out=self.steps_out,
            exposure_s=self.exposure_s,
            backlash_overshoot_steps=self.backlash_overshoot_steps,
            model=self.model,
        )


def need_autofocus_devices(env: ValidationEnv, path: str) -> list[Issue]:
    return [
        Issue(path, f"autofocus needs a {role}", f"add a {role} to the profile")
        for role in ("camera", "focuser")
        if role not in env.roles
    ]


class RunAutofocus(Instruction):
    kind: Literal["autofocus"] = "autofocus"
    settings: AutofocusSettings = Field(default_factory=AutofocusSettings)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await run_autofocus_recorded(ctx, step.path, self.settings.config(), reason="instruction")

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_autofocus_devices(env, path)

    def estimate_s(self, env: ValidationEnv) -> float:
        s = self.settings
        return (2 * s.steps_out + 2) * (s.exposure_s + 3.0)


async def run_autofocus_recorded(
    ctx: RunContext, path: str, config: AutofocusConfig, *, reason: str
) -> None:
    """Autofocus and note the result in the run's facts (time, temperature, filter,
    position, HFR) for the autofocus triggers."""
    report = await ctx.run_autofocus(config)
    await ctx.events.emit(
        "info" if report.success else "error",
        f"autofocus ({reason}): "
        + (
            f"{report.start_position} -> {report.final_position}, HFR "
            f"{report.confirmation_hfr_px:.2f} px"
            + (
                f" (the sample at {report.left_out_position} left out, far off the curve)"
                if report.left_out_position is not None
                else ""
            )
            if report.success and report.confirmation_hfr_px is not None
            else f"failed: {report.reason}"
        ),
        path=path,
        data={"exposures": report.exposures, "final_position": report.final_position},
    )
    if not report.success:
        raise InstructionError(f"autofocus failed: {report.reason}")
    focuser_status = await ctx.focuser().status()
    wheel = ctx.equipment.filter_wheel
    filter_name = (
        (await wheel.status()).filter_name if wheel is not None and wheel.connected else None
    )
    ctx.facts.last_autofocus = AutofocusFact(
        time=ctx.clock.now(),
        temperature_c=focuser_status.temperature_c,
        filter_name=filter_name,
        position=report.final_position,
        hfr_px=report.confirmation_hfr_px,
    )


class MoveFocuser(Instruction):
    kind: Literal["move_focuser"] = "move_focuser"
    position: int = Field(ge=0)
    relative: bool = False

    async def execute(self, ctx: RunContext, step: Step) -> None:
        focuser = ctx.focuser()
        target = self.position
        if self.relative:
            target += (await focuser.status()).position
        if not 0 <= target <= focuser.info.max_step:
            raise InstructionError(f"position {target} is outside 0..{focuser.info.max_step}")
        await focuser.move_to(target)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if "focuser" in env.roles:
            return []
        return [Issue(path, "no focuser in the equipment profile", "add a focuser")]


class SwitchFilter(Instruction):
    kind: Literal["switch_filter"] = "switch_filter"
    filter_name: str = Field(min_length=1, max_length=50)

    async def execute(self, ctx: RunContext, step: Step) -> None:
        await ctx.filter_wheel().select(self.filter_name)

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        if env.filter_names is None:
            return [Issue(path, "no filter wheel in the profile", "add one or remove this")]
        if self.filter_name not in env.filter_names:
            return [
                Issue(
                    f"{path}.filter_name",
                    f"filter {self.filter_name!r} is not in the wheel",
                    f"use one of {', '.join(env.filter_names)}",
                )
            ]
        return []
