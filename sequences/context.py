"""What a running sequence works with: devices, clock, site, frame sink, event sink.

Everything is injected, nothing is global: a test runs a night on a simulated clock, the daemon
passes its SQLite-backed sinks, the CLI its console printer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from drivers.base import (
    Camera,
    CoverCalibrator,
    Device,
    Dome,
    FilterWheel,
    Focuser,
    Guider,
    Mount,
    Rotator,
    SafetyMonitor,
    Switch,
    WeatherStation,
)
from drivers.equipment import Equipment
from sequences.astro import Horizon, Site
from sequences.autofocus import AutofocusConfig, AutofocusReport, AutofocusRunner, run_autofocus
from sequences.centering import FrameSolver
from sequences.clock import Clock
from sequences.dome.slaving import DomeSlaving
from sequences.errors import InstructionError
from sequences.facts import RunFacts
from sequences.frames import FrameSink, TargetRef

D = TypeVar("D", bound=Device)


class EventSink(Protocol):
    async def emit(
        self,
        level: str,
        message: str,
        *,
        path: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Record a run event (level: debug, info, warning, error) for the log, DB and UI."""
        ...


@dataclass(frozen=True)
class Scope:
    """What a node inherits from its containers (the target of a target container)."""

    target: TargetRef | None = None


@dataclass
class RunContext:
    equipment: Equipment
    clock: Clock
    frames: FrameSink
    events: EventSink
    run_id: int | None = None
    site: Site | None = None
    horizon: Horizon | None = None
    guider: Guider | None = None
    solve: FrameSolver | None = None
    autofocus: AutofocusRunner | None = None
    """Where autofocus runs (the daemon records and holds the camera); None: straight on the
    devices, unrecorded (the engine alone, in tests and benchmarks)."""
    facts: RunFacts = field(default_factory=RunFacts)
    """What the run has learned (lights taken, last autofocus, guiding). The runner puts its
    journaled state's facts here, so what instructions note is saved with the run state."""
    scripts_dir: Path | None = None
    """The only folder whose programs run_command may start; None: run_command is refused."""
    dome_slaving: DomeSlaving | None = None
    """The dome following the mount (slave_dome on); the runner stops it when the run ends."""

    async def run_autofocus(self, config: AutofocusConfig) -> AutofocusReport:
        """`InstructionError` without a connected camera and focuser."""
        camera, focuser = self.camera(), self.focuser()
        if self.autofocus is not None:
            return await self.autofocus.autofocus(config)
        return await run_autofocus(camera, focuser, config)

    def camera(self) -> Camera:
        return _need(self.equipment.camera, "camera")

    def mount(self) -> Mount:
        return _need(self.equipment.mount, "mount")

    def focuser(self) -> Focuser:
        return _need(self.equipment.focuser, "focuser")

    def filter_wheel(self) -> FilterWheel:
        return _need(self.equipment.filter_wheel, "filter wheel")

    def safety_monitor(self) -> SafetyMonitor:
        return _need(self.equipment.safety_monitor, "safety monitor")

    def dome(self) -> Dome:
        return _need(self.equipment.dome, "dome")

    def cover_calibrator(self) -> CoverCalibrator:
        return _need(self.equipment.cover_calibrator, "cover calibrator")

    def rotator(self) -> Rotator:
        return _need(self.equipment.rotator, "rotator")

    def weather(self) -> WeatherStation:
        return _need(self.equipment.weather, "weather station")

    def switch(self) -> Switch:
        return _need(self.equipment.switch, "switch")

    def need_guider(self) -> Guider:
        if self.guider is None:
            raise InstructionError("no guider is configured (the profile needs a guide camera)")
        return self.guider

    def need_site(self) -> Site:
        if self.site is None:
            raise InstructionError("the observatory site is unknown (set it in the profile)")
        return self.site


def _need(device: D | None, role: str) -> D:
    if device is None:
        raise InstructionError(f"the equipment profile has no {role}")
    if not device.connected:
        raise InstructionError(f"the {role} is not connected")
    return device


@dataclass(frozen=True)
class ValidationEnv:
    """What validation checks a document against: the equipment and tonight's sky."""

    roles: frozenset[str]
    """Roles present in the profile (camera, mount, focuser, filter_wheel, ...)."""
    filter_names: tuple[str, ...] | None
    exposure_max_s: float | None
    site: Site | None
    horizon: Horizon | None
    night_start: datetime | None
    night_end: datetime | None
    scripts_dir: Path | None = None
    """The only folder whose programs run_command may start; None: run_command is refused."""
