"""A fake PHD2 event server, written from PHD2's EventMonitoring document.

It speaks the documented messages (events with Event/Timestamp/Host/Inst, JSON-RPC 2.0
replies, CR LF line ends), follows the documented `guide` sequence (capture, select a star,
calibrate, guide, settle, SettleDone) and simulates guiding with a seeded random walk.
Its clock runs fast: each frame, sent every `frame_s` real seconds, counts as `exposure_s`
of PHD2 time, so whole-second settles take a fraction of a second.

Faults on request: settling that never succeeds (PHD2's settle time-out), lost stars,
calibration failure, no star to find, a server that stops answering calls, and a restart
(every connection drops; the server comes back idle on the same port).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from tests.realdata import REALDATA

Message = dict[str, Any]

DOCUMENT = REALDATA / "phd2" / "wiki" / "EventMonitoring.md"
"""PHD2's protocol document, from the shared real-world material (absent: checks skipped)."""

EXPOSURES_MS = [500, 1000, 1500, 2000, 2500, 3000, 4000, 5000]
SETTLE_TIMEOUT = "timed-out waiting for guider to settle"
CALIBRATION_FAILED = "Calibration failed"


@dataclass
class Faults:
    never_settle: bool = False
    """The guide error stays above any tolerance: settles end in PHD2's time-out."""
    lose_star_frames: int = 0
    """The next N guide frames find no star (StarLost each)."""
    calibration_failure: str | None = None
    """Calibration fails with this reason."""
    no_star: bool = False
    """find_star and star auto-selection fail."""
    mute: bool = False
    """Calls are read but never answered (events still flow)."""


@dataclass
class _Settle:
    pixels: float
    time_s: int
    timeout_s: int
    started: float
    in_range_since: float | None = None
    frames: int = 0
    dropped: int = 0


@dataclass
class _State:
    gear: bool = False
    capturing: bool = False
    selected: bool = False
    calibrated: bool = False
    calibrating: int = 0
    guiding: bool = False
    paused: bool = False
    frame: int = 0
    guide_frame: int = 0
    guide_started: float = 0.0
    lock: tuple[float, float] = (320.0, 240.0)
    error: tuple[float, float] = (0.0, 0.0)
    settle: _Settle | None = None
    pending_guide: bool = False
    stopping: bool = False
    clock: float = 0.0


