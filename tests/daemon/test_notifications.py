"""Webhook notifications against a real local HTTP receiver: alerts only, retried with
back-off, one slow receiver never holding up another, a bounded queue, a clear setting."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from daemon.db.engine import make_engine
from daemon.db.migrate import upgrade
from daemon.events import record_event
from daemon.notifications import Notifier, NotifierConfig
from daemon.settings import Settings
from tests.helpers import eventually


@dataclass
class Receiver:
    """A webhook receiver on its own thread: answers each POST with the next of `statuses`
    (then 200), and holds every reply while `hold` is clear."""

    statuses: list[int] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    posts: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    """(time.monotonic() of arrival, JSON body) of every POST, answered or not."""
    url: str = ""

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, body in self.posts]


@contextlib.contextmanager
def webhook_receiver(statuses: Sequence[int] = (), *, held: bool = False) -> Iterator[Receiver]:
    receiver = Receiver(list(statuses))
    if not held:
        receiver.hold.set()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                receiver.posts.append((time.monotonic(), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            receiver.hold.wait(30)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/s3cret"
    thread = threading.Thread(target=server.serve_forever, name="webhook receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.hold.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'nightowl.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@contextlib.asynccontextmanager
async def notifying(
    engine: Engine, urls: Sequence[str], config: NotifierConfig
) -> AsyncIterator[Notifier]:
    notifier = Notifier(engine, urls, "backyard", config)
    await notifier.start()
    try:
        yield notifier
    finally:
        await notifier.stop()


async def alert(engine: Engine, message: str, **data: Any) -> int:
    return await asyncio.to_thread(record_event, engine, "alert", "safety", message, data)


async def test_an_alert_is_retried_with_back_off_until_the_receiver_takes_it(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="daemon.notifications")
    record_event(engine, "alert", "plan", "recorded before the start: not sent")
    config = NotifierConfig(poll_s=0.1, timeout_s=5.0, retry_delays_s=(0.3, 0.6, 1.2))
    with webhook_receiver([500, 503]) as receiver:
        async with notifying(engine, [receiver.url], config):
            await asyncio.to_thread(record_event, engine, "error", "safety", "not an alert")
            event_id = await alert(engine, "roof did not close", step="roof")
            await eventually(lambda: len(receiver.posts) == 3, 10, "the third attempt")
            await asyncio.sleep(0.5)  # taken: no fourth attempt
    times = [t for t, _ in receiver.posts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # The waits are lower bounds (the receiver answers in milliseconds); the upper bound only
    # catches a retry that waited for the next poll or far longer than its delay.
    assert 0.3 <= gaps[0] < 1.5, gaps
    assert 0.6 <= gaps[1] < 1.8, gaps
    first = receiver.bodies()[0]
    assert receiver.bodies() == [first] * 3
    assert first["id"] == event_id
    assert (first["level"], first["source"], first["message"]) == (
        "alert",
        "safety",
        "roof did not close",
    )
    assert first["data"] == {"step": "roof"}
    assert first["profile"] == "backyard"
    assert first["time"].endswith("+00:00")
    retries = [r.getMessage() for r in caplog.records if "failed (HTTP 50" in r.getMessage()]
    assert len(retries) == 2
    assert all("s3cret" not in r.getMessage() for r in caplog.records)


async def test_a_silent_receiver_is_given_up_and_never_holds_up_another(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The silent receiver's POSTs time out and are retried; the other webhook gets the
    alert at the next poll meanwhile, and the event loop keeps turning: a POST that blocked
    it would stop the loop's 50 ms ticks for the whole 1 s timeout."""
    config = NotifierConfig(poll_s=0.1, timeout_s=1.0, retry_delays_s=(0.1,))
    with webhook_receiver(held=True) as silent, webhook_receiver() as healthy:
        async with notifying(engine, [silent.url, healthy.url], config):
            recorded = time.monotonic()
            await alert(engine, "focuser stayed lost")
            ticks = [time.monotonic()]
            while not any("gave up" in r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
                ticks.append(time.monotonic())
                assert ticks[-1] - recorded < 10, "no give-up within 10 s"
    assert healthy.posts[0][0] - recorded < 1.0
    assert len(healthy.posts) == 1
    assert len(silent.posts) == 2
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.8
    given_up = [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]
    assert given_up == [
        f"webhook {silent.url.removesuffix('/hooks/s3cret')}: gave up on alert 1 after 2 "
        "attempts: no reply within 1 s"
    ]


async def test_a_full_queue_drops_its_oldest_alerts(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    config = NotifierConfig(poll_s=0.1, timeout_s=10.0, retry_delays_s=(), queue_size=2)
    with webhook_receiver(held=True) as receiver:
        async with notifying(engine, [receiver.url], config):
            ids = [await alert(engine, "the first")]
            await eventually(lambda: bool(receiver.posts), 5, "the first alert held")
            ids += [await alert(engine, f"alert {n}") for n in range(2, 6)]
            await eventually(
                lambda: sum("dropped the oldest" in r.getMessage() for r in caplog.records) == 2,
                5,
                "two alerts dropped",
            )
            receiver.hold.set()
            await eventually(lambda: len(receiver.posts) == 3, 5, "the queue sent")
    assert [body["id"] for body in receiver.bodies()] == [ids[0], ids[3], ids[4]]


def test_webhook_urls_must_be_http_urls_and_the_error_keeps_their_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NIGHTOWL_WEBHOOK_URLS", "http://a.example/x, https://b.example:8443/y")
    assert Settings().webhook_urls == ["http://a.example/x", "https://b.example:8443/y"]
    monkeypatch.setenv(
        "NIGHTOWL_WEBHOOK_URLS", '["https://a.example/ok", "hooks.example.org/T0/s3cret"]'
    )
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "NIGHTOWL_WEBHOOK_URLS: URL 2 has no scheme" in message
    assert "s3cret" not in message
    monkeypatch.setenv("NIGHTOWL_WEBHOOK_URLS", "ftp://a.example/x")
    with pytest.raises(ValidationError, match="URL 1 has the scheme 'ftp'"):
        Settings()
