"""The event-loop watchdog on a real asyncio loop, held by a blocking call on purpose (a fault
the daemon's own parts do not produce on demand)."""

from __future__ import annotations

import asyncio
import time

import pytest

from daemon.loop_watchdog import LoopWatchdog, Stall

# Held long enough that the watchdog's thread, waking every 0.1 s, looks at the loop while it
# is held even on a busy machine (it has 1.5 s past the 0.5 s threshold to do so).
HELD_S = 2.0


def _hold_the_loop_with_a_blocking_call() -> None:
    time.sleep(HELD_S)


async def test_a_held_loop_is_reported_with_the_call_that_held_it() -> None:
    heard: list[Stall] = []
    watchdog = LoopWatchdog(threshold_s=0.5, interval_s=0.1, on_stall=heard.append)
    watchdog.start()
    try:
        await asyncio.sleep(0.3)
        _hold_the_loop_with_a_blocking_call()
        # The stall is reported by the first heartbeat after it, on the loop.
        deadline = time.monotonic() + 30
        while not any("_hold_the_loop" in s.where for s in heard):
            assert time.monotonic() < deadline, "no stall reported"
            await asyncio.sleep(0.05)
    finally:
        watchdog.stop()

    # A busy machine may starve the loop for a moment too; the held stall is the one to check.
    assert watchdog.count == len(heard)
    assert watchdog.stalls == heard
    [stall] = [s for s in heard if "_hold_the_loop_with_a_blocking_call" in s.where]
    # Late by the hold, less the part of an interval the last heartbeat was before it.
    assert HELD_S - 0.1 <= stall.seconds < HELD_S + 10
    assert "_hold_the_loop_with_a_blocking_call" in stall.where
    assert "time.sleep" in stall.where


async def test_the_loop_after_a_stall_is_watched_again() -> None:
    watchdog = LoopWatchdog(threshold_s=0.5, interval_s=0.1)
    watchdog.start()
    try:
        for _ in range(2):
            await asyncio.sleep(0.3)
            _hold_the_loop_with_a_blocking_call()
        deadline = time.monotonic() + 30
        while len(held := [s for s in watchdog.stalls if "_hold_the_loop" in s.where]) < 2:
            assert time.monotonic() < deadline, f"{watchdog.stalls} reported"
            await asyncio.sleep(0.05)
    finally:
        watchdog.stop()
    assert [s.seconds >= HELD_S - 0.1 for s in held] == [True, True]


def test_settings_that_could_not_work_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopWatchdog(threshold_s=0)
    with pytest.raises(ValueError, match="positive"):
        LoopWatchdog(interval_s=-1)