@dataclass
class FakePhd2:
    seed: int = 17
    frame_s: float = 0.02
    exposure_s: float = 1.0
    pixel_scale_arcsec: float | None = 1.6
    noise_px: float = 0.2
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.port = 0
        self.sent: list[Message] = []
        """Every event and reply sent, for checks against the document."""
        self.requests: list[Message] = []
        self._rng = np.random.default_rng(self.seed)
        self._state = _State()
        self._exposure_ms = 1000
        self._clients: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self._camera: asyncio.Task[None] | None = None

    # --- control from the tests -----------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._camera = asyncio.create_task(self._run_camera())

    async def stop(self) -> None:
        if self._camera is not None:
            self._camera.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._camera
        if self._server is not None:
            self._server.close()
        for writer in self._clients:
            writer.close()
        self._clients.clear()
        if self._server is not None:
            await self._server.wait_closed()

    async def restart(self, down_s: float) -> None:
        """PHD2 quits (every connection drops) and is back after `down_s`, idle with its
        equipment disconnected; its calibration is kept, as PHD2 keeps it in its profile."""
        await self.stop()
        calibrated = self._state.calibrated
        self._state = _State(calibrated=calibrated)
        await asyncio.sleep(down_s)
        await self.start()

    @property
    def app_state(self) -> str:
        s = self._state
        if s.paused:
            return "Paused"
        if s.calibrating:
            return "Calibrating"
        if s.guiding:
            return "Guiding"
        if s.selected:
            return "Selected"
        return "Looping" if s.capturing else "Stopped"

    # --- the connection -------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.append(writer)
        for event in self._initial_events():
            self._send_to(writer, event)
        try:
            while line := await reader.readline():
                request = json.loads(line)
                self.requests.append(request)
                reply = self._answer(request)
                if not self.faults.mute:
                    self._send_to(writer, reply)
                self._after_reply(request)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if writer in self._clients:
                self._clients.remove(writer)
            writer.close()

    def _initial_events(self) -> list[Message]:
        s = self._state
        events = [
            self._event(
                "Version", PHDVersion="2.6.13", PHDSubver="", MsgVersion=1, OverlapSupport=True
            )
        ]
        if s.selected:
            events.append(self._event("LockPositionSet", X=s.lock[0], Y=s.lock[1]))
            events.append(self._event("StarSelected", X=s.lock[0], Y=s.lock[1]))
        if s.calibrated:
            events.append(self._event("CalibrationComplete", Mount="Mount"))
        if s.guiding:
            events.append(self._event("StartGuiding"))
        events.append(self._event("AppState", State=self.app_state))
        return events

    def _event(self, name: str, **attributes: Any) -> Message:
        return {
            "Event": name,
            "Timestamp": round(time.time(), 3),
            "Host": "FAKEPHD",
            "Inst": 1,
            **attributes,
        }

    def _send_to(self, writer: asyncio.StreamWriter, message: Message) -> None:
        self.sent.append(message)
        writer.write(json.dumps(message).encode() + b"\r\n")

    def _broadcast(self, name: str, **attributes: Any) -> None:
        event = self._event(name, **attributes)
        for writer in list(self._clients):
            self._send_to(writer, event)

    # --- methods --------------------------------------------------------------------------

    def _answer(self, request: Message) -> Message:
        method, params, request_id = request.get("method"), request.get("params"), request["id"]
        handler = getattr(self, f"_m_{method}", None)
        if not isinstance(method, str) or handler is None:
            return _error(request_id, -32601, "method not found")
        try:
            result = handler(params if params is not None else [])
        except _Refused as e:
            return _error(request_id, e.code, e.message)
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _after_reply(self, request: Message) -> None:
        """Events PHD2 sends once a call was accepted."""
        s = self._state
        if request.get("method") in ("guide", "dither") and s.settle is not None and s.guiding:
            self._broadcast("SettleBegin")

    def _m_get_exposure(self, params: Any) -> int:
        return self._exposure_ms

    def _m_set_exposure(self, params: Any) -> int:
        if not isinstance(params, list) or params[0] not in EXPOSURES_MS:
            raise _Refused(1, "could not set exposure duration")
        self._exposure_ms = int(params[0])
        return 0

    def _m_get_app_state(self, params: Any) -> str:
        return self.app_state

    def _m_get_connected(self, params: Any) -> bool:
        return self._state.gear

    def _m_set_connected(self, params: Any) -> int:
        value = _param(params, 0, "connected")
        if not isinstance(value, bool):
            raise _Refused(-32602, "expected connected boolean param")
        self._state.gear = value
        return 0

    def _m_get_pixel_scale(self, params: Any) -> float | None:
        return self.pixel_scale_arcsec

    def _m_get_calibrated(self, params: Any) -> bool:
        return self._state.calibrated

    def _m_get_paused(self, params: Any) -> bool:
        return self._state.paused

    def _m_get_lock_position(self, params: Any) -> list[float] | None:
        return list(self._state.lock) if self._state.selected else None

    def _m_loop(self, params: Any) -> int:
        if not self._state.gear:
            raise _Refused(1, "could not start looping")
        if self._state.guiding:
            self._stop_guiding()
        self._state.capturing = True
        return 0

    def _m_stop_capture(self, params: Any) -> int:
        s = self._state
        if s.settle is not None:
            self._end_settle("guiding stopped")
        if s.guiding or s.calibrating:
            self._stop_guiding()
        s.pending_guide = False
        s.stopping = s.capturing
        return 0

    def _m_find_star(self, params: Any) -> list[float]:
        s = self._state
        if not s.capturing or self.faults.no_star:
            raise _Refused(1, "could not find star")
        self._select()
        return list(s.lock)

    def _m_set_paused(self, params: Any) -> int:
        value = _param(params, 0, "paused")
        if not isinstance(value, bool):
            raise _Refused(-32602, "expected bool param at index 0")
        self._state.paused = value
        self._broadcast("Paused" if value else "Resumed")
        return 0

    def _m_guide(self, params: Any) -> int:
        settle = _settle_param(_param(params, 0, "settle"))
        recalibrate = _param(params, 1, "recalibrate")
        s = self._state
        if not s.gear:
            raise _Refused(1, "all equipment must be connected first")
        if s.settle is not None:
            raise _Refused(1, "cannot guide while settling")
        if recalibrate is True:
            s.calibrated = False
        s.settle = _Settle(*settle, started=s.clock)
        if not s.guiding:
            s.capturing = True
            s.pending_guide = True
        return 0

    def _m_dither(self, params: Any) -> int:
        amount = _param(params, 0, "amount")
        ra_only = _param(params, 1, "raOnly") or False
        settle = _settle_param(_param(params, 2, "settle"))
        if not isinstance(amount, int | float):
            raise _Refused(-32602, "expected dither amount param")
        s = self._state
        if not s.guiding:
            raise _Refused(1, "cannot dither if not guiding")
        if s.settle is not None:
            raise _Refused(1, "cannot dither while settling")
        dx = float(self._rng.uniform(-amount, amount))
        dy = 0.0 if ra_only else float(self._rng.uniform(-amount, amount))
        s.lock = (s.lock[0] + dx, s.lock[1] + dy)
        s.error = (s.error[0] - dx, s.error[1] - dy)
        self._broadcast("GuidingDithered", dx=dx, dy=dy)
        self._broadcast("LockPositionSet", X=s.lock[0], Y=s.lock[1])
        s.settle = _Settle(*settle, started=s.clock)
        return 0

    # --- the camera loop ------------------------------------------------------------------

    async def _run_camera(self) -> None:
        while True:
            await asyncio.sleep(self.frame_s)
            s = self._state
            if s.stopping:
                s.capturing = s.stopping = s.selected = False
                self._broadcast("LoopingExposuresStopped")
            if not s.capturing or (s.paused and not s.guiding):
                continue
            s.clock += self.exposure_s
            s.frame += 1
            if s.calibrating:
                self._calibration_step()
            elif s.guiding:
                self._guide_step()
            else:
                self._broadcast("LoopingExposures", Frame=s.frame)
                if s.pending_guide:
                    self._begin_guiding()

    def _select(self) -> None:
        s = self._state
        s.selected = True
        s.lock = (320.0 + float(self._rng.uniform(-50, 50)), 240.0)
        self._broadcast("StarSelected", X=s.lock[0], Y=s.lock[1])
        self._broadcast("LockPositionSet", X=s.lock[0], Y=s.lock[1])

    def _begin_guiding(self) -> None:
        s = self._state
        if not s.selected:
            if self.faults.no_star:
                s.pending_guide = False
                self._end_settle("failed to find a suitable guide star")
                return
            self._select()
        s.pending_guide = False
        if not s.calibrated:
            s.calibrating = 1
            self._broadcast("StartCalibration", Mount="Mount")
            return
        self._start_guiding()

    def _calibration_step(self) -> None:
        s = self._state
        step = s.calibrating
        self._broadcast(
            "Calibrating",
            Mount="Mount",
            dir="West",
            dist=2.0 * step,
            dx=2.0 * step,
            dy=0.1,
            pos=[s.lock[0] + 2.0 * step, s.lock[1]],
            step=step,
            State="West step",
        )
        if step < 3:
            s.calibrating += 1
            return
        s.calibrating = 0
        reason = self.faults.calibration_failure
        if reason is not None:
            self._broadcast("CalibrationFailed", Reason=reason)
            self._broadcast("Alert", Msg=f"Calibration failed: {reason}", Type="error")
            self._end_settle(CALIBRATION_FAILED)
            return
        s.calibrated = True
        self._broadcast("CalibrationComplete", Mount="Mount")
        self._start_guiding()

    def _start_guiding(self) -> None:
        s = self._state
        s.guiding = True
        s.guide_frame = 0
        s.guide_started = s.clock
        s.error = (float(self._rng.normal(0, 1.5)), float(self._rng.normal(0, 1.5)))
        self._broadcast("StartGuiding")
        if s.settle is not None:
            s.settle.started = s.clock
            self._broadcast("SettleBegin")

    def _stop_guiding(self) -> None:
        s = self._state
        s.guiding = False
        s.calibrating = 0
        self._broadcast("GuidingStopped")

    def _guide_step(self) -> None:
        """A random walk pulled back towards the lock: half the error is corrected per frame."""
        s = self._state
        s.guide_frame += 1
        noise = self._rng.normal(0, self.noise_px, 2)
        bias = 4.0 if self.faults.never_settle else 0.0
        s.error = (0.5 * s.error[0] + float(noise[0]), 0.5 * s.error[1] + float(noise[1]))
        dx, dy = s.error[0] + bias, s.error[1]
        if self.faults.lose_star_frames > 0:
            self.faults.lose_star_frames -= 1
            self._broadcast(
                "StarLost",
                Frame=s.guide_frame,
                Time=round(s.clock - s.guide_started, 3),
                StarMass=0.0,
                SNR=0.0,
                AvgDist=0.0,
                ErrorCode=2,
                Status="Star lost - low SNR",
            )
            self._settle_frame(False, 0.0)
            return
        ra_ms = round(abs(dx) * 100)
        dec_ms = round(abs(dy) * 100)
        if s.paused:
            ra_ms = dec_ms = 0
        distance = float(np.hypot(dx, dy))
        self._broadcast(
            "GuideStep",
            Frame=s.guide_frame,
            Time=round(s.clock - s.guide_started, 3),
            Mount="Mount",
            dx=round(dx, 3),
            dy=round(dy, 3),
            RADistanceRaw=round(dx, 3),
            DECDistanceRaw=round(dy, 3),
            RADistanceGuide=round(0.8 * dx, 3),
            DECDistanceGuide=round(0.8 * dy, 3),
            RADuration=ra_ms,
            RADirection="West" if dx < 0 else "East",
            DECDuration=dec_ms,
            DECDirection="North" if dy < 0 else "South",
            StarMass=12345.0,
            SNR=42.5,
            HFD=2.1,
            AvgDist=round(distance, 2),
        )
        self._settle_frame(True, distance)

    def _settle_frame(self, locked: bool, distance: float) -> None:
        """PHD2's settle rule: in range from the first frame under the tolerance, settled
        after `time` in range, failed after `timeout` since the settle began."""
        settle, now = self._state.settle, self._state.clock
        if settle is None:
            return
        settle.frames += 1
        settle.dropped += 0 if locked else 1
        in_range = locked and distance <= settle.pixels
        if in_range and settle.in_range_since is None:
            settle.in_range_since = now
        if not in_range:
            settle.in_range_since = None
        if settle.in_range_since is not None and now - settle.in_range_since >= settle.time_s:
            self._end_settle(None)
            return
        if now - settle.started >= settle.timeout_s:
            self._end_settle(SETTLE_TIMEOUT)
            return
        held = 0.0 if settle.in_range_since is None else now - settle.in_range_since
        self._broadcast(
            "Settling",
            Distance=round(distance, 2),
            Time=round(held, 1),
            SettleTime=float(settle.time_s),
            StarLocked=locked,
        )

    def _end_settle(self, error: str | None) -> None:
        settle, self._state.settle = self._state.settle, None
        frames = settle.frames if settle is not None else 0
        dropped = settle.dropped if settle is not None else 0
        if error is None:
            self._broadcast("SettleDone", Status=0, TotalFrames=frames, DroppedFrames=dropped)
        else:
            self._broadcast(
                "SettleDone", Status=1, Error=error, TotalFrames=frames, DroppedFrames=dropped
            )


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(request_id: Any, code: int, message: str) -> Message:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


