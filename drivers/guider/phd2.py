"""PHD2 as the guider: a client of PHD2's event server behind `drivers.base.Guider`.

PHD2 (TCP port 4400 + instance - 1) speaks newline-delimited JSON on one connection: JSON-RPC
2.0 requests with ids, their responses matched by id, and event notifications in between.
PHD2 does the guiding itself (guide camera, star selection, calibration, settling); this
client asks it to (`guide`, `dither`, `stop_capture`, `set_paused`), turns its events into
ours (GuideStep, StarLost, SettleDone, Dithered, GuidingStopped) and keeps the RMS of each
exposure in arcsec (PHD2's RA/Dec distances times `get_pixel_scale`).

PHD2 settles with the settle object of the profile, sent with each `guide` and `dither` (as
NINA does); `settle()` waits for PHD2's SettleDone of the last start or dither. When the
connection drops (PHD2 quit or restarted) a running guide is reported as `GuidingStopped`
with an error and the client reconnects with backoff, then reports again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from drivers.base import (
    Dithered,
    GuideDirection,
    GuideEvent,
    GuidePulse,
    Guider,
    GuiderFault,
    GuideRms,
    GuiderState,
    GuideStep,
    GuidingStopped,
    SettleDone,
    StarLost,
)
from drivers.guider.control import RmsWindow
from drivers.guider.errors import (
    CalibrationFailed,
    GuiderError,
    GuiderRefused,
    GuiderTimeout,
    GuiderUnreachable,
    NoGuideStar,
    NotGuiding,
    SettleTimeout,
)
from drivers.guider.events import Subscribers
from drivers.profile import Phd2GuiderChoice

log = logging.getLogger(__name__)

Message = dict[str, Any]

_STATES = {
    "Stopped": GuiderState.STOPPED,
    "Selected": GuiderState.ACQUIRING,
    "Looping": GuiderState.ACQUIRING,
    "Paused": GuiderState.ACQUIRING,
    "Calibrating": GuiderState.CALIBRATING,
    "Guiding": GuiderState.GUIDING,
    "LostLock": GuiderState.LOST,
}
"""PHD2's AppState as ours; paused counts as not guiding (no RMS, no restart)."""

_EVENT_STATES = {
    "GuideStep": "Guiding",
    "StartGuiding": "Guiding",
    "Resumed": "Guiding",
    "Paused": "Paused",
    "StartCalibration": "Calibrating",
    "LoopingExposures": "Looping",
    "LoopingExposuresStopped": "Stopped",
    "StarLost": "LostLock",
    "GuidingStopped": "Selected",
}
"""How events move PHD2's AppState (its document's table, plus the guiding start/stop)."""

_DIRECTIONS = {
    "North": GuideDirection.NORTH,
    "South": GuideDirection.SOUTH,
    "East": GuideDirection.EAST,
    "West": GuideDirection.WEST,
}
_RECONNECT_FIRST_S = 0.5
_LINE_LIMIT = 1 << 20


@dataclass
class _Settle:
    """One settle PHD2 runs after a `guide` or `dither` request."""

    operation: str
    future: asyncio.Future[SettleDone]
    began: float = field(default_factory=time.monotonic)
    distance_px: float | None = None
    calibration_failure: str | None = None


@dataclass
class _Waiter:
    accepts: Callable[[Message], bool]
    future: asyncio.Future[Message]


