"""The capture service: expose, download, measure, judge, write durably, record, announce.

Frame N is measured, written and recorded (in a worker thread) once the camera has started
exposing frame N+1, so the gap between exposures is close to the download time. A frame that
cannot be written, or whose row cannot be committed (its file is then removed again), stops the
series with a `StoreError` (and an error event); every frame recorded before it stays on disk
and in the database, and a frame is reported saved only once its row is committed. Names that
end in the FITS header are checked before the shutter opens: a refused name costs no exposure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from pathlib import PurePosixPath
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daemon.db.models import Frame, FrameStars, ImagingSession, Target
from daemon.errors import Busy, Refused
from daemon.events import record_event
from daemon.fits_headers import (
    CaptureContext,
    TargetInfo,
    bayer_pattern,
    header_cards,
    text_problem,
)
from daemon.frame_records import (
    accepted_history,
    ensure_profile,
    ensure_session,
    ensure_target,
    next_frame_number,
    weather_record,
)
from daemon.naming import FrameNaming, render
from daemon.store import FrameNotRecorded, FrameStore, StoredFile, StoreError
from drivers.base import Camera, Device, Guider, GuiderState, PierSide, WeatherReading
from drivers.equipment import Equipment
from drivers.errors import DeviceError, InvalidValue, NotConnected
from processing.acceptance import AcceptanceRules, judge
from processing.io import encode_fits
from processing.star_lists import StarList
from processing.stars import measure_frame_stars, plate_scale_arcsec_px
from sequences.frames import ExposureSpec, FrameType, RunTag, SavedFrame

log = logging.getLogger(__name__)

D = TypeVar("D", bound=Device)
S = TypeVar("S")

LIGHT_TYPES = frozenset({FrameType.LIGHT, FrameType.FLAT})

WeatherSource = Callable[[], WeatherReading | None]
"""The weather station's recent reading, from memory (`EquipmentState.recent_weather`)."""


class CaptureBusy(Busy):
    """Another capture (or an autofocus) is using the camera; wait for it or cancel it."""


@dataclass(frozen=True)
class CaptureRequest:
    """`count` frames of one exposure setting, for a target or a run."""

    spec: ExposureSpec
    count: int = 1
    target: TargetInfo | None = None
    tag: RunTag | None = None
    """The sequence run and instruction taking these frames, recorded on each row."""


@dataclass
class CaptureConfig:
    profile_name: str
    file_pattern: str
    timezone: tzinfo
    rules: AcceptanceRules = field(default_factory=AcceptanceRules)


