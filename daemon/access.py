"""Who may use the API: tokens, roles and login sessions, without any HTTP.

Two roles: `control` may do everything, `read` may only look (GET/HEAD). A browser logs in
once with a token and then holds a random session id in a cookie; the id is kept only in
this process's memory (a restart logs everyone out) and only as its SHA-256, so a memory
dump or a timing difference in the lookup tells nothing about a live id.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import SecretStr

Role = Literal["read", "control"]

SESSION_LIFETIME_S = 7 * 24 * 3600.0
MIN_TOKEN_LENGTH = 16


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach: 127.0.0.0/8, ::1 and `localhost`.

    Anything else (0.0.0.0, a LAN address, a host name) may be reachable from the network,
    so the daemon then insists on a token."""
    name = host.strip().strip("[]").lower().rstrip(".")
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

    def login(self, token: str) -> tuple[str, Role] | None:
        """A new session id for a valid token (to be set as a cookie), or None."""
        role = self.role_of_token(token)
        if role is None:
            return None
        self._forget_expired()
        session_id = secrets.token_urlsafe(32)
        self._sessions[_digest(session_id)] = _Session(role, self.clock() + self.session_lifetime_s)
        return session_id, role

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
