"""What the daemon's services refuse, as exceptions a caller can act on.

Services raise these; `daemon.api.errors` maps each kind to one HTTP answer (the CLI prints the
message). A message says what is wrong and what to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ServiceError(Exception):
    """A request the daemon will not carry out; `str(error)` says why."""

    def detail(self) -> Any:
        """The JSON `detail` of the HTTP answer: the message unless a kind says more."""
        return str(self)


class NotFound(ServiceError):
    """No such record (template, plan, run, frame, session, job, result): check the id."""


class Gone(ServiceError):
    """The record exists but its file is no longer on disk (moved or deleted outside Nightowl):
    put the file back at `path`; the record stays."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path

    def detail(self) -> Any:
        return {"error": "Gone", "message": str(self), "path": str(self.path)}


class Busy(ServiceError):
    """The camera (or another single resource) is in use: wait for it or stop what uses it."""


class Conflict(ServiceError):
    """The daemon's state does not allow this now (another night runs, the site is unknown,
    the night has no dark hours): change the state first, then ask again."""


class Refused(ServiceError):
    """A request field passed its schema but not a rule of the domain: fix `field`."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field

    def detail(self) -> Any:
        location = ["body", self.field] if self.field else ["body"]
        return [{"loc": location, "msg": str(self), "type": "value_error"}]
