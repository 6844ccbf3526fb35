"""The error answers of the API as its OpenAPI document lists them: one description per
status (the mapping itself is `daemon.api.errors`), named on each route where it can happen.
FastAPI adds 422 to every route that takes parameters or a body; 401 and 403 are documented
for every protected route at once."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorRead(BaseModel):
    detail: Any = Field(
        description="a message, or an object with `error` and `message` (and the device, "
        "path or issues it concerns), or a list of problems with `loc`, `msg` and `type`"
    )


_DESCRIPTIONS: dict[int, str] = {
    404: "No such record: check the id.",
    409: "Not now: the camera or the run is busy, another night runs, or the state does not "
    "allow it; `detail` says what holds it or lists the issues to fix.",
    410: "The record exists but its file is no longer on disk (moved or deleted outside "
    "Nightowl); `detail.path` is where it was.",
    501: "The device cannot do this.",
    502: "The device refused or failed the operation.",
    503: "The device is not connected: connect it (POST /api/equipment/connect).",
    504: "The device did not answer in time.",
    507: "The frame could not be stored (disk full, folder not writable); nothing was lost "
    "that was reported as saved.",
}

DEVICE = (409, 501, 502, 503, 504)
"""What a device error answers (`daemon.api.errors`): busy, unsupported, failed, not
connected, timed out."""


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: these statuses with their descriptions."""
    return {code: {"model": ErrorRead, "description": _DESCRIPTIONS[code]} for code in statuses}