class CaptureService:
    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        store: FrameStore,
        config: CaptureConfig,
        guider: Guider | None = None,
        on_light: Callable[[int], None] | None = None,
        weather: WeatherSource | None = None,
    ) -> None:
        """`on_light(frame_id)` hears of each accepted light once its row is committed (from
        a worker thread; it must return at once: the live stack queues it). `weather` gives
        each frame the station's reading without asking the station."""
        self._engine = engine
        self._on_light = on_light
        self._weather = weather
        self._equipment = equipment
        self._store = store
        self._config = config
        self._guider = guider
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[Any] | None = None
        """The task holding the camera: what it runs between frames (a sequence's trigger's
        autofocus) may reserve the camera again."""
        self._held_by = ""
        """What holds the camera, for the message of a refusal ("a capture")."""

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    @contextlib.asynccontextmanager
    async def camera_reserved(self, job: str) -> AsyncIterator[None]:
        """Hold the camera for another `job` ("an autofocus"); `CaptureBusy` if another task
        uses it. The task holding it already (a series running its between-frames work) may."""
        if self._holder is not None and self._holder is asyncio.current_task():
            yield
            return
        async with self._held(job):
            yield

    @contextlib.asynccontextmanager
    async def _held(self, job: str) -> AsyncIterator[None]:
        if self._lock.locked():
            raise CaptureBusy(f"{self._held_by} is already running on the camera")
        async with self._lock:
            self._holder, self._held_by = asyncio.current_task(), job
            try:
                yield
            finally:
                self._holder = None

    async def capture(
        self,
        request: CaptureRequest,
        *,
        between: Callable[[int], Awaitable[None]] | None = None,
        on_saved: Callable[[SavedFrame], Awaitable[None]] | None = None,
    ) -> list[SavedFrame]:
        """Take `request.count` frames; return them in order.

        `between(k)` runs after frame k-1 is read out and before frame k starts (a sequence's
        dithers); `on_saved` gets each frame once it is stored. Raises `CaptureBusy`,
        `Refused` for settings the equipment cannot take (e.g. an unknown filter, 0 s for
        anything but a bias) and for a name no FITS header can hold (before any exposure),
        `DeviceError` for device faults and `StoreError` when a frame cannot be written or
        recorded (naming the frames of this request saved before it). Frames finished before
        a failure (or a cancellation) are kept.
        """
        spec = request.spec
        if spec.exposure_s == 0 and spec.frame_type is not FrameType.BIAS:
            raise Refused("exposure_s", "must be > 0 except for BIAS frames")
        _check_header_inputs(request)
        saved: list[SavedFrame] = []
        try:
            async with self._held("a capture"):
                await self._series(request, saved, between, on_saved)
        except ValueError as e:  # the devices refuse a setting before any frame
            raise Refused(None, str(e)) from e
        except StoreError as e:
            if not saved:
                raise
            ids = ", ".join(str(frame.id) for frame in saved)
            raise type(e)(f"{e}; saved before it in this request: frame id(s) {ids}") from e
        return saved

    async def _series(
        self,
        request: CaptureRequest,
        saved: list[SavedFrame],
        between: Callable[[int], Awaitable[None]] | None,
        on_saved: Callable[[SavedFrame], Awaitable[None]] | None,
    ) -> None:
        """Take the frames of `request`, appending each to `saved` once it is recorded."""
        camera = self._camera()
        await self._prepare(camera, request.spec)
        previous: CaptureContext | None = None  # read out, not yet stored
        pending: asyncio.Task[SavedFrame] | None = None  # storing the frame before it
        exposure: asyncio.Task[CaptureContext] | None = None

        async def keep(task: asyncio.Task[SavedFrame]) -> None:
            frame = await asyncio.shield(task)  # raises a failed write: stop there
            saved.append(frame)
            if on_saved is not None:
                await on_saved(frame)

        try:
            for k in range(request.count):
                if k > 0 and between is not None:
                    await between(k)
                started = asyncio.Event()
                exposure = asyncio.create_task(self._expose(camera, request, started))
                if previous is not None:
                    # Store the last frame only once the camera exposes the next one, so
                    # the CPU work does not slow the camera's start.
                    await _first_of(started.wait(), exposure)
                    pending = self._store_task(previous)
                    previous = None
                previous = await exposure
                if pending is not None:
                    task, pending = pending, None
                    await keep(task)
        finally:
            # A stop or a failure while the next frame starts (its exposure is waited on
            # beside storing the last one, not awaited) aborts that exposure here: the
            # camera is idle again before the capture lets it go.
            if exposure is not None and not exposure.done():
                await _cancelled(exposure)
            # Frames read out before a failure or a cancellation are stored all the same.
            if pending is not None:
                await keep(pending)
            if previous is not None:
                await keep(self._store_task(previous))

    def _store_task(self, context: CaptureContext) -> asyncio.Task[SavedFrame]:
        return asyncio.create_task(asyncio.to_thread(self._process, context))

    def _camera(self) -> Camera:
        camera = self._equipment.camera
        if camera is None:
            raise NotConnected("camera", "capture", "the equipment profile has no camera")
        if not camera.connected:
            raise NotConnected("camera", "capture", "camera is not connected")
        return camera

    async def _prepare(self, camera: Camera, spec: ExposureSpec) -> None:
        wheel = self._equipment.filter_wheel
        if spec.filter_name is not None:
            if wheel is None or not wheel.connected:
                raise Refused("filter_name", "given, but no filter wheel is connected")
            try:
                await wheel.select(spec.filter_name)
            except ValueError as e:
                raise Refused("filter_name", str(e)) from e
        for name, value, apply in (
            ("gain", spec.gain, camera.set_gain),
            ("offset", spec.offset, camera.set_offset),
        ):
            if value is None:
                continue
            try:
                await apply(value)
            except InvalidValue as e:
                raise Refused(name, f"the camera refused {value}: {e.message}") from e
        status = await camera.status()
        if (status.bin_x, status.bin_y) != (spec.binning, spec.binning):
            await camera.set_binning(spec.binning, spec.binning)

    async def _expose(
        self, camera: Camera, request: CaptureRequest, started: asyncio.Event | None = None
    ) -> CaptureContext:
        """One exposure, with the other devices' state read while the shutter is open."""
        guider = self._guider
        guiding = guider is not None and guider.state is GuiderState.GUIDING
        if guiding and guider is not None:
            guider.reset_rms()  # the frame's RMS covers its own exposure only
        exposure = asyncio.create_task(
            camera.expose(
                request.spec.exposure_s,
                light=request.spec.frame_type in LIGHT_TYPES,
                started=started,
            )
        )
        weather = self._weather() if self._weather is not None else None
        mount = _connected(self._equipment.mount)
        focuser = _connected(self._equipment.focuser)
        wheel = _connected(self._equipment.filter_wheel)
        try:
            mount_status, focuser_status, wheel_status = await asyncio.gather(
                self._header_state("mount", mount.status if mount else None),
                self._header_state("focuser", focuser.status if focuser else None),
                self._header_state("filter wheel", wheel.status if wheel else None),
            )
        except BaseException:
            # Stopped while the other devices are read: the camera aborts, as it would
            # had the stop come while waiting on the exposure itself.
            await _cancelled(exposure)
            raise
        raw = await exposure
        rms = guider.rms() if guiding and guider is not None else None
        return CaptureContext(
            raw=raw,
            frame_type=request.spec.frame_type,
            target=request.target,
            filter_name=wheel_status.filter_name if wheel_status else request.spec.filter_name,
            mount=mount_status,
            mount_info=mount.info if mount else None,
            focuser=focuser_status,
            quality=None,
            hfr_arcsec=None,
            tag=request.tag,
            guiding_rms_arcsec=rms.total_arcsec if rms is not None else None,
            weather=weather,
        )

    def _process(self, context: CaptureContext) -> SavedFrame:
        """Measure, judge, write and record one frame (blocking: runs in a worker thread)."""
        raw = context.raw
        stars: StarList | None = None
        if context.frame_type is FrameType.LIGHT:
            quality, table = measure_frame_stars(raw.data, saturation_adu=float(raw.info.max_adu))
            stars = StarList.of(table)
            context = replace(context, quality=quality)
            context = replace(context, hfr_arcsec=self._hfr_arcsec(context))
        try:
            frame_id, stored, context = self._record(context, stars)
        except StoreError as e:
            # No row; no file either, unless removing it failed (the next start registers it).
            self._event("error", str(e))
            raise
        self._event(
            "info",
            f"{context.frame_type.value} {raw.exposure_s} s saved as {stored.path}"
            + ("" if context.accepted else f" (rejected: {context.reject_reason})"),
            {"frame_id": frame_id, "path": str(stored.path), "accepted": context.accepted},
        )
        if stars is not None and context.accepted and self._on_light is not None:
            self._on_light(frame_id)
        measured = context.quality
        return SavedFrame(
            id=frame_id,
            path=str(stored.path),
            frame_type=context.frame_type,
            filter_name=context.filter_name,
            exposure_s=raw.exposure_s,
            hfr_px=measured.hfr_px if measured else None,
            star_count=measured.star_count if measured else None,
            accepted=context.accepted,
            reject_reason=context.reject_reason,
        )

    def _record(
        self, context: CaptureContext, stars: StarList | None = None
    ) -> tuple[int, StoredFile, CaptureContext]:
        """Judge the frame, write its file durably, commit its row (and its star list). A row
        the database refuses costs the file too (`FrameNotRecorded`): no file is left without
        a row."""
        stored: StoredFile | None = None
        try:
            with Session(self._engine) as db, db.begin():
                session, target, context, relative = self._place(db, context)
                content = encode_fits(context.raw.data, header_cards(context))
                stored = self._store.write(relative, content)
                frame = Frame(
                    session_id=session.id,
                    target_id=target.id if target else None,
                    path=str(stored.path),
                    sha256=stored.sha256,
                    size_bytes=stored.size_bytes,
                    run_id=context.tag.run_id if context.tag else None,
                    node_path=context.tag.node_path if context.tag else None,
                    **_frame_fields(context),
                )
                db.add(frame)
                db.flush()
                frame_id = frame.id
                if stars is not None:
                    db.add(
                        FrameStars(frame_id=frame_id, star_count=len(stars), stars=stars.to_bytes())
                    )
        except SQLAlchemyError as e:
            raise self._not_recorded(stored, e) from e
        return frame_id, stored, context

    def _place(
        self, db: Session, context: CaptureContext
    ) -> tuple[ImagingSession, Target | None, CaptureContext, PurePosixPath]:
        """The frame's night, target, verdict and file path (relative to the frames root)."""
        config, raw = self._config, context.raw
        profile = ensure_profile(db, config.profile_name, context.mount_info)
        session = ensure_session(db, profile, raw.exposure_start_utc, config.timezone)
        target = ensure_target(db, context.target)
        if context.quality is not None:
            history = accepted_history(db, session, context.filter_name, raw.exposure_s)
            verdict = judge(context.quality, history, config.rules)
            context = replace(
                context, accepted=verdict.accepted, reject_reason=verdict.reason or None
            )
        number = next_frame_number(db, session, context.frame_type, context.filter_name, target)
        relative = render(config.file_pattern, self._naming(context, number), config.timezone)
        return session, target, context, relative

    def _not_recorded(self, stored: StoredFile | None, error: SQLAlchemyError) -> StoreError:
        """The error for a frame whose row was not committed, once its file is removed."""
        reason = (
            f"the database could not record it ({_database_reason(error)}); free disk space "
            f"for {self._engine.url.render_as_string()} and capture again"
        )
        if stored is None:
            return FrameNotRecorded(f"frame not saved: {reason}")
        try:
            self._store.remove(stored.path)
        except StoreError as e:
            return FrameNotRecorded(
                f"frame {stored.path} not recorded: {reason}; {e}: the file is registered at "
                "the next start"
            )
        return FrameNotRecorded(f"frame {stored.path} not saved (file removed): {reason}")

    async def _header_state(self, role: str, read: Callable[[], Awaitable[S]] | None) -> S | None:
        """A device's state for the frame header; a failing device costs its cards (and says
        so in the event log), not the frame."""
        if read is None:
            return None
        try:
            return await read()
        except DeviceError as e:
            log.warning("frame header without %s state: %s", role, e)
            await asyncio.to_thread(
                self._event, "warning", f"frame header without {role} state: {e}"
            )
            return None

    def _event(self, level: str, message: str, data: dict[str, object] | None = None) -> None:
        """Record a capture event; one the database refuses (disk full) stays in the log."""
        try:
            record_event(self._engine, level, "capture", message, data)
        except SQLAlchemyError as e:
            log.error("the capture event above is not in the database: %s", _database_reason(e))

    @staticmethod
    def _hfr_arcsec(context: CaptureContext) -> float | None:
        quality, info = context.quality, context.mount_info
        if quality is None or quality.hfr_px is None or info is None or not info.focal_length_m:
            return None
        scale = plate_scale_arcsec_px(
            context.raw.info.pixel_size_x_um,
            info.focal_length_m * 1000.0,
            context.raw.status.bin_x,
        )
        return quality.hfr_px * scale

    @staticmethod
    def _naming(context: CaptureContext, number: int) -> FrameNaming:
        raw, camera = context.raw, context.raw.status
        return FrameNaming(
            target_name=context.target.name if context.target else None,
            image_type=context.frame_type.value,
            filter_name=context.filter_name,
            exposure_s=raw.exposure_s,
            exposure_start_utc=raw.exposure_start_utc,
            sensor_temperature_c=camera.sensor_temperature_c,
            set_point_c=camera.set_point_c,
            gain=camera.gain,
            offset=camera.offset,
            bin_x=camera.bin_x,
            bin_y=camera.bin_y,
            frame_number=number,
            camera_name=raw.info.name,
            readout_mode=camera.readout_mode,
        )