def _param(params: Any, index: int, name: str) -> Any:
    """PHD2 takes params by position (a list) or by name (an object)."""
    if isinstance(params, dict):
        return params.get(name)
    if isinstance(params, list) and len(params) > index:
        return params[index]
    return None


def _settle_param(value: Any) -> tuple[float, int, int]:
    """PHD2 requires pixels, time and timeout, and counts whole seconds."""
    if not isinstance(value, dict) or not all(k in value for k in ("pixels", "time", "timeout")):
        raise _Refused(-32602, "invalid settle params")
    return float(value["pixels"]), int(value["time"] // 1), int(value["timeout"] // 1)


# --- checks against the protocol document ---------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int, float),
    "string": (str,),
    "boolean": (bool,),
    "[number,number]": (list,),
}


@dataclass(frozen=True)
class ProtocolDocument:
    """What EventMonitoring.md states: attribute types per event, the common attributes,
    the method names, and the example exchanges (request, reply) it shows."""

    common: dict[str, str]
    events: dict[str, dict[str, str]]
    methods: frozenset[str]
    exchanges: list[tuple[Message, Message]]
    requests: list[Message]
    """Example requests shown without a reply (guide, dither)."""
    version_example: Message

    @classmethod
    def parse(cls, text: str) -> ProtocolDocument:
        lines = text.splitlines()
        common: dict[str, str] = {}
        events: dict[str, dict[str, str]] = {}
        methods: set[str] = set()
        section = ""
        table: dict[str, str] | None = None
        in_methods = False
        for line in lines:
            heading = re.match(r"^(#+) `?([^`#]+?)`? #+$", line)
            if heading:
                section = heading.group(2).strip()
                in_methods = section == "Available Methods"
                table = None
                if heading.group(1) == "###" and re.fullmatch(r"[A-Z]\w+", section):
                    events[section] = {}
                continue
            if line.startswith("|:"):
                continue
            row = re.match(r"^\|\s*`?([A-Za-z]\w*)`?\s*\|\s*([^|]*?)\s*\|", line)
            if row is None:
                table = None
                continue
            name, kind = row.groups()
            if in_methods:
                if line.startswith("|`"):
                    methods.add(name)
                continue
            if name == "Attribute":
                table = common if section == "Common attributes" else events.get(section)
                continue
            if table is not None:
                table[name] = kind
        exchanges = []
        pending: Message | None = None
        for line in lines:
            if line.startswith("--> "):
                pending = json.loads(line[4:])
            elif line.startswith("<-- ") and pending is not None:
                exchanges.append((pending, json.loads(line[4:])))
                pending = None
        requests = [json.loads(line) for line in lines if line.startswith('{"method": ')]
        version = next(json.loads(line) for line in lines if line.startswith('{"Event":"Version"'))
        return cls(common, events, frozenset(methods), exchanges, requests, version)

    def problems(self, sent: list[Message], requests: list[Message]) -> list[str]:
        """Where the messages differ from the document: undocumented events, attributes,
        types or methods; replies that are not JSON-RPC 2.0."""
        found = []
        for message in sent:
            if "Event" not in message:
                if message.get("jsonrpc") != "2.0" or not set(message) <= {
                    "jsonrpc",
                    "result",
                    "error",
                    "id",
                }:
                    found.append(f"reply not JSON-RPC 2.0: {message}")
                continue
            name = message["Event"]
            attributes = self.events.get(name)
            if attributes is None:
                found.append(f"undocumented event {name}")
                continue
            for key, value in message.items():
                kind = self.common.get(key) or attributes.get(key)
                if kind is None:
                    found.append(f"{name}.{key} is not documented")
                elif kind in _TYPES and (
                    not isinstance(value, _TYPES[kind])
                    or (kind == "number" and isinstance(value, bool))
                ):
                    found.append(f"{name}.{key} = {value!r} is not a {kind}")
        for request in requests:
            if request.get("method") not in self.methods:
                found.append(f"undocumented method {request.get('method')}")
        return found


@cache
def protocol() -> ProtocolDocument | None:
    return ProtocolDocument.parse(DOCUMENT.read_text()) if DOCUMENT.exists() else None


@contextlib.asynccontextmanager
async def checked_fake(**options: Any) -> AsyncIterator[FakePhd2]:
    """A running fake; on exit, what it sent and was asked is checked against the document."""
    fake = FakePhd2(**options)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
    document = protocol()
    if document is not None:
        assert document.problems(fake.sent, fake.requests) == []
