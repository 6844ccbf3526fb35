"""The API's gate: one dependency on the whole app decides who may call which route.

Every route under ``/api`` is closed unless listed in `OPEN_ROUTES`, so a router added later
is protected without anyone remembering to. Pages outside ``/api`` (the docs, the web UI's
files) stay open: they hold no data, the data comes through ``/api``.

Credentials: ``Authorization: Bearer <token>``, or the session cookie set by
``POST /api/auth/login`` (what a browser uses, also for server-sent events, which cannot send
headers). A token in the query string is never looked at: URLs end up in logs and histories.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import WebSocketException
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute

from daemon.access import Access, Role

SESSION_COOKIE = "nightowl_session"
COOKIE_PATH = "/api"

# Liveness must answer a load balancer or a watchdog without a token; the auth routes are
# how a caller gets one (or learns it needs one).
OPEN_ROUTES = frozenset({"/api/health", "/api/auth/login", "/api/auth/logout", "/api/auth/me"})

_READ_METHODS = frozenset({"GET", "HEAD"})

# auto_error=False: a missing credential is decided here, with the right status and header.
_bearer = HTTPBearer(auto_error=False, description="NIGHTOWL_CONTROL_TOKEN or NIGHTOWL_READ_TOKEN")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="set by POST /api/auth/login"
)

BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
CookieDep = Annotated[str | None, Depends(_cookie)]


def get_access(connection: HTTPConnection) -> Access:
    access: Access = connection.app.state.access
    return access


AccessDep = Annotated[Access, Depends(get_access)]


def caller_role(access: Access, bearer: str | None, session_id: str | None) -> Role | None:
    """The role the credentials grant. A bearer header, when sent, decides alone: a wrong
    token is refused even if a good cookie rides along."""
    if not access.required:
        return "control"
    if bearer is not None:
        return access.role_of_token(bearer)
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
    the read role tries to change something. A websocket is closed with policy violation."""
    path = _route_path(connection)
    if path in OPEN_ROUTES or not (path == "/api" or path.startswith("/api/")):
        return
    role = caller_role(access, bearer.credentials if bearer else None, session_id)
    is_websocket = connection.scope["type"] == "websocket"
    if role is None:
        if is_websocket:
            raise WebSocketException(status.WS_1008_POLICY_VIOLATION, "log in first")
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a token is needed: send 'Authorization: Bearer <token>' or log in "
            "with POST /api/auth/login",
            headers={"WWW-Authenticate": "Bearer"},
        )
    method = "GET" if is_websocket else connection.scope["method"]
    if role == "read" and method not in _READ_METHODS:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{method} needs the control role (NIGHTOWL_CONTROL_TOKEN); "
            "the read role may only GET and HEAD",
        )


def session_cookie_secure(request: Request) -> bool:
    """Mark the cookie Secure behind HTTPS only: on plain HTTP in a LAN a Secure cookie
    would never come back."""
    return request.url.scheme == "https"
