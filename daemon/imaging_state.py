"""The state of the Imaging page's background jobs (the loop and the flats wizard) and their
settings, as the page polls them: plain data, shared by the imaging service and the API
schemas without the service's database and devices."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from sequences.frames import SavedFrame


class JobState(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class LoopSettings:
    exposure_s: float
    filter_name: str | None = None
    binning: int = 1
    gain: int | None = None
    count: int | None = None
    """None: until stopped."""


@dataclass
class LoopState:
    state: JobState = JobState.IDLE
    settings: LoopSettings | None = None
    frames_taken: int = 0
    last_frame: SavedFrame | None = None
    message: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class FlatsSettings:
    filters: list[str]
    """Empty: the current filter."""
    count: int = 10
    source: str = "panel"
    """``panel`` (closes the dust cover, lights the panel) or ``sky`` (the cover open)."""
    target_adu: float = 32_000.0
    tolerance: float = 0.1
    """A fraction of `target_adu`."""
    min_exposure_s: float = 0.01
    max_exposure_s: float = 30.0
    panel_brightness: int | None = None
    max_tries: int = 8
    binning: int = 1
    gain: int | None = None


@dataclass(frozen=True)
class FlatTrial:
    exposure_s: float
    brightness: int | None
    median_adu: float


@dataclass
class FilterFlats:
    filter_name: str | None
    trials: list[FlatTrial] = field(default_factory=list)
    exposure_s: float | None = None
    """The exposure found; None until it is."""
    brightness: int | None = None
    frame_ids: list[int] = field(default_factory=list)


@dataclass
class FlatsState:
    state: JobState = JobState.IDLE
    settings: FlatsSettings | None = None
    filters: list[FilterFlats] = field(default_factory=list)
    message: str = ""
    started_at: datetime | None = None
