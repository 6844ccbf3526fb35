"""Who may use the API: tokens, roles and login sessions, without any HTTP.

Two roles: `control` may do everything, `read` may only look (GET/HEAD). A browser logs in
once with a token and then holds a random session id in a cookie; the id is kept only in
this process's memory (a restart logs everyone out) and only as its SHA-256, so a memory
dump or a timing difference in the lookup tells nothing about a live id.

Guessing a token is slowed per client: every wrong token answers late
(`FAILED_TOKEN_DELAY_S`), and `MAX_FAILURES` wrong tokens within `FAILURE_WINDOW_S` lock the
client out for `LOCKOUT_S`, during which its tokens are not even looked at.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

Role = Literal["read", "control"]

SESSION_LIFETIME_S = 7 * 24 * 3600.0
MIN_TOKEN_LENGTH = 16

FAILED_TOKEN_DELAY_S = 0.5
"""Each wrong token is answered this late."""
MAX_FAILURES = 10
"""Wrong tokens a client may send within `FAILURE_WINDOW_S` before it is locked out."""
FAILURE_WINDOW_S = 300.0
LOCKOUT_S = 300.0
"""How long a locked-out client is answered 429 without its token being looked at."""
MAX_TRACKED_CLIENTS = 4096
"""Clients whose failures are remembered; beyond this the least recently seen are forgotten,
so a flood of addresses cannot exhaust memory."""
_IPV6_CLIENT_PREFIX = 64
"""One IPv6 host usually holds a whole /64: it counts as one client."""

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""Host names that only reach this machine; a page on another site cannot rebind to them."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_host(host: str) -> str:
    """A host name as compared: lower case, without brackets or a final dot, an IP address
    in its shortest form (``[0:0::1]`` is ``::1``)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def normal_origin(origin: str) -> str | None:
    """A web origin as ``scheme://host:port`` with the port spelled out, or None when `origin`
    is not one (``null``, a path, a scheme other than http and https)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        return None
    host = normal_host(parts.hostname)
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port or _DEFAULT_PORTS[parts.scheme]}"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and `localhost`.

    Anything else (0.0.0.0, a LAN address, a host name) may be reachable from the network,
    so the daemon then insists on a token."""
    name = normal_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def token_problem(token: str) -> str | None:
    """Why `token` is too weak to guard the API, or None when it will do."""
    if len(token) < MIN_TOKEN_LENGTH:
        return (
            f"must be at least {MIN_TOKEN_LENGTH} characters; make one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def client_key(address: str) -> str:
    """Whom failures are counted against: the client's address, for IPv6 its /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, _IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass
class FailureLimit:
    """Wrong tokens per client in a sliding window, and the lock-out they lead to.

    The caller asks `locked_for` before it looks at a token and reports the outcome with
    `failed` or `succeeded`, with no await in between: concurrent guesses then cannot
    slip past the limit. Keys come from `client_key`."""

    max_failures: int = MAX_FAILURES
    window_s: float = FAILURE_WINDOW_S
    lockout_s: float = LOCKOUT_S
    max_clients: int = MAX_TRACKED_CLIENTS
    clock: Callable[[], float] = time.monotonic
    _clients: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)

    def locked_for(self, client: str) -> float:
        """Seconds until `client` may try a token again; 0 when it may now."""
        record = self._clients.get(client)
        if record is None:
            return 0.0
        return max(record.locked_until - self.clock(), 0.0)

    def failed(self, client: str) -> bool:
        """Count a wrong token; True when it locks the client out (then its count restarts)."""
        now = self.clock()
        record = self._clients.pop(client, None) or _Failures()
        self._clients[client] = record
        while record.times and record.times[0] <= now - self.window_s:
            record.times.popleft()
        record.times.append(now)
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        if len(record.times) < self.max_failures:
            return False
        record.times.clear()
        record.locked_until = now + self.lockout_s
        return True

    def succeeded(self, client: str) -> None:
        """A right token clears the client's count."""
        self._clients.pop(client, None)


@dataclass
class _Session:
    role: Role
    expires_at: float


@dataclass
class Access:
    """The daemon's tokens and its logged-in sessions.

    `required` is false only on loopback with no token set: then every caller has the
    control role, as before authentication existed."""

    control_token: SecretStr | None
    read_token: SecretStr | None
    required: bool
    session_lifetime_s: float = SESSION_LIFETIME_S
    clock: Callable[[], float] = time.monotonic
    failures: FailureLimit = field(default_factory=FailureLimit)
    _sessions: dict[bytes, _Session] = field(default_factory=dict)

    def role_of_token(self, token: str) -> Role | None:
        """The role a token grants; both are compared in constant time, always both."""
        given = _digest(token)
        control = self._matches(given, self.control_token)
        read = self._matches(given, self.read_token)
        if control:
            return "control"
        if read:
            return "read"
        return None

    @staticmethod
    def _matches(given: bytes, expected: SecretStr | None) -> bool:
        if expected is None:
            return False
        return hmac.compare_digest(given, _digest(expected.get_secret_value()))

    def start_session(self, role: Role) -> str:
        """A new session id (to be set as a cookie) for a caller whose token granted `role`."""
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = _Session(role, self.clock() + self.session_lifetime_s)
        return session_id

    def role_of_session(self, session_id: str) -> Role | None:
        """The role of a live session; an expired one is forgotten and grants nothing."""
        key = _digest(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[key]
            return None
        return session.role

    def logout(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def _forget_expired(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires_at <= now]:
            del self._sessions[key]

    def token_values(self) -> list[str]:
        """The token values, for the log filter that keeps them out of every log line."""
        return [t.get_secret_value() for t in (self.control_token, self.read_token) if t]
