"""The API's gate: one dependency on the whole app decides who may call which route.

Every route under ``/api`` is closed unless listed in `OPEN_ROUTES`, so a router added later
is protected without anyone remembering to. Pages outside ``/api`` (the docs, the web UI's
files) stay open: they hold no data, the data comes through ``/api``.

Credentials: ``Authorization: Bearer <token>``, or the session cookie set by
``POST /api/auth/login`` (what a browser uses, also for server-sent events, which cannot send
headers). A token in the query string is never looked at: URLs end up in logs and histories.
Every token a caller sends goes through `token_role`, which applies the per-client limit on
wrong tokens (`daemon.access.FailureLimit`).
"""

from __future__ import annotations

import asyncio
import math
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from daemon.access import FAILED_TOKEN_DELAY_S, Access, FailureLimit, Role, client_key
from daemon.events import record_event

SESSION_COOKIE = "nightowl_session"
COOKIE_PATH = "/api"

# Liveness must answer a load balancer or a watchdog without a token; the auth routes are
# how a caller gets one (or learns it needs one).
OPEN_ROUTES = frozenset({"/api/health", "/api/auth/login", "/api/auth/logout", "/api/auth/me"})

_READ_METHODS = frozenset({"GET", "HEAD"})

# auto_error=False: a missing credential is decided here, with the right status and header.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerToken",
    description=(
        "NIGHTOWL_CONTROL_TOKEN or NIGHTOWL_READ_TOKEN; not needed on loopback while neither "
        "is set (every caller then has the control role)"
    ),
)
_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="sessionCookie",
    description="set by POST /api/auth/login",
)

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CookieDep = Annotated[str | None, Depends(_cookie)]


def get_access(connection: HTTPConnection) -> Access:
    access: Access = connection.app.state.access
    return access


AccessDep = Annotated[Access, Depends(get_access)]


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def required_role(path: str, method: str) -> Role | None:
    """The role a route needs (`path` as declared, e.g. ``/api/frames/{frame_id}``); None for
    the open routes and everything outside ``/api``."""
    if path in OPEN_ROUTES or not is_api_path(path):
        return None
    return "read" if method in _READ_METHODS else "control"


def _refusal(
    connection: HTTPConnection, code: int, detail: str, headers: dict[str, str]
) -> Exception:
    if connection.scope["type"] == "websocket":
        return WebSocketException(status.WS_1008_POLICY_VIOLATION, detail)
    return HTTPException(code, detail, headers=headers)


async def token_role(connection: HTTPConnection, access: Access, token: str) -> Role | None:
    """The role `token` grants, None for a wrong one (answered after `FAILED_TOKEN_DELAY_S`).

    Raises 429 with ``Retry-After`` while the caller's address is locked out, before the
    token is looked at. Checking the lock, the token and counting the outcome happen without
    an await in between, so a burst of concurrent guesses is held to the limit too."""
    client = client_key(connection.client.host if connection.client else "unknown")
    wait_s = access.failures.locked_for(client)
    if wait_s > 0:
        raise _refusal(
            connection,
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many wrong tokens from {client}; try again in {math.ceil(wait_s)} s",
            {"Retry-After": str(math.ceil(wait_s))},
        )
    role = access.role_of_token(token)
    if role is not None:
        access.failures.succeeded(client)
        return role
    if access.failures.failed(client):
        await _record_lockout(connection, client, access.failures)
    await asyncio.sleep(FAILED_TOKEN_DELAY_S)
    return None


async def _record_lockout(connection: HTTPConnection, client: str, limit: FailureLimit) -> None:
    engine: Engine = connection.app.state.runtime.engine
    await asyncio.to_thread(
        record_event,
        engine,
        "warning",
        "auth",
        f"{client} locked out for {limit.lockout_s:.0f} s after {limit.max_failures} wrong "
        f"tokens within {limit.window_s:.0f} s",
        {"client": client, "failures": limit.max_failures, "lockout_s": limit.lockout_s},
    )


async def caller_role(
    connection: HTTPConnection, access: Access, bearer: str | None, session_id: str | None
) -> Role | None:
    """The role the credentials grant. A bearer header, when sent, decides alone: a wrong
    token is refused even if a good cookie rides along. A session id is not counted as a
    guess: it is 256 random bits, and a browser may hold one a restart made stale."""
    if not access.required:
        return "control"
    if bearer is not None:
        return await token_role(connection, access, bearer)
    if session_id is not None:
        return access.role_of_session(session_id)
    return None


def _route_path(connection: HTTPConnection) -> str:
    route = connection.scope.get("route")
    return route.path if isinstance(route, BaseRoute) and hasattr(route, "path") else ""


async def require_access(
    connection: HTTPConnection, access: AccessDep, bearer: BearerDep, session_id: CookieDep
) -> None:
    """Raises 401 (with ``WWW-Authenticate: Bearer``) without valid credentials, 403 when
    the read role tries to change something, 429 while the caller is locked out for wrong
    tokens. A websocket is closed with policy violation instead."""
    is_websocket = connection.scope["type"] == "websocket"
    method = "GET" if is_websocket else connection.scope["method"]
    needed = required_role(_route_path(connection), method)
    if needed is None:
        return
    role = await caller_role(connection, access, bearer.credentials if bearer else None, session_id)
    if role is None:
        raise _refusal(
            connection,
            status.HTTP_401_UNAUTHORIZED,
            "a token is needed: send 'Authorization: Bearer <token>' or log in "
            "with POST /api/auth/login",
            {"WWW-Authenticate": "Bearer"},
        )
    if needed == "control" and role == "read":
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{method} needs the control role (NIGHTOWL_CONTROL_TOKEN); "
            "the read role may only GET and HEAD",
        )


def session_cookie_secure(request: Request) -> bool:
    """Mark the cookie Secure behind HTTPS only: on plain HTTP in a LAN a Secure cookie
    would never come back."""
    return request.url.scheme == "https"
