"""Time for the sequence engine: an injected clock, real or simulated.

Nothing in `sequences` reads the system time directly; it asks a `Clock`. `SystemClock` is the
real one. `SimulatedClock` lets a whole night be rehearsed in minutes against the simulators:
waits jump ahead, while exposures and device moves still take their real time.

Simulated time, precisely:

    now() = start + jumped + (real monotonic time since the clock was made)

`jumped` only ever grows, so simulated time never runs backwards. One driver task per clock
keeps all pending sleepers in deadline order and repeats:

1. if the earliest sleeper's deadline has passed, wake it (and every other one that is due, in
   deadline order), then yield to the event loop once so the woken tasks run and can ask for
   their next wait before the clock moves on;
2. else, if any pending sleeper *advances* the clock (the default), jump `jumped` forward to the
   earliest deadline, not to the advancing sleeper's own one: a watcher waking every 60 s beside
   a task waiting two hours therefore sees every one of its 120 samples, at the simulated time it
   asked for, and can cancel the long wait part-way (a condition that turned false, dawn);
3. else (only passive sleepers), wait in real time until the earliest deadline or a new sleeper.

A *passive* wait (``advance=False``) never moves simulated time by itself: it ends when real
time or some other task's advancing wait carries the clock past its deadline. Background
watchers that poll while another task works in real time (the safety monitor during an
exposure) must wait passively; an advancing poll loop would race simulated time ahead by hours
while a 120 s exposure reads out. Simulated time is shared: an advancing wait jumps it for every
task, including one busy with real work. A jump is final, so a sleeper that registers after a
jump with a deadline already passed wakes at once. A woken task that does real I/O before its
next wait samples less often in simulated time, because its next deadline is counted from when
it asks. Each wake costs tens of microseconds, so a 1 s poll through a 10 h wait costs ~1 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


def _require_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"a timezone-aware datetime is required, got naive {when.isoformat()}")


def _require_finite(seconds: float) -> None:
    if not math.isfinite(seconds):
        raise ValueError(f"seconds must be finite, got {seconds}")


@runtime_checkable
class Clock(Protocol):
    """Where the engine gets the time and how it waits; injected so tests run a night fast."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep(self, seconds: float, *, advance: bool = True) -> None:
        """Wait `seconds` (<= 0 only yields); ``advance=False`` for background polling."""
        ...

    async def sleep_until(self, when: datetime, *, advance: bool = True) -> None:
        """Wait until `when` (aware); returns at once, after a yield, when it has passed."""
        ...


class SystemClock:
    """Real UTC time. Long waits re-check the wall clock every `max_chunk_s` seconds.

    asyncio sleeps on a monotonic clock while deadlines are wall-clock times: when NTP steps
    the wall clock forward, a wait until 05:00 still ends at most `max_chunk_s` after 05:00;
    a step backwards lengthens the wait, as it should. `advance` has no meaning here.
    """

    def __init__(self, *, max_chunk_s: float = 30.0) -> None:
        if not (math.isfinite(max_chunk_s) and max_chunk_s > 0):
            raise ValueError(f"max_chunk_s must be positive, got {max_chunk_s}")
        self.max_chunk_s = max_chunk_s

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float, *, advance: bool = True) -> None:
        _require_finite(seconds)
        await self.sleep_until(self.now() + timedelta(seconds=max(0.0, seconds)))

    async def sleep_until(self, when: datetime, *, advance: bool = True) -> None:
        _require_aware(when)
        while True:
            remaining_s = (when - self.now()).total_seconds()
            if remaining_s <= 0:
                await asyncio.sleep(0)
                return
            await asyncio.sleep(min(remaining_s, self.max_chunk_s))


@dataclass(order=True)
class _Sleeper:
    deadline_s: float
    seq: int
    future: asyncio.Future[None] = field(compare=False)
    advance: bool = field(compare=False)


class SimulatedClock:
    """Simulated UTC time starting at `start`; see the module docstring for the semantics.

    Serves one event loop. Cancelling a sleeping task ends its wait at once.
    """

    def __init__(self, start: datetime) -> None:
        _require_aware(start)
        self._start = start.astimezone(UTC)
        self._t0 = time.monotonic()
        self._jumped_s = 0.0
        self._sleepers: list[_Sleeper] = []
        self._seq = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._poke = asyncio.Event()
        """Set when a sleeper comes or goes, so a driver waiting in real time looks again."""

    @property
    def start(self) -> datetime:
        return self._start

    @property
    def jumped_s(self) -> float:
        """Seconds skipped by waits so far (the rest of the elapsed time was real)."""
        return self._jumped_s

    def _elapsed_s(self) -> float:
        return self._jumped_s + (time.monotonic() - self._t0)

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed_s())

    async def sleep(self, seconds: float, *, advance: bool = True) -> None:
        _require_finite(seconds)
        await self._wait(self._elapsed_s() + seconds, advance)

    async def sleep_until(self, when: datetime, *, advance: bool = True) -> None:
        _require_aware(when)
        await self._wait((when - self._start).total_seconds(), advance)

    async def _wait(self, deadline_s: float, advance: bool) -> None:
        if deadline_s <= self._elapsed_s():
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        sleeper = _Sleeper(deadline_s, next(self._seq), loop.create_future(), advance)
        heapq.heappush(self._sleepers, sleeper)
        self._ensure_driver(loop)
        self._poke.set()
        try:
            await sleeper.future
        finally:
            if not sleeper.future.done():
                sleeper.future.cancel()
            self._poke.set()

    def _ensure_driver(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._driver is not None and not self._driver.done():
            if self._driver.get_loop() is not loop:
                raise RuntimeError("a SimulatedClock serves one event loop")
            return
        self._poke = asyncio.Event()
        self._driver = loop.create_task(self._drive(), name="simulated-clock")

    def _drop_finished(self) -> None:
        while self._sleepers and self._sleepers[0].future.done():
            heapq.heappop(self._sleepers)

    async def _drive(self) -> None:
        try:
            while True:
                self._poke.clear()
                self._drop_finished()
                if not self._sleepers:
                    return
                wait_s = self._sleepers[0].deadline_s - self._elapsed_s()
                if wait_s > 0:
                    if any(s.advance and not s.future.done() for s in self._sleepers):
                        self._jumped_s += wait_s
                    else:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(wait_s):
                                await self._poke.wait()
                        continue
                now_s = self._elapsed_s()
                while self._sleepers and self._sleepers[0].deadline_s <= now_s:
                    sleeper = heapq.heappop(self._sleepers)
                    if not sleeper.future.done():
                        sleeper.future.set_result(None)
                await asyncio.sleep(0)
        finally:
            # Only reached with sleepers left when the driver itself is cancelled (loop
            # shutdown): end their waits rather than leave them hanging.
            for sleeper in self._sleepers:
                if not sleeper.future.done():
                    sleeper.future.cancel()
            self._sleepers.clear()
