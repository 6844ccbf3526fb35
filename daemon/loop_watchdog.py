"""Notices when the daemon's event loop stalls, and names what held it.

Devices, runs, the API and the safety supervisor share one asyncio loop. A call that blocks
it (synchronous I/O, a long computation, a lock held by a thread) holds up every device
timeout and every request with it, so a daemon whose loop is held looks hung, and nothing on
the loop can tell why. A heartbeat runs on the loop every `interval_s`; a thread beside it
checks the heartbeat, and when it is late by more than `threshold_s` takes the loop
thread's stack at that moment: the blocking call is on it. When the loop runs again, the
stall is logged and handed to `on_stall` (the daemon stores it as a warning event) with how
long the loop was held.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

# What a stall shows of the held loop's stack: every frame of Nightowl's own code (the path
# that made the blocking call), and the innermost frames of the libraries below it.
_OURS = str(Path(__file__).resolve().parents[1])
_INNERMOST_FRAMES = 4


@dataclass(frozen=True)
class Stall:
    """The loop held from `started_at` (UTC, the heartbeat that came late) for `seconds`
    beyond its heartbeat interval; `where` is the loop thread's stack while it was held,
    innermost frame last."""

    started_at: datetime
    seconds: float
    where: str


class LoopWatchdog:
    """Start with `start()` on the loop to watch, stop with `stop()`. `stalls` keeps the
    most recent ones; `count` all since the start."""

    def __init__(
        self,
        *,
        threshold_s: float = 1.0,
        interval_s: float = 0.25,
        keep: int = 20,
        on_stall: Callable[[Stall], None] | None = None,
    ) -> None:
        if threshold_s <= 0 or interval_s <= 0:
            raise ValueError("threshold_s and interval_s must be positive")
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.count = 0
        self._recent: deque[Stall] = deque(maxlen=keep)
        self._on_stall = on_stall
        self._lock = threading.Lock()
        self._beat = time.monotonic()
        self._held: str | None = None  # the held loop's stack, as the thread saw it
        self._loop_thread: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def stalls(self) -> list[Stall]:
        with self._lock:
            return list(self._recent)

    def start(self) -> None:
        """Watch the running loop (call on it)."""
        loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        self._timer = loop.call_later(self.interval_s, self._heartbeat, loop)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._watch, name="loop watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _heartbeat(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        with self._lock:
            held, self._held = self._held, None
            late = now - self._beat - self.interval_s
            self._beat = now
        if held is not None:
            stall = Stall(
                started_at=datetime.now(UTC) - timedelta(seconds=late),
                seconds=late,
                where=held,
            )
            with self._lock:
                self._recent.append(stall)
                self.count += 1
            log.warning("the event loop was held for %.1f s by:\n%s", late, stall.where)
            if self._on_stall is not None:
                self._on_stall(stall)
        self._timer = loop.call_later(self.interval_s, self._heartbeat, loop)

    def _watch(self) -> None:
        while not self._stopping.wait(self.interval_s):
            with self._lock:
                late = time.monotonic() - self._beat - self.interval_s
                if late <= self.threshold_s or self._held is not None:
                    continue
                frame = sys._current_frames().get(self._loop_thread or 0)
                self._held = _where(frame)


def _where(frame: FrameType | None) -> str:
    """The frames of a held loop's stack worth reading: Nightowl's own, and the innermost."""
    if frame is None:
        return "(the loop thread's stack was not found)"
    stack = traceback.extract_stack(frame)
    if stack and stack[-1].filename.endswith("selectors.py"):
        return (
            "nothing of the loop's own: it was waiting for its sockets when looked at, so it "
            "did not get the CPU or the GIL in time (another thread or process held them), "
            "or what held it had just finished"
        )
    innermost = len(stack) - _INNERMOST_FRAMES
    kept = traceback.StackSummary.from_list(
        [
            entry
            for i, entry in enumerate(stack)
            if i >= innermost
            or (entry.filename.startswith(_OURS) and "-packages" not in entry.filename)
        ]
    )
    return "".join(kept.format()).rstrip()
