"""The safety supervisor: watches the weather and the devices outside any sequence.

It polls the safety monitor and the weather station on its own, whatever runs. The sky is
unsafe when the monitor says so, when a reading breaks one of the profile's weather limits
(`WeatherLimits`, e.g. rain, wind gust, humidity, cloud cover), or when either stops answering
twice in a row (a silent weather station is not a safe one). Then, in this order, each step
an event with its outcome and a failure not stopping the next: abort the running exposure and
run, stop guiding, park the mount (and wait until it reports parked), close the roof or
shutter (`drivers.observatory.close_roof`: a roll-off roof refuses over a mount that does not
report parked), close the dust cover. The night plan is held meanwhile.

Once the sky has been safe continuously for `safe_delay_s` (default 10 minutes, as ACP
does, so a passing gap in the clouds does not open the roof), the supervisor opens what it
closed itself, roof first (only over the parked mount), then the cover, and only then lets the
plan go on (the night's start area unparks). A roof or cover that was closed before the spell
stays closed. A roof that does not close or open (the driver's timeout, an error, a refusal)
is an `alert` event, so a notification; one that does not open keeps the plan held, and the
next safe delay tries again.

Devices are watched too: a device whose status fails twice in a row is lost; it is
reconnected with a growing delay, and a device still lost after the last attempt ends the
night safely (the night director parks if the mount answers) with an alert.

Every transition is an event (source ``safety``) with its reason. The sky is polled every
`poll_s` in every state, settling included, so an unsafe spell is noticed within one poll
whenever it starts. Polling runs on wall time, as the weather does; the end of the safe delay
is also awaited on the daemon's clock, so a rehearsal on the simulated clock jumps to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from daemon.events import record_event
from daemon.runs import RunConflict, RunManager
from drivers.base import CoverState, Device, Guider, ShutterState
from drivers.equipment import Equipment
from drivers.errors import DeviceError, DeviceTimeout
from drivers.observatory import RoofRefused, close_roof, open_roof
from drivers.profile import WeatherLimits
from sequences.clock import Clock

log = logging.getLogger(__name__)

_RUN_STOP_TIMEOUT_S = 120.0
_GUIDER_STOP_TIMEOUT_S = 30.0
_PARK_TIMEOUT_S = 300.0
_STATUS_TIMEOUT_S = 30.0
_ROOF_TIMEOUT_S = 900.0
"""A backstop over the dome driver's own deadline (the profile's `shutter_timeout_s`)."""
_COVER_TIMEOUT_S = 300.0
"""A backstop over the cover driver's own deadline (the profile's `cover_timeout_s`)."""


class SafetyState(enum.StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"
    SETTLING = "settling"
    """Safe again, waiting for the safe delay before the plan goes on."""
    UNWATCHED = "unwatched"
    """No safety monitor nor weather limits in the profile: nothing holds the plan."""


@dataclass(frozen=True)
class SafetyConfig:
    poll_s: float = 5.0
    safe_delay_s: float = 600.0
    failures_before_unsafe: int = 2
    """Consecutive unanswered polls of the safety monitor that count as unsafe."""
    failures_before_lost: int = 2
    reconnect_delays_s: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0, 80.0)
    weather_limits: WeatherLimits | None = None
    """The readings that make the sky unsafe (the profile's ``weather.unsafe``); None: the
    weather station is not watched."""


@dataclass(frozen=True)
class SafetyReport:
    state: SafetyState
    reason: str | None
    since: datetime | None
    lost_devices: tuple[str, ...]
    weather_violations: tuple[str, ...] = ()
    """The weather limits the last reading broke (empty: none, or no reading)."""
    closed: tuple[str, ...] = ()
    """What the supervisor closed ("roof", "cover") and opens again once safe."""


DeviceLost = Callable[[str, str], Awaitable[None]]
"""Called with (role, error) when a device stayed lost after every reconnect attempt."""


class SafetySupervisor:
    def __init__(
        self,
        engine: Engine,
        equipment: Equipment,
        clock: Clock,
        runs: RunManager,
        guider: Guider | None,
        config: SafetyConfig | None = None,
    ) -> None:
        self._engine = engine
        self._equipment = equipment
        self._clock = clock
        self._runs = runs
        self._guider = guider
        self.config = config or SafetyConfig()
        watched = equipment.safety_monitor is not None or (
            equipment.weather is not None and self.config.weather_limits is not None
        )
        self._state = SafetyState.SAFE if watched else SafetyState.UNWATCHED
        self._reason: str | None = None
        self._since: datetime | None = None
        self._ready = asyncio.Event()
        self._ready.set()
        self._silent_polls: dict[str, int] = {}
        """Consecutive unanswered polls of the safety monitor and of the weather station."""
        self._violations: tuple[str, ...] = ()
        self._closed: set[str] = set()
        self._reopen_failed = False
        """What the spell closed did not open again: the plan stays held, and an unsafe sky
        secures everything again although the state is already unsafe."""
        self._device_failures: dict[str, int] = {}
        self._reconnecting: dict[str, asyncio.Task[None]] = {}
        self._given_up: set[str] = set()
        """Devices that stayed lost: polled, but not reconnected or reported again."""
        self._task: asyncio.Task[None] | None = None
        self.on_device_lost: DeviceLost | None = None

    # -- what others ask ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Whether the plan may run: safe (what the spell closed is open again), or nothing
        to ask."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def report(self) -> SafetyReport:
        lost = tuple(sorted({*self._reconnecting, *self._given_up}))
        closed = tuple(step for step in ("roof", "cover") if step in self._closed)
        return SafetyReport(self._state, self._reason, self._since, lost, self._violations, closed)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="safety supervisor")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._reconnecting.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._reconnecting.clear()

    # -- the watch -------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            try:
                await self._poll_once()
            except Exception:  # the supervisor must outlive any surprise: log and go on
                log.exception("safety supervisor poll failed")
            await self._until_next_poll()

    async def _until_next_poll(self) -> None:
        """Wait `poll_s`. Outside settling the wait is passive: polling never moves a
        simulated clock. While settling, the end of the safe delay is awaited on the clock too
        and ends the wait if it comes first: on the system clock that is after a poll every
        `poll_s`; a rehearsal on the simulated clock jumps to it. The poll is then timed on
        wall time, since a passive wait on the clock would cut that jump into `poll_s` steps."""
        if self._state is not SafetyState.SETTLING:
            await self._clock.sleep(self.config.poll_s, advance=False)
            return
        assert self._since is not None
        settled = self._since + timedelta(seconds=self.config.safe_delay_s)
        countdown = asyncio.ensure_future(self._clock.sleep_until(settled, advance=True))
        try:
            await asyncio.wait({countdown}, timeout=self.config.poll_s)
        finally:
            countdown.cancel()

    async def _poll_once(self) -> None:
        safe, why = await self._read_sky()
        if safe is not None:
            await self._weather(safe, why)
        await self._check_devices()

    async def _read_sky(self) -> tuple[bool | None, str]:
        """(False, the reasons) when the monitor or the weather says unsafe; (True, "") when
        one says safe and none unsafe; (None, "") when neither could tell this poll."""
        verdicts = [
            v for v in await asyncio.gather(self._read_monitor(), self._read_weather()) if v
        ]
        unsafe = [why for safe, why in verdicts if not safe]
        if unsafe:
            return False, "; ".join(unsafe)
        return (True, "") if verdicts else (None, "")

    async def _read_monitor(self) -> tuple[bool, str] | None:
        monitor = self._equipment.safety_monitor
        if monitor is None or not monitor.connected:
            return None
        try:
            async with asyncio.timeout(_STATUS_TIMEOUT_S):
                status = await monitor.status()
        except (DeviceError, TimeoutError) as e:
            return self._silent("safety monitor", e)
        self._silent_polls.pop("safety monitor", None)
        return status.is_safe, "the safety monitor reports unsafe"

    async def _read_weather(self) -> tuple[bool, str] | None:
        station, limits = self._equipment.weather, self.config.weather_limits
        if station is None or limits is None or not station.connected:
            return None
        try:
            async with asyncio.timeout(_STATUS_TIMEOUT_S):
                reading = await station.status()
        except (DeviceError, TimeoutError) as e:
            return self._silent("weather station", e)
        self._silent_polls.pop("weather station", None)
        self._violations = tuple(limits.violations(reading))
        return not self._violations, f"weather: {', '.join(self._violations)}"

    def _silent(self, name: str, error: Exception) -> tuple[bool, str] | None:
        """An unanswered poll of `name`: unsafe from the `failures_before_unsafe`-th in a row."""
        failures = self._silent_polls.get(name, 0) + 1
        self._silent_polls[name] = failures
        if failures >= self.config.failures_before_unsafe:
            return False, f"the {name} does not answer ({error})"
        return None

    async def _weather(self, safe: bool, why: str) -> None:
        now = self._clock.now()
        if not safe:
            if self._state is not SafetyState.UNSAFE or self._reopen_failed:
                await self._go_unsafe(why)
            else:
                self._reason = why
            return
        if self._state is SafetyState.UNSAFE:
            self._set(SafetyState.SETTLING, "safe again; waiting for the safe delay", now)
            await self._event(
                "info",
                f"safe again: the plan goes on after {self.config.safe_delay_s / 60:.1f} min "
                "of continuous safe conditions",
            )
        elif self._state is SafetyState.SETTLING:
            assert self._since is not None
            if (now - self._since).total_seconds() >= self.config.safe_delay_s:
                problem = await self._reopen()
                if problem is not None:
                    # Held: the next safe delay tries again.
                    self._reopen_failed = True
                    self._set(SafetyState.UNSAFE, problem, self._clock.now())
                    return
                self._reopen_failed = False
                self._set(SafetyState.SAFE, None, now)
                # Recorded before the plan is released: whoever waits in `wait_ready` acts on
                # this declaration, so the log must hold it first (and a failed write must not
                # hold the plan for ever).
                try:
                    await self._event(
                        "info",
                        f"safe for {self.config.safe_delay_s / 60:.1f} min: the plan may go on",
                        step="release",
                    )
                finally:
                    self._ready.set()

    async def _go_unsafe(self, why: str) -> None:
        self._ready.clear()
        self._reopen_failed = False
        self._set(SafetyState.UNSAFE, why, self._clock.now())
        await self._event("warning", f"unsafe: {why}; aborting the exposure and parking")
        run_id = self._runs.active_run_id
        if run_id is not None:
            with contextlib.suppress(RunConflict):
                self._runs.control(run_id, "abort")
                try:
                    async with asyncio.timeout(_RUN_STOP_TIMEOUT_S):
                        await self._runs.wait(run_id)
                    await self._event("info", f"run {run_id} aborted (unsafe)")
                except TimeoutError:
                    await self._event("error", f"run {run_id} did not stop within 2 min")
        await self._secure()

    async def _secure(self) -> None:
        """Stop guiding, park, close the roof, close the cover, in this order; each step
        logged, a failure does not stop the next (the roof's own guard refuses to move over
        a mount that is not parked)."""
        if self._guider is not None:
            try:
                async with asyncio.timeout(_GUIDER_STOP_TIMEOUT_S):
                    await self._guider.stop()
            except (DeviceError, TimeoutError) as e:
                await self._event("error", f"could not stop guiding: {e}", step="guiding")
        await self._park()
        await self._close_roof()
        await self._close_cover()

    async def _park(self) -> None:
        """Park and return once the mount reports parked (the driver waits for it)."""
        mount = self._equipment.mount
        if mount is None or not mount.connected:
            await self._event("error", "no connected mount to park", step="park")
            return
        try:
            if (await mount.status()).at_park:
                await self._event("info", "mount already parked", step="park")
                return
            async with asyncio.timeout(_PARK_TIMEOUT_S):
                await mount.park()
            await self._event("info", "mount parked (unsafe)", step="park")
        except (DeviceError, TimeoutError) as e:
            await self._event("error", f"could not park the mount: {e}", step="park")

    async def _close_roof(self) -> None:
        dome = self._equipment.dome
        if dome is None:
            return
        try:
            async with asyncio.timeout(_ROOF_TIMEOUT_S):
                if (await dome.status()).shutter is ShutterState.CLOSED:
                    await self._event("info", "roof already closed", step="roof")
                    return
                await close_roof(dome, self._equipment.mount)
                shutter = (await dome.status()).shutter
        except (DeviceError, TimeoutError) as e:
            await self._event("alert", f"roof not closed: {_roof_problem(e)}", step="roof")
            return
        if shutter is not ShutterState.CLOSED:
            name = "unknown" if shutter is None else shutter.name.lower()
            await self._event(
                "alert", f"roof not closed: it reports {name} after closing", step="roof"
            )
            return
        self._closed.add("roof")
        await self._event("info", "roof closed (unsafe)", step="roof")

    async def _close_cover(self) -> None:
        cover = self._equipment.cover_calibrator
        if cover is None:
            return
        try:
            async with asyncio.timeout(_COVER_TIMEOUT_S):
                state = (await cover.status()).cover
                if state in (CoverState.CLOSED, CoverState.NOT_PRESENT):
                    if state is CoverState.CLOSED:
                        await self._event("info", "dust cover already closed", step="cover")
                    return
                await cover.close_cover()
        except (DeviceError, TimeoutError) as e:
            await self._event("alert", f"dust cover not closed: {e}", step="cover")
            return
        self._closed.add("cover")
        await self._event("info", "dust cover closed (unsafe)", step="cover")

    async def _reopen(self) -> str | None:
        """Open what the spell closed, the roof (only over a parked mount) before the cover;
        None when done, else why not (after an alert)."""
        dome, cover = self._equipment.dome, self._equipment.cover_calibrator
        if "roof" in self._closed and dome is not None:
            try:
                async with asyncio.timeout(_ROOF_TIMEOUT_S):
                    await open_roof(dome, self._equipment.mount)
            except (DeviceError, TimeoutError) as e:
                problem = f"roof not opened: {_roof_problem(e)}; the plan stays held"
                await self._event("alert", problem, step="roof")
                return problem
            self._closed.discard("roof")
            await self._event("info", "roof opened (safe again)", step="roof")
        if "cover" in self._closed and cover is not None:
            try:
                async with asyncio.timeout(_COVER_TIMEOUT_S):
                    await cover.open_cover()
            except (DeviceError, TimeoutError) as e:
                problem = f"dust cover not opened: {e}; the plan stays held"
                await self._event("alert", problem, step="cover")
                return problem
            self._closed.discard("cover")
            await self._event("info", "dust cover opened (safe again)", step="cover")
        return None

    # -- devices ---------------------------------------------------------------------------------

    async def _check_devices(self) -> None:
        devices = [
            d for d in self._equipment.devices() if d.connected and d.role not in self._reconnecting
        ]
        results = await asyncio.gather(*(self._answers(d) for d in devices))
        for device, error in zip(devices, results, strict=True):
            if error is None:
                self._device_failures.pop(device.role, None)
                if device.role in self._given_up:
                    self._given_up.discard(device.role)
                    await self._event("info", f"{device.role} answers again")
                continue
            if device.role in self._given_up:
                continue
            failures = self._device_failures.get(device.role, 0) + 1
            self._device_failures[device.role] = failures
            if failures >= self.config.failures_before_lost:
                self._device_failures.pop(device.role, None)
                self._reconnecting[device.role] = asyncio.create_task(
                    self._reconnect(device, error), name=f"reconnect {device.role}"
                )

    async def _answers(self, device: Device) -> str | None:
        try:
            async with asyncio.timeout(_STATUS_TIMEOUT_S):
                await device.status()
        except (DeviceError, TimeoutError) as e:
            return str(e) or type(e).__name__
        return None

    async def _reconnect(self, device: Device, error: str) -> None:
        role = device.role
        await self._event("warning", f"{role} lost ({error}); reconnecting")
        try:
            for attempt, delay_s in enumerate(self.config.reconnect_delays_s, start=1):
                await asyncio.sleep(delay_s)
                try:
                    await device.connect()
                    async with asyncio.timeout(_STATUS_TIMEOUT_S):
                        await device.status()
                except (DeviceError, TimeoutError) as e:
                    error = str(e) or type(e).__name__
                    log.info("%s: reconnect attempt %d failed: %s", role, attempt, error)
                    continue
                await self._event("info", f"{role} reconnected (attempt {attempt})")
                return
            self._given_up.add(role)
            await self._event(
                "alert", f"{role} stayed lost ({error}); ending the night safely", role=role
            )
            if self.on_device_lost is not None:
                await self.on_device_lost(role, error)
        finally:
            self._reconnecting.pop(role, None)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _set(self, state: SafetyState, reason: str | None, since: datetime) -> None:
        self._state, self._reason, self._since = state, reason, since

    async def _event(self, level: str, message: str, **data: Any) -> None:
        """Record an event with the state and its reason; `step` names a step of securing
        or reopening ("guiding", "park", "roof", "cover", "release")."""
        await asyncio.to_thread(
            record_event,
            self._engine,
            level,
            "safety",
            message,
            {"state": self._state.value, "reason": self._reason, **data},
        )


def _roof_problem(error: DeviceError | TimeoutError) -> str:
    """Why the roof did not move, for people."""
    if isinstance(error, RoofRefused):
        return f"refused: {error.message}"
    if isinstance(error, DeviceTimeout):
        return f"it did not get there in time ({error.message})"
    if isinstance(error, DeviceError):
        return str(error)
    return f"no answer within {_ROOF_TIMEOUT_S / 60:.0f} min"
