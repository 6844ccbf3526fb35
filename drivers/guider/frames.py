"""Guide frames: exposing the guide camera, numbering the frames and measuring their stars.

The bookkeeping here keeps a guide frame honest: an image bit-identical to the one before a
pulse is stale and taken again, and after an aborted exposure the next one waits until the
camera can no longer deliver the aborted image.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass

import numpy as np

from drivers.base import Camera, RawFrame
from drivers.errors import DeviceBusy, DeviceError
from drivers.guider.config import GuiderConfig
from drivers.guider.errors import NoGuideStar
from drivers.guider.stars import GuideStars, refine_centroids, select_guide_stars
from processing.stars import StarConfig, StarTable, detect_stars

log = logging.getLogger(__name__)

# A camera may still deliver an aborted exposure's image when that exposure would have ended
# (the simulator does, into the next exposure); the next start waits this long past that end.
_LATE_IMAGE_S = 1.0
# A busy guide camera (finishing a readout, or an aborted exposure's image) is waited for this
# long past the exposure time before the exposure counts as failed.
_BUSY_WAIT_S = 5.0
_BUSY_POLL_S = 0.1


@dataclass(frozen=True, eq=False)
class GuideFrame:
    """One guide frame and its star detections.

    number: frames taken since the guider started (the frame's number in events);
    in_hand_s: `time.monotonic()` when the image arrived (processing time counts from it).
    """

    number: int
    raw: RawFrame
    detections: StarTable
    in_hand_s: float


class GuideCamera:
    """The guide camera as the loop and the calibration see it: numbered frames with their
    stars measured. Only the guide loop's task calls `take`/`acquire`."""

    def __init__(self, camera: Camera, config: GuiderConfig) -> None:
        self._camera = camera
        self._selection = config.selection
        self._star_config = StarConfig(
            threshold_sigma=config.detection_sigma, edge_margin_px=2, max_stars=200
        )
        self._exposure_s = config.exposure_s
        self._count = 0
        # A repeated frame after a pulse is stale (see `_expose`).
        self._last_digest: int | None = None
        self._pulsed_since_frame = False
        # While exposing: when the exposure ends (monotonic s). After an abort: until when
        # its image may still arrive (monotonic s).
        self._exposure_ends_at: float | None = None
        self._aborted_until = 0.0

    @property
    def exposure_s(self) -> float:
        """The guide exposure; a change applies from the next frame."""
        return self._exposure_s

    @exposure_s.setter
    def exposure_s(self, exposure_s: float) -> None:
        if exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
        self._exposure_s = exposure_s

    def restart_count(self) -> None:
        """Number frames from 1 again (a new guiding session)."""
        self._count = 0

    def note_pulse(self) -> None:
        """The mount was pulsed: the next frame must differ from the last one."""
        self._pulsed_since_frame = True

    def abandon_exposure(self) -> None:
        """The running exposure (if any) is being cancelled: the next one waits until its
        image can no longer arrive."""
        if self._exposure_ends_at is not None:
            self._aborted_until = self._exposure_ends_at + _LATE_IMAGE_S

    async def take(self) -> GuideFrame:
        """Expose one guide frame and measure its stars (in a thread)."""
        raw = await self._expose()
        number, in_hand_s = self._count, time.monotonic()
        detections = await asyncio.to_thread(_measure_stars, raw, self._star_config)
        return GuideFrame(number, raw, detections, in_hand_s)

    async def acquire(self, frames: int) -> tuple[GuideFrame, GuideStars]:
        """The first of up to `frames` frames that has usable guide stars, and those stars.
        Raises `NoGuideStar` when none has."""
        for _ in range(frames):
            frame = await self.take()
            stars = self.select(frame)
            if len(stars):
                return frame, stars
        raise NoGuideStar(
            "start",
            f"no usable guide star in {frames} frames "
            f"({len(frame.detections)} detections; {self._exposure_s} s exposures)",
        )

    def select(self, frame: GuideFrame) -> GuideStars:
        """Guide stars chosen among the frame's detections (empty: none usable)."""
        return select_guide_stars(
            frame.detections, frame.raw.data.shape, _saturation_adu(frame.raw), self._selection
        )

    async def _expose(self) -> RawFrame:
        """One guide frame. A frame bit-identical to the previous one although the mount was
        pulsed in between cannot show the sky now (a stale or cached image): it is taken
        again once; an identical frame without a pulse is the same sky and is kept."""
        exposure_s = self._exposure_s
        for attempt in range(2):
            delay = self._aborted_until - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._exposure_ends_at = time.monotonic() + exposure_s
            try:
                frame = await self._expose_when_idle(exposure_s)
            except (asyncio.CancelledError, DeviceError):
                # The camera may still deliver this exposure's image when it would have ended.
                self._aborted_until = self._exposure_ends_at + _LATE_IMAGE_S
                raise
            finally:
                self._exposure_ends_at = None
            self._count += 1
            digest = zlib.crc32(np.ascontiguousarray(frame.data).data)
            stale = digest == self._last_digest and self._pulsed_since_frame
            self._last_digest = digest
            self._pulsed_since_frame = False
            if stale and attempt == 0:
                log.warning("guider: frame %d repeats the one before a pulse; again", self._count)
                continue
            return frame
        return frame

    async def _expose_when_idle(self, exposure_s: float) -> RawFrame:
        """Expose; while the camera says it is busy, try again for a bounded time."""
        deadline = time.monotonic() + exposure_s + _BUSY_WAIT_S
        while True:
            try:
                return await self._camera.expose(exposure_s, light=True)
            except DeviceBusy:
                if time.monotonic() > deadline:
                    raise
                log.debug("guider: guide camera busy; trying again")
                await asyncio.sleep(_BUSY_POLL_S)


def _measure_stars(frame: RawFrame, config: StarConfig) -> StarTable:
    """Detect the stars of a guide frame and refine their centroids (CPU work: run it in a
    thread)."""
    return refine_centroids(frame.data, detect_stars(frame.data, config))


def _saturation_adu(frame: RawFrame) -> float:
    info = frame.info
    level = float(info.max_adu)
    if info.full_well_e and info.electrons_per_adu:
        level = min(level, info.full_well_e / info.electrons_per_adu)
    return level
