"""The native guider: a guide camera, `PulseGuide` on the mount, and a loop in between.

One asyncio task loops short exposures on the guide camera. At start it picks guide stars,
calibrates the pulse directions and rates (once per pier side; reused, rescaled for
declination or flipped afterwards), locks on the stars' position and then, every frame:
finds the stars again, averages their displacement from the lock, splits it into RA and Dec
errors and sends one proportional correction pulse per axis.

The loop owns its failures: a device error is logged, reported as a `GuiderFault` event and
retried with a growing delay; after `max_consecutive_errors` in a row the loop stops and says
so (`GuidingStopped`). Every await is a device call with its own deadline, a bounded sleep or
a wait with a timeout, so neither the loop nor `stop()` can hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

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
from drivers.errors import DeviceBusy, DeviceError
from drivers.guider.calibration import Calibration, fit_axis, pulse_direction
from drivers.guider.control import AxisController, AxisSettings, RmsWindow
from drivers.guider.errors import (
    CalibrationFailed,
    GuiderError,
    NoGuideStar,
    NotGuiding,
    SettleTimeout,
)
from drivers.guider.stars import (
    Fix,
    GuideStars,
    SelectionConfig,
    find_pattern,
    locate,
    min_matches,
    refine_centroids,
    select_guide_stars,
)
from processing.stars import StarConfig, StarTable, detect_stars, plate_scale_arcsec_px

log = logging.getLogger(__name__)

# A camera may still deliver an aborted exposure's image when that exposure would have ended
# (the simulator does, into the next exposure); the next start waits this long past that end.
_LATE_IMAGE_S = 1.0
# Calibration pulses are kept within these bounds whatever the rates suggest.
_MIN_STEP_MS, _MAX_STEP_MS = 50, 4000
# Calibration step length when neither the guide rate nor the pixel scale is known.
_DEFAULT_STEP_MS = 1000
# stop() repeats its cancel this often, and gives up waiting for the loop after this long.
_STOP_RETRY_S = 0.2
_STOP_TIMEOUT_S = 15.0
# A busy guide camera (finishing a readout, or an aborted exposure's image) is waited for this
# long past the exposure time before the exposure counts as failed.
_BUSY_WAIT_S = 5.0
_BUSY_POLL_S = 0.1


@dataclass(frozen=True)
class GuiderConfig:
    """Settings of the native guider; units in the names, defaults for a ~1-4 "/px guider.

    - exposure_s: guide exposure; longer averages seeing, shorter reacts faster.
    - detection_sigma: star detection threshold (sep), in background RMS.
    - search_radius_px: how far from its predicted place a guide star is looked for.
    - outlier_px: a star whose displacement differs this much from the median is left out.
    - min_matched_fraction: share of the guide stars that must be found for a fix.
    - reacquire_tolerance_px: match tolerance of the whole-frame pattern search after a loss.
    - reselect_after_frames: lost frames after which new stars are chosen (and the lock moves).
    - acquire_frames: frames tried at start before giving up with `NoGuideStar`.
    - ra, dec: controller settings per axis (RA: PHD2's hysteresis defaults; Dec: plain
      proportional).
    - calibration_distance_px, calibration_steps: each calibration leg moves the stars about
      this far in about this many pulses (step lengths come from the mount's guide rate and
      the pixel scale, or `calibration_step_ms`); at most calibration_max_steps pulses.
    - max_orthogonality_error_deg: a calibration whose axes are further from perpendicular
      than this is rejected (the stars did not move as the pulses asked).
    - pixel_scale_arcsec_px / focal_length_mm: the guide camera's scale; by default from its
      pixel size and the mount's focal length (right for an off-axis guider).
    - max_consecutive_errors, retry_delay_s, max_retry_delay_s: device-error tolerance.
    - rms_window_steps: at most this many steps in the RMS window.
    - dither_seed: seed of the dither offsets (None: random).
    """

    exposure_s: float = 1.0
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    detection_sigma: float = 5.0
    search_radius_px: float = 10.0
    outlier_px: float = 1.5
    min_matched_fraction: float = 0.5
    reacquire_tolerance_px: float = 2.0
    reselect_after_frames: int = 5
    acquire_frames: int = 3
    ra: AxisSettings = field(default_factory=AxisSettings)
    dec: AxisSettings = field(
        default_factory=lambda: AxisSettings(aggressiveness=1.0, hysteresis=0.0)
    )
    calibration_distance_px: float = 15.0
    calibration_steps: int = 5
    calibration_max_steps: int = 12
    calibration_step_ms: int | None = None
    max_orthogonality_error_deg: float = 30.0
    pixel_scale_arcsec_px: float | None = None
    focal_length_mm: float | None = None
    max_consecutive_errors: int = 10
    retry_delay_s: float = 1.0
    max_retry_delay_s: float = 10.0
    rms_window_steps: int = 1000
    dither_seed: int | None = None

    def __post_init__(self) -> None:
        """Raise ValueError on settings the loop cannot work with."""
        if self.exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {self.exposure_s}")
        if self.search_radius_px <= 0 or self.outlier_px <= 0 or self.reacquire_tolerance_px <= 0:
            raise ValueError("search_radius_px, outlier_px, reacquire_tolerance_px must be > 0")
        if not 0 < self.min_matched_fraction <= 1:
            raise ValueError("min_matched_fraction must be within (0, 1]")
        if self.reselect_after_frames < 1 or self.acquire_frames < 1:
            raise ValueError("reselect_after_frames and acquire_frames must be >= 1")
        if self.calibration_distance_px <= 0 or self.calibration_steps < 2:
            raise ValueError("need calibration_distance_px > 0 and calibration_steps >= 2")
        if self.calibration_max_steps < self.calibration_steps:
            raise ValueError("calibration_max_steps must be >= calibration_steps")
        if self.max_consecutive_errors < 1 or self.retry_delay_s < 0:
            raise ValueError("need max_consecutive_errors >= 1 and retry_delay_s >= 0")


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
        self._camera = camera
        self._mount = mount
        self._config = config or GuiderConfig()
        self._calibrations: dict[PierSide, Calibration] = dict(calibrations or {})
        self._star_config = StarConfig(
            threshold_sigma=self._config.detection_sigma, edge_margin_px=2, max_stars=200
        )
        self._rng = random.Random(self._config.dither_seed)
        self._queues: list[asyncio.Queue[GuideEvent]] = []
        self._rms = RmsWindow(self._config.rms_window_steps)
        self._ra = AxisController(self._config.ra)
        self._dec = AxisController(self._config.dec)
        self._state = GuiderState.STOPPED
        self._task: asyncio.Task[None] | None = None
        self._stop_requested = False
        self._output_enabled = True
        self.last_error: str | None = None
        # Guiding state: the stars followed (positions when chosen), where they are now
        # relative to that, and the lock offset (dither) relative to the same origin.
        self._stars: GuideStars | None = None
        self._shift = (0.0, 0.0)
        self._lock_offset = (0.0, 0.0)
        self._calibration: Calibration | None = None
        self._scale_arcsec_px: float | None = None
        self._frame = 0
        self._lost_frames = 0
        # Frame bookkeeping: a repeated frame after a pulse is stale; an aborted exposure's
        # image may still arrive until `_aborted_until` (monotonic s).
        self._last_digest: int | None = None
        self._pulsed_since_frame = False
        self._exposure_ends_at: float | None = None
        self._aborted_until = 0.0
        self._in_hand = 0.0
        self._exposure_s = self._config.exposure_s

    # --- what the owner sees -------------------------------------------------------------

    @property
    def state(self) -> GuiderState:
        return self._state

    @property
    def lock_position(self) -> tuple[float, float] | None:
        if self._stars is None or len(self._stars) == 0:
            return None
        y, x = self._stars.primary
        return y + self._lock_offset[0], x + self._lock_offset[1]

    @property
    def calibration(self) -> Calibration | None:
        """The calibration in use (for this declination and pier side), None before start."""
        return self._calibration

    @property
    def calibrations(self) -> dict[PierSide, Calibration]:
        """Measured calibrations by pier side, to keep for the next session."""
        return dict(self._calibrations)

    @property
    def pixel_scale_arcsec_px(self) -> float | None:
        return self._scale_arcsec_px

    @property
    def exposure_s(self) -> float:
        """The guide exposure; a change applies from the next frame."""
        return self._exposure_s

    @exposure_s.setter
    def exposure_s(self, exposure_s: float) -> None:
        if exposure_s <= 0:
            raise ValueError(f"exposure_s must be > 0, got {exposure_s}")
        self._exposure_s = exposure_s

    @property
    def output_enabled(self) -> bool:
        """Whether corrections are sent; when off the loop only measures (for comparisons)."""
        return self._output_enabled

    @output_enabled.setter
    def output_enabled(self, enabled: bool) -> None:
        if enabled != self._output_enabled:
            self._ra.reset()  # no hysteresis memory of corrections never sent
            self._dec.reset()
        self._output_enabled = enabled

    def rms(self) -> GuideRms | None:
        return self._rms.value()

    def reset_rms(self) -> None:
        self._rms.reset()

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[GuideEvent]:
        queue: asyncio.Queue[GuideEvent] = asyncio.Queue(maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[GuideEvent]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    # --- commands ------------------------------------------------------------------------

    async def start(self, *, recalibrate: bool = False) -> None:
        """Start the loop and return once it guides (stars locked, calibration in place).

        Calibrates when there is no calibration for the pier side, or when `recalibrate`.
        A no-op when already running. Raises `NoGuideStar`, `CalibrationFailed` or the
        `DeviceError` that prevented guiding; the loop is stopped then.
        """
        if self._task is not None and not self._task.done():
            return
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop_requested = False
        self._task = asyncio.create_task(self._run(started, recalibrate), name="guider")
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
        task = self._task
        if task is None:
            return
        self._stop_requested = True
        if not task.done() and self._exposure_ends_at is not None:
            self._aborted_until = self._exposure_ends_at + _LATE_IMAGE_S
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while not task.done():
            if time.monotonic() > deadline:
                log.error("guider: the guide loop did not end within %.0f s", _STOP_TIMEOUT_S)
                return
            task.cancel()
            await asyncio.wait({task}, timeout=_STOP_RETRY_S)
        self._task = None

    async def dither(self, offset_px: float = 5.0, *, ra_only: bool = False) -> tuple[float, float]:
        """Move the lock to a random offset from the original lock position and return the
        offset (dy, dx) px: a random direction (along the RA axis only if `ra_only`) and a
        distance between half of and all of `offset_px`. Offsets are taken from the
        original lock, not added up, so a night of dithers does not walk the stars off the
        sensor. Raises `NotGuiding` when not guiding, ValueError for `offset_px` <= 0."""
        if offset_px <= 0:
            raise ValueError(f"offset_px must be > 0, got {offset_px}")
        calibration = self._calibration
        if self._state not in (GuiderState.GUIDING, GuiderState.LOST) or calibration is None:
            raise NotGuiding("dither", f"guider is {self._state.value}")
        distance = self._rng.uniform(0.5 * offset_px, offset_px)
        if ra_only:
            angle = math.radians(calibration.ra_angle_deg) + self._rng.choice((0.0, math.pi))
        else:
            angle = self._rng.uniform(-math.pi, math.pi)
        self._lock_offset = (distance * math.sin(angle), distance * math.cos(angle))
        self._ra.reset()
        self._dec.reset()
        lock = self.lock_position
        assert lock is not None  # guiding implies guide stars
        log.info("guider: dither to (%.2f, %.2f) px from the original lock", *self._lock_offset)
        self._emit(Dithered(self._lock_offset[0], self._lock_offset[1], lock[0], lock[1]))
        return self._lock_offset

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
        if self._state not in (GuiderState.GUIDING, GuiderState.LOST):
            raise NotGuiding("settle", f"guider is {self._state.value}")
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
                    self._emit(SettleDone(False, time.monotonic() - began, distance, event.reason))
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
                        self._emit(SettleDone(True, elapsed, distance, "settled"))
                        log.info("guider: settled in %.1f s (%.2f px)", elapsed, distance)
                        return
        finally:
            self.unsubscribe(queue)
        message = (
            f"error did not stay under {tolerance_px} px for {min_time_s} s "
            f"within {timeout_s} s (last {distance if distance is None else round(distance, 2)} px)"
        )
        self._emit(SettleDone(False, time.monotonic() - began, distance, message))
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
                self.last_error = reason
            self._set_state(GuiderState.STOPPED)
            self._emit(GuidingStopped(datetime.now(UTC), reason, error))
            log.info("guider: stopped (%s)", reason)

    async def _begin(self, recalibrate: bool) -> None:
        self._set_state(GuiderState.ACQUIRING)
        self._frame = 0
        self._lost_frames = 0
        self._rms.reset()
        status = await self._mount.status()
        if not status.tracking:
            log.warning("guider: the mount is not tracking; guiding will fight the sky's motion")
        frame, table, stars = await self._acquire()
        side, dec = status.side_of_pier, status.position.dec_deg
        self._scale_arcsec_px = self._optical_scale(frame)
        stored = self._calibrations.get(side) or next(iter(self._calibrations.values()), None)
        if recalibrate or stored is None:
            stored = await self._calibrate(status, stars)
            self._calibrations[side] = stored
        self._calibration = stored.for_pier_side(side).for_declination(dec)
        if self._scale_arcsec_px is None:
            self._scale_arcsec_px = self._scale_from_rates(status, self._calibration)
        self._emit(self._calibration.summary())
        # Calibration moved the stars about: lock on where they are now.
        frame, table = await self._frame_and_stars()
        stars = self._select(frame, table)
        if len(stars) == 0:
            raise NoGuideStar("start", "guide stars gone after calibration")
        self._lock_on(stars)
        self._set_state(GuiderState.GUIDING)
        log.info(
            'guider: guiding on %d star(s), %.2f "/px, exposure %.2f s',
            len(stars),
            self._scale_arcsec_px,
            self._exposure_s,
        )

    async def _guide(self) -> tuple[str, bool]:
        """Guide until stopped; returns why it ended and whether that is an error."""
        cfg = self._config
        failures, delay = 0, cfg.retry_delay_s
        while not self._stop_requested:
            try:
                await self._guide_step()
            except DeviceError as e:
                failures += 1
                self.last_error = str(e)
                log.warning("guider: %s (%d in a row)", e, failures)
                self._emit(GuiderFault(datetime.now(UTC), str(e), failures))
                if failures >= cfg.max_consecutive_errors:
                    return f"gave up after {failures} device errors in a row: {e}", True
                await asyncio.sleep(delay)
                delay = min(2.0 * delay, cfg.max_retry_delay_s)
            else:
                failures, delay = 0, cfg.retry_delay_s
        return "stopped", False

    async def _guide_step(self) -> None:
        stars, calibration, scale = self._stars, self._calibration, self._scale_arcsec_px
        assert stars is not None
        assert calibration is not None
        assert scale is not None
        frame, table = await self._frame_and_stars()
        in_hand = self._in_hand
        cfg = self._config
        required = min_matches(stars, cfg.min_matched_fraction)
        fix = locate(
            stars,
            table,
            self._shift,
            search_radius_px=cfg.search_radius_px,
            outlier_px=cfg.outlier_px,
            required=required,
        )
        if fix is None:
            # Not near the prediction. Found elsewhere in the frame, the stars may be caught
            # mid-motion (a frame exposed during a slew or a bump): look there next frame and
            # correct only once a second frame finds them in the same place.
            jump = find_pattern(
                stars, table, tolerance_px=cfg.reacquire_tolerance_px, required=required
            )
            if jump is None:
                self._on_lost(frame, table, f"guide stars not found ({len(table)} in the frame)")
            else:
                distance = math.hypot(jump.dy - self._shift[0], jump.dx - self._shift[1])
                self._shift = (jump.dy, jump.dx)
                self._on_lost(
                    frame, table, f"guide stars jumped {distance:.0f} px; confirming next frame"
                )
            return
        if self._state is GuiderState.LOST:
            lock = self.lock_position
            assert lock is not None
            self._emit(GuideStarsSelected(self._frame, _now(), fix.matched, *lock, True))
            log.info("guider: guide stars found again (%d)", fix.matched)
            self._ra.reset()
            self._dec.reset()
        self._lost_frames = 0
        self._set_state(GuiderState.GUIDING)
        self._shift = (fix.dy, fix.dx)
        dy, dx = fix.dy - self._lock_offset[0], fix.dx - self._lock_offset[1]
        ra_px, dec_px = calibration.axis_components(dy, dx)
        west_ms, north_ms = calibration.pulses_ms(
            -self._ra.correction_px(ra_px), -self._dec.correction_px(dec_px)
        )
        ra_pulse = _pulse(self._ra.limit_ms(west_ms), ra=True)
        dec_pulse = _pulse(self._dec.limit_ms(north_ms), ra=False)
        if not self._output_enabled:
            ra_pulse = dec_pulse = None
        latency_s: float | None = None
        processing_s = time.monotonic() - in_hand
        if ra_pulse or dec_pulse:
            frame_end = frame.exposure_start_utc + timedelta(seconds=frame.exposure_s)
            latency_s = (datetime.now(UTC) - frame_end).total_seconds()
            for pulse in (ra_pulse, dec_pulse):
                if pulse is not None:
                    self._pulsed_since_frame = True
                    await self._mount.pulse_guide(pulse.direction, pulse.duration_ms)
            moved = calibration.motion_px(_signed(ra_pulse), _signed(dec_pulse))
            self._shift = (fix.dy + moved[0], fix.dx + moved[1])
        ra_arcsec, dec_arcsec = ra_px * scale, dec_px * scale
        self._rms.add(ra_arcsec, dec_arcsec)
        self._emit(
            GuideStep(
                frame=self._frame,
                time_utc=frame.exposure_start_utc,
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

    def _on_lost(self, frame: RawFrame, table: StarTable, reason: str) -> None:
        self._lost_frames += 1
        self._set_state(GuiderState.LOST)
        log.warning(
            "guider: %s, frame %d, %d lost in a row", reason, self._frame, self._lost_frames
        )
        self._emit(StarLost(self._frame, _now(), self._lost_frames, reason))
        if self._lost_frames < self._config.reselect_after_frames:
            return
        stars = self._select(frame, table)
        if len(stars) == 0:
            return
        self._lock_on(stars)
        self._set_state(GuiderState.GUIDING)

    def _lock_on(self, stars: GuideStars) -> None:
        """Follow `stars` from here on, with the lock where they are now."""
        self._stars = stars
        self._shift = (0.0, 0.0)
        self._lock_offset = (0.0, 0.0)
        self._lost_frames = 0
        self._ra.reset()
        self._dec.reset()
        lock = self.lock_position
        assert lock is not None
        self._emit(GuideStarsSelected(self._frame, _now(), len(stars), *lock, False))
        log.info("guider: locked on %d star(s) at (%.1f, %.1f)", len(stars), *lock)

    # --- calibration ---------------------------------------------------------------------

    async def _calibrate(self, status: MountStatus, stars: GuideStars) -> Calibration:
        """Measure the star motion per second of West and North pulse.

        Each axis: pulses in one direction until the stars moved `calibration_distance_px`
        (a straight-line fit through every step), then one pulse of the same total back, so
        the stars end near where they began. Raises `CalibrationFailed`.
        """
        self._set_state(GuiderState.CALIBRATING)
        dec = status.position.dec_deg
        ra_step_ms, dec_step_ms = self._calibration_steps(status)
        log.info("guider: calibrating, steps %d ms (RA) / %d ms (Dec)", ra_step_ms, dec_step_ms)
        shift = (0.0, 0.0)
        ra_px_s, shift = await self._calibration_leg(stars, shift, GuideDirection.WEST, ra_step_ms)
        dec_px_s, shift = await self._calibration_leg(
            stars, shift, GuideDirection.NORTH, dec_step_ms
        )
        try:
            calibration = Calibration(ra_px_s, dec_px_s, dec, status.side_of_pier)
        except ValueError as e:
            raise CalibrationFailed("calibrate", str(e)) from e
        error = calibration.orthogonality_error_deg
        if error > self._config.max_orthogonality_error_deg:
            raise CalibrationFailed(
                "calibrate", f"RA and Dec axes are {error:.0f} degrees from perpendicular"
            )
        log.info(
            "guider: calibrated: RA %.1f deg %.3f px/s, Dec %.1f deg %.3f px/s, "
            "orthogonality error %.1f deg",
            calibration.ra_angle_deg,
            calibration.ra_rate_px_s,
            calibration.dec_angle_deg,
            calibration.dec_rate_px_s,
            error,
        )
        return calibration

    async def _calibration_leg(
        self,
        stars: GuideStars,
        shift: tuple[float, float],
        direction: GuideDirection,
        step_ms: int,
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """One axis: returns its velocity (dy, dx) px/s and where the stars are after the
        pulse back."""
        cfg = self._config
        axis = "RA" if direction is GuideDirection.WEST else "Dec"
        times, positions = [0.0], [shift]
        step = (0.0, 0.0)
        while True:
            await self._mount.pulse_guide(direction, step_ms)
            self._pulsed_since_frame = True
            predicted = (positions[-1][0] + step[0], positions[-1][1] + step[1])
            _, table = await self._frame_and_stars()
            fix = self._track(stars, table, predicted)
            if fix is None:
                raise CalibrationFailed("calibrate", f"lost the guide stars during the {axis} leg")
            here = (fix.dy, fix.dx)
            step = (here[0] - positions[-1][0], here[1] - positions[-1][1])
            times.append(times[-1] + step_ms)
            positions.append(here)
            moved = math.hypot(here[0] - shift[0], here[1] - shift[1])
            if moved >= cfg.calibration_distance_px:
                break
            if len(times) - 1 >= cfg.calibration_max_steps:
                if moved < max(2.0, 0.25 * cfg.calibration_distance_px):
                    raise CalibrationFailed(
                        "calibrate",
                        f"the stars moved only {moved:.1f} px in {len(times) - 1} {axis} "
                        f"pulses of {step_ms} ms: is the mount guiding?",
                    )
                break
        velocity = fit_axis(times, positions)
        back = _opposite(direction)
        total_ms = int(times[-1])
        await self._mount.pulse_guide(back, total_ms)
        self._pulsed_since_frame = True
        expected = (
            positions[-1][0] - velocity[0] * total_ms / 1000.0,
            positions[-1][1] - velocity[1] * total_ms / 1000.0,
        )
        _, table = await self._frame_and_stars()
        fix = self._track(stars, table, expected)
        if fix is None:
            raise CalibrationFailed("calibrate", f"lost the guide stars returning on {axis}")
        miss = math.hypot(fix.dy - expected[0], fix.dx - expected[1])
        log.info(
            "guider: %s leg %.1f px in %d pulses; %s return missed by %.2f px",
            axis,
            math.hypot(positions[-1][0] - shift[0], positions[-1][1] - shift[1]),
            len(times) - 1,
            back.name,
            miss,
        )
        return velocity, (fix.dy, fix.dx)

    def _calibration_steps(self, status: MountStatus) -> tuple[int, int]:
        """Pulse lengths (RA, Dec) that move the stars distance/steps px each."""
        cfg = self._config
        if cfg.calibration_step_ms is not None:
            return cfg.calibration_step_ms, cfg.calibration_step_ms
        scale = self._scale_arcsec_px
        ra_rate, dec_rate = status.guide_rate_ra_deg_s, status.guide_rate_dec_deg_s
        if scale is None or not ra_rate or not dec_rate:
            return _DEFAULT_STEP_MS, _DEFAULT_STEP_MS
        step_arcsec = cfg.calibration_distance_px / cfg.calibration_steps * scale
        cos_dec = max(math.cos(math.radians(status.position.dec_deg)), 0.1)
        ra_ms = 1000.0 * step_arcsec / (ra_rate * 3600.0 * cos_dec)
        dec_ms = 1000.0 * step_arcsec / (dec_rate * 3600.0)
        return _clamp_step(ra_ms), _clamp_step(dec_ms)

    # --- frames and stars ----------------------------------------------------------------

    async def _acquire(self) -> tuple[RawFrame, StarTable, GuideStars]:
        for _ in range(self._config.acquire_frames):
            frame, table = await self._frame_and_stars()
            stars = self._select(frame, table)
            if len(stars):
                return frame, table, stars
        raise NoGuideStar(
            "start",
            f"no usable guide star in {self._config.acquire_frames} frames "
            f"({len(table)} detections; {self._exposure_s} s exposures)",
        )

    async def _frame_and_stars(self) -> tuple[RawFrame, StarTable]:
        frame = await self._expose()
        self._in_hand = time.monotonic()
        table = await asyncio.to_thread(_measure_stars, frame, self._star_config)
        return frame, table

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
            self._frame += 1
            digest = zlib.crc32(np.ascontiguousarray(frame.data).data)
            stale = digest == self._last_digest and self._pulsed_since_frame
            self._last_digest = digest
            self._pulsed_since_frame = False
            if stale and attempt == 0:
                log.warning("guider: frame %d repeats the one before a pulse; again", self._frame)
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

    def _select(self, frame: RawFrame, table: StarTable) -> GuideStars:
        return select_guide_stars(
            table, frame.data.shape, self._saturation_adu(frame), self._config.selection
        )

    def _track(
        self, stars: GuideStars, table: StarTable, predicted: tuple[float, float]
    ) -> Fix | None:
        """Find the guide stars near `predicted`, or anywhere by their pattern (calibration:
        the mount is not moving by itself between its pulses)."""
        cfg = self._config
        required = min_matches(stars, cfg.min_matched_fraction)
        fix = locate(
            stars,
            table,
            predicted,
            search_radius_px=cfg.search_radius_px,
            outlier_px=cfg.outlier_px,
            required=required,
        )
        if fix is None:
            fix = find_pattern(
                stars, table, tolerance_px=cfg.reacquire_tolerance_px, required=required
            )
        return fix

    def _saturation_adu(self, frame: RawFrame) -> float:
        info = frame.info
        level = float(info.max_adu)
        if info.full_well_e and info.electrons_per_adu:
            level = min(level, info.full_well_e / info.electrons_per_adu)
        return level

    def _optical_scale(self, frame: RawFrame) -> float | None:
        cfg = self._config
        if cfg.pixel_scale_arcsec_px is not None:
            return cfg.pixel_scale_arcsec_px
        focal_mm = cfg.focal_length_mm
        if focal_mm is None and self._mount.info.focal_length_m:
            focal_mm = 1000.0 * self._mount.info.focal_length_m
        if focal_mm is None:
            return None
        return plate_scale_arcsec_px(frame.info.pixel_size_x_um, focal_mm, frame.status.bin_x)

    def _scale_from_rates(self, status: MountStatus, calibration: Calibration) -> float:
        """Pixel scale from the Dec guide rate and the measured Dec motion, when the optics
        are unknown. Raises `GuiderError` when that is unknown too."""
        if not status.guide_rate_dec_deg_s:
            raise GuiderError(
                "start", "pixel scale unknown: set GuiderConfig.pixel_scale_arcsec_px"
            )
        return status.guide_rate_dec_deg_s * 3600.0 / calibration.dec_rate_px_s

    # --- plumbing ------------------------------------------------------------------------

    def _set_state(self, state: GuiderState) -> None:
        if state is not self._state:
            log.debug("guider: %s -> %s", self._state.value, state.value)
            self._state = state

    def _emit(self, event: GuideEvent) -> None:
        """Hand `event` to every subscriber; a full queue loses its oldest event."""
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)


def _measure_stars(frame: RawFrame, config: StarConfig) -> StarTable:
    """Detect the stars of a guide frame and refine their centroids (CPU work: run it in a
    thread)."""
    return refine_centroids(frame.data, detect_stars(frame.data, config))


def _pulse(signed_ms: int, *, ra: bool) -> GuidePulse | None:
    if signed_ms == 0:
        return None
    return GuidePulse(pulse_direction(signed_ms, ra=ra), abs(signed_ms))


def _signed(pulse: GuidePulse | None) -> float:
    """West/North positive, East/South negative, 0 for no pulse."""
    if pulse is None:
        return 0.0
    positive = pulse.direction in (GuideDirection.WEST, GuideDirection.NORTH)
    return float(pulse.duration_ms if positive else -pulse.duration_ms)


def _opposite(direction: GuideDirection) -> GuideDirection:
    return {
        GuideDirection.NORTH: GuideDirection.SOUTH,
        GuideDirection.SOUTH: GuideDirection.NORTH,
        GuideDirection.EAST: GuideDirection.WEST,
        GuideDirection.WEST: GuideDirection.EAST,
    }[direction]


def _clamp_step(ms: float) -> int:
    return round(min(_MAX_STEP_MS, max(_MIN_STEP_MS, ms)))


def _now() -> datetime:
    return datetime.now(UTC)


def _implements_guider(guider: NativeGuider) -> Guider:
    """Never called: mypy checks here that `NativeGuider` implements the `Guider` protocol."""
    return guider
