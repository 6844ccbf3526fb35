"""The equipment as people see it: one background poller's snapshot, served without device I/O.

Every `POLL_PERIOD_S` the poller reads each device's status, each device in a task of its own
(a silent device costs its own entry, not the others') and never twice at once. The API
answers from the latest readings at once, with their age: no request reaches a device, so
any number of dashboards costs the devices nothing.

The capture path comes first: a device it holds (the camera while a capture or an autofocus
holds it, the guide camera while the guider runs) is read only every `IN_USE_PERIOD_S`. Its
exposures and downloads then share the wire with one status read per half minute instead of
one per poll; its entry says `in_use`, and its age how old the reading is.

The weather station's latest reading goes into every frame (`recent_weather`): the capture
takes it from here, so a frame costs the station no extra read.

A change of a device's condition (connected, failing, answering again, disconnected) is
recorded once, when it happens, as an event (source ``equipment``); the event stream pushes it
to the web UI.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from daemon.capture import CaptureService
from daemon.events import record_event
from drivers.base import Device, Guider, GuiderState, WeatherReading
from drivers.equipment import DeviceReport, Equipment

log = logging.getLogger(__name__)

POLL_PERIOD_S = 2.0
"""How often every device's status is read for the API and the web UI."""
IN_USE_PERIOD_S = 30.0
"""How often a device the capture path holds is read instead."""
RECENT_WEATHER_PERIODS = 5
"""A weather reading older than this many poll periods is not written into frames: the
station has stopped answering in time, and an old reading would pass for the frame's weather."""

InUse = Callable[[], Collection[str]]
"""The roles the capture path holds right now."""


def held_for_imaging(capture: CaptureService, guider: Guider | None) -> InUse:
    """The camera while a capture or an autofocus holds it, the guide camera while guiding."""

    def roles() -> list[str]:
        held = ["camera"] if capture.busy else []
        if guider is not None and guider.state is not GuiderState.STOPPED:
            held.append("guide_camera")
        return held

    return roles


class Condition(enum.StrEnum):
    """What a device's events are about: a change of condition, not of its figures."""

    ANSWERS = "answers"
    FAILING = "failing"
    DISCONNECTED = "disconnected"

    @classmethod
    def of(cls, report: DeviceReport) -> Condition:
        if report.error is not None:
            return cls.FAILING
        return cls.ANSWERS if report.connected else cls.DISCONNECTED


@dataclass(frozen=True)
class DeviceReading:
    """One device's latest report; `read_at` and `age_s` are None before its first read."""

    report: DeviceReport
    read_at: datetime | None
    age_s: float | None
    in_use: bool


@dataclass(frozen=True)
class EquipmentSnapshot:
    profile: str
    devices: tuple[DeviceReading, ...]

    @property
    def read_at(self) -> datetime | None:
        """When the oldest reading was taken (every device is at least this fresh); None
        while a device has not been read yet."""
        times = [d.read_at for d in self.devices if d.read_at is not None]
        return min(times) if times and len(times) == len(self.devices) else None

    @property
    def age_s(self) -> float | None:
        """The age of the oldest reading, s."""
        ages = [d.age_s for d in self.devices if d.age_s is not None]
        return max(ages) if ages and len(ages) == len(self.devices) else None


@dataclass(frozen=True)
class _Entry:
    report: DeviceReport
    ticket: int
    """Order of the read's start: a read that began earlier never replaces a later one."""
    read_at: datetime | None = None
    read_monotonic: float | None = None


class EquipmentState:
    """Polls the equipment in the background (`start` / `stop`); `snapshot` answers at once.

    `in_use` names the roles the capture path holds now (see the module docstring).
    """

    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        in_use: InUse = lambda: (),
        period_s: float = POLL_PERIOD_S,
        in_use_period_s: float = IN_USE_PERIOD_S,
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._in_use = in_use
        self._period_s = period_s
        self._in_use_period_s = in_use_period_s
        self._tickets = itertools.count()
        self._entries = {
            d.role: _Entry(DeviceReport(d.role, d.location, d.connected, None, None, None), -1)
            for d in equipment.devices()
        }
        self._reading: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def snapshot(self) -> EquipmentSnapshot:
        """The latest reading of every device, with its age; never asks a device."""
        now, in_use = time.monotonic(), set(self._in_use())
        return EquipmentSnapshot(
            self._equipment.profile_name,
            tuple(
                DeviceReading(
                    e.report,
                    e.read_at,
                    None if e.read_monotonic is None else now - e.read_monotonic,
                    role in in_use,
                )
                for role, e in self._entries.items()
            ),
        )

    def recent_weather(self) -> WeatherReading | None:
        """The weather station's latest reading when it is recent (see
        `RECENT_WEATHER_PERIODS`); None without a station or a recent answer. Never asks it."""
        station = self._equipment.weather
        entry = None if station is None else self._entries.get(station.role)
        if entry is None or entry.read_monotonic is None:
            return None
        if time.monotonic() - entry.read_monotonic > RECENT_WEATHER_PERIODS * self._period_s:
            return None
        status = entry.report.status
        return status if isinstance(status, WeatherReading) else None

    async def read(self, device: Device) -> DeviceReading:
        """Read one device now (after a command that moved it) and return its reading."""
        await self._read(device)
        return next(d for d in self.snapshot().devices if d.report.role == device.role)

    async def connect_all(self) -> EquipmentSnapshot:
        """Connect every device, then read them all: the answer shows what the connect did."""
        await self._equipment.connect_all()
        return await self.refresh()

    async def disconnect_all(self) -> EquipmentSnapshot:
        await self._equipment.disconnect_all()
        return await self.refresh()

    async def refresh(self) -> EquipmentSnapshot:
        """Read every device now (after a command that changed them) and return the result."""
        await asyncio.gather(*(self._read(d) for d in self._equipment.devices()))
        return self.snapshot()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="equipment state")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._reading.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._reading.clear()

    async def _poll(self) -> None:
        while True:
            in_use, now = set(self._in_use()), time.monotonic()
            for device in self._equipment.devices():
                role = device.role
                reading = self._reading.get(role)
                if reading is not None and not reading.done():
                    continue  # a slow device: its last read is still waiting for an answer
                last = self._entries[role].read_monotonic
                if role in in_use and last is not None and now - last < self._in_use_period_s:
                    continue
                self._reading[role] = asyncio.create_task(self._read(device), name=f"read {role}")
            await asyncio.sleep(self._period_s)

    async def _read(self, device: Device) -> None:
        ticket = next(self._tickets)
        report = await self._equipment.report(device)
        role, before = device.role, self._entries[device.role]
        if ticket < before.ticket:
            return
        self._entries[role] = _Entry(report, ticket, datetime.now(UTC), time.monotonic())
        if Condition.of(report) is not Condition.of(before.report):
            await self._announce(Condition.of(before.report), report)

    async def _announce(self, before: Condition, report: DeviceReport) -> None:
        """Record a change of condition; a failed write is logged, the polling goes on."""
        role, now = report.role, Condition.of(report)
        if now is Condition.FAILING:
            level, message = "warning", str(report.error)
        elif now is Condition.DISCONNECTED:
            level, message = "info", f"{role} disconnected"
        elif before is Condition.FAILING:
            level, message = "info", f"{role} answers again"
        else:
            level, message = "info", f"{role} connected"
        data = {"role": role, "condition": now.value, "error": report.error}
        try:
            await asyncio.to_thread(record_event, self._engine, level, "equipment", message, data)
        except Exception:  # the state stays right; only its event is missing
            log.exception("could not record the equipment event %r", message)
