"""What a run has learned so far and its instructions and triggers hand to each other.

The facts live in the run state (`RunState.facts`) and are journaled with it, so a resumed run
still knows which lights it took (for matching darks), when, at what temperature and in which
filter it last focused (for the autofocus triggers) and whether it is guiding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sequences.frames import ExposureSpec


@dataclass(frozen=True)
class LightSpec:
    """The camera settings of lights taken in this run: darks are taken to match them."""

    exposure_s: float
    gain: int | None = None
    offset: int | None = None
    binning: int = 1

    @classmethod
    def of(cls, spec: ExposureSpec) -> LightSpec:
        return cls(spec.exposure_s, spec.gain, spec.offset, spec.binning)


@dataclass(frozen=True)
class AutofocusFact:
    """The last successful autofocus of the run."""

    time: datetime
    """When it ended, aware UTC on the run's clock (journaled as ISO 8601)."""
    temperature_c: float | None
    """The focuser's temperature then (None: it has no sensor)."""
    filter_name: str | None
    """The filter in the beam (None: no filter wheel)."""
    position: int | None
    """The focuser position it chose."""
    hfr_px: float | None
    """The half-flux radius of its confirmation frame."""


@dataclass(frozen=True)
class RotatorOffset:
    """The sky position angle minus the rotator's mechanical angle, as a plate solve found it.

    Mechanical moves aim with it (not the rotator's own synced position: a rotator may ignore
    its sync offset on moves). The sky turns by 180 deg when the mount changes pier side."""

    offset_deg: float
    pier_side: str
    """The mount's pier side then (`PierSide` name; UNKNOWN when it cannot tell)."""


@dataclass
class RunFacts:
    """Run-wide facts. Instructions and triggers read and update them through `ctx.facts`,
    which is this very object of the runner's state, so every journal save includes them."""

    light_specs: list[LightSpec] = field(default_factory=list)
    """Distinct settings of the lights taken so far, in the order first used."""
    last_autofocus: AutofocusFact | None = None
    guiding: bool = False
    """The run started guiding and has not stopped it. A resumed run starts with False
    (`RunState.prepare_resume`): after a restart nothing guides (the native guider ran in the
    stopped daemon), and the `start_guiding` instructions the rest of the run depends on run
    again (`redo_on_resume`) and set it once guiding has settled. Until then, the triggers
    that restart or pause guiding leave the guider alone, so a redone slew and centering are
    not guided."""
    next_exposure_s: float = 0.0
    """The length of the exposure about to start (the meridian flip waits for it to fit)."""
    light_next: bool = False
    """A light exposure starts after the checkpoint being passed: set by `take_exposures`
    around its own checkpoints, false at every other (before the next instruction, say
    `stop_guiding` after a target's last light). A dither waits for it, as NINA's does."""
    centered_error_arcsec: float | None = None
    """The pointing error left by the last centering."""
    rotator_offset: RotatorOffset | None = None
    """The rotator's sky offset, once a plate solve has measured it: later rotations go
    straight to their angle."""

    def remember_light(self, spec: ExposureSpec) -> None:
        light = LightSpec.of(spec)
        if light not in self.light_specs:
            self.light_specs.append(light)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.last_autofocus is not None:
            data["last_autofocus"]["time"] = self.last_autofocus.time.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunFacts:
        """Read what `to_json` wrote; missing keys (an older journal) take their defaults."""
        autofocus = data.get("last_autofocus")
        offset = data.get("rotator_offset")
        return cls(
            light_specs=[LightSpec(**s) for s in data.get("light_specs", [])],
            last_autofocus=None
            if autofocus is None
            else AutofocusFact(**{**autofocus, "time": datetime.fromisoformat(autofocus["time"])}),
            guiding=bool(data.get("guiding", False)),
            next_exposure_s=float(data.get("next_exposure_s", 0.0)),
            light_next=bool(data.get("light_next", False)),
            centered_error_arcsec=data.get("centered_error_arcsec"),
            rotator_offset=None if offset is None else RotatorOffset(**offset),
        )
