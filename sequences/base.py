"""Bases of the sequence tree: instructions, triggers and conditions are data plus behaviour.

Every node is a frozen pydantic model tagged by `kind`; the document (`sequences.document`)
assembles the closed set of kinds into discriminated unions, so a template names kinds, never
Python classes. Run state never lives on these models: the runner passes each node its own
mutable state (`Step`, a trigger's or condition's `dict`), which is journaled and restored on
resume.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sequences.model import Issue, OnError

if TYPE_CHECKING:
    from sequences.context import RunContext, Scope, ValidationEnv
    from sequences.frames import FrameType, SavedFrame


DOCUMENT_CONFIG = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
"""Every model of a sequence or plan document: unknown fields, changes after parsing and
NaN / infinite numbers (which no limit catches) are refused."""


TargetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]+$",
        description="any Unicode text without control characters (it ends in FITS headers)",
    ),
]
"""A target's name: refused when the document is saved, not after the first exposure."""


class NodeModel(BaseModel):
    model_config = DOCUMENT_CONFIG

    name: str = Field(default="", max_length=200, description="shown in the UI and the log")

    @property
    def label(self) -> str:
        kind = getattr(self, "kind", type(self).__name__)
        return f"{kind} {self.name!r}" if self.name else str(kind)


class Node(NodeModel):
    attempts: int = Field(default=1, ge=1, le=20, description="tries before the error behaviour")
    retry_delay_s: float = Field(
        default=0.0, ge=0, le=3600, description="wall time between attempts (a device to return)"
    )
    on_error: OnError = OnError.SKIP_CONTAINER

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        """Problems that would make this node fail tonight, found before the run."""
        return []

    def estimate_s(self, env: ValidationEnv) -> float:
        """Expected duration in seconds (0 when it is quick or unknowable)."""
        return 0.0


@dataclass
class Step:
    """One running instruction: where it is, its attempt, counters that survive a resume."""

    path: str
    attempt: int
    scope: Scope
    counters: dict[str, Any] = field(default_factory=dict)
    checkpoint: Callable[[], Awaitable[None]] | None = None
    """Set by the runner: call between repeated units of work (e.g. exposures) so triggers,
    conditions and pause requests take effect there."""
    on_frame: Callable[[SavedFrame], Awaitable[None]] | None = None
    """Set by the runner: call with every frame stored (triggers watching HFR)."""
    on_exposure: Callable[[FrameType], None] | None = None
    """Set by the runner: call as soon as a frame is read out (triggers counting frames)."""

    async def between_units(self) -> None:
        if self.checkpoint is not None:
            await self.checkpoint()

    def exposure_done(self, frame_type: FrameType) -> None:
        if self.on_exposure is not None:
            self.on_exposure(frame_type)


class Instruction(Node):
    redo_on_resume: ClassVar[bool] = False
    """Setup that a resumed run does again (slew, center, cool, guide): after a crash the
    devices may not be as the run left them."""
    pausable: ClassVar[bool] = False
    """A wait: a pause stops it at once and it starts over after the resume (other
    instructions pause after they finish)."""

    async def prepare(self, ctx: RunContext, step: Step) -> None:
        """Before each attempt's `execute`: what this writes into `step.counters` is saved in
        the run's state before `execute` starts, so a crash during the work keeps it."""

    async def execute(self, ctx: RunContext, step: Step) -> None:
        """Do the work; raise on failure (the runner retries and applies `on_error`)."""
        raise NotImplementedError


class Trigger(NodeModel):
    """Runs ordinary work between the units of instructions inside its container."""

    async def should_run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        raise NotImplementedError

    async def run(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> None:
        raise NotImplementedError

    def exposure_done(self, state: dict[str, Any], frame_type: FrameType) -> None:
        """A frame was read out inside the container (counting triggers)."""

    def frame_saved(self, state: dict[str, Any], frame: SavedFrame) -> None:
        """A frame was measured and stored inside the container (HFR triggers; it lags the
        read-out by one frame, as the next exposure starts first)."""

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return []


class Condition(NodeModel):
    """Decides whether its container goes on (another loop, or the next item)."""

    watched: ClassVar[bool] = False
    """Watched conditions are polled continuously and interrupt the container at once."""

    async def holds(self, ctx: RunContext, state: dict[str, Any], scope: Scope) -> bool:
        raise NotImplementedError

    def iteration_done(self, state: dict[str, Any]) -> None:
        """Called when the container finished one pass over its items."""

    def check(self, env: ValidationEnv, path: str) -> list[Issue]:
        return []
