"""Fan-out of guide events to subscribers' queues."""

from __future__ import annotations

import asyncio
import contextlib

from drivers.base import GuideEvent


class Subscribers:
    """The queues of `Guider.subscribe()`; a full queue loses its oldest event rather than
    stall the guide loop."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[GuideEvent]] = []

    def subscribe(self, maxsize: int = 1000) -> asyncio.Queue[GuideEvent]:
        queue: asyncio.Queue[GuideEvent] = asyncio.Queue(maxsize)
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[GuideEvent]) -> None:
        with contextlib.suppress(ValueError):
            self._queues.remove(queue)

    def emit(self, event: GuideEvent) -> None:
        """Hand `event` to every subscriber."""
        for queue in list(self._queues):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(event)
