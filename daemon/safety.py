"""The safety supervisor: watches the weather and the devices outside any sequence.

It polls the safety monitor on its own, whatever runs. When the monitor says unsafe (or stops
answering twice in a row: a silent weather station is not a safe one) it aborts the running
exposure and run, stops guiding and parks the mount, and holds the night plan. It lets the
plan go on only after the monitor has said safe continuously for `safe_delay_s` (default 10
minutes, as ACP does), so a passing gap in the clouds does not unpark the mount. There is no
dome or cover driver yet: nothing to close.

Devices are watched too: a device whose status fails twice in a row is lost; it is
reconnected with a growing delay, and a device still lost after the last attempt ends the
night safely (the night director parks if the mount answers) with an alert event.

Every transition is an event (source ``safety``) with its reason. The monitor is polled every
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

from sqlalchemy import Engine

from daemon.events import record_event
from daemon.runs import RunConflict, RunManager
from drivers.base import Device, Guider
from drivers.equipment import Equipment
from drivers.errors import DeviceError
from sequences.clock import Clock

log = logging.getLogger(__name__)

_RUN_STOP_TIMEOUT_S = 120.0
_GUIDER_STOP_TIMEOUT_S = 30.0
_PARK_TIMEOUT_S = 300.0
_STATUS_TIMEOUT_S = 30.0


class SafetyState(enum.StrEnum):
    SAFE = "safe"
    UNSAFE = "unsafe"
    SETTLING = "settling"
    """Safe again, waiting for the safe delay before the plan goes on."""
    UNWATCHED = "unwatched"
    """No safety monitor in the profile: nothing holds the plan."""


@dataclass(frozen=True)
class SafetyConfig:
    poll_s: float = 5.0
    safe_delay_s: float = 600.0
    failures_before_unsafe: int = 2
    """Consecutive unanswered polls of the safety monitor that count as unsafe."""
    failures_before_lost: int = 2
    reconnect_delays_s: tuple[float, ...] = (5.0, 10.0, 20.0, 40.0, 80.0)


@dataclass(frozen=True)
class SafetyReport:
    state: SafetyState
    reason: str | None
    since: datetime | None
    lost_devices: tuple[str, ...]


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
        self._state = (
            SafetyState.SAFE if equipment.safety_monitor is not None else SafetyState.UNWATCHED
        )
        self._reason: str | None = None
        self._since: datetime | None = None
        self._ready = asyncio.Event()
        self._ready.set()
        self._monitor_failures = 0
        self._device_failures: dict[str, int] = {}
        self._reconnecting: dict[str, asyncio.Task[None]] = {}
        self._given_up: set[str] = set()
        """Devices that stayed lost: polled, but not reconnected or reported again."""
        self._task: asyncio.Task[None] | None = None
        self.on_device_lost: DeviceLost | None = None

    # -- what others ask ------------------------------------------------------------------------

    def is_ready(self) -> bool:
        """Whether the plan may run: safe, or no safety monitor to ask."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def report(self) -> SafetyReport:
        lost = tuple(sorted({*self._reconnecting, *self._given_up}))
        return SafetyReport(self._state, self._reason, self._since, lost)

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
        safe, why = await self._read_monitor()
        if safe is not None:
            await self._weather(safe, why)
        await self._check_devices()

    async def _read_monitor(self) -> tuple[bool | None, str]:
        monitor = self._equipment.safety_monitor
        if monitor is None or not monitor.connected:
            return None, ""
        try:
            async with asyncio.timeout(_STATUS_TIMEOUT_S):
                status = await monitor.status()
        except (DeviceError, TimeoutError) as e:
            self._monitor_failures += 1
            if self._monitor_failures >= self.config.failures_before_unsafe:
                return False, f"the safety monitor does not answer ({e})"
            return None, ""
        self._monitor_failures = 0
        return status.is_safe, "the safety monitor reports unsafe"

    async def _weather(self, safe: bool, why: str) -> None:
        now = self._clock.now()
        if not safe:
            if self._state is not SafetyState.UNSAFE:
                await self._go_unsafe(why)
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
                self._set(SafetyState.SAFE, None, now)
                # Recorded before the plan is released: whoever waits in `wait_ready` acts on
                # this declaration, so the log must hold it first (and a failed write must not
                # hold the plan for ever).
                try:
                    await self._event(
                        "info",
                        f"safe for {self.config.safe_delay_s / 60:.1f} min: the plan may go on",
                    )
                finally:
                    self._ready.set()

    async def _go_unsafe(self, why: str) -> None:
        self._ready.clear()
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
        """Stop guiding and park; each step logged, a failure does not stop the next."""
        if self._guider is not None:
            try:
                async with asyncio.timeout(_GUIDER_STOP_TIMEOUT_S):
                    await self._guider.stop()
            except (DeviceError, TimeoutError) as e:
                await self._event("error", f"could not stop guiding: {e}")
        mount = self._equipment.mount
        if mount is None or not mount.connected:
            await self._event("error", "no connected mount to park")
            return
        try:
            if (await mount.status()).at_park:
                return
            async with asyncio.timeout(_PARK_TIMEOUT_S):
                await mount.park()
            await self._event("info", "mount parked (unsafe)")
        except (DeviceError, TimeoutError) as e:
            await self._event("error", f"could not park the mount: {e}")

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
                "error", f"alert: {role} stayed lost ({error}); ending the night safely"
            )
            if self.on_device_lost is not None:
                await self.on_device_lost(role, error)
        finally:
            self._reconnecting.pop(role, None)

    # -- bookkeeping -----------------------------------------------------------------------------

    def _set(self, state: SafetyState, reason: str | None, since: datetime) -> None:
        self._state, self._reason, self._since = state, reason, since

    async def _event(self, level: str, message: str) -> None:
        await asyncio.to_thread(
            record_event,
            self._engine,
            level,
            "safety",
            message,
            {"state": self._state.value, "reason": self._reason},
        )
