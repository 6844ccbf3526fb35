"""The injected clocks: a simulated night runs in milliseconds, real time still counts."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from sequences.clock import Clock, SimulatedClock, SystemClock

START = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)
# Real time keeps running under a simulated clock: a test's own work adds up to this much.
REAL_SLACK_S = 0.5


def elapsed_s(clock: SimulatedClock) -> float:
    return (clock.now() - START).total_seconds()


def test_both_clocks_satisfy_the_protocol() -> None:
    assert isinstance(SystemClock(), Clock)
    assert isinstance(SimulatedClock(START), Clock)


def test_the_clocks_give_aware_utc_and_refuse_naive_or_non_finite_input() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)
    assert SimulatedClock(START).now().tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2026, 11, 22, 17, 0))
    with pytest.raises(ValueError, match="max_chunk_s"):
        SystemClock(max_chunk_s=0)


async def test_bad_waits_raise() -> None:
    clock = SimulatedClock(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        await clock.sleep_until(datetime(2026, 11, 22, 18, 0))
    with pytest.raises(ValueError, match="finite"):
        await clock.sleep(float("inf"))
    with pytest.raises(ValueError, match="finite"):
        await SystemClock().sleep(float("nan"))


async def test_a_two_hour_wait_takes_milliseconds_of_wall_time() -> None:
    clock = SimulatedClock(START)
    wall = time.perf_counter()
    await clock.sleep(7200)
    assert time.perf_counter() - wall < REAL_SLACK_S
    assert 7200 <= elapsed_s(clock) < 7200 + REAL_SLACK_S
    await clock.sleep_until(START + timedelta(hours=5))
    assert 5 * 3600 <= elapsed_s(clock) < 5 * 3600 + REAL_SLACK_S
    assert clock.jumped_s == pytest.approx(5 * 3600, abs=REAL_SLACK_S)


async def test_real_time_still_advances_a_simulated_clock() -> None:
    clock = SimulatedClock(START)
    await asyncio.sleep(0.05)  # an exposure or a slew: real work, no clock wait
    assert 0.05 <= elapsed_s(clock) < REAL_SLACK_S
    assert clock.jumped_s == 0.0


async def test_a_wait_for_a_past_time_returns_at_once_and_time_never_runs_back() -> None:
    clock = SimulatedClock(START)
    await clock.sleep(600)
    before = clock.now()
    await clock.sleep_until(START)
    await clock.sleep(-5)
    assert clock.now() >= before


async def test_concurrent_sleepers_wake_in_deadline_order_at_their_deadlines() -> None:
    clock = SimulatedClock(START)
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append((name, elapsed_s(clock)))

    await asyncio.gather(sleeper("late", 300), sleeper("early", 100), sleeper("middle", 200))
    assert [name for name, _ in woken] == ["early", "middle", "late"]
    for (_, at), deadline in zip(woken, (100, 200, 300), strict=True):
        assert deadline <= at < deadline + REAL_SLACK_S


async def test_a_passive_watcher_samples_through_a_long_wait_and_can_end_it() -> None:
    """A watched condition ("until 18:00") polls every 60 s beside a 2 h wait and stops it."""
    clock = SimulatedClock(START)
    samples: list[float] = []
    main = asyncio.create_task(clock.sleep(7200))

    async def watcher() -> None:
        while True:
            samples.append(elapsed_s(clock))
            if clock.now() >= START + timedelta(hours=1):
                main.cancel()
                return
            await clock.sleep(60, advance=False)

    wall = time.perf_counter()
    watch = asyncio.create_task(watcher())
    with pytest.raises(asyncio.CancelledError):
        await main
    await watch
    assert time.perf_counter() - wall < REAL_SLACK_S
    assert 3600 <= elapsed_s(clock) < 3600 + REAL_SLACK_S
    # One sample per simulated minute: the jump stopped at each of the watcher's deadlines.
    assert len(samples) == 61
    assert all(55 < b - a < 65 for a, b in itertools.pairwise(samples))


async def test_a_passive_watcher_waits_in_real_time_while_others_do_real_work() -> None:
    clock = SimulatedClock(START)
    polls = 0

    async def safety_watcher() -> None:
        nonlocal polls
        while True:
            polls += 1
            await clock.sleep(10, advance=False)

    watch = asyncio.create_task(safety_watcher())
    await asyncio.sleep(0.1)  # an exposure reading out
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert polls == 1
    assert clock.jumped_s == 0.0
    assert elapsed_s(clock) < REAL_SLACK_S


async def test_cancelling_a_simulated_wait_is_prompt_and_leaves_no_trace() -> None:
    clock = SimulatedClock(START)
    pending = asyncio.create_task(clock.sleep(3600, advance=False))
    await asyncio.sleep(0.01)
    wall = time.perf_counter()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert time.perf_counter() - wall < 0.1
    # The cancelled deadline is forgotten: the next jump goes to the new wait's deadline only.
    await clock.sleep(10)
    assert 10 <= elapsed_s(clock) < 10 + REAL_SLACK_S


async def test_cancelling_a_system_clock_wait_is_prompt() -> None:
    pending = asyncio.create_task(SystemClock().sleep(3600))
    await asyncio.sleep(0.01)
    wall = time.perf_counter()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert time.perf_counter() - wall < 0.1


async def test_the_system_clock_sleeps_in_real_time() -> None:
    clock = SystemClock()
    wall = time.perf_counter()
    await clock.sleep(0.05)
    await clock.sleep_until(clock.now() - timedelta(seconds=1))
    assert 0.04 < time.perf_counter() - wall < 0.05 + REAL_SLACK_S


class SteppedWallClock(SystemClock):
    """A system clock whose wall time the test can step, as NTP might."""

    def __init__(self) -> None:
        super().__init__(max_chunk_s=0.02)
        self.step = timedelta(0)

    def now(self) -> datetime:
        return super().now() + self.step


async def test_a_wall_clock_step_ends_a_long_wait_within_one_chunk() -> None:
    clock = SteppedWallClock()
    pending = asyncio.create_task(clock.sleep_until(clock.now() + timedelta(hours=1)))
    await asyncio.sleep(0.05)
    assert not pending.done()
    clock.step = timedelta(hours=1)
    await asyncio.wait_for(pending, timeout=0.5)
