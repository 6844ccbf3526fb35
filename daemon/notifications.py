"""Webhook notifications: every alert event is POSTed as JSON to each configured webhook.

The notifier reads the alert events from the event log, as the web UI's live tail does, so an
alert recorded by any thread or process is sent, and recording one never waits for a webhook.
Each webhook has a bounded queue and a sender of its own: a slow or dead receiver delays only
its own alerts. A POST that fails (no reply within `timeout_s`, a connection error, a status
other than 2xx) is tried again after each delay of `retry_delays_s` (1, 2, 4, 8 s), then the
alert is given up with a log line. When a queue is full its oldest alert is dropped (logged):
the newest say most about the observatory now. Alerts recorded before the start are not sent.
Daemons sharing one database each send only their own alerts (the events their engine's owner
recorded), under their own profile's name.

The body: ``{"id", "time" (UTC ISO 8601), "level", "source", "message", "data", "profile"}``.
Webhook URLs often carry a secret (a token in the path), so logs name only scheme and host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from daemon.db.engine import owned_by_engine
from daemon.db.models import Event
from daemon.events import last_event_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NotifierConfig:
    poll_s: float = 1.0
    """How often the event log is read for new alerts."""
    timeout_s: float = 10.0
    """Per POST: connecting, and waiting for the reply."""
    retry_delays_s: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """The waits between attempts: one attempt more than delays."""
    queue_size: int = 100
    """Alerts waiting per webhook; the oldest is dropped beyond."""


def alert_body(event: Event, profile_name: str) -> dict[str, Any]:
    """The JSON a webhook receives for `event`."""
    return {
        "id": event.id,
        "time": event.time.isoformat(),
        "level": event.level,
        "source": event.source,
        "message": event.message,
        "data": event.data,
        "profile": profile_name,
    }


def own_alerts(engine: Engine, after_id: int, limit: int = 200) -> list[Event]:
    """The alert events after `after_id` that `engine`'s daemon recorded (not those of other
    daemons sharing the database), oldest first. Blocking."""
    query = (
        select(Event)
        .where(
            Event.id > after_id,
            Event.level == "alert",
            owned_by_engine(Event.owner, engine),
        )
        .order_by(Event.id)
        .limit(limit)
    )
    with Session(engine) as db:
        return list(db.scalars(query))


def shown_url(url: str) -> str:
    """`url` as logs show it: scheme and host, without a path that may hold a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Notifier:
    """Sends the alert events of `engine`'s log to `urls`; `start` and `stop` on the loop."""

    def __init__(
        self,
        engine: Engine,
        urls: Sequence[str],
        profile_name: str,
        config: NotifierConfig | None = None,
    ) -> None:
        self._engine = engine
        self._profile_name = profile_name
        self.config = config or NotifierConfig()
        self._hooks = [_Webhook(url, self.config) for url in urls]
        self._after = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Send alerts recorded from now on."""
        if not self._hooks or self._task is not None:
            return
        self._after = await asyncio.to_thread(last_event_id, self._engine)
        for hook in self._hooks:
            hook.start()
        self._task = asyncio.create_task(self._tail(), name="notifier")

    async def stop(self) -> None:
        """Stop at once; alerts still queued are logged as not sent."""
        tasks = [t for t in (self._task, *(h.task for h in self._hooks)) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        for hook in self._hooks:
            hook.close()

    async def _tail(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_s)
            try:
                events = await asyncio.to_thread(own_alerts, self._engine, self._after)
            except Exception:  # the database may be busy: read again at the next poll
                log.exception("notifier: could not read the event log")
                continue
            for event in events:
                self._after = event.id
                body = alert_body(event, self._profile_name)
                for hook in self._hooks:
                    hook.put(body)


class _Webhook:
    """One receiver: its queue and its sender task."""

    def __init__(self, url: str, config: NotifierConfig) -> None:
        self.url = url
        self._config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(config.queue_size)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._send_all(), name=f"webhook {shown_url(self.url)}")

    def put(self, body: dict[str, Any]) -> None:
        if self._queue.full():
            dropped = self._queue.get_nowait()
            log.warning(
                "webhook %s: %d alerts waiting; dropped the oldest (event %s) unsent",
                shown_url(self.url),
                self._config.queue_size,
                dropped["id"],
            )
        self._queue.put_nowait(body)

    def close(self) -> None:
        if not self._queue.empty():
            log.warning(
                "webhook %s: %d alert(s) not sent before the stop",
                shown_url(self.url),
                self._queue.qsize(),
            )

    async def _send_all(self) -> None:
        while True:
            body = await self._queue.get()
            await self._deliver(body)

    async def _deliver(self, body: dict[str, Any]) -> None:
        delays = self._config.retry_delays_s
        for attempt in range(1, len(delays) + 2):
            problem = await self._post(body)
            if problem is None:
                return
            if attempt > len(delays):
                log.warning(
                    "webhook %s: gave up on alert %s after %d attempts: %s",
                    shown_url(self.url),
                    body["id"],
                    attempt,
                    problem,
                )
                return
            delay_s = delays[attempt - 1]
            log.info(
                "webhook %s: alert %s, attempt %d failed (%s); again in %g s",
                shown_url(self.url),
                body["id"],
                attempt,
                problem,
                delay_s,
            )
            await asyncio.sleep(delay_s)

    async def _post(self, body: dict[str, Any]) -> str | None:
        """None once the receiver took `body`, else what went wrong."""
        timeout_s = self._config.timeout_s
        try:
            # requests' timeout bounds the connect and each read; the outer one the whole POST.
            async with asyncio.timeout(timeout_s + 1.0):
                response = await asyncio.to_thread(
                    requests.post, self.url, json=body, timeout=timeout_s
                )
        except (TimeoutError, requests.Timeout):
            return f"no reply within {timeout_s:g} s"
        except requests.RequestException as e:
            secret = urlsplit(self.url)._replace(scheme="", netloc="").geturl()
            told = str(e).replace(secret, "/...") if secret.strip("/") else str(e)
            return f"{type(e).__name__}: {told}"
        if not response.ok:
            return f"HTTP {response.status_code}"
        return None
