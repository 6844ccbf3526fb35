"""The native guider: a guide camera, `PulseGuide` on the mount, and a loop in between.

One asyncio task loops short exposures on the guide camera. At start it picks guide stars,
calibrates the pulse directions and rates (once per pier side; reused, rescaled for
declination or flipped afterwards), locks on the stars' position and then, every frame:
finds the stars again, averages their displacement from the lock, splits it into RA and Dec
errors and sends one proportional correction pulse per axis.

This module orchestrates; the parts live beside it: `frames` (exposing and measuring guide
frames), `stars` (choosing and matching guide stars), `calibrator` (the calibration
procedure; its math in `calibration`), `control` (the axis controllers), `events`.

The loop owns its failures: a device error is logged, reported as a `GuiderFault` event and
retried with a growing delay; after `max_consecutive_errors` in a row the loop stops and says
so (`GuidingStopped`). Every await is a device call with its own deadline, a bounded sleep or
a wait with a timeout, so neither the loop nor `stop()` can hang.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from drivers.base import (
    Camera,
    Dithered,
    GuideDirection,
    GuideEvent,
    GuidePulse,
    Guider,
    GuiderFault,
    GuideRms,
    GuiderState,
    GuideStarsSelected,
    GuideStep,
    GuidingStopped,
    Mount,
    MountStatus,
    PierSide,
    RawFrame,
    SettleDone,
    StarLost,
)
from drivers.errors import DeviceError
from drivers.guider.calibration import Calibration
from drivers.guider.calibrator import Calibrator
from drivers.guider.config import GuiderConfig
from drivers.guider.control import GuideController, RmsWindow
from drivers.guider.errors import GuiderError, NoGuideStar, NotGuiding, SettleTimeout
from drivers.guider.events import Subscribers
from drivers.guider.frames import GuideCamera, GuideFrame
from drivers.guider.stars import Fix, GuideStars, Matcher
from processing.stars import plate_scale_arcsec_px

log = logging.getLogger(__name__)

# stop() repeats its cancel this often, and gives up waiting for the loop after this long.
_STOP_RETRY_S = 0.2
_STOP_TIMEOUT_S = 15.0


@dataclass
class _LoopState:
    """The guide loop's task and how it stands."""

    state: GuiderState = GuiderState.STOPPED
    task: asyncio.Task[None] | None = None
    stop_requested: bool = False  # checked every step: a cancel lost in a library call
    last_error: str | None = None


@dataclass
class _LockState:
    """The stars followed and where they are, px from their positions when chosen: `shift_px`
    where they are (or are predicted) now, `offset_px` the lock's dither offset."""

    stars: GuideStars | None = None
    shift_px: tuple[float, float] = (0.0, 0.0)
    offset_px: tuple[float, float] = (0.0, 0.0)
    lost_frames: int = 0

    @property
    def position(self) -> tuple[float, float] | None:
        """The lock position (y, x) px, drawn at the first star; None without stars."""
        if self.stars is None or len(self.stars) == 0:
            return None
        y, x = self.stars.primary
        return y + self.offset_px[0], x + self.offset_px[1]


@dataclass
class _Geometry:
    """What start() found for this pointing; kept after stop() for the owner to read."""

    calibration: Calibration | None = None
    scale_arcsec_px: float | None = None


