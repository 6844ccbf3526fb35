"""The OpenAPI document says, for every ``/api`` operation, which role it needs.

Decided from the same rule the gate applies (`daemon.api.auth.required_role`), so the
document cannot drift from what the daemon does: each operation gets ``x-nightowl-role``
(``read``, ``control`` or ``none``), a line in its description, and its 401/403/413/429 answers.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI

from daemon.access import Role
from daemon.api.auth import is_api_path, required_role
from daemon.api.guards import CHANGING_METHODS

_METHODS = frozenset({"get", "head", "post", "put", "patch", "delete", "options", "trace"})

_ROLE_NOTES: dict[Role, str] = {
    "read": "**Role: read** (NIGHTOWL_READ_TOKEN or NIGHTOWL_CONTROL_TOKEN).",
    "control": "**Role: control** (NIGHTOWL_CONTROL_TOKEN).",
}
_UNAUTHORIZED = {"description": "no valid token or session (WWW-Authenticate: Bearer)"}
_FORBIDDEN = {
    "description": (
        "the read role may not change anything, or the request came from a web page of "
        "another site (NIGHTOWL_ALLOWED_ORIGINS)"
    )
}
_TOO_LARGE = {"description": "the request body is larger than the API reads (4 MiB)"}
_LOCKED_OUT = {"description": "too many wrong tokens from this address; wait Retry-After seconds"}


def mark_roles(schema: dict[str, Any]) -> None:
    """Adds the role, the credentials and the refusals to each ``/api`` operation, in place;
    answers a route documents itself are kept."""
    for path, operations in schema.get("paths", {}).items():
        if not is_api_path(path):
            continue
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            role = required_role(path, method.upper())
            operation["x-nightowl-role"] = role or "none"
            if method.upper() in CHANGING_METHODS:
                operation.setdefault("responses", {}).setdefault("413", _TOO_LARGE)
            if role is None:
                operation["security"] = []
                continue
            description = operation.get("description", "")
            operation["description"] = f"{description}\n\n{_ROLE_NOTES[role]}".lstrip()
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", _UNAUTHORIZED)
            if role == "control":
                responses.setdefault("403", _FORBIDDEN)
            responses.setdefault("429", _LOCKED_OUT)


def install_openapi(app: FastAPI) -> None:
    """Builds the document once and marks the roles in it. Building takes ~0.6 s (2 s on
    a busy machine): the daemon builds it in a thread at startup, so a first request for it
    does not hold the event loop; the lock makes such a request wait for that build."""
    build = app.openapi
    building = threading.Lock()

    def openapi() -> dict[str, Any]:
        with building:
            fresh = app.openapi_schema is None
            schema = build()
            if fresh:
                mark_roles(schema)
            return schema

    app.openapi = openapi  # type: ignore[method-assign]