class Phd2Guider:
    """Guides through PHD2; implements `drivers.base.Guider`. Connects on the first `start()`
    (or `connect()`); `close()` ends the connection and the reconnection attempts."""

    def __init__(self, config: Phd2GuiderChoice) -> None:
        self._config = config
        self._events = Subscribers()
        self._rms = RmsWindow()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connect_lock = asyncio.Lock()
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._waiters: list[_Waiter] = []
        self._next_id = 1
        self._app_state: str | None = None
        self._scale_arcsec_px: float | None = None
        self._lock: tuple[float, float] | None = None
        self._settle: _Settle | None = None
        self._lost_frames = 0
        self._stop_requested = False
        self._closed = False
        self._warned_scale = False
        self.version: str | None = None
        """PHD2's version from its Version event (None until connected)."""

    # --- what the owner sees -------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self._config.host}:{self._config.tcp_port}"

    @property
    def connected(self) -> bool:
        return self._app_state is not None

    @property
    def app_state(self) -> str | None:
        """PHD2's own AppState name (None while not connected)."""
        return self._app_state

    @property
    def state(self) -> GuiderState:
        if self._app_state is None:
            return GuiderState.STOPPED
        return _STATES.get(self._app_state, GuiderState.STOPPED)

    @property
    def lock_position(self) -> tuple[float, float] | None:
        return self._lock

    @property
    def pixel_scale_arcsec_px(self) -> float | None:
        return self._scale_arcsec_px or self._config.pixel_scale_arcsec

    def rms(self) -> GuideRms | None:
        return self._rms.value()

    def reset_rms(self) -> None:
        self._rms.reset()

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[GuideEvent]:
        return self._events.subscribe(maxsize)

    def unsubscribe(self, queue: asyncio.Queue[GuideEvent]) -> None:
        self._events.unsubscribe(queue)

    # --- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to PHD2 and read its initial state (Version ... AppState); a no-op when
        connected. Raises `GuiderUnreachable` or `GuiderTimeout`."""
        self._closed = False
        async with self._connect_lock:
            if self._writer is not None:
                return
            await self._open()

    async def close(self) -> None:
        """End the connection and any reconnection attempts (PHD2 keeps running)."""
        self._closed = True
        for task in (self._reconnect_task, self._reader_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._reconnect_task = self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._app_state = None
        self._fail_all("the client closed the connection", announce=False)

    async def _open(self) -> None:
        cfg = self._config
        try:
            async with asyncio.timeout(cfg.call_timeout_s):
                reader, writer = await asyncio.open_connection(
                    cfg.host, cfg.tcp_port, limit=_LINE_LIMIT
                )
        except (OSError, TimeoutError) as e:
            raise GuiderUnreachable(
                "connect",
                f"PHD2 does not answer at {self.address} ({e or 'no answer'}): start PHD2 and "
                "enable its server (Tools > Enable Server), or fix guider.host/port",
            ) from e
        initial = self._wait_for(lambda m: m.get("Event") == "AppState")
        self._writer = writer
        self._reader_task = asyncio.create_task(self._read(reader, writer), name="phd2-reader")
        try:
            async with asyncio.timeout(cfg.call_timeout_s):
                await initial
        except TimeoutError as e:
            self._drop_waiter(initial)
            await self._abandon(writer)
            raise GuiderTimeout(
                "connect",
                f"{self.address} sent no AppState within {cfg.call_timeout_s:g} s: "
                "is this PHD2's event server?",
            ) from e
        except GuiderError:
            await self._abandon(writer)
            raise
        log.info(
            "phd2: connected to PHD2 %s at %s (%s)", self.version, self.address, self._app_state
        )
        self._scale_arcsec_px = await self._pixel_scale()

    async def _abandon(self, writer: asyncio.StreamWriter) -> None:
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        writer.close()
        self._writer = None
        self._app_state = None

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hand each line to `_on_message` until the connection ends, then `_on_lost`."""
        reason = "PHD2 closed the connection"
        try:
            while line := await reader.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("phd2: ignored a line that is not JSON: %.200r", line)
                    continue
                if isinstance(message, dict):
                    self._on_message(message)
        except (OSError, ValueError) as e:
            reason = f"the connection to PHD2 failed ({e})"
        finally:
            writer.close()
        if self._writer is writer:
            self._on_lost(reason)

    def _on_lost(self, reason: str) -> None:
        """Mark the connection gone; a running guide is reported stopped with an error."""
        guiding = self.state is not GuiderState.STOPPED or self._settle is not None
        self._writer = None
        self._reader_task = None
        self._app_state = None
        log.warning("phd2: %s", reason)
        self._fail_all(reason, announce=guiding)
        reconnecting = self._reconnect_task is not None and not self._reconnect_task.done()
        if not self._closed and not reconnecting:
            self._reconnect_task = asyncio.create_task(self._reconnect(), name="phd2-reconnect")

    def _fail_all(self, reason: str, *, announce: bool) -> None:
        for method, future in self._pending.values():
            _fail(future, GuiderUnreachable(method, f"{reason}; the client reconnects by itself"))
        self._pending.clear()
        for waiter in self._waiters:
            _fail(waiter.future, GuiderUnreachable("wait", reason))
        self._waiters.clear()
        settle, self._settle = self._settle, None
        if settle is not None and not settle.future.done():
            done = SettleDone(False, time.monotonic() - settle.began, settle.distance_px, reason)
            self._events.emit(done)
            _fail(settle.future, NotGuiding(settle.operation, f"guiding stopped: {reason}"))
        if announce:
            self._events.emit(GuidingStopped(_now(), reason, error=True))

    async def _reconnect(self) -> None:
        delay = _RECONNECT_FIRST_S
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.connect()
            except GuiderError as e:
                log.info("phd2: not back yet (%s); next try in %.1f s", e.message, delay)
                delay = min(2 * delay, self._config.reconnect_max_s)
            else:
                log.info("phd2: reconnected to %s", self.address)
                return

    # --- calls ---------------------------------------------------------------------------

    async def call(self, method: str, params: list[Any] | Message | None = None) -> Any:
        """One JSON-RPC call with the profile's deadline; PHD2's result.

        Raises `GuiderUnreachable` (not connected, or the connection dropped),
        `GuiderTimeout` (no answer in time) or `GuiderRefused` (PHD2's error reply)."""
        writer = self._writer
        if writer is None:
            raise GuiderUnreachable(method, f"not connected to PHD2 at {self.address}")
        request_id, self._next_id = self._next_id, self._next_id + 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (method, future)
        request: Message = {"method": method, "id": request_id}
        if params is not None:
            request["params"] = params
        timeout_s = self._config.call_timeout_s
        try:
            writer.write(json.dumps(request).encode() + b"\r\n")
            async with asyncio.timeout(timeout_s):
                await writer.drain()
                return await future
        except TimeoutError as e:
            raise GuiderTimeout(
                method,
                f"PHD2 did not answer within {timeout_s:g} s: is it busy with a dialog or "
                "frozen? Check PHD2's window",
            ) from e
        except OSError as e:
            raise GuiderUnreachable(method, f"the connection to PHD2 failed ({e})") from e
        finally:
            self._pending.pop(request_id, None)

    async def _pixel_scale(self) -> float | None:
        scale = await self.call("get_pixel_scale")
        return float(scale) if isinstance(scale, int | float) and scale > 0 else None

    def _wait_for(self, accepts: Callable[[Message], bool]) -> asyncio.Future[Message]:
        """A future for the next event `accepts` takes; register before the request."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(accepts, future))
        return future

    def _drop_waiter(self, future: asyncio.Future[Message]) -> None:
        self._waiters = [w for w in self._waiters if w.future is not future]
        future.cancel()

    # --- commands ------------------------------------------------------------------------

    async def start(self, *, recalibrate: bool = False) -> None:
        """Have PHD2 guide: connect its equipment if needed, loop, select a star, calibrate
        when it has no calibration (or `recalibrate`), then guide. Returns once PHD2 guides;
        the settle it started is awaited by `settle()`. A no-op when already guiding.

        Raises `NoGuideStar`, `CalibrationFailed`, `GuiderTimeout` (not guiding within
        the profile's start_timeout_s), `GuiderRefused` or `GuiderUnreachable`."""
        await self.connect()
        if self.state in (GuiderState.GUIDING, GuiderState.LOST) and self._settle is None:
            return
        self._stop_requested = False
        self._scale_arcsec_px = await self._pixel_scale()
        if not await self.call("get_connected"):
            await self.call("set_connected", [True])
        self._app_state = state = await self.call("get_app_state")
        if state == "Paused":
            await self.resume()
        if state == "Stopped":
            await self._loop()
            state = "Looping"
        if state == "Looping":
            await self.find_star()
        await self._guide(recalibrate)

    async def _loop(self) -> None:
        frame = self._wait_for(lambda m: m.get("Event") == "LoopingExposures")
        try:
            await self.call("loop")
            async with asyncio.timeout(self._config.call_timeout_s):
                await frame
        except TimeoutError as e:
            raise GuiderTimeout(
                "loop", "PHD2 took no guide frame: check its camera and exposure"
            ) from e
        finally:
            self._drop_waiter(frame)

    async def find_star(self) -> tuple[float, float]:
        """Have PHD2 select a guide star; its lock position (y, x) px. Raises `NoGuideStar`."""
        try:
            x, y = await self.call("find_star")
        except GuiderRefused as e:
            raise NoGuideStar(
                "find_star",
                f"PHD2 found no guide star ({e.message}): check focus, clouds and the guide "
                "exposure",
            ) from e
        self._lock = (float(y), float(x))
        return self._lock

    async def _guide(self, recalibrate: bool) -> None:
        settle = self._begin_settle("start")
        started = self._wait_for(lambda m: m.get("Event") in ("StartGuiding", "GuideStep"))
        try:
            params = {"settle": self._settle_object(), "recalibrate": recalibrate}
            await self.call("guide", params)
            timeout_s = self._config.start_timeout_s
            waits: set[asyncio.Future[Any]] = {started, settle.future}
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            if settle.future.done():
                outcome = settle.future.result()
                if not outcome.success:
                    raise self._settle_error("start", outcome, settle)
            elif not started.done():
                raise GuiderTimeout(
                    "start",
                    f"PHD2 was not guiding {timeout_s:g} s after the request: look at PHD2 "
                    "(calibration, star) or raise guider.start_timeout_s",
                )
            else:
                started.result()
        except BaseException:
            if self._settle is settle:
                self._settle = None
            raise
        finally:
            self._drop_waiter(started)
        log.info("phd2: guiding")

    async def stop(self) -> None:
        """Have PHD2 stop capturing (and guiding); returns once it has stopped (or after the
        call deadline, logged). Nothing to do when not connected."""
        if self._writer is None:
            return
        self._stop_requested = True
        self._settle = None
        if self._app_state == "Stopped":
            return
        stopped = self._wait_for(lambda m: m.get("Event") == "LoopingExposuresStopped")
        try:
            await self.call("stop_capture")
            async with asyncio.timeout(self._config.call_timeout_s):
                await stopped
        except TimeoutError:
            log.warning("phd2: capture did not stop within %.0f s", self._config.call_timeout_s)
        except GuiderUnreachable as e:
            log.warning("phd2: stop: %s", e.message)
        finally:
            self._drop_waiter(stopped)

    async def pause(self, *, full: bool = False) -> None:
        """Pause guide output (`full`: looping exposures too); guiding resumes with `resume`."""
        await self.call("set_paused", [True, "full"] if full else [True])

    async def resume(self) -> None:
        await self.call("set_paused", [False])

    async def dither(self, offset_px: float = 5.0, *, ra_only: bool = False) -> tuple[float, float]:
        """Ask PHD2 to move the lock by up to `offset_px` on each axis (times PHD2's dither
        scale) and start settling; return the offset (dy, dx) px PHD2 chose.

        Does not wait for the settle: call `settle` next. Raises `NotGuiding` when not
        guiding, ValueError for `offset_px` <= 0."""
        if offset_px <= 0:
            raise ValueError(f"offset_px must be > 0, got {offset_px}")
        if self.state not in (GuiderState.GUIDING, GuiderState.LOST):
            raise NotGuiding("dither", f"PHD2 is {self._app_state or 'not connected'}")
        settle = self._begin_settle("dither")
        dithered = self._wait_for(lambda m: m.get("Event") == "GuidingDithered")
        params = {"amount": offset_px, "raOnly": ra_only, "settle": self._settle_object()}
        try:
            await self.call("dither", params)
            async with asyncio.timeout(self._config.call_timeout_s):
                event = await dithered
        except TimeoutError as e:
            raise GuiderTimeout("dither", "PHD2 accepted the dither but did not report it") from e
        except BaseException:
            if self._settle is settle:
                self._settle = None
            raise
        finally:
            self._drop_waiter(dithered)
        offset = (float(event["dy"]), float(event["dx"]))
        log.info("phd2: dither by (%.2f, %.2f) px", *offset)
        return offset

    async def settle(
        self, tolerance_px: float = 1.5, min_time_s: float = 10.0, timeout_s: float = 40.0
    ) -> None:
        """Wait for PHD2's SettleDone of the last start or dither (PHD2 settles by the
        profile's settle object; `tolerance_px` and `min_time_s` are PHD2's to judge).

        Returns at once when nothing is settling and PHD2 guides. Raises `SettleTimeout`
        (PHD2 timed out, or no SettleDone within the larger of `timeout_s` and the
        profile's timeout plus the call deadline), `NotGuiding` if guiding stopped,
        `CalibrationFailed` or `NoGuideStar` for a start that failed that way."""
        settle = self._settle
        if settle is None:
            if self.state in (GuiderState.GUIDING, GuiderState.LOST):
                return
            raise NotGuiding("settle", f"PHD2 is {self._app_state or 'not connected'}")
        cfg = self._config
        bound_s = max(timeout_s, cfg.settle.timeout_s) + cfg.call_timeout_s
        try:
            async with asyncio.timeout(bound_s):
                outcome = await asyncio.shield(settle.future)
        except TimeoutError as e:
            raise SettleTimeout("settle", f"PHD2 reported no settle within {bound_s:g} s") from e
        finally:
            if self._settle is settle and settle.future.done():
                self._settle = None
        if not outcome.success:
            raise self._settle_error("settle", outcome, settle)

    def _begin_settle(self, operation: str) -> _Settle:
        previous = self._settle
        if previous is not None and not previous.future.done():
            previous.future.cancel()
        self._settle = _Settle(operation, asyncio.get_running_loop().create_future())
        return self._settle

    def _settle_object(self) -> Message:
        s = self._config.settle
        return {"pixels": s.pixels, "time": s.time_s, "timeout": s.timeout_s}

    def _settle_error(self, operation: str, outcome: SettleDone, settle: _Settle) -> GuiderError:
        """PHD2 says why in words only: calibration (from its CalibrationFailed event),
        a settle time-out, a star it could not find, anything else."""
        message = outcome.message
        if settle.calibration_failure is not None:
            return CalibrationFailed(
                operation,
                f"PHD2 could not calibrate: {settle.calibration_failure}. Check the mount's "
                "guide output (pulse guiding or ST-4 cable) and guide rates, then start again",
            )
        s = self._config.settle
        if "timed-out" in message or "timed out" in message:
            return SettleTimeout(
                operation,
                f"PHD2: {message} (under {s.pixels:g} px for {s.time_s} s within "
                f"{s.timeout_s} s); check the seeing and PHD2's guiding, or widen guider.settle",
            )
        if "star" in message:
            return NoGuideStar(
                operation, f"PHD2: {message}; check focus, clouds and the guide exposure"
            )
        return NotGuiding(operation, f"PHD2: {message}")

    # --- what PHD2 tells -----------------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        if "Event" in message:
            self._on_event(message)
        elif "id" in message:
            self._on_response(message)

    def _on_response(self, message: Message) -> None:
        entry = self._pending.pop(message["id"], None) if isinstance(message["id"], int) else None
        if entry is None:
            return
        method, future = entry
        if future.done():
            return
        error = message.get("error")
        if error is not None:
            text = error.get("message", "no message") if isinstance(error, dict) else str(error)
            future.set_exception(GuiderRefused(method, f"PHD2 refused {method}: {text}"))
        else:
            future.set_result(message.get("result"))

    def _on_event(self, event: Message) -> None:
        name = event["Event"]
        state = event.get("State") if name == "AppState" else _EVENT_STATES.get(name)
        if isinstance(state, str):
            self._app_state = state
        handler = self._handlers.get(name)
        if handler is not None:
            handler(self, event)
        for waiter in list(self._waiters):
            if not waiter.future.done() and waiter.accepts(event):
                waiter.future.set_result(event)
                self._waiters.remove(waiter)

    def _on_version(self, event: Message) -> None:
        self.version = f"{event.get('PHDVersion', '?')}{event.get('PHDSubver', '')}"

    def _on_lock(self, event: Message) -> None:
        self._lock = (float(event["Y"]), float(event["X"]))

    def _on_lock_lost(self, event: Message) -> None:
        self._lock = None

    def _on_guide_step(self, event: Message) -> None:
        self._lost_frames = 0
        scale = self.pixel_scale_arcsec_px
        ra_px = float(event.get("RADistanceRaw", 0.0))
        dec_px = float(event.get("DECDistanceRaw", 0.0))
        if scale is not None:
            ra, dec = ra_px * scale, dec_px * scale
            self._rms.add(ra, dec)
        else:
            ra = dec = math.nan
            if not self._warned_scale:
                self._warned_scale = True
                log.warning(
                    "phd2: PHD2 does not know its pixel scale: no guiding RMS in arcsec; set "
                    "it in PHD2 (focal length, pixel size) or guider.pixel_scale_arcsec"
                )
        step = GuideStep(
            frame=int(event["Frame"]),
            time_utc=_time(event),
            dy_px=float(event.get("dy", 0.0)),
            dx_px=float(event.get("dx", 0.0)),
            ra_arcsec=ra,
            dec_arcsec=dec,
            stars=1,
            ra_pulse=_pulse(event, "RA"),
            dec_pulse=_pulse(event, "DEC"),
            latency_s=None,
            processing_s=0.0,
        )
        self._events.emit(step)

    def _on_star_lost(self, event: Message) -> None:
        self._lost_frames += 1
        reason = str(event.get("Status", "star lost"))
        frame = int(event.get("Frame", 0))
        self._events.emit(StarLost(frame, _time(event), self._lost_frames, reason))

    def _on_calibration_failed(self, event: Message) -> None:
        reason = str(event.get("Reason", "no reason given"))
        log.warning("phd2: calibration failed: %s", reason)
        if self._settle is not None:
            self._settle.calibration_failure = reason
        self._events.emit(GuiderFault(_time(event), f"PHD2 calibration failed: {reason}", 1))

    def _on_settle_begin(self, event: Message) -> None:
        if self._settle is not None:
            self._settle.began = time.monotonic()

    def _on_settling(self, event: Message) -> None:
        if self._settle is not None and isinstance(event.get("Distance"), int | float):
            self._settle.distance_px = float(event["Distance"])

    def _on_settle_done(self, event: Message) -> None:
        success = event.get("Status") == 0
        message = "settled" if success else str(event.get("Error", "settling failed"))
        settle = self._settle
        began = settle.began if settle is not None else time.monotonic()
        distance = settle.distance_px if settle is not None else None
        done = SettleDone(success, time.monotonic() - began, distance, message)
        self._events.emit(done)
        if settle is not None and not settle.future.done():
            settle.future.set_result(done)
        log.info("phd2: settle done: %s", message)

    def _on_dithered(self, event: Message) -> None:
        dy, dx = float(event["dy"]), float(event["dx"])
        lock_y, lock_x = self._lock if self._lock is not None else (math.nan, math.nan)
        self._events.emit(Dithered(dy, dx, lock_y + dy, lock_x + dx))

    def _on_alert(self, event: Message) -> None:
        kind, text = str(event.get("Type", "info")), str(event.get("Msg", ""))
        log.warning("phd2: alert (%s): %s", kind, text)
        if kind in ("warning", "error"):
            self._events.emit(GuiderFault(_time(event), f"PHD2 {kind}: {text}", 1))

    def _on_guiding_stopped(self, event: Message) -> None:
        if self._stop_requested:
            self._events.emit(GuidingStopped(_time(event), "stopped on request", error=False))
        else:
            reason = "PHD2 stopped guiding (in PHD2's window or by another client)"
            self._events.emit(GuidingStopped(_time(event), reason, error=True))

    _handlers: ClassVar[dict[str, Callable[[Phd2Guider, Message], None]]] = {
        "Version": _on_version,
        "LockPositionSet": _on_lock,
        "StarSelected": _on_lock,
        "LockPositionLost": _on_lock_lost,
        "GuideStep": _on_guide_step,
        "StarLost": _on_star_lost,
        "CalibrationFailed": _on_calibration_failed,
        "SettleBegin": _on_settle_begin,
        "Settling": _on_settling,
        "SettleDone": _on_settle_done,
        "GuidingDithered": _on_dithered,
        "Alert": _on_alert,
        "GuidingStopped": _on_guiding_stopped,
    }


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    """Fail `future` without a "never retrieved" warning when nobody awaits it."""
    if not future.done():
        future.set_exception(error)
        future.exception()


def _pulse(event: Message, axis: str) -> GuidePulse | None:
    duration_ms = int(event.get(f"{axis}Duration", 0) or 0)
    direction = _DIRECTIONS.get(str(event.get(f"{axis}Direction")))
    if duration_ms <= 0 or direction is None:
        return None
    return GuidePulse(direction, duration_ms)


def _time(event: Message) -> datetime:
    stamp = event.get("Timestamp")
    if isinstance(stamp, int | float):
        return datetime.fromtimestamp(stamp, UTC)
    return _now()


def _now() -> datetime:
    return datetime.now(UTC)


def _implements_guider(guider: Phd2Guider) -> Guider:
    """Never called: mypy checks here that `Phd2Guider` implements the `Guider` protocol."""
    return guider