class NativeGuider:
    """Guides `mount` on stars of `camera` (the guide camera); implements `drivers.base.Guider`.

    `calibrations` (by pier side) may come from an earlier session; the guider adds the ones
    it measures. The camera and mount must be connected; the caller sets tracking.
    """

    def __init__(
        self,
        camera: Camera,
        mount: Mount,
        config: GuiderConfig | None = None,
        *,
        calibrations: Mapping[PierSide, Calibration] | None = None,
    ) -> None:
        self._mount = mount
        self._config = cfg = config or GuiderConfig()
        self._frames = GuideCamera(camera, cfg)
        self._matcher = Matcher(
            search_radius_px=cfg.search_radius_px,
            outlier_px=cfg.outlier_px,
            reacquire_tolerance_px=cfg.reacquire_tolerance_px,
            min_matched_fraction=cfg.min_matched_fraction,
        )
        self._calibrator = Calibrator(mount, self._frames, self._matcher, cfg, calibrations)
        self._controller = GuideController(cfg.ra, cfg.dec)
        self._rms = RmsWindow(cfg.rms_window_steps)
        self._rng = random.Random(cfg.dither_seed)
        self._events = Subscribers()
        self._loop_state = _LoopState()
        self._lock_state = _LockState()
        self._geometry = _Geometry()

    # --- what the owner sees -------------------------------------------------------------

    @property
    def state(self) -> GuiderState:
        return self._loop_state.state

    @property
    def last_error(self) -> str | None:
        """The last device error or the reason guiding stopped with an error."""
        return self._loop_state.last_error

    @property
    def lock_position(self) -> tuple[float, float] | None:
        return self._lock_state.position

    @property
    def calibration(self) -> Calibration | None:
        """The calibration in use (for this declination and pier side), None before start."""
        return self._geometry.calibration

    @property
    def calibrations(self) -> dict[PierSide, Calibration]:
        """Measured calibrations by pier side, to keep for the next session."""
        return self._calibrator.calibrations

    @property
    def pixel_scale_arcsec_px(self) -> float | None:
        return self._geometry.scale_arcsec_px

    @property
    def exposure_s(self) -> float:
        """The guide exposure; a change applies from the next frame."""
        return self._frames.exposure_s

    @exposure_s.setter
    def exposure_s(self, exposure_s: float) -> None:
        self._frames.exposure_s = exposure_s

    @property
    def output_enabled(self) -> bool:
        """Whether corrections are sent; when off the loop only measures (for comparisons)."""
        return self._controller.output_enabled

    @output_enabled.setter
    def output_enabled(self, enabled: bool) -> None:
        self._controller.output_enabled = enabled

    def rms(self) -> GuideRms | None:
        return self._rms.value()

    def reset_rms(self) -> None:
        self._rms.reset()

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[GuideEvent]:
        return self._events.subscribe(maxsize)

    def unsubscribe(self, queue: asyncio.Queue[GuideEvent]) -> None:
        self._events.unsubscribe(queue)

    # --- commands ------------------------------------------------------------------------

    async def start(self, *, recalibrate: bool = False) -> None:
        """Start the loop and return once it guides (stars locked, calibration in place).

        Calibrates when there is no calibration for the pier side, or when `recalibrate`.
        A no-op when already running. Raises `NoGuideStar`, `CalibrationFailed` or the
        `DeviceError` that prevented guiding; the loop is stopped then.
        """
        run = self._loop_state
        if run.task is not None and not run.task.done():
            return
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        run.stop_requested = False
        run.task = asyncio.create_task(self._run(started, recalibrate), name="guider")
        try:
            await started
        except asyncio.CancelledError:
            started.cancel()
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop the loop now, aborting a running exposure; returns when it has ended.

        The cancel is repeated until the loop ends, and the loop also checks a stop flag, so
        a cancellation lost inside a library call cannot keep the loop running. Gives up
        waiting after `_STOP_TIMEOUT_S` (logged).
        """
        run = self._loop_state
        task = run.task
        if task is None:
            return
        run.stop_requested = True
        if not task.done():
            self._frames.abandon_exposure()
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while not task.done():
            if time.monotonic() > deadline:
                log.error("guider: the guide loop did not end within %.0f s", _STOP_TIMEOUT_S)
                return
            task.cancel()
            await asyncio.wait({task}, timeout=_STOP_RETRY_S)
        run.task = None

    async def dither(self, offset_px: float = 5.0, *, ra_only: bool = False) -> tuple[float, float]:
        """Move the lock to a random offset from the original lock position and return the
        offset (dy, dx) px: a random direction (along the RA axis only if `ra_only`) and a
        distance between half of and all of `offset_px`. Offsets are taken from the
        original lock, not added up, so a night of dithers does not walk the stars off the
        sensor. Raises `NotGuiding` when not guiding, ValueError for `offset_px` <= 0."""
        if offset_px <= 0:
            raise ValueError(f"offset_px must be > 0, got {offset_px}")
        calibration = self._geometry.calibration
        state = self._loop_state.state
        if state not in (GuiderState.GUIDING, GuiderState.LOST) or calibration is None:
            raise NotGuiding("dither", f"guider is {state.value}")
        distance = self._rng.uniform(0.5 * offset_px, offset_px)
        if ra_only:
            angle = math.radians(calibration.ra_angle_deg) + self._rng.choice((0.0, math.pi))
        else:
            angle = self._rng.uniform(-math.pi, math.pi)
        offset = (distance * math.sin(angle), distance * math.cos(angle))
        self._lock_state.offset_px = offset
        self._controller.reset()
        lock = self._lock_state.position
        assert lock is not None  # guiding implies guide stars
        log.info("guider: dither to (%.2f, %.2f) px from the original lock", *offset)
        self._events.emit(Dithered(offset[0], offset[1], lock[0], lock[1]))
        return offset

    async def settle(
        self, tolerance_px: float = 1.5, min_time_s: float = 10.0, timeout_s: float = 40.0
    ) -> None:
        """Wait until the guide error stays under `tolerance_px` for `min_time_s` (the time
        counts from the first step under it; a step above or a lost frame restarts it).

        Emits `SettleDone` either way. Raises `SettleTimeout` after `timeout_s` and
        `NotGuiding` if the guider is not guiding or stops meanwhile.
        """
        if tolerance_px <= 0 or min_time_s < 0 or timeout_s <= 0:
            raise ValueError("need tolerance_px > 0, min_time_s >= 0 and timeout_s > 0")
        if self._loop_state.state not in (GuiderState.GUIDING, GuiderState.LOST):
            raise NotGuiding("settle", f"guider is {self._loop_state.state.value}")
        emit = self._events.emit
        queue = self.subscribe()
        began = time.monotonic()
        deadline = began + timeout_s
        below_since: float | None = None
        distance: float | None = None
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        event = await queue.get()
                except TimeoutError:
                    break
                if isinstance(event, GuidingStopped):
                    emit(SettleDone(False, time.monotonic() - began, distance, event.reason))
                    raise NotGuiding("settle", f"guiding stopped: {event.reason}")
                if isinstance(event, StarLost):
                    below_since = None
                elif isinstance(event, GuideStep):
                    now = time.monotonic()
                    distance = event.distance_px
                    if distance >= tolerance_px:
                        below_since = None
                    elif below_since is None:
                        below_since = now
                    if below_since is not None and now - below_since >= min_time_s:
                        elapsed = now - began
                        emit(SettleDone(True, elapsed, distance, "settled"))
                        log.info("guider: settled in %.1f s (%.2f px)", elapsed, distance)
                        return
        finally:
            self.unsubscribe(queue)
        message = (
            f"error did not stay under {tolerance_px} px for {min_time_s} s "
            f"within {timeout_s} s (last {distance if distance is None else round(distance, 2)} px)"
        )
        emit(SettleDone(False, time.monotonic() - began, distance, message))
        raise SettleTimeout("settle", message)

    # --- the loop ------------------------------------------------------------------------

    async def _run(self, started: asyncio.Future[None], recalibrate: bool) -> None:
        """Supervise one guiding session: start-up, then guide steps until stopped or failed.

        Any failure ends here and becomes visible: the start-up error is handed to `start()`,
        a later one ends the session with a `GuidingStopped` event and `last_error`.
        """
        reason, error = "stopped", False
        try:
            await self._begin(recalibrate)
            if not started.done():
                started.set_result(None)
            reason, error = await self._guide()
        except DeviceError as e:  # start-up failed (GuiderError included)
            reason, error = str(e), True
            if not started.done():
                started.set_exception(e)
        except Exception as e:  # a bug must not leave the owner waiting on a dead loop
            log.exception("guider: guide loop failed")
            reason, error = f"unexpected error: {e!r}", True
            if not started.done():
                started.set_exception(GuiderError("guide", reason))
        finally:
            if not started.done():
                started.set_exception(NotGuiding("start", "stopped before guiding started"))
            if error:
                self._loop_state.last_error = reason
            self._set_state(GuiderState.STOPPED)
            self._events.emit(GuidingStopped(datetime.now(UTC), reason, error))
            log.info("guider: stopped (%s)", reason)

    async def _begin(self, recalibrate: bool) -> None:
        """Choose guide stars, put a calibration in place and lock on the stars."""
        geometry = self._geometry
        self._set_state(GuiderState.ACQUIRING)
        self._frames.restart_count()
        self._lock_state.lost_frames = 0
        self._rms.reset()
        status = await self._mount.status()
        if not status.tracking:
            log.warning("guider: the mount is not tracking; guiding will fight the sky's motion")
        frame, stars = await self._frames.acquire(self._config.acquire_frames)
        side, dec = status.side_of_pier, status.position.dec_deg
        geometry.scale_arcsec_px = _optical_scale(self._config, self._mount, frame.raw)
        stored = self._calibrator.stored(side)
        if recalibrate or stored is None:
            self._set_state(GuiderState.CALIBRATING)
            stored = await self._calibrator.measure(status, stars, geometry.scale_arcsec_px)
        calibration = stored.for_pier_side(side).for_declination(dec)
        geometry.calibration = calibration
        if geometry.scale_arcsec_px is None:
            geometry.scale_arcsec_px = _scale_from_rates(status, calibration)
        self._events.emit(calibration.summary())
        # Calibration moved the stars about: lock on where they are now.
        frame = await self._frames.take()
        stars = self._frames.select(frame)
        if len(stars) == 0:
            raise NoGuideStar("start", "guide stars gone after calibration")
        self._lock_on(stars, frame)
        self._set_state(GuiderState.GUIDING)
        log.info(
            'guider: guiding on %d star(s), %.2f "/px, exposure %.2f s',
            len(stars),
            geometry.scale_arcsec_px,
            self._frames.exposure_s,
        )

    async def _guide(self) -> tuple[str, bool]:
        """Guide until stopped; returns why it ended and whether that is an error."""
        cfg = self._config
        failures, delay = 0, cfg.retry_delay_s
        while not self._loop_state.stop_requested:
            try:
                await self._guide_step()
            except DeviceError as e:
                failures += 1
                self._loop_state.last_error = str(e)
                log.warning("guider: %s (%d in a row)", e, failures)
                self._events.emit(GuiderFault(datetime.now(UTC), str(e), failures))
                if failures >= cfg.max_consecutive_errors:
                    return f"gave up after {failures} device errors in a row: {e}", True
                await asyncio.sleep(delay)
                delay = min(2.0 * delay, cfg.max_retry_delay_s)
            else:
                failures, delay = 0, cfg.retry_delay_s
        return "stopped", False

    async def _guide_step(self) -> None:
        """One frame: acquire, measure where the stars are, correct."""
        frame = await self._frames.take()
        fix = self._measure(frame)
        if fix is not None:
            await self._correct(frame, fix)

    def _measure(self, frame: GuideFrame) -> Fix | None:
        """Where the guide stars are in `frame`; None when they are not where expected (the
        frame is reported lost and gets no correction)."""
        lock = self._lock_state
        assert lock.stars is not None
        fix = self._matcher.near(lock.stars, frame.detections, lock.shift_px)
        if fix is None:
            # Not near the prediction. Found elsewhere in the frame, the stars may be caught
            # mid-motion (a frame exposed during a slew or a bump): look there next frame and
            # correct only once a second frame finds them in the same place.
            jump = self._matcher.anywhere(lock.stars, frame.detections)
            if jump is None:
                reason = f"guide stars not found ({len(frame.detections)} in the frame)"
            else:
                distance = math.hypot(jump.dy - lock.shift_px[0], jump.dx - lock.shift_px[1])
                lock.shift_px = (jump.dy, jump.dx)
                reason = f"guide stars jumped {distance:.0f} px; confirming next frame"
            self._on_lost(frame, reason)
            return None
        if self._loop_state.state is GuiderState.LOST:
            position = lock.position
            assert position is not None
            self._events.emit(
                GuideStarsSelected(frame.number, _now(), fix.matched, *position, True)
            )
            log.info("guider: guide stars found again (%d)", fix.matched)
            self._controller.reset()
        lock.lost_frames = 0
        self._set_state(GuiderState.GUIDING)
        lock.shift_px = (fix.dy, fix.dx)
        return fix

    async def _correct(self, frame: GuideFrame, fix: Fix) -> None:
        """Pulse the stars back towards the lock and report the step."""
        calibration, scale = self._geometry.calibration, self._geometry.scale_arcsec_px
        assert calibration is not None
        assert scale is not None
        lock = self._lock_state
        dy, dx = fix.dy - lock.offset_px[0], fix.dx - lock.offset_px[1]
        ra_px, dec_px = calibration.axis_components(dy, dx)
        ra_pulse, dec_pulse = self._controller.pulses(calibration, ra_px, dec_px)
        latency_s: float | None = None
        processing_s = time.monotonic() - frame.in_hand_s
        if ra_pulse or dec_pulse:
            raw = frame.raw
            frame_end = raw.exposure_start_utc + timedelta(seconds=raw.exposure_s)
            latency_s = (datetime.now(UTC) - frame_end).total_seconds()
            for pulse in (ra_pulse, dec_pulse):
                if pulse is not None:
                    self._frames.note_pulse()
                    await self._mount.pulse_guide(pulse.direction, pulse.duration_ms)
            moved = calibration.motion_px(_signed(ra_pulse), _signed(dec_pulse))
            lock.shift_px = (fix.dy + moved[0], fix.dx + moved[1])
        ra_arcsec, dec_arcsec = ra_px * scale, dec_px * scale
        self._rms.add(ra_arcsec, dec_arcsec)
        self._events.emit(
            GuideStep(
                frame=frame.number,
                time_utc=frame.raw.exposure_start_utc,
                dy_px=dy,
                dx_px=dx,
                ra_arcsec=ra_arcsec,
                dec_arcsec=dec_arcsec,
                stars=fix.matched,
                ra_pulse=ra_pulse,
                dec_pulse=dec_pulse,
                latency_s=latency_s,
                processing_s=processing_s,
            )
        )

    def _on_lost(self, frame: GuideFrame, reason: str) -> None:
        """Report a lost frame; after `reselect_after_frames` of them, lock on new stars."""
        lock = self._lock_state
        lock.lost_frames += 1
        self._set_state(GuiderState.LOST)
        log.warning(
            "guider: %s, frame %d, %d lost in a row", reason, frame.number, lock.lost_frames
        )
        self._events.emit(StarLost(frame.number, _now(), lock.lost_frames, reason))
        if lock.lost_frames < self._config.reselect_after_frames:
            return
        stars = self._frames.select(frame)
        if len(stars) == 0:
            return
        self._lock_on(stars, frame)
        self._set_state(GuiderState.GUIDING)

    def _lock_on(self, stars: GuideStars, frame: GuideFrame) -> None:
        """Follow `stars` from here on, with the lock where they are now."""
        self._lock_state = _LockState(stars)
        self._controller.reset()
        position = self._lock_state.position
        assert position is not None
        self._events.emit(GuideStarsSelected(frame.number, _now(), len(stars), *position, False))
        log.info("guider: locked on %d star(s) at (%.1f, %.1f)", len(stars), *position)

    def _set_state(self, state: GuiderState) -> None:
        if state is not self._loop_state.state:
            log.debug("guider: %s -> %s", self._loop_state.state.value, state.value)
            self._loop_state.state = state


def _optical_scale(config: GuiderConfig, mount: Mount, frame: RawFrame) -> float | None:
    """The guide camera's pixel scale from the settings or the optics, None if unknown."""
    if config.pixel_scale_arcsec_px is not None:
        return config.pixel_scale_arcsec_px
    focal_mm = config.focal_length_mm
    if focal_mm is None and mount.info.focal_length_m:
        focal_mm = 1000.0 * mount.info.focal_length_m
    if focal_mm is None:
        return None
    return plate_scale_arcsec_px(frame.info.pixel_size_x_um, focal_mm, frame.status.bin_x)


def _scale_from_rates(status: MountStatus, calibration: Calibration) -> float:
    """Pixel scale from the Dec guide rate and the measured Dec motion, when the optics
    are unknown. Raises `GuiderError` when that is unknown too."""
    if not status.guide_rate_dec_deg_s:
        raise GuiderError("start", "pixel scale unknown: set GuiderConfig.pixel_scale_arcsec_px")
    return status.guide_rate_dec_deg_s * 3600.0 / calibration.dec_rate_px_s


def _signed(pulse: GuidePulse | None) -> float:
    """West/North positive, East/South negative, 0 for no pulse."""
    if pulse is None:
        return 0.0
    positive = pulse.direction in (GuideDirection.WEST, GuideDirection.NORTH)
    return float(pulse.duration_ms if positive else -pulse.duration_ms)


def _now() -> datetime:
    return datetime.now(UTC)


def _implements_guider(guider: NativeGuider) -> Guider:
    """Never called: mypy checks here that `NativeGuider` implements the `Guider` protocol."""
    return guider
