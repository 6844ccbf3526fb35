"""Faults the drivers retried, into the event log: a fault that healed is still seen.

The drivers retry a transient fault of a request that changes nothing (an HTTP 5xx, a reset
connection, an image cut short) and report each one to a `drivers.errors.FaultListener`. This
listener records them as warning events (source ``device``), so a night that completed through
a flaky network shows where it stumbled. Hearing a fault never waits on the database: faults
queue and one task writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine

from daemon.events import record_event
from drivers.errors import DeviceFault

log = logging.getLogger(__name__)


class DeviceFaultLog:
    """`heard` is the equipment's fault listener; `start` and `stop` run the writer task.

    At most `max_queued` faults wait to be written; past that the oldest are dropped (and
    counted in `dropped`): a storm of faults must not grow the daemon's memory.
    """

    def __init__(self, engine: Engine, max_queued: int = 1000) -> None:
        self._engine = engine
        self._queue: asyncio.Queue[DeviceFault] = asyncio.Queue(max_queued)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def heard(self, fault: DeviceFault) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(fault)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_all(), name="device fault log")

    async def stop(self) -> None:
        """Stop the writer, then write what is still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            await asyncio.to_thread(self._write, self._queue.get_nowait())

    async def _write_all(self) -> None:
        while True:
            fault = await self._queue.get()
            try:
                await asyncio.to_thread(self._write, fault)
            except Exception:  # the log must outlive a failed write: say so and go on
                log.exception("could not record a device fault: %s", fault)

    def _write(self, fault: DeviceFault) -> None:
        record_event(
            self._engine,
            "warning",
            "device",
            f"{fault.device}: {fault.operation} failed ({fault.message}); "
            f"retrying in {fault.retry_in_s:.1f} s (attempt {fault.attempt})",
            {
                "device": fault.device,
                "operation": fault.operation,
                "attempt": fault.attempt,
                "message": fault.message,
            },
        )
