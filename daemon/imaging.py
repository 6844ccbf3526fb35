"""Imaging by hand: a looped exposure, the flats wizard and centering on a point of a frame.

The loop and the flats wizard run as background tasks whose state the page polls; both go
through the capture service, so their frames are stored, measured and recorded like a run's
(loop frames are LIGHT frames of the night; there is no unsaved "snapshot" kind). A run owns
the equipment: while one is active, every action here is refused naming it, and a loop or
wizard holding the camera makes a run's capture wait its turn the capture service's way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.capture import CaptureRequest, CaptureService
from daemon.errors import Busy, Conflict, Refused
from daemon.events import record_event
from daemon.frames import frame_file, get_frame
from daemon.imaging_state import (
    FilterFlats,
    FlatsSettings,
    FlatsState,
    FlatTrial,
    JobState,
    LoopSettings,
    LoopState,
)
from daemon.store import FrameStore
from drivers.base import Camera, CoverCalibrator, CoverState, Mount, RaDec
from drivers.equipment import Equipment
from drivers.errors import DeviceError
from processing.io import read_fits
from processing.solve import SkyHint, SolveConfig, SolveError, solve
from sequences.centering import CenteringConfig, center_target
from sequences.frames import ExposureSpec, FrameType, SavedFrame
from sequences.instructions.calibration import FlatSetting, search_flat_setting
from sequences.platesolve import HINT_RADIUS_DEG, frame_scale, frame_solver

log = logging.getLogger(__name__)

ActiveRun = Callable[[], int | None]
"""The id of the run that owns the equipment now, if any."""

_UNTIL_STOPPED = 100_000
"""A loop without a count takes at most this many frames (days of short exposures)."""
_STOP_TIMEOUT_S = 60.0
"""How long a stop waits for the frame being read out to be stored."""


@dataclass(frozen=True)
class CenterResult:
    frame_id: int
    x: float
    y: float
    target: RaDec
    """The sky position of the pixel (J2000), from the frame's plate solve."""
    success: bool
    attempts: int
    final_error_arcsec: float | None
    reason: str