async def _cancelled(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it to end (its own clean-up included), whatever it raises:
    the caller is already on its way out with an error or a cancellation of its own."""
    task.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.shield(task)


async def _first_of(event_wait: Coroutine[Any, Any, object], task: asyncio.Task[Any]) -> None:
    """Return when `event_wait` finishes or `task` ends (e.g. failed before the event)."""
    waiter = asyncio.create_task(event_wait)
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def _check_header_inputs(request: CaptureRequest) -> None:
    """Refuse, before the shutter opens, a name that no FITS header card can hold."""
    inputs = {
        "target.name": request.target.name if request.target else None,
        "filter_name": request.spec.filter_name,
        "tag.node_path": request.tag.node_path if request.tag else None,
    }
    for name, value in inputs.items():
        problem = None if value is None else text_problem(value)
        if problem is not None:
            raise Refused(name, f"{name} {value!r} {problem}: a FITS header cannot hold it")


def _database_reason(error: SQLAlchemyError) -> str:
    """The database's own words ("database or disk is full"), without the SQL statement."""
    return str(getattr(error, "orig", None) or error)


def _connected(device: D | None) -> D | None:
    return device if device is not None and device.connected else None


def _frame_fields(context: CaptureContext) -> dict[str, object]:
    raw, camera, mount, focuser, q = (
        context.raw,
        context.raw.status,
        context.mount,
        context.focuser,
        context.quality,
    )
    height, width = raw.data.shape
    info = raw.info
    return {
        "frame_type": context.frame_type,
        "filter_name": context.filter_name,
        "exposure_s": raw.exposure_s,
        "exposure_start_utc": raw.exposure_start_utc,
        "camera_name": info.name,
        "width_px": width,
        "height_px": height,
        "gain": camera.gain,
        "offset": camera.offset,
        "bin_x": camera.bin_x,
        "bin_y": camera.bin_y,
        "readout_mode": camera.readout_mode,
        "sensor_temperature_c": camera.sensor_temperature_c,
        "set_point_c": camera.set_point_c,
        "ra_deg": mount.position.ra_deg if mount else None,
        "dec_deg": mount.position.dec_deg if mount else None,
        "pier_side": (
            mount.side_of_pier.name
            if mount and mount.side_of_pier is not PierSide.UNKNOWN
            else None
        ),
        "altitude_deg": mount.altitude_deg if mount else None,
        "azimuth_deg": mount.azimuth_deg if mount else None,
        "airmass": context.airmass,
        "focuser_position": focuser.position if focuser else None,
        "focuser_temperature_c": focuser.temperature_c if focuser else None,
        "star_count": q.star_count if q else None,
        "hfr_px": q.hfr_px if q else None,
        "hfr_arcsec": context.hfr_arcsec,
        "guiding_rms_arcsec": context.guiding_rms_arcsec,
        "bayer_pattern": (
            bayer_pattern(info.sensor_type, info.bayer_offset_x, info.bayer_offset_y) or None
        ),
        "fwhm_px": q.fwhm_px if q else None,
        "eccentricity": q.eccentricity if q else None,
        "background_adu": q.background_adu if q else None,
        "noise_adu": q.noise_adu if q else None,
        "saturated_fraction": q.saturated_fraction if q else None,
        "accepted": context.accepted,
        "reject_reason": context.reject_reason,
        "weather": weather_record(context.weather),
    }
