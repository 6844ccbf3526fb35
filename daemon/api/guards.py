"""Checks in front of the whole app: against web pages that try to use a local daemon, and
against request bodies too large for any route.

DNS rebinding: a page on ``evil.example`` can make its own name point at 127.0.0.1 and then
call the API as "same origin"; its requests still carry ``Host: evil.example``, so only the
configured host names are answered (`HostGuard`). Cross-site requests: any page may send a
POST to ``http://127.0.0.1:8000`` (it cannot read the answer, but the request acts); a browser
names the sending page in ``Origin``, so a state-changing ``/api`` request from another
origin is refused (`OriginGuard`). Clients that are not browsers send no ``Origin`` and pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, status
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from daemon.access import normal_host, normal_origin
from daemon.api.auth import is_api_path
from daemon.settings import Settings

CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest request body the API reads: a sequence template of hundreds of targets is a
few hundred KiB, and a larger body is refused with 413 before it is parsed or held."""


def host_of(header: str) -> str | None:
    """The host name in a ``Host`` header (``name``, ``name:port``, ``[::1]:port``), or None
    when the header is not one."""
    if not header or any(c in header for c in "/@?#\\ "):
        return None
    try:
        parts = urlsplit(f"//{header}")
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return None
    return normal_host(parts.hostname) if parts.hostname else None


def host_matches(host: str, patterns: Sequence[str]) -> bool:
    """`host` (normalised) is one of `patterns`: a name, ``*`` for any, ``*.example.org``
    for its subdomains."""
    return any(
        pattern in ("*", host) or (pattern.startswith("*.") and host.endswith(pattern[1:]))
        for pattern in patterns
    )


class HostGuard:
    """Answers 400 to a request whose ``Host`` is not an allowed host name."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = list(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and "*" not in self.allowed_hosts:
            header = Headers(scope=scope).get("host", "")
            host = host_of(header)
            if host is None or not host_matches(host, self.allowed_hosts):
                detail = (
                    f"this daemon does not answer to the host name {header!r}; add it to "
                    "NIGHTOWL_ALLOWED_HOSTS if it is how you reach the daemon"
                )
                response = JSONResponse({"detail": detail}, status.HTTP_400_BAD_REQUEST)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _own_origin(scope: Scope, headers: Headers) -> str | None:
    return normal_origin(f"{scope['scheme']}://{headers.get('host', '')}")


class OriginGuard:
    """Answers 403 to a state-changing ``/api`` request a browser sent from another site.

    Allowed: no ``Origin`` (and no ``Sec-Fetch-Site: cross-site``), the daemon's own origin
    (the request's scheme and ``Host``), or one of `allowed_origins`. Reads stay open: a
    foreign page cannot read an answer without CORS, which the daemon does not grant."""

    def __init__(self, app: ASGIApp, allowed_origins: Sequence[str]) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in CHANGING_METHODS
            and is_api_path(scope["path"])
        ):
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is None:
                refused = headers.get("sec-fetch-site") == "cross-site"
            else:
                normal = normal_origin(origin)
                refused = normal is None or (
                    normal != _own_origin(scope, headers) and normal not in self.allowed_origins
                )
            if refused:
                detail = (
                    f"{scope['method']} from the web page at {origin or 'another site'} refused: "
                    "pages of other sites may not change anything here; add the origin to "
                    "NIGHTOWL_ALLOWED_ORIGINS if you trust it"
                )
                response = JSONResponse({"detail": detail}, status.HTTP_403_FORBIDDEN)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 to an ``/api`` request whose body is larger than `limit` bytes: at once
    when ``Content-Length`` says so, else as soon as the streamed body passes the limit (the
    route then sees the client gone, and whatever it answers is dropped)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit and not started:
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except Exception:
            if not refused:
                raise

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = (
            f"the request body is larger than {self.limit // (1024 * 1024)} MiB, the most "
            "any route of this API reads; send less"
        )
        await JSONResponse({"detail": detail}, status.HTTP_413_CONTENT_TOO_LARGE)(
            scope, receive, send
        )


def install_guards(app: FastAPI, settings: Settings) -> None:
    """The host check runs first: a rebinding page's request is refused before anything."""
    app.add_middleware(BodyLimit)
    app.add_middleware(OriginGuard, allowed_origins=settings.allowed_origins)
    app.add_middleware(HostGuard, allowed_hosts=settings.resolved_allowed_hosts)
