"""Autofocus triggers, as NINA has them: after an HFR increase, a temperature change, some time,
some exposures, a filter change. Each compares against the last autofocus of the run (or, before
the first one, against what it saw first). That autofocus is one of the run's journaled facts,
so a resumed run still compares against the one before the interruption."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from sequences.base import Trigger
from sequences.context import RunContext, Scope, ValidationEnv
from sequences.frames import FrameType, SavedFrame
from sequences.instructions.focuser import (
    AutofocusSettings,
    need_autofocus_devices,
    run_autofocus_recorded,
)
from sequences.model import Issue


class _AutofocusTrigger(Trigger):
    settings: AutofocusSettings = Field(default_factory=AutofocusSettings)

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        kind = str(getattr(self, "kind", "trigger"))
        await run_autofocus_recorded(ctx, kind, self.settings.config(), reason=kind)
        self.reset(state)

    def reset(self, state: dict[str, Any]) -> None:
        state.clear()

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return need_autofocus_devices(env, path)


class AutofocusAfterHfrIncrease(_AutofocusTrigger):
    """When the median HFR of the last `sample_size` lights exceeds by `percent` the median
    of the first `sample_size` lights after the last autofocus (as NINA does: the baseline
    comes from lights, not from the autofocus frames, whose exposure differs)."""

    kind: Literal["autofocus_after_hfr_increase"] = "autofocus_after_hfr_increase"
    percent: float = Field(default=10.0, gt=0, le=500)
    sample_size: int = Field(default=3, ge=1, le=50)

    def frame_saved(self, state: dict[str, Any], frame: SavedFrame) -> None:
        if frame.frame_type is FrameType.LIGHT and frame.hfr_px is not None and frame.accepted:
            recent = [*state.get("recent", []), frame.hfr_px][-self.sample_size :]
            state["recent"] = recent
            if "baseline" not in state and len(recent) == self.sample_size:
                state["baseline"] = statistics.median(recent)

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        last = ctx.facts.last_autofocus
        last_autofocus = last.time.isoformat() if last is not None else None
        if state.get("autofocus_time") != last_autofocus:  # refocused since: a new baseline
            state.clear()
            state["autofocus_time"] = last_autofocus
            return False
        recent: list[float] = state.get("recent", [])
        if "baseline" not in state or len(recent) < self.sample_size:
            return False
        return bool(statistics.median(recent) > state["baseline"] * (1 + self.percent / 100))


class AutofocusAfterTemperatureChange(_AutofocusTrigger):
    kind: Literal["autofocus_after_temperature_change"] = "autofocus_after_temperature_change"
    delta_c: float = Field(default=1.0, gt=0, le=30)

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        now = (await ctx.focuser().status()).temperature_c
        if now is None:
            return False
        last = ctx.facts.last_autofocus
        baseline = last.temperature_c if last is not None else None
        if baseline is None:
            baseline = state.setdefault("baseline_c", now)
        return abs(now - float(baseline)) >= self.delta_c


class AutofocusAfterTime(_AutofocusTrigger):
    kind: Literal["autofocus_after_time"] = "autofocus_after_time"
    minutes: float = Field(default=60.0, gt=0, le=24 * 60)

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        now = ctx.clock.now()
        last = ctx.facts.last_autofocus
        since = (
            last.time
            if last is not None
            else datetime.fromisoformat(state.setdefault("since", now.isoformat()))
        )
        return (now - since).total_seconds() >= self.minutes * 60


class AutofocusAfterExposures(_AutofocusTrigger):
    kind: Literal["autofocus_after_exposures"] = "autofocus_after_exposures"
    exposures: int = Field(default=30, ge=1, le=10_000)

    def exposure_done(self, state: dict[str, Any], frame_type: FrameType) -> None:
        if frame_type is FrameType.LIGHT:
            state["since"] = int(state.get("since", 0)) + 1

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        return int(state.get("since", 0)) >= self.exposures


class AutofocusAfterFilterChange(_AutofocusTrigger):
    kind: Literal["autofocus_after_filter_change"] = "autofocus_after_filter_change"

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        wheel = ctx.equipment.filter_wheel
        if wheel is None or not wheel.connected:
            return False
        current = (await wheel.status()).filter_name
        autofocus = ctx.facts.last_autofocus
        last = autofocus.filter_name if autofocus is not None else None
        if last is None:
            last = state.setdefault("filter_name", current)
        return current is not None and current != last