class ImagingService:
    """The Imaging page's actions. Start/stop calls return at once; the work runs in tasks."""

    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        capture: CaptureService,
        store: FrameStore,
        active_run: ActiveRun,
        solver_cache_dir: Path,
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._capture = capture
        self._store = store
        self._active_run = active_run
        self._cache_dir = solver_cache_dir
        self.loop = LoopState()
        self.flats = FlatsState()
        self._loop_task: asyncio.Task[None] | None = None
        self._flats_task: asyncio.Task[None] | None = None
        self._centering = asyncio.Lock()
        self._solutions: dict[int, Any] = {}
        """Plate solutions (astropy WCS) of frames centred on, by frame id."""

    async def start_loop(self, settings: LoopSettings) -> LoopState:
        """`Busy` while a run, a capture, an autofocus or the wizard holds the camera."""
        self._refuse_while_busy("camera")
        if settings.filter_name is not None and self._equipment.filter_wheel is None:
            raise Refused("filter_name", "given, but the profile has no filter wheel")
        self.loop = LoopState(JobState.RUNNING, settings, started_at=datetime.now(UTC))
        self._loop_task = asyncio.create_task(self._run_loop(self.loop))
        return self.loop

    async def stop_loop(self) -> LoopState:
        """Stop the loop (the frame being exposed is aborted, one read out is still stored)."""
        await _stop(self._loop_task)
        return self.loop

    async def start_flats(self, settings: FlatsSettings) -> FlatsState:
        self._refuse_while_busy("camera")
        if settings.min_exposure_s > settings.max_exposure_s:
            raise Refused("min_exposure_s", "larger than max_exposure_s: swap them")
        if settings.source == "panel":
            panel = self._equipment.cover_calibrator
            if panel is None:
                raise Refused("source", "panel flats need a flat panel; the profile has none")
        if settings.filters and self._equipment.filter_wheel is None:
            raise Refused("filters", "given, but the profile has no filter wheel")
        self.flats = FlatsState(JobState.RUNNING, settings, started_at=datetime.now(UTC))
        self._flats_task = asyncio.create_task(self._run_flats(self.flats))
        return self.flats

    async def stop_flats(self) -> FlatsState:
        await _stop(self._flats_task)
        return self.flats

    async def center(
        self, frame_id: int, x: float, y: float, config: CenteringConfig
    ) -> CenterResult:
        """Plate-solve frame `frame_id` (once), then center the mount on its pixel (x, y)
        (0-based, x along a row, y down the rows of the stored data) by slew, expose, solve
        and correct. `Busy` while a run or another centering uses the mount or a capture the
        camera, `Refused` for a pixel outside the frame or a frame that does not solve,
        `Conflict` without a connected mount and camera, `NotFound`/`Gone` for the frame."""
        self._refuse_while_busy("mount")
        if self._centering.locked():
            raise Busy("a centering is already moving the mount")
        async with self._centering:
            mount, camera = self._mount_and_camera()
            row = await asyncio.to_thread(get_frame, self._engine, frame_id)
            if not (0 <= x <= row.width_px - 1 and 0 <= y <= row.height_px - 1):
                raise Refused(
                    "x", f"({x}, {y}) is outside the {row.width_px} x {row.height_px} px frame"
                )
            wcs = self._solutions.get(frame_id)
            if wcs is None:
                wcs = await self._solve(frame_id, row.bin_x, row.ra_deg, row.dec_deg, camera)
                self._solutions[frame_id] = wcs
            ra_deg, dec_deg = (float(v) for v in wcs.pixel_to_world_values(x, y))
            target = RaDec((ra_deg / 15.0) % 24.0, dec_deg)
            solver = frame_solver(self._equipment, self._cache_dir)
            async with self._capture.camera_reserved("a centering"):
                report = await center_target(mount, camera, target, solver, config)
        await asyncio.to_thread(
            self._event,
            "info" if report.success else "warning",
            f"centered on ({x:.0f}, {y:.0f}) of frame {frame_id}"
            if report.success
            else f"centering on ({x:.0f}, {y:.0f}) of frame {frame_id}: {report.reason}",
            {"frame_id": frame_id, "ra_hours": target.ra_hours, "dec_deg": target.dec_deg},
        )
        return CenterResult(
            frame_id,
            x,
            y,
            target,
            report.success,
            len(report.attempts),
            report.final_error_arcsec,
            report.reason,
        )

    async def frame_wcs(self, frame_id: int) -> Any:
        """The plate solution (astropy WCS) of a stored frame, solved once at the main
        camera's scale (off the event loop) and kept with the centerings' solutions.
        `Conflict` without a connected camera or a focal length, `Refused` for a frame that
        does not solve, `NotFound`/`Gone` for the frame."""
        wcs = self._solutions.get(frame_id)
        if wcs is None:
            camera = self._capture_camera()
            row = await asyncio.to_thread(get_frame, self._engine, frame_id)
            wcs = await self._solve(frame_id, row.bin_x, row.ra_deg, row.dec_deg, camera)
            self._solutions[frame_id] = wcs
        return wcs

    async def shutdown(self) -> None:
        for task in (self._loop_task, self._flats_task):
            await _stop(task)

    def _refuse_while_busy(self, device: str) -> None:
        run_id = self._active_run()
        if run_id is not None:
            raise Busy(f"run {run_id} is using the {device}: pause or stop it first")
        if device == "camera" and self._capture.busy:
            raise Busy(
                "the camera is busy (a capture, an autofocus or a centering): wait or stop it"
            )

    def _mount_and_camera(self) -> tuple[Mount, Camera]:
        mount, camera = self._equipment.mount, self._equipment.camera
        if mount is None or camera is None or not mount.connected or not camera.connected:
            raise Conflict("centering needs a connected mount and camera")
        return mount, camera

    async def _solve(
        self,
        frame_id: int,
        binning: int,
        ra_deg: float | None,
        dec_deg: float | None,
        camera: Camera,
    ) -> Any:
        path = await asyncio.to_thread(frame_file, self._engine, self._store, frame_id)
        try:
            scale = frame_scale(self._equipment, camera.info.pixel_size_x_um, binning)
        except SolveError as e:
            raise Conflict(f"frame {frame_id} cannot be solved: {e}") from e
        hint = (
            SkyHint(ra_deg, dec_deg, HINT_RADIUS_DEG)
            if ra_deg is not None and dec_deg is not None
            else None
        )

        def run() -> Any:
            data, _ = read_fits(path)
            return solve(
                data, scale=scale, cache_dir=self._cache_dir, hint=hint, config=SolveConfig()
            ).wcs

        try:
            return await asyncio.to_thread(run)
        except SolveError as e:
            raise Refused("frame_id", f"frame {frame_id} could not be plate solved: {e}") from e

    async def _run_loop(self, state: LoopState) -> None:
        settings = state.settings
        assert settings is not None
        spec = ExposureSpec(
            FrameType.LIGHT,
            settings.exposure_s,
            settings.filter_name,
            settings.gain,
            None,
            settings.binning,
        )

        async def saved(frame: SavedFrame) -> None:
            state.frames_taken += 1
            state.last_frame = frame

        request = CaptureRequest(spec, settings.count or _UNTIL_STOPPED)
        await self._supervised(
            state, lambda: self._capture.capture(request, on_saved=saved), "loop"
        )

    async def _run_flats(self, state: FlatsState) -> None:
        await self._supervised(state, lambda: self._flats_job(state), "flats")

    async def _supervised(
        self, state: LoopState | FlatsState, work: Callable[[], Awaitable[object]], what: str
    ) -> None:
        """Run `work`, turning its end into the job's state (and an event for a failure)."""
        try:
            await work()
            state.state = JobState.DONE
        except asyncio.CancelledError:
            state.state = JobState.STOPPED
            state.message = "stopped"
            raise
        except Exception as e:  # the job's end is visible state, never a silent task error
            state.state = JobState.FAILED
            state.message = _reason(e)
            log.warning("imaging %s failed: %s", what, state.message)
            await asyncio.to_thread(self._event, "error", f"{what}: {state.message}")

    async def _flats_job(self, state: FlatsState) -> None:
        settings = state.settings
        assert settings is not None
        camera = self._capture_camera()
        panel = self._equipment.cover_calibrator if settings.source == "panel" else None
        reopen = False
        if panel is not None:
            if panel.info.max_brightness <= 0:
                raise Conflict(f"{panel.info.name!r} has no flat panel: use source sky")
            cover = (await panel.status()).cover
            if cover not in (CoverState.CLOSED, CoverState.NOT_PRESENT):
                await panel.close_cover()
            reopen = cover is CoverState.OPEN
        else:
            await self._sky_is_visible()
        try:
            await self._all_filters(state, settings, camera, panel)
        except asyncio.CancelledError:
            reopen = False  # a stop leaves the cover closed, as a run's abort does
            raise
        finally:
            if panel is not None:
                await asyncio.shield(_put_panel_away(panel, reopen))

    async def _all_filters(
        self,
        state: FlatsState,
        settings: FlatsSettings,
        camera: Camera,
        panel: CoverCalibrator | None,
    ) -> None:
        setting = FlatSetting(
            min(max(1.0, settings.min_exposure_s), settings.max_exposure_s),
            None
            if panel is None
            else min(
                settings.panel_brightness or max(1, panel.info.max_brightness // 2),
                panel.info.max_brightness,
            ),
        )
        wanted: list[str | None] = list(settings.filters) or [None]
        for filter_name in wanted:
            flats = FilterFlats(filter_name)
            state.filters.append(flats)
            async with self._capture.camera_reserved("the flats wizard"):
                await self._prepare(camera, settings, filter_name)
                setting = await self._find_setting(settings, camera, panel, setting, flats)
            flats.exposure_s, flats.brightness = setting.exposure_s, setting.brightness
            lit = f" at brightness {setting.brightness}" if setting.brightness is not None else ""
            await asyncio.to_thread(
                self._event,
                "info",
                f"flats{' ' + filter_name if filter_name else ''}: {setting.exposure_s:.3f} s{lit}",
                {"exposure_s": setting.exposure_s, "brightness": setting.brightness},
            )
            spec = ExposureSpec(
                FrameType.FLAT,
                setting.exposure_s,
                filter_name,
                settings.gain,
                None,
                settings.binning,
            )

            async def saved(frame: SavedFrame, into: FilterFlats = flats) -> None:
                into.frame_ids.append(frame.id)

            await self._capture.capture(CaptureRequest(spec, settings.count), on_saved=saved)

    async def _find_setting(
        self,
        settings: FlatsSettings,
        camera: Camera,
        panel: CoverCalibrator | None,
        start: FlatSetting,
        flats: FilterFlats,
    ) -> FlatSetting:
        """Trial exposures (not saved) until the median is within tolerance of the target."""

        def trial(setting: FlatSetting, median: float) -> None:
            flats.trials.append(FlatTrial(setting.exposure_s, setting.brightness, median))

        found = await search_flat_setting(
            camera,
            panel,
            start,
            target_adu=settings.target_adu,
            tolerance=settings.tolerance,
            exposure_bounds_s=(settings.min_exposure_s, settings.max_exposure_s),
            max_tries=settings.max_tries,
            on_trial=trial,
        )
        if found is not None:
            return found
        raise Conflict(
            f"no exposure between {settings.min_exposure_s} and {settings.max_exposure_s} s "
            f"reaches {settings.target_adu:.0f} ADU"
            + (" (is the panel lit?)" if panel is not None else " (is the sky bright enough?)")
        )

    async def _prepare(
        self, camera: Camera, settings: FlatsSettings, filter_name: str | None
    ) -> None:
        """The filter, binning and gain of the trial frames (the flats set them again)."""
        if filter_name is not None:
            wheel = self._equipment.filter_wheel
            if wheel is None or not wheel.connected:
                raise Conflict("the filter wheel is not connected")
            try:
                await wheel.select(filter_name)
            except ValueError as e:
                raise Refused("filters", str(e)) from e
        if settings.gain is not None:
            await camera.set_gain(settings.gain)
        status = await camera.status()
        if (status.bin_x, status.bin_y) != (settings.binning, settings.binning):
            await camera.set_binning(settings.binning, settings.binning)

    async def _sky_is_visible(self) -> None:
        cover = self._equipment.cover_calibrator
        if (
            cover is not None
            and cover.connected
            and (await cover.status()).cover is CoverState.CLOSED
        ):
            raise Conflict("the dust cover is closed: open it for sky flats, or use source panel")

    def _capture_camera(self) -> Camera:
        camera = self._equipment.camera
        if camera is None or not camera.connected:
            raise Conflict("the camera is not connected")
        return camera

    def _event(self, level: str, message: str, data: dict[str, object] | None = None) -> None:
        record_event(self._engine, level, "imaging", message, data)


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(_STOP_TIMEOUT_S):
            await task


async def _put_panel_away(panel: CoverCalibrator, reopen: bool) -> None:
    try:
        await panel.calibrator_off()
        if reopen:
            await panel.open_cover()
    except DeviceError as e:
        log.warning("the flat panel was not put away: %s", e)


def _reason(error: Exception) -> str:
    if isinstance(error, DeviceError):
        return error.message
    return str(error) or type(error).__name__
