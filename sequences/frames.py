"""How the sequence engine hands frames to storage: the `FrameSink` protocol the daemon implements.

The engine decides what to expose and when; the sink exposes, measures, judges, writes the file
durably and records the row. Frames of a run carry a `RunTag` (run id + node path), so after a
crash the engine asks the sink how many frames an instruction already has instead of trusting
its own memory: a frame on disk is counted, never taken twice.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from drivers.base import RaDec


class FrameType(enum.StrEnum):
    """IMAGETYP values as NINA writes them."""

    LIGHT = "LIGHT"
    DARK = "DARK"
    FLAT = "FLAT"
    BIAS = "BIAS"
    DARKFLAT = "DARKFLAT"

    @property
    def shutter_open(self) -> bool:
        return self in (FrameType.LIGHT, FrameType.FLAT)


@dataclass(frozen=True)
class TargetRef:
    name: str
    position: RaDec | None = None
    rotation_deg: float | None = None


@dataclass(frozen=True)
class ExposureSpec:
    frame_type: FrameType
    exposure_s: float
    filter_name: str | None = None
    gain: int | None = None
    offset: int | None = None
    binning: int = 1


@dataclass(frozen=True)
class RunTag:
    run_id: int
    node_path: str


@dataclass(frozen=True)
class SavedFrame:
    """What the engine learns about a frame once it is stored."""

    id: int
    path: str
    frame_type: FrameType
    filter_name: str | None
    exposure_s: float
    hfr_px: float | None
    star_count: int | None
    accepted: bool
    reject_reason: str | None = None


class FrameSink(Protocol):
    async def capture(
        self,
        spec: ExposureSpec,
        count: int,
        *,
        target: TargetRef | None = None,
        tag: RunTag | None = None,
        between: Callable[[int], Awaitable[None]] | None = None,
        on_saved: Callable[[SavedFrame], Awaitable[None]] | None = None,
    ) -> list[SavedFrame]:
        """Take `count` frames. `between(k)` runs after frame k-1 is read out and before frame k
        starts (k >= 1): dithers and other triggers go there. Raises `DeviceError`, `ValueError`
        for settings the equipment cannot take, or the storage's error; frames saved before a
        failure stay saved."""
        ...

    async def count_taken(self, tag: RunTag) -> int:
        """Frames already stored under `tag` (for resuming an interrupted instruction)."""
        ...
