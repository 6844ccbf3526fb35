"""A fault-injecting HTTP proxy in front of an Alpaca server, for tests.

The real simulator cannot lose a reply, so the proxy stands between the drivers and it and,
following a seeded plan, injects the faults of a real observatory's network and devices:

- `Fault.LATENCY`: the request is forwarded after a delay.
- `Fault.HTTP_500`: an HTTP 500 reply; the server never sees the request.
- `Fault.ALPACA_ERROR`: an HTTP 200 Alpaca reply with a non-zero ErrorNumber (the device
  refusing); the server never sees the request.
- `Fault.REPLY`: an HTTP 200 Alpaca reply without error, of the rule's `value`: a device that
  reports something the simulator cannot be made to (a shutter in ERROR, a read-only switch), or
  accepts a command and does nothing; the server never sees the request.
- `Fault.RESET`: the request is read, then the connection is reset (TCP RST).
- `Fault.TRUNCATE`: the server's reply is cut in the middle of its body and the connection
  closed; the Content-Length still claims the whole body unless the rule says otherwise.
- `Fault.SILENCE`: the request is read and never answered (the connection is held open).
- `Fault.STUCK_MOTOR`: an ordinary Alpaca success (ErrorNumber 0); the server never sees the
  request. A command the device acknowledges but whose motor never turns: a roof or cover
  told to move keeps reporting where it was.

Each request is matched against the rules in order: every rule whose path pattern and method
match draws from the seeded generator, and the first that draws below its rate (within its
limit) injects its fault. Every injection is recorded in `FaultProxy.injected`, so a test can
compare what was injected with what the daemon reported. The proxy runs on its own thread and event
loop (`running_proxy`), so a test may block while a daemon talks through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit


class Fault(enum.Enum):
    LATENCY = "latency"
    HTTP_500 = "http_500"
    ALPACA_ERROR = "alpaca_error"
    REPLY = "reply"
    RESET = "reset"
    TRUNCATE = "truncate"
    SILENCE = "silence"
    STUCK_MOTOR = "stuck_motor"


@dataclass(frozen=True)
class FaultRule:
    """Inject `kind` into requests whose path matches `path` (a regular expression searched in
    the lower-case request path, e.g. ``camera/0/imagearray``) and whose method is `method`
    (any when None), with probability `rate`, at most `limit` times, once `after` matching
    requests have passed untouched (a fault certain to happen: rate 1, limit 1, after N)."""

    kind: Fault
    rate: float = 1.0
    path: str = ""
    method: str | None = None
    limit: int | None = None
    after: int = 0
    latency_s: float = 0.5
    error_number: int = 0x500
    """ALPACA_ERROR: the ErrorNumber of the reply (0x500 and up: a driver error)."""
    value: object = None
    """REPLY: the Value of the reply (None: a method's reply, which has no Value)."""
    keep_length: bool = True
    """TRUNCATE: keep the Content-Length of the whole body (False: rewrite it to the cut
    length, so the reply is complete as HTTP but short as an image)."""
    hold_s: float = 60.0
    """SILENCE: how long the unanswered connection is held open."""


@dataclass(frozen=True)
class Injected:
    """One injected fault: when (wall clock, s since the epoch), on which request."""

    time_s: float
    method: str
    path: str
    kind: Fault
    rule: int


@dataclass(frozen=True)
class _Request:
    method: str
    target: str
    head: bytes
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path.lower()

    def transaction_id(self) -> int:
        fields = parse_qs(urlsplit(self.target).query) | parse_qs(self.body.decode("latin-1"))
        values = fields.get("ClientTransactionID") or ["0"]
        return int(values[0]) if values[0].isdigit() else 0


class FaultProxy:
    """The proxy's state and its asyncio server; use `running_proxy` to run one."""

    def __init__(self, upstream: str, rules: Sequence[FaultRule] = (), seed: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must look like http://host:port, got {upstream}")
        self._upstream = (parts.hostname, parts.port)
        self._rules = list(rules)
        self.injected: list[Injected] = []
        self.requests: list[tuple[str, str]] = []
        """Every request seen, as (method, path)."""
        self._random = random.Random(seed)
        self._used: dict[int, int] = {}
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._closing = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rules(self) -> list[FaultRule]:
        return list(self._rules)

    @rules.setter
    def rules(self, rules: Sequence[FaultRule]) -> None:
        """A new plan, e.g. once the devices connected; its limits count from now."""
        with self._lock:
            self._rules = list(rules)
            self._used.clear()
            self._seen.clear()

    def injected_count(self, kind: Fault | None = None, path: str = "") -> int:
        with self._lock:
            return sum(
                1
                for i in self.injected
                if (kind is None or i.kind is kind) and re.search(path, i.path)
            )

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop accepting; held (silent) connections are closed, the others finish."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*self._connections, return_exceptions=True)

    def _draw(self, request: _Request) -> FaultRule | None:
        with self._lock:
            self.requests.append((request.method, request.path))
            for index, rule in enumerate(self._rules):
                if rule.method is not None and rule.method != request.method:
                    continue
                if not re.search(rule.path, request.path):
                    continue
                self._seen[index] = self._seen.get(index, 0) + 1
                if self._seen[index] <= rule.after:
                    continue
                if rule.limit is not None and self._used.get(index, 0) >= rule.limit:
                    continue
                if self._random.random() >= rule.rate:
                    continue
                self._used[index] = self._used.get(index, 0) + 1
                self.injected.append(
                    Injected(time.time(), request.method, request.path, rule.kind, index)
                )
                return rule
            return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            request = await _read_request(reader)
            if request is not None:
                await self._answer(request, self._draw(request), writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(
        self, request: _Request, rule: FaultRule | None, writer: asyncio.StreamWriter
    ) -> None:
        kind = rule.kind if rule is not None else None
        if rule is None or kind in (Fault.LATENCY, Fault.TRUNCATE):
            if rule is not None and kind is Fault.LATENCY:
                await asyncio.sleep(rule.latency_s)
            lines, body = await self._forward(request)
            if rule is not None and kind is Fault.TRUNCATE:
                # Half the body: the Content-Length claims the whole of it, or the half.
                cut = body[: len(body) // 2]
                writer.write(_message(lines, cut, len(body) if rule.keep_length else None))
            else:
                writer.write(_message(lines, body))
        elif kind is Fault.HTTP_500:
            writer.write(_reply(500, "Internal Server Error", "text/plain", b"injected fault"))
        elif kind in (Fault.ALPACA_ERROR, Fault.STUCK_MOTOR):
            number = rule.error_number if kind is Fault.ALPACA_ERROR else 0
            reply = {
                "ClientTransactionID": request.transaction_id(),
                "ServerTransactionID": 0,
                "ErrorNumber": number,
                "ErrorMessage": f"injected error 0x{number:X}" if number else "",
            }
            writer.write(_reply(200, "OK", "application/json", json.dumps(reply).encode()))
        elif kind is Fault.REPLY:
            reply = {
                "ClientTransactionID": request.transaction_id(),
                "ServerTransactionID": 0,
                "ErrorNumber": 0,
                "ErrorMessage": "",
            }
            if rule.value is not None:
                reply["Value"] = rule.value
            writer.write(_reply(200, "OK", "application/json", json.dumps(reply).encode()))
        elif kind is Fault.RESET:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        else:  # SILENCE: hold the connection, unanswered
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(rule.hold_s):
                    await self._closing.wait()
            return
        await writer.drain()

    async def _forward(self, request: _Request) -> tuple[list[bytes], bytes]:
        """The server's reply as its head lines (without framing headers) and its body."""
        reader, writer = await asyncio.open_connection(*self._upstream)
        try:
            writer.write(_message(request.head.split(b"\r\n"), request.body))
            await writer.drain()
            reply = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        framing = [line.split(b":", 1)[0].strip().lower() for line in lines[1:]]
        if b"transfer-encoding" in framing:
            body = _dechunk(body)
        kept = [lines[0], *(line for line in lines[1:] if not _is_framing(line))]
        return kept, body


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return _Request(method.upper(), target, head[:-4], body)


_FRAMING = (b"connection", b"content-length", b"transfer-encoding")


def _is_framing(line: bytes) -> bool:
    return line.split(b":", 1)[0].strip().lower() in _FRAMING


def _message(lines: list[bytes], body: bytes, length: int | None = None) -> bytes:
    """A message with `lines` (start line and headers), one request per connection
    (``Connection: close``) and a Content-Length of `length` (default: the body's)."""
    kept = [lines[0], *(line for line in lines[1:] if not _is_framing(line))]
    framing = [b"Content-Length: %d" % (len(body) if length is None else length)]
    return b"\r\n".join([*kept, *framing, b"Connection: close"]) + b"\r\n\r\n" + body


def _dechunk(body: bytes) -> bytes:
    out, position = bytearray(), 0
    while True:
        end = body.index(b"\r\n", position)
        size = int(body[position:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        position = end + 2 + size + 2


def _reply(status: int, reason: str, content_type: str, body: bytes) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}".encode(), f"Content-Type: {content_type}".encode()]
    return _message(lines, body)


@contextlib.contextmanager
def running_proxy(
    upstream: str, rules: Sequence[FaultRule] = (), seed: int = 0
) -> Iterator[FaultProxy]:
    """Run a `FaultProxy` to `upstream` on a thread of its own until the block ends."""
    proxy = FaultProxy(upstream, rules, seed)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(proxy.stop())
        loop.close()

    thread = threading.Thread(target=serve, name="fault proxy", daemon=True)
    thread.start()
    assert started.wait(10), "the fault proxy did not start"
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
